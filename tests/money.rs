//! Money end to end: the reference workspace with an exchange-rate table and a `convert:`
//! field, run by its flow tests through the real runtime; and the stock checks' dead letters
//! as `switchyard test` reports them.

use std::path::{Path, PathBuf};

use switchyard::flowtest;
use switchyard::spec::{EnvLookup, LoadOptions, load_workspace};

use crate::util::copy_dir;

/// The reference workspace with ECB-style rates (no USD) and the offer price converted to
/// EUR beside its minor units.
fn workspace(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-money-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), &dir);
    let file = dir.join("switchyard.yaml");
    let mut text = std::fs::read_to_string(&file).expect("workspace file");
    text.push_str(
        "exchange_rates:\n  source: ECB reference rates\n  date: 2026-11-27\n  base: EUR\n  \
         rates: { GBP: \"0.8412\", JPY: \"163.21\" }\n",
    );
    std::fs::write(&file, text).expect("write workspace");
    let flow = dir.join("flows").join("offers-to-storefront.yaml");
    let text = std::fs::read_to_string(&flow).expect("offers flow");
    let text = text.replace(
        "  currency: \"{{currency_iso_code}}\"\n",
        "  currency: \"{{currency_iso_code}}\"\n  \
         price_eur: { from: /price, convert: { currency: /currency_iso_code, to: EUR } }\n",
    );
    assert!(text.contains("price_eur"), "the map changed: {text}");
    std::fs::write(&flow, text).expect("write flow");
    std::fs::write(
        dir.join("tests").join("offers-to-storefront.yaml"),
        r#"flow: offers-to-storefront
cases:
  - name: converted prices record their rate, source and date
    input:
      - { offer_id: 1001, shop_id: 2001, shop_sku: "SKU-1", product_sku: "PRD-1", title: "Kettle", price: "129.95", currency_iso_code: GBP, quantity: 4, state_code: "11", updated_at: "2026-11-27T10:00:00Z", last_updated_by: marketplace }
      - { offer_id: 1002, shop_id: 2001, shop_sku: "SKU-2", product_sku: "PRD-2", title: "Lamp", price: "19.9", currency_iso_code: EUR, quantity: 1, state_code: "11", updated_at: "2026-11-27T10:00:00Z", last_updated_by: marketplace }
      - { offer_id: 1003, shop_id: 2001, shop_sku: "SKU-3", product_sku: "PRD-3", title: "Mat", price: "25.50", currency_iso_code: USD, quantity: 1, state_code: "11", updated_at: "2026-11-27T10:00:00Z", last_updated_by: marketplace }
    expect:
      delivered:
        - { offer_id: 1001, shop_id: 2001, sku: "sku-1", product_sku: "PRD-1", title: "Kettle", price_minor: 12995, currency: GBP, price_eur: { amount: "154.48", currency: EUR, rate: "1.1887779363", rate_source: ECB reference rates, rate_date: "2026-11-27", original_amount: "129.95", original_currency: GBP }, stock: 4, active: true, updated_at: "2026-11-27T10:00:00Z" }
        - { offer_id: 1002, shop_id: 2001, sku: "sku-2", product_sku: "PRD-2", title: "Lamp", price_minor: 1990, currency: EUR, price_eur: { amount: "19.90", currency: EUR, rate: "1", rate_source: ECB reference rates, rate_date: "2026-11-27", original_amount: "19.90", original_currency: EUR }, stock: 1, active: true, updated_at: "2026-11-27T10:00:00Z" }
      dead_letters:
        - { failure: mapping-error, owner: catalog-team, error_contains: "map.price_eur: no exchange rate from USD to EUR" }
      alerts:
        - { owner: catalog-team, failure: mapping-error }
"#,
    )
    .expect("write tests");
    dir
}

fn env() -> EnvLookup {
    [
        ("MARKETPLACE_URL", "http://marketplace.test"),
        ("MARKETPLACE_CLIENT_ID", "id"),
        ("MARKETPLACE_CLIENT_SECRET", "secret"),
        ("OMS_URL", "http://oms.test"),
        ("STOREFRONT_URL", "http://storefront.test"),
        ("ALERTS_URL", "http://alerts.test"),
    ]
    .iter()
    .fold(EnvLookup::empty(), |env, (name, value)| {
        env.with(*name, *value)
    })
}

fn run(dir: &Path, filter: &str) -> Vec<flowtest::CaseResult> {
    let loaded = load_workspace(
        dir,
        &LoadOptions {
            strict: false,
            env: env(),
        },
    );
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{d:?}"))
        .collect();
    let workspace = loaded
        .workspace
        .unwrap_or_else(|| panic!("the workspace does not load: {errors:?}"));
    flowtest::run_all(&workspace, Some(filter))
}

#[test]
fn a_flow_converts_with_the_declared_rates_only() {
    let dir = workspace("convert");
    let results = run(&dir, "converted prices");
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(results[0].passed(), "{:?}", results[0].failures);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_conversion_the_table_cannot_price_fails_the_load() {
    let dir = workspace("fixed-pair");
    let flow = dir.join("flows").join("offers-to-storefront.yaml");
    let text = std::fs::read_to_string(&flow)
        .expect("offers flow")
        .replace(
            "currency: /currency_iso_code, to: EUR",
            "currency: USD, to: EUR",
        );
    std::fs::write(&flow, text).expect("write flow");
    let loaded = load_workspace(
        &dir,
        &LoadOptions {
            strict: false,
            env: env(),
        },
    );
    let messages: Vec<&str> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "no exchange rate from USD to EUR: the workspace's exchange_rates (base EUR) do not \
          quote both; add the missing one to the table"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stock_checks_flag_stale_and_oversold_stock_to_their_owner() {
    let dir = workspace("stock");
    let results = run(&dir, "stock-to-storefront");
    assert_eq!(results.len(), 3, "{results:?}");
    for result in &results {
        assert!(result.passed(), "{}: {:?}", result.name, result.failures);
    }
    // The cases can fail: without its checks the flow publishes the stale and oversold stock.
    let flow = dir.join("flows").join("stock-to-storefront.yaml");
    let text = std::fs::read_to_string(&flow).expect("stock flow");
    let start = text.find("checks:").expect("checks");
    let end = text.find("failures:").expect("failures");
    // Its failure route stays, under another mode, so the flow still loads.
    let without = format!("{}{}", &text[..start], &text[end..])
        .replace("  check-failed:\n", "  duplicate:\n");
    std::fs::write(&flow, without).expect("write flow");
    let results = run(&dir, "told apart");
    assert_eq!(results.len(), 1);
    assert!(!results[0].passed());
    assert!(
        results[0]
            .failures
            .iter()
            .any(|f| f.contains("delivered records differ")),
        "{:?}",
        results[0].failures
    );
    let _ = std::fs::remove_dir_all(&dir);
}
