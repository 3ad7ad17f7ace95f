//! Issue 8, item 1: what the HTTP connector sends for each call — per-call headers and query
//! parameters rendered per record (sinks) and per page (sources), and a body that is its own
//! mapping, apart from what the path uses — against a real local HTTP server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use serde_json::{Value, json};
use switchyard::connectors::Outgoing;
use switchyard::connectors::http::{
    HttpFromConfig, HttpSink, HttpSource, HttpSystem, HttpSystemConfig, HttpToConfig,
};

/// One request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Value,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn record(
    State(log): State<Log>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    log.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        query,
        headers,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    });
    axum::Json(json!({ "items": [{ "id": 1 }] }))
}

async fn serve() -> (String, Log) {
    let log: Log = Arc::default();
    let app = axum::Router::new().fallback(record).with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

fn system(base: &str) -> HttpSystem {
    let config: HttpSystemConfig = serde_json::from_value(json!({ "base_url": base })).unwrap();
    HttpSystem::new(&config, Duration::from_secs(5), |_| None).unwrap()
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn sink_sends_per_call_headers_and_query_rendered_per_record() {
    let (base, log) = serve().await;
    let to: HttpToConfig = serde_json::from_value(json!({
        "request": {
            "method": "PUT",
            "path": "/orders/{{order_id}}",
            "query": { "shop": "{{shop}}" },
            "headers": { "X-Shop": "{{shop}}", "X-Static": "fixed" }
        }
    }))
    .unwrap();
    let sink = HttpSink::new(system(&base), &to).unwrap();
    for (id, shop) in [("A1", "north"), ("B2", "south")] {
        let outgoing = Outgoing {
            idempotency_key: format!("k-{id}"),
            body: json!({ "order_id": id, "shop": shop }),
        };
        sink.send(&outgoing).await.unwrap();
    }
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/orders/A1");
    assert_eq!(header(&seen[0], "x-shop"), Some("north"));
    assert_eq!(header(&seen[0], "x-static"), Some("fixed"));
    assert_eq!(seen[0].query.get("shop").map(String::as_str), Some("north"));
    assert_eq!(header(&seen[1], "x-shop"), Some("south"));
    assert_eq!(seen[1].query.get("shop").map(String::as_str), Some("south"));
    assert_eq!(header(&seen[1], "idempotency-key"), Some("k-B2"));
}

#[tokio::test]
async fn source_sends_per_call_headers_rendered_per_page() {
    let (base, log) = serve().await;
    let from: HttpFromConfig = serde_json::from_value(json!({
        "request": {
            "path": "/items",
            "headers": { "X-Since": "{{cursor}}", "Accept-Language": "en" }
        },
        "records": "/items",
        "cursor": "id"
    }))
    .unwrap();
    let mut source = HttpSource::new(system(&base), &from, &json!({ "cursor": 7 })).unwrap();
    source.next_batch().await.unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(header(&seen[0], "x-since"), Some("7"));
    assert_eq!(header(&seen[0], "accept-language"), Some("en"));
}

#[tokio::test]
async fn a_field_used_only_by_the_path_stays_out_of_the_body() {
    let (base, log) = serve().await;
    let to: HttpToConfig = serde_json::from_value(json!({
        "request": {
            "method": "PUT",
            "path": "/orders/{{order_id}}/ship",
            "body": { "carrier": "{{carrier}}", "tracking": "{{tracking}}" }
        }
    }))
    .unwrap();
    let sink = HttpSink::new(system(&base), &to).unwrap();
    let outgoing = Outgoing {
        idempotency_key: "k".into(),
        body: json!({ "order_id": "A1", "carrier": "DHL", "tracking": "T-9" }),
    };
    sink.send(&outgoing).await.unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen[0].path, "/orders/A1/ship");
    assert_eq!(seen[0].body, json!({ "carrier": "DHL", "tracking": "T-9" }));
}

// ---- acknowledge.map, whatever the flow's sink ----------------------------------------

/// A marketplace stand-in: records each acceptance call, refuses the orders listed in
/// `refuse` with 400.
#[derive(Default)]
struct Marketplace {
    calls: Vec<(String, Value)>,
    refuse: Vec<String>,
}

type Shared = Arc<Mutex<Marketplace>>;

async fn accept(
    State(market): State<Shared>,
    uri: Uri,
    body: String,
) -> (axum::http::StatusCode, String) {
    let mut market = market.lock().unwrap();
    let path = uri.path().to_owned();
    market.calls.push((
        path.clone(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    ));
    if market.refuse.iter().any(|id| path.contains(id.as_str())) {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            r#"{"message":"order_lines is required"}"#.into(),
        );
    }
    (axum::http::StatusCode::NO_CONTENT, String::new())
}

async fn marketplace(refuse: &[&str]) -> (String, Shared) {
    let market: Shared = Arc::new(Mutex::new(Marketplace {
        calls: Vec::new(),
        refuse: refuse.iter().map(|s| (*s).to_owned()).collect(),
    }));
    let app = axum::Router::new()
        .fallback(accept)
        .with_state(market.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), market)
}

