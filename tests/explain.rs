//! `switchyard explain`: the ownership matrix, the field table and flow summaries.

use crate::util::{fixtures, switchyard};

#[test]
fn explains_the_valid_workspace() {
    let output = switchyard(&fixtures().join("valid"), &["explain"]);
    assert_eq!(output.code, 0, "{output:?}");
    let text = output.stdout;
    assert!(
        text.contains("object  marketplace  storefront\n------  -----------  ----------\noffer   SoT C U      consume\n"),
        "{text}"
    );
    assert!(
        text.contains("offer.listing_status  operator       yes\n"),
        "{text}"
    );
    assert!(
        text.contains("offers-to-storefront: moves offer records from marketplace to storefront. It is a near-real-time flow, polled every 30s"),
        "{text}"
    );
    assert!(
        text.contains("contract-violation goes to seller-support (request a correction), escalated to marketplace-ops after 24h"),
        "{text}"
    );
    assert!(
        text.contains("SLA: changes are delivered within 15m."),
        "{text}"
    );
}

#[test]
fn refuses_a_broken_workspace() {
    let output = switchyard(&fixtures().join("unknown-system"), &["explain"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains("E0101"), "{output:?}");
}

#[test]
fn explains_client_side_rate_limits() {
    let dir = std::env::temp_dir().join(format!("switchyard-explain-rates-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    crate::util::copy_dir(&fixtures().join("valid"), &dir);
    let patch = |file: &str, from: &str, to: &str| {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file}: {from}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    };
    patch(
        "switchyard.yaml",
        r#"http: { base_url: "${MARKETPLACE_URL}" }"#,
        r#"http: { base_url: "${MARKETPLACE_URL}", rate_limit: 10/1s, burst: 20 }"#,
    );
    patch(
        "flows/offers-to-storefront.yaml",
        r#"request: { method: PUT, path: "/catalog/offers/{{sku}}" }"#,
        r#"request: { method: PUT, path: "/catalog/offers/{{sku}}", rate_limit: 1/60s }"#,
    );
    let output = switchyard(&dir, &["explain"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output.stdout.contains(
            "Client-side rate limits, shared by every flow of the process: every call to \
             marketplace at most 10/1s (burst 20); its writes to storefront at most 1/60s."
        ),
        "{}",
        output.stdout
    );
    let _ = std::fs::remove_dir_all(&dir);
}
