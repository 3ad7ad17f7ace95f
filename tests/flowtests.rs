//! Flow tests whose source pages are scripted (`source_pages`): faults reach the flow's real
//! HTTP source over loopback, so paging, retries and guards are what is tested.

use std::path::Path;

use switchyard::spec::{EnvLookup, LoadOptions, load_workspace};

/// Runs the cases of workspace `dir` whose name contains `filter`; panics on any failure.
fn run_cases(dir: &Path, filter: &str) -> usize {
    let env = EnvLookup::empty()
        .with("MARKETPLACE_URL", "http://marketplace.test")
        .with("MARKETPLACE_CLIENT_ID", "test-client")
        .with("MARKETPLACE_CLIENT_SECRET", "test-secret")
        .with("STOREFRONT_URL", "http://storefront.test")
        .with("ALERTS_URL", "http://alerts.test")
        .with("OMS_URL", "http://oms.test")
        .with("ORDERS_WEBHOOK_SECRET", "flow-tests");
    let loaded = load_workspace(dir, &LoadOptions { strict: false, env });
    let workspace = loaded
        .workspace
        .unwrap_or_else(|| panic!("workspace does not load: {:?}", loaded.diagnostics));
    let results = switchyard::flowtest::run_all(&workspace, Some(filter));
    let failed: Vec<_> = results.iter().filter(|r| !r.passed()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    results.len()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn reference_source_faults_503_429_and_malformed_page() {
    let ran = run_cases(&root().join("flows"), "page");
    assert!(ran >= 3, "{ran} cases");
}

#[test]
fn a_record_changing_mid_listing_is_delivered_once_per_version() {
    let dir = root().join("tests/flowtests/next-token");
    assert_eq!(run_cases(&dir, "changing mid-listing"), 1);
}

#[test]
fn a_repeated_next_token_ends_the_listing() {
    let dir = root().join("tests/flowtests/next-token");
    assert_eq!(run_cases(&dir, "repeated next-token"), 1);
}
