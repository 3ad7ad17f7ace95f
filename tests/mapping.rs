//! Issue 8, mapping and contracts: arrays mapped item by item, fields omitted when missing,
//! exact decimals, vendor nulls tolerated by a lenient contract, and contracts taken from an
//! OpenAPI document (`examples/order-acceptance`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use switchyard::connectors::recorder::RecorderSink;
use switchyard::metrics::Metrics;
use switchyard::metrics::catalog::{CONTRACT_NULL_WARNINGS, RECORDS_DEAD_LETTERED};
use switchyard::runtime::events::Observer;
use switchyard::runtime::{Clock, FlowRun, RunOptions, SinkOverride, SourceOverride};
use switchyard::store::Store;

use crate::util::{assert_output, fixtures, switchyard};

const EXAMPLE: &str = "examples/order-acceptance";

fn example_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE)
}

#[test]
fn a_contract_pointer_that_leads_nowhere_names_the_line_and_the_fix() {
    let output = switchyard(&fixtures(), &["validate", "contract-openapi-bad-pointer"]);
    assert_output(
        &output,
        "switchyard.yaml:16:15: error[E0603]: contract contracts/marketplace-api.json: \
         `#/components/schemas/Ofer` leads nowhere: /components/schemas has no `Ofer`\n  \
         = hint: did you mean \"Offer\"?\n1 error, 0 warnings\n",
        1,
    );
}

#[test]
fn an_unresolvable_ref_in_an_openapi_contract_is_a_validation_error() {
    let output = switchyard(
        &fixtures(),
        &["validate", "contract-openapi-unresolved-ref"],
    );
    assert_eq!(output.code, 1, "{output:?}");
    assert!(
        output.stdout.starts_with(
            "switchyard.yaml:16:15: error[E0603]: contract contracts/marketplace-api.json is not \
             a usable JSON Schema"
        ) && output.stdout.contains("/components/schemas/Money")
            && output.stdout.contains("hint: check the contract's `$ref`s"),
        "{}",
        output.stdout
    );
}

#[test]
fn the_order_acceptance_workspace_validates_strictly_and_passes_its_flow_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = switchyard(root, &["validate", EXAMPLE, "--strict"]);
    assert_output(&output, "0 errors, 0 warnings\n", 0);
    let output = switchyard(root, &["--log", "error", "test", EXAMPLE]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output.stdout.contains("4 case(s): 4 passed, 0 failed"),
        "{}",
        output.stdout
    );
}

fn order(id: &str, note: Value, lines: Value) -> Value {
    json!({"order_id": id, "order_state": "WAITING_ACCEPTANCE", "currency_iso_code": "EUR",
           "total_price": "59.90", "customer_note": note, "shipping_tracking": null,
           "order_lines": lines})
}

/// A real run (not a flow test): vendor nulls reach the sink's body as omitted fields, are
/// counted as warnings on the flow's metric, and never become dead letters.
#[tokio::test]
async fn lenient_nulls_are_delivered_and_counted_as_warnings() {
    let env = switchyard::spec::EnvLookup::empty();
    let loaded = switchyard::spec::load_workspace(
        &example_root(),
        &switchyard::spec::LoadOptions { strict: true, env },
    );
    let workspace = loaded
        .workspace
        .unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
    let metrics = Arc::new(Metrics::default());
    let sink = RecorderSink::new(Vec::new());
    let orders = vec![
        // Three vendor nulls: the note, the tracking number and a line's description.
        order(
            "O-1",
            Value::Null,
            json!([{"order_line_id": "L-1", "offer_sku": "a", "quantity": 2, "price": "29.95",
                    "description": null}]),
        ),
        // One: the tracking number.
        order(
            "O-2",
            json!("ring twice"),
            json!([{"order_line_id": "L-1", "offer_sku": "b", "quantity": 1, "price": "59.90"}]),
        ),
    ];
    let report = FlowRun::new(
        &workspace,
        "orders-to-oms",
        Store::in_memory().unwrap(),
        RunOptions {
            clock: Clock::virtual_now(),
            progress: false,
            observer: Observer::new(Arc::clone(&metrics)),
            ..RunOptions::default()
        },
        Some(SourceOverride(orders)),
        Some(SinkOverride {
            sink: sink.clone(),
            acks: RecorderSink::new(Vec::new()),
        }),
    )
    .await
    .unwrap()
    .run()
    .await
    .unwrap();
    assert_eq!(
        (report.delivered, report.dead_lettered),
        (2, 0),
        "{report:?}"
    );
    let bodies: Vec<Value> = sink.received().into_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies,
        vec![
            json!({"order_id": "O-1", "total": "59.90", "currency": "EUR", "order_lines": [
                {"id": "L-1", "accepted": true, "sku": "A", "quantity": 2, "price": "29.95",
                 "order_ref": "O-1/L-1"}]}),
            json!({"order_id": "O-2", "total": "59.90", "currency": "EUR", "note": "ring twice",
                   "order_lines": [
                {"id": "L-1", "accepted": true, "sku": "B", "quantity": 1, "price": "59.90",
                 "order_ref": "O-2/L-1"}]}),
        ]
    );
    let flow = [("flow", "orders-to-oms")];
    assert_eq!(metrics.counter(&CONTRACT_NULL_WARNINGS, &flow), 4.0);
    assert!(
        metrics
            .render()
            .contains("switchyard_contract_null_warnings_total{flow=\"orders-to-oms\"} 4\n")
    );
    assert_eq!(
        metrics.counter(
            &RECORDS_DEAD_LETTERED,
            &[
                ("flow", "orders-to-oms"),
                ("failure", "contract-violation"),
                ("owner", "order-desk")
            ]
        ),
        0.0
    );
}