/// The acknowledgement every flow below sends: the path from the mapped record, the body
/// from the record as read (`seller_id` and `lines` are not mapped).
const ACKNOWLEDGE: &str = r#"
acknowledge:
  system: marketplace-api
  request: { method: PUT, path: "/orders/{{order_id}}/accept" }
  map:
    seller: "{{seller_id}}"
    accepted: { template: "true", type: boolean }
    order_lines: { from: /lines }
"#;

/// A copy of `examples/ledger-postgres` with a `marketplace-api` HTTP system, the flow
/// `orders-to-file` (order drop → file) and `acknowledge` on both order flows.
fn ack_workspace(test: &str, schema: Option<&str>) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("switchyard-ack-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    crate::util::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ledger-postgres"),
        &root,
    );
    let _ = std::fs::remove_file(root.join("out/journal.jsonl"));
    let _ = std::fs::remove_file(root.join("out/orders.jsonl"));
    let workspace = std::fs::read_to_string(root.join("switchyard.yaml"))
        .unwrap()
        .replace("consume: [ledger]", "consume: [ledger, close-folder]")
        .replace(
            "owners:",
            "  marketplace-api:\n    description: Accepts orders.\n    http: { base_url: \"${ACK_URL}\" }\nowners:",
        );
    std::fs::write(root.join("switchyard.yaml"), workspace).unwrap();
    let ledger_flow = root.join("flows/orders-to-ledger.yaml");
    let mut text = std::fs::read_to_string(&ledger_flow).unwrap() + ACKNOWLEDGE;
    if let Some(schema) = schema {
        text = text.replace("ledger.journal", &format!("{schema}.journal"));
    }
    std::fs::write(&ledger_flow, text).unwrap();
    let file_flow = format!(
        "flow: orders-to-file\nobject: order\npattern: batch\nlatency: finance-close\n\
         from: {{ system: order-drop, path: orders.jsonl, format: jsonl }}\n\
         to: {{ system: close-folder, path: orders.jsonl, format: jsonl }}\n\
         idempotency_key: \"{{{{order_id}}}}\"\n\
         map:\n  order_id: \"{{{{order_id}}}}\"\n  total: {{ from: /total }}\n{ACKNOWLEDGE}"
    );
    std::fs::write(root.join("flows/orders-to-file.yaml"), file_flow).unwrap();
    root
}

fn load(
    root: &std::path::Path,
    ack_url: &str,
    ledger_url: &str,
) -> switchyard::spec::model::Workspace {
    let env = switchyard::spec::EnvLookup::empty()
        .with("ACK_URL", ack_url)
        .with("LEDGER_URL", ledger_url);
    let loaded = switchyard::spec::load_workspace(
        root,
        &switchyard::spec::LoadOptions { strict: false, env },
    );
    loaded
        .workspace
        .unwrap_or_else(|| panic!("does not load: {:?}", loaded.diagnostics))
}

async fn run_flow(
    workspace: &switchyard::spec::model::Workspace,
    flow: &str,
    store: &switchyard::store::Store,
) -> switchyard::runtime::RunReport {
    switchyard::runtime::FlowRun::new(
        workspace,
        flow,
        store.clone(),
        switchyard::runtime::RunOptions {
            progress: false,
            ..switchyard::runtime::RunOptions::default()
        },
        None,
        None,
    )
    .await
    .unwrap()
    .run()
    .await
    .unwrap()
}

