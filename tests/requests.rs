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
