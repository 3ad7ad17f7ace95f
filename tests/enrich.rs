//! Enrichment calls end to end against the sandbox over real HTTP: each order of the
//! marketplace listing gets its lines from the items route, a repeated order is answered from
//! the run's cache, a 5xx is retried until it succeeds, and an unknown order (404) becomes an
//! `enrichment-failed` dead letter routed to its owner.

use std::path::{Path, PathBuf};

use serde_json::Value;
use switchyard::metrics::Metrics;
use switchyard::runtime::events::Observer;
use switchyard::runtime::{FlowRun, RunOptions, SourceOverride};
use switchyard::sandbox::{Fault, Sandbox, SandboxConfig};
use switchyard::spec::{EnvLookup, LoadOptions, load_workspace};
use switchyard::store::{DeadLetterFilter, Store};

use crate::util::{TestState, assert_output, switchyard};

const FLOW: &str = "orders-with-items";

const CONTRACT: &str = r#"{
  "type": "object",
  "required": ["order_id"],
  "properties": {
    "order_id": { "type": "string" },
    "order_state": { "type": "string" },
    "items": { "type": "array" },
    "seq": { "type": "integer" }
  }
}"#;

fn workspace(name: &str, marketplace: &str, window: &str) -> (PathBuf, TestState) {
    let root =
        std::env::temp_dir().join(format!("switchyard-enrich-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["flows", "contracts"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let workspace = format!(
        "version: 1\n\
         name: enrich-test\n\
         model: operator\n\
         systems:\n\
         \x20 marketplace: {{ http: {{ base_url: \"{marketplace}\", timeout: 5s }} }}\n\
         \x20 oms: {{ file: {{ dir: out }} }}\n\
         owners:\n\
         \x20 order-desk: {{ contact: order-desk@example.com }}\n\
         defaults:\n\
         \x20 failure_owner: order-desk\n\
         objects:\n\
         \x20 order:\n\
         \x20   key: [order_id]\n\
         \x20   contract: contracts/order.json\n\
         \x20   source_of_truth: marketplace\n\
         \x20   create: [marketplace]\n\
         \x20   update: [marketplace]\n\
         \x20   consume: [oms]\n"
    );
    std::fs::write(root.join("switchyard.yaml"), workspace).unwrap();
    std::fs::write(root.join("contracts/order.json"), CONTRACT).unwrap();
    let flow = r#"flow: orders-with-items
description: Orders with their lines fetched from the items route.
object: order
pattern: batch
latency: next-cycle-enrichment
from: { system: marketplace, request: { path: /api/orders }, records: /orders }
to: { system: oms, path: orders.jsonl, format: jsonl }
idempotency_key: "{{order_id}}:{{seq}}"
enrich:
  lines:
    system: marketplace
    request: { path: "/api/orders/{{order_id}}/items" }
    records: /items
    retry: { initial: 100ms, max_delay: 500ms, window: 20s }
    on_failure: dead-letter
map:
  order_id: "{{order_id}}"
  lines: { from: /lines }
failures:
  enrichment-failed:
    owner: order-desk
    action: repair
    runbook: The marketplace has no lines for this order; check it in the back office.
"#;
    let flow = flow.replace("window: 20s", &format!("window: {window}"));
    std::fs::write(root.join(format!("flows/{FLOW}.yaml")), flow).unwrap();
    let state = TestState::attach(&format!("enrich_{name}"), &root);
    (root, state)
}

fn output(root: &Path) -> Vec<Value> {
    std::fs::read_to_string(root.join("out/orders.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_lines_come_from_the_items_call_cached_retried_and_dead_lettered() {
    let sandbox = Sandbox::start(SandboxConfig {
        offers: 0,
        orders: 3,
        ack_deadline_secs: 600,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    // The order listing, read as the flow's source would read it.
    let client = switchyard::connectors::http::client_builder()
        .build()
        .unwrap();
    let listing: Value = client
        .get(format!("{}/api/orders", sandbox.marketplace_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let orders = listing["orders"].as_array().expect("orders").clone();
    assert!(orders.len() >= 2, "{listing}");
    // The first order twice (two changes of it in one run: one call), and an order the
    // marketplace does not know (a 404: dead-lettered, not retried).
    let mut records: Vec<Value> = orders
        .iter()
        .enumerate()
        .map(|(seq, order)| {
            let mut order = order.clone();
            order["seq"] = seq.into();
            order
        })
        .collect();
    let mut again = orders[0].clone();
    again["seq"] = 100.into();
    records.push(again);
    records.push(serde_json::json!({ "order_id": "NO-SUCH-ORDER", "seq": 200 }));

    let (root, _state) = workspace("sandbox", &sandbox.marketplace_url(), "20s");
    let loaded = load_workspace(
        &root,
        &LoadOptions {
            strict: true,
            env: EnvLookup::empty(),
        },
    );
    let workspace = loaded
        .workspace
        .unwrap_or_else(|| panic!("workspace does not load: {:?}", loaded.diagnostics));
    // The first items call fails with a 503; the retry gets the lines.
    sandbox.inject_orders_fault(Fault::fail(503, 1));
    let metrics = std::sync::Arc::new(Metrics::default());
    let store = Store::open_target(&workspace.state).await.unwrap();
    let options = RunOptions {
        progress: false,
        observer: Observer::new(metrics.clone()),
        ..RunOptions::default()
    };
    let report = FlowRun::new(
        &workspace,
        FLOW,
        store.clone(),
        options,
        Some(SourceOverride(records.clone())),
        None,
    )
    .await
    .expect("flow opens")
    .run()
    .await
    .expect("run");

    assert_eq!(report.read, records.len() as u64);
    assert_eq!(report.delivered, records.len() as u64 - 1, "{report:?}");
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    assert_eq!(report.by_failure.get("enrichment-failed"), Some(&1));
    for written in output(&root) {
        let id = written["order_id"].as_str().unwrap();
        let order = orders.iter().find(|o| o["order_id"] == id).unwrap();
        assert_eq!(
            written["lines"], order["order_lines"],
            "the lines come from the items call"
        );
    }
    let count = |outcome: &str| {
        metrics.counter(
            &switchyard::metrics::catalog::ENRICHMENT_CALLS,
            &[
                ("flow", FLOW),
                ("enrichment", "lines"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(
        count("cache_hit"),
        1.0,
        "the repeated order is not called again"
    );
    assert_eq!(count("retried"), 1.0, "the 503 is retried once");
    assert_eq!(
        count("called"),
        orders.len() as f64 + 2.0,
        "one call per order, the retry, and the unknown order's single (404) call"
    );
    assert_eq!(count("failed"), 1.0);
    let letters = store
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0].letter;
    assert_eq!(letter.failure, "enrichment-failed");
    assert_eq!(letter.owner, "order-desk");
    assert!(letter.error.contains("404"), "{}", letter.error);
}

#[test]
fn the_order_items_workspace_validates_strictly_and_passes_its_flow_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = switchyard(root, &["validate", "examples/order-items", "--strict"]);
    assert_output(&output, "0 errors, 0 warnings\n", 0);
    let output = switchyard(root, &["--log", "error", "test", "examples/order-items"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output.stdout.contains("4 case(s): 4 passed, 0 failed"),
        "{}",
        output.stdout
    );
}

#[test]
fn a_flow_test_names_the_enrichment_calls_that_differ() {
    let root = std::env::temp_dir().join(format!("switchyard-enrich-calls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    crate::util::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/order-items"),
        &root,
    );
    let tests = root.join("tests/orders-to-oms.yaml");
    let text = std::fs::read_to_string(&tests).unwrap();
    std::fs::write(
        &tests,
        text.replace(
            "enrichment_calls: [/api/orders/MKP-9/items]",
            "enrichment_calls: [/api/orders/MKP-8/items]",
        ),
    )
    .unwrap();
    let output = switchyard(&root, &["--log", "error", "test"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(
        output.stdout.contains("enrichment calls differ")
            && output.stdout.contains("\"/api/orders/MKP-9/items\""),
        "{}",
        output.stdout
    );
}

#[test]
fn enrichment_diagnostics_name_the_line_and_the_fix() {
    let output = switchyard(&crate::util::fixtures(), &["validate", "invalid-enrich"]);
    assert_eq!(output.code, 1, "{output:?}");
    for expected in [
        "flows/offers-to-storefront.yaml:19:13: error[E0101]: unknown system \"marketplac\"\n  \
         = hint: did you mean \"marketplace\"?\n",
        "flows/offers-to-storefront.yaml:22:3: warning[W0801]: enrichment \"price\" replaces the \
         field \"price\" of the contract contracts/offer.json in every record\n  = hint: rename \
         the enrichment (for example \"price_enriched\") and read it under that name in `map:`\n",
        "flows/offers-to-storefront.yaml:23:13: error[E0005]: system \"drops\" is reached through \
         the `file` connector; enrichment calls are HTTP requests\n  = hint: name a system with \
         an `http:` section in switchyard.yaml\n",
    ] {
        assert!(output.stdout.contains(expected), "{}", output.stdout);
    }
}

#[test]
fn explain_mentions_the_enrichment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = switchyard(root, &["explain", "examples/order-items"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output.stdout.contains(
            "each record gets `items` from GET /api/orders/{{order_id}}/items on marketplace \
             (/items of the answer; one call per distinct request per run, retried for 2m on 5xx \
             and 429, never on other 4xx); a record whose call fails is dead-lettered as \
             enrichment-failed."
        ),
        "{}",
        output.stdout
    );
}

/// An order whose items route stays down past the enrichment's window is an
/// `enrichment-failed` dead letter, never lost: once the route is back, replaying it calls
/// again and delivers it with its lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrichment_failed_order_is_delivered_with_its_lines_on_replay() {
    let sandbox = Sandbox::start(SandboxConfig {
        offers: 0,
        orders: 1,
        ack_deadline_secs: 600,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let client = switchyard::connectors::http::client_builder()
        .build()
        .unwrap();
    let listing: Value = client
        .get(format!("{}/api/orders", sandbox.marketplace_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut order = listing["orders"][0].clone();
    order["seq"] = 1.into();
    let (root, _state) = workspace("replay", &sandbox.marketplace_url(), "1s");
    let loaded = load_workspace(
        &root,
        &LoadOptions {
            strict: true,
            env: EnvLookup::empty(),
        },
    );
    let workspace = loaded.workspace.expect("workspace loads");
    sandbox.inject_orders_fault(Fault::fail_for(503, 60));
    let store = Store::open_target(&workspace.state).await.unwrap();
    let options = RunOptions {
        progress: false,
        ..RunOptions::default()
    };
    let report = FlowRun::new(
        &workspace,
        FLOW,
        store.clone(),
        options,
        Some(SourceOverride(vec![order.clone()])),
        None,
    )
    .await
    .expect("flow opens")
    .run()
    .await
    .expect("run");
    assert_eq!(
        report.by_failure.get("enrichment-failed"),
        Some(&1),
        "{report:?}"
    );
    assert!(output(&root).is_empty());
    let letters = store
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].letter.error.contains("503"),
        "{}",
        letters[0].letter.error
    );

    sandbox.clear_orders_faults();
    let outcome = switchyard::runtime::replay::replay(&workspace, &store, letters[0].id, "test")
        .await
        .expect("replay");
    assert_eq!(
        outcome,
        switchyard::runtime::replay::ReplayOutcome::Delivered
    );
    let written = output(&root);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["lines"], order["order_lines"]);
}