/// The orders of the example's drop whose contract holds, in file order (the drop also
/// carries invalid ones, dead-lettered before any write).
fn valid_orders(root: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(root.join("out/orders.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn source_orders(root: &std::path::Path) -> HashMap<String, Value> {
    std::fs::read_to_string(root.join("data/orders.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|o| Some((o.get("order_id")?.as_str()?.to_owned(), o)))
        .collect()
}

/// Checks each written order was accepted exactly once, with the body built from the record
/// as read.
fn assert_each_accepted_once(written: &[String], market: &Shared, root: &std::path::Path) {
    let source = source_orders(root);
    let calls = market.lock().unwrap().calls.clone();
    assert_eq!(calls.len(), written.len(), "{calls:?}");
    for id in written {
        let call: Vec<_> = calls
            .iter()
            .filter(|(path, _)| *path == format!("/orders/{id}/accept"))
            .collect();
        assert_eq!(call.len(), 1, "order {id} accepted {} times", call.len());
        let order = &source[id];
        assert_eq!(
            call[0].1,
            json!({ "seller": order["seller_id"], "accepted": true, "order_lines": order["lines"] }),
        );
    }
}

#[tokio::test]
async fn a_file_sink_acknowledges_each_written_record_once_with_the_mapped_body() {
    let (ack_url, market) = marketplace(&[]).await;
    let root = ack_workspace("file", None);
    let workspace = load(&root, &ack_url, "postgres://unused");
    let store = switchyard::store::Store::in_memory().unwrap();
    let report = run_flow(&workspace, "orders-to-file", &store).await;
    let written: Vec<String> = valid_orders(&root)
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!written.is_empty());
    assert_eq!(report.delivered, written.len() as u64, "{report:?}");
    assert_each_accepted_once(&written, &market, &root);
    // The mapped record carries the path's field and no acknowledgement field.
    assert!(
        valid_orders(&root)
            .iter()
            .all(|o| o.get("seller").is_none())
    );
    // A second run reads nothing new and acknowledges nothing again.
    run_flow(&workspace, "orders-to-file", &store).await;
    assert_eq!(market.lock().unwrap().calls.len(), written.len());
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test(start_paused = false)]
async fn a_refused_acknowledgement_after_a_file_write_is_a_dead_letter() {
    let root = ack_workspace("file-refused", None);
    let refused = source_orders(&root).keys().min().cloned().unwrap();
    let (ack_url, market) = marketplace(&[refused.as_str()]).await;
    let workspace = load(&root, &ack_url, "postgres://unused");
    let store = switchyard::store::Store::in_memory().unwrap();
    let report = run_flow(&workspace, "orders-to-file", &store).await;
    let letters = store
        .dead_letters(&switchyard::store::DeadLetterFilter::default())
        .await
        .unwrap();
    let letter = letters
        .iter()
        .find(|l| l.letter.record_key.as_deref() == Some(refused.as_str()))
        .unwrap_or_else(|| panic!("no dead letter for {refused}: {letters:?}"));
    assert_eq!(letter.letter.failure, "sink-rejected", "{letter:?}");
    assert!(
        letter.letter.error.contains("acknowledgement"),
        "{letter:?}"
    );
    let written = valid_orders(&root).len() as u64;
    assert_eq!(report.delivered, written - 1, "{report:?}");
    // Refused once (a 400 is not retried), every other order accepted once.
    let calls = market.lock().unwrap().calls.clone();
    assert_eq!(calls.len() as u64, written);
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn a_postgres_sink_acknowledges_each_written_record_once_with_the_mapped_body() {
    use switchyard::store::testing;
    let url = testing::postgres_url();
    let schema = testing::unique_schema("ack_postgres");
    if !testing::fresh_schema("requests::ack_postgres", &url, &schema).await {
        return;
    }
    let (ack_url, market) = marketplace(&[]).await;
    let root = ack_workspace("postgres", Some(&schema));
    let ddl = std::fs::read_to_string(root.join("sql/schema.sql"))
        .unwrap()
        .replace(
            "SCHEMA IF NOT EXISTS ledger;",
            &format!("SCHEMA IF NOT EXISTS {schema};"),
        )
        .replace("ledger.journal", &format!("{schema}.journal"));
    let client = testing::raw_postgres(&url).await.unwrap();
    client.batch_execute(&ddl).await.unwrap();
    let workspace = load(&root, &ack_url, &url);
    let store = switchyard::store::Store::in_memory().unwrap();
    let report = run_flow(&workspace, "orders-to-ledger", &store).await;
    let rows = client
        .query(&format!("SELECT order_id FROM {schema}.journal"), &[])
        .await
        .unwrap();
    let written: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert!(!written.is_empty());
    assert_eq!(report.delivered, written.len() as u64, "{report:?}");
    assert_each_accepted_once(&written, &market, &root);
    let _ = std::fs::remove_dir_all(root);
}

/// `switchyard test` asserts on the acknowledgement calls: their path and the body
/// `acknowledge.map` built; a body that differs fails the case with both shown.
#[test]
fn flow_tests_assert_on_acknowledgement_paths_and_bodies() {
    let root = ack_workspace("flowtest", None);
    let order = json!({
        "order_id": "MKP-000001-A", "seller_id": "S-ACME", "channel": "web", "currency": "EUR",
        "total": "10.00", "commission": "1.00", "paid_at": "2025-03-01T08:00:00Z",
        "lines": [{ "sku": "SKU-1", "quantity": 1, "unit_price": "10.00" }]
    });
    let case = |body: Value| {
        json!({
            "flow": "orders-to-file",
            "cases": [{
                "name": "the order is accepted with its lines",
                "input": [order],
                "expect": {
                    "delivered": [{ "order_id": "MKP-000001-A", "total": "10.00" }],
                    "acknowledgements": [{
                        "key": "MKP-000001-A",
                        "path": "/orders/MKP-000001-A/accept",
                        "body": body
                    }]
                }
            }]
        })
    };
    std::fs::create_dir_all(root.join("tests")).unwrap();
    let _ = std::fs::remove_file(root.join("tests/orders-to-ledger.yaml"));
    let _ = std::fs::remove_file(root.join("tests/ledger-to-close.yaml"));
    let right = json!({ "seller": "S-ACME", "accepted": true, "order_lines": order["lines"] });
    let file = root.join("tests/orders-to-file.yaml");
    std::fs::write(&file, case(right).to_string()).unwrap();
    let results =
        switchyard::flowtest::run_all(&load(&root, "http://127.0.0.1:1", "postgres://x"), None);
    assert_eq!(results.len(), 1);
    assert!(results[0].passed(), "{:?}", results[0].failures);
    std::fs::write(&file, case(json!({ "accepted": true })).to_string()).unwrap();
    let results =
        switchyard::flowtest::run_all(&load(&root, "http://127.0.0.1:1", "postgres://x"), None);
    let failure = results[0].failures.join("\n");
    assert!(failure.contains("acknowledgements differ"), "{failure}");
    assert!(
        failure.contains(
            r#"- key MKP-000001-A, path /orders/MKP-000001-A/accept, body {"accepted":true}"#
        ),
        "{failure}"
    );
    assert!(failure.contains(r#""seller":"S-ACME""#), "{failure}");
    let _ = std::fs::remove_dir_all(root);
}

/// `explain` describes the acknowledgement: target, method and path, the body's fields.
#[test]
fn explain_describes_the_acknowledgement() {
    let root = ack_workspace("explain", None);
    let workspace = load(&root, "http://127.0.0.1:1", "postgres://x");
    let text = switchyard::spec::explain::flow_summary(&workspace.flows["orders-to-file"]);
    assert!(
        text.contains(
            "Each delivered record is acknowledged at marketplace-api \
             (PUT /orders/{{order_id}}/accept) once its write is durable; the body is mapped \
             from the record as read: seller, accepted, order_lines. A failed acknowledgement \
             is retried, then dead-lettered."
        ),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(root);
}

fn diagnostics(root: &std::path::Path) -> Vec<switchyard::spec::Diagnostic> {
    let env = switchyard::spec::EnvLookup::empty()
        .with("ACK_URL", "http://127.0.0.1:1")
        .with("LEDGER_URL", "postgres://x");
    switchyard::spec::load_workspace(root, &switchyard::spec::LoadOptions { strict: false, env })
        .diagnostics
}

/// `acknowledge` with both `body` and `map`, and a listing request with a `body`, are
/// refused at their line with the fix.
#[test]
fn an_acknowledgement_with_body_and_map_and_a_listing_with_a_body_are_refused() {
    let root = ack_workspace("invalid", None);
    let flow = root.join("flows/orders-to-file.yaml");
    let text = std::fs::read_to_string(&flow).unwrap().replace(
        "  map:\n    seller:",
        "  body: { accepted: true }\n  map:\n    seller:",
    );
    std::fs::write(&flow, text).unwrap();
    let found = diagnostics(&root);
    let both = found
        .iter()
        .find(|d| d.message.contains("both `body` and `map`"))
        .unwrap_or_else(|| panic!("{found:?}"));
    assert!(both.file.ends_with("flows/orders-to-file.yaml"), "{both:?}");
    assert!(both.line > 1, "{both:?}");
    assert!(
        both.hint
            .as_deref()
            .unwrap_or_default()
            .contains("keep one"),
        "{both:?}"
    );
    let _ = std::fs::remove_dir_all(&root);

    let root = ack_workspace("listing-body", None);
    std::fs::write(
        root.join("flows/orders-from-api.yaml"),
        "flow: orders-from-api\nobject: order\npattern: batch\nlatency: finance-close\n\
         from:\n  system: marketplace-api\n  request: { path: /orders, body: { x: \"{{cursor}}\" } }\n\
         to: { system: close-folder, path: api.jsonl, format: jsonl }\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(root.join("switchyard.yaml"))
        .unwrap()
        .replace(
            "create: [order-drop]",
            "create: [order-drop, marketplace-api]",
        );
    std::fs::write(root.join("switchyard.yaml"), text).unwrap();
    let found = diagnostics(&root);
    let listing = found
        .iter()
        .find(|d| d.message.contains("sends no body"))
        .unwrap_or_else(|| panic!("{found:?}"));
    assert!(
        listing.file.ends_with("flows/orders-from-api.yaml"),
        "{listing:?}"
    );
    assert_eq!(listing.line, 7, "{listing:?}");
    let _ = std::fs::remove_dir_all(&root);
}
