//! Issue 8, item 5: listings end and stay polite. Next-token (body and `Link` header) and
//! seek listings against a local API that can misbehave (hand out the same token again, keep
//! serving the same page); the page cap; and source failures retried by the runtime under the
//! flow's `retry:` policy (no hidden loop in the source).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use switchyard::connectors::SourceNotice;
use switchyard::connectors::http::{HttpFromConfig, HttpSource, HttpSystem, HttpSystemConfig};
use switchyard::metrics::Metrics;
use switchyard::metrics::catalog::{LISTINGS_CUT, RECORDS_DELIVERED, SOURCE_RETRIES};
use switchyard::runtime::{FlowRun, Observer, RunError, RunOptions};
use switchyard::sandbox::{Fault, Sandbox, SandboxConfig};

use crate::runtime::{FLOW, assert_each_valid_offer_once, load, workspace_copy};

/// A listing of ids 1..=total, `size` a page, paged the way `mode` says.
#[derive(Default)]
struct Api {
    total: i64,
    /// `token`, `link`, `seek` or `offset`.
    mode: &'static str,
    /// The API hands out this token on every page (the bug seen in the wild).
    stuck_token: bool,
    /// The API ignores the offset (always the first page).
    ignore_offset: bool,
    requests: usize,
}

async fn list(
    State(api): State<Arc<Mutex<Api>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut api = api.lock().unwrap();
    api.requests += 1;
    let size: i64 = q.get("limit").map_or(2, |l| l.parse().unwrap());
    let start: i64 = match api.mode {
        "token" | "link" => q
            .get("page_token")
            .map_or(0, |t| t.trim_start_matches("t").parse().unwrap()),
        "seek" => q.get("after").map_or(0, |a| a.parse().unwrap()),
        _ if api.ignore_offset => 0,
        _ => q.get("offset").map_or(0, |o| o.parse().unwrap()),
    };
    let items: Vec<Value> = (start + 1..=api.total)
        .take(size as usize)
        .map(|id| json!({"id": id, "name": format!("item {id}")}))
        .collect();
    let next = start + size;
    let more = next < api.total;
    let token = if api.stuck_token {
        Some("t2".to_owned())
    } else {
        more.then(|| format!("t{next}"))
    };
    let mut body = json!({ "items": items });
    let mut response_headers = HeaderMap::new();
    match api.mode {
        "token" => body["next"] = json!(token),
        "link" => {
            if let Some(token) = token {
                let host = headers[header::HOST].to_str().unwrap();
                let link = format!(
                    "<http://{host}/items?page_token={token}&limit={size}>; rel=\"next\", \
                     </items?limit={size}>; rel=\"first\""
                );
                response_headers.insert(header::LINK, HeaderValue::from_str(&link).unwrap());
            }
        }
        _ => {}
    }
    (StatusCode::OK, response_headers, axum::Json(body)).into_response()
}

async fn serve(api: Api) -> (String, Arc<Mutex<Api>>) {
    let api = Arc::new(Mutex::new(api));
    let app = axum::Router::new()
        .route("/items", get(list))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), api)
}

fn source(base: &str, pagination: Value) -> HttpSource {
    let system: HttpSystemConfig = serde_json::from_value(json!({ "base_url": base })).unwrap();
    let system = HttpSystem::new(&system, Duration::from_secs(5), |_| None).unwrap();
    let config: HttpFromConfig = serde_json::from_value(json!({
        "request": { "path": "/items" },
        "records": "/items",
        "pagination": pagination,
    }))
    .unwrap();
    HttpSource::new(system, &config, &json!({})).unwrap()
}

/// Reads the listing (at most 100 pages: a listing that does not end fails the test);
/// returns the ids read and the notices.
async fn read_all(src: &mut HttpSource) -> (Vec<i64>, Vec<SourceNotice>) {
    let mut ids = Vec::new();
    let mut notices = Vec::new();
    for _ in 0..100 {
        let batch = src.next_batch().await.expect("page");
        notices.extend(src.take_notices());
        let Some(batch) = batch else {
            return (ids, notices);
        };
        for i in 0..batch.len() {
            let raw = batch.get(i).unwrap();
            let v: Value = serde_json::from_slice(&raw.original()).unwrap();
            ids.push(v["id"].as_i64().unwrap());
        }
    }
    panic!(
        "the listing did not end after 100 pages ({} ids read)",
        ids.len()
    );
}

fn reasons(notices: &[SourceNotice]) -> Vec<&str> {
    notices.iter().map(|n| n.reason).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_next_token_in_the_body_reads_every_page_once() {
    let (base, api) = serve(Api {
        total: 7,
        mode: "token",
        ..Api::default()
    })
    .await;
    let pagination = json!({ "style": "next_token", "size": 2, "token_path": "/next" });
    let (ids, notices) = read_all(&mut source(&base, pagination)).await;
    assert_eq!(ids, (1..=7).collect::<Vec<_>>());
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(api.lock().unwrap().requests, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_a_repeated_next_token_ends_the_listing_with_a_notice() {
    let (base, api) = serve(Api {
        total: 7,
        mode: "token",
        stuck_token: true,
        ..Api::default()
    })
    .await;
    let pagination = json!({ "style": "next_token", "size": 2, "token_path": "/next" });
    let (ids, notices) = read_all(&mut source(&base, pagination)).await;
    // First page (no token), then the token's page; the token comes back: stop.
    assert_eq!(ids, vec![1, 2, 3, 4]);
    assert_eq!(reasons(&notices), vec!["repeated-token"]);
    assert!(notices[0].message.contains("\"t2\""), "{notices:?}");
    assert_eq!(api.lock().unwrap().requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_link_header_paging_reads_every_page_and_a_repeated_link_ends_it() {
    let (base, api) = serve(Api {
        total: 5,
        mode: "link",
        ..Api::default()
    })
    .await;
    let pagination = json!({ "style": "next_link", "size": 2 });
    let (ids, notices) = read_all(&mut source(&base, pagination.clone())).await;
    assert_eq!(ids, (1..=5).collect::<Vec<_>>());
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(api.lock().unwrap().requests, 3);

    let (base, api) = serve(Api {
        total: 5,
        mode: "link",
        stuck_token: true,
        ..Api::default()
    })
    .await;
    let (_, notices) = read_all(&mut source(&base, pagination)).await;
    assert_eq!(reasons(&notices), vec!["repeated-token"]);
    assert_eq!(api.lock().unwrap().requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_seek_paging_asks_for_the_records_after_the_last_key() {
    let (base, api) = serve(Api {
        total: 5,
        mode: "seek",
        ..Api::default()
    })
    .await;
    let pagination = json!({ "style": "seek", "param": "after", "from": "/id", "size": 2 });
    let (ids, notices) = read_all(&mut source(&base, pagination)).await;
    assert_eq!(ids, (1..=5).collect::<Vec<_>>());
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(api.lock().unwrap().requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_an_identical_page_ends_an_offset_listing_with_a_notice() {
    let (base, api) = serve(Api {
        total: 50,
        mode: "offset",
        ignore_offset: true,
        ..Api::default()
    })
    .await;
    let pagination = json!({ "style": "offset", "size": 2 });
    let (ids, notices) = read_all(&mut source(&base, pagination)).await;
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(reasons(&notices), vec!["identical-page"]);
    assert_eq!(api.lock().unwrap().requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_max_pages_caps_a_run_with_a_notice() {
    let (base, api) = serve(Api {
        total: 50,
        mode: "offset",
        ..Api::default()
    })
    .await;
    let pagination = json!({ "style": "offset", "size": 2, "max_pages": 3 });
    let (ids, notices) = read_all(&mut source(&base, pagination)).await;
    assert_eq!(ids, (1..=6).collect::<Vec<_>>());
    assert_eq!(reasons(&notices), vec!["page-cap"]);
    assert_eq!(api.lock().unwrap().requests, 3);
}

/// Runs the reference offer flow with its retry shortened (100 ms, window 2 s) against a
/// marketplace failing as `fault` says; returns the result and the metrics.
async fn run_offers(
    name: &str,
    fault: Fault,
) -> (
    Result<switchyard::runtime::RunReport, RunError>,
    Arc<Metrics>,
    Sandbox,
) {
    let sandbox = Sandbox::start(SandboxConfig {
        offers: 40,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    sandbox.inject_marketplace_fault(fault);
    let (root, state) = workspace_copy(name, true);
    let workspace = load(&root, &sandbox);
    let store = state.open().await;
    let metrics = Arc::new(Metrics::default());
    let options = RunOptions {
        progress: false,
        observer: Observer::new(Arc::clone(&metrics)),
        ..RunOptions::default()
    };
    let result = FlowRun::new(&workspace, FLOW, store, options, None, None)
        .await
        .unwrap()
        .run()
        .await;
    (result, metrics, sandbox)
}

/// Five 503s in a row outlast the old hidden loop (3 attempts) but not the flow's window:
/// the runtime asks for the same page again and every offer arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_source_failures_are_retried_under_the_flows_policy() {
    let (result, metrics, sandbox) = run_offers("source-retry", Fault::fail(503, 5)).await;
    let report = result.expect("the run recovers within the window");
    let flow = [("flow", FLOW)];
    assert_eq!(metrics.counter(&SOURCE_RETRIES, &flow), 5.0);
    assert_eq!(
        metrics.counter(&RECORDS_DELIVERED, &flow) as u64,
        report.delivered
    );
    assert_each_valid_offer_once(&sandbox, "after source retries");
    let cut: f64 = metrics
        .counter_series(&LISTINGS_CUT)
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(cut, 0.0);
    sandbox.shutdown().await;
}

/// A source still failing when the window closes stops the run as `source-unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_a_source_failing_past_the_window_is_unavailable() {
    let started = std::time::Instant::now();
    let (result, metrics, sandbox) = run_offers("source-window", Fault::fail_for(503, 3600)).await;
    let err = result.expect_err("the window closes");
    assert!(matches!(err, RunError::Source { .. }), "{err:?}");
    assert!(err.to_string().contains("retry window"), "{err}");
    assert!(metrics.counter(&SOURCE_RETRIES, &[("flow", FLOW)]) >= 3.0);
    assert!(started.elapsed() < Duration::from_secs(10));
    sandbox.shutdown().await;
}

/// Two flows' sources built separately (as two flows of one `serve` are) on one system with
/// `rate_limit: 20/1s, burst: 1`: together they keep to it, since the bucket is per system
/// in the process, not per source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_a_system_rate_limit_is_shared_by_every_flow_of_the_process() {
    let (base, api) = serve(Api {
        total: 10,
        mode: "offset",
        ..Api::default()
    })
    .await;
    let open = || {
        let system: HttpSystemConfig = serde_json::from_value(json!({
            "base_url": base, "rate_limit": "20/1s", "burst": 1
        }))
        .unwrap();
        let system = HttpSystem::new(&system, Duration::from_secs(5), |_| None).unwrap();
        let config: HttpFromConfig = serde_json::from_value(json!({
            "request": { "path": "/items" },
            "records": "/items",
            "pagination": { "style": "offset", "size": 2 },
        }))
        .unwrap();
        HttpSource::new(system, &config, &json!({})).unwrap()
    };
    let (mut a, mut b) = (open(), open());
    let started = std::time::Instant::now();
    let (read_a, read_b) = tokio::join!(read_all(&mut a), read_all(&mut b));
    let elapsed = started.elapsed();
    assert_eq!(read_a.0.len() + read_b.0.len(), 20);
    // 6 requests each (5 full pages and an empty one): 12 at 20 a second, one at once.
    assert_eq!(api.lock().unwrap().requests, 12);
    assert!(elapsed >= Duration::from_millis(540), "{elapsed:?}");
    let waited: Duration = switchyard::connectors::http::rate_limit::waited()
        .into_iter()
        .filter(|(name, ..)| *name == base)
        .map(|(_, waited, _)| waited)
        .sum();
    assert!(waited >= Duration::from_millis(540), "{waited:?}");
}

/// An operation's `rate_limit` on `request:` paces that operation's calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_05_an_operation_rate_limit_paces_its_calls() {
    let (base, api) = serve(Api {
        total: 6,
        mode: "offset",
        ..Api::default()
    })
    .await;
    let system: HttpSystemConfig = serde_json::from_value(json!({ "base_url": base })).unwrap();
    let system = HttpSystem::new(&system, Duration::from_secs(5), |_| None).unwrap();
    let config: HttpFromConfig = serde_json::from_value(json!({
        "request": { "path": "/items", "rate_limit": "10/1s", "burst": 2 },
        "records": "/items",
        "pagination": { "style": "offset", "size": 2 },
    }))
    .unwrap();
    let mut src = HttpSource::new(system, &config, &json!({})).unwrap();
    let started = std::time::Instant::now();
    let (ids, _) = read_all(&mut src).await;
    assert_eq!(ids.len(), 6);
    // 4 requests: two at once, then one every 100 ms.
    assert_eq!(api.lock().unwrap().requests, 4);
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );
}

/// Reads the sandbox's v2 orders listing (next-token) with a client-side `rate_limit` or
/// without; returns the orders read and the violations the sandbox counted.
async fn read_sandbox_orders(
    client_rate: Option<&str>,
    repeat_token: u32,
) -> (usize, u64, Vec<SourceNotice>) {
    let sandbox = Sandbox::start(SandboxConfig {
        orders: 40,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let operation = "GET /marketplace/api/v2/orders";
    sandbox.set_rate_limit(operation, 4, 1);
    sandbox.repeat_order_token(repeat_token);
    let mut system = json!({ "base_url": sandbox.marketplace_url() });
    if let Some(rate) = client_rate {
        system["rate_limit"] = json!(rate);
        system["burst"] = json!(1);
    }
    let system: HttpSystemConfig = serde_json::from_value(system).unwrap();
    let system = HttpSystem::new(&system, Duration::from_secs(5), |_| None).unwrap();
    let config: HttpFromConfig = serde_json::from_value(json!({
        "request": { "path": "/api/v2/orders" },
        "records": "/orders",
        "pagination": { "style": "next_token", "size": 10 },
    }))
    .unwrap();
    let mut src = HttpSource::new(system, &config, &json!({})).unwrap();
    let mut read = 0;
    let mut notices = Vec::new();
    loop {
        match src.next_batch().await {
            Ok(Some(batch)) => read += batch.len(),
            Ok(None) => break,
            // Without a client-side limit the sandbox refuses; the runtime would retry.
            Err(err) => {
                assert_eq!(err.status, Some(429), "{err}");
                assert!(err.retry_after.is_some(), "{err:?}");
                break;
            }
        }
        notices.extend(src.take_notices());
    }
    notices.extend(src.take_notices());
    let violations = sandbox
        .rate_limit_violations()
        .get(operation)
        .copied()
        .unwrap_or(0);
    sandbox.shutdown().await;
    (read, violations, notices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_09_the_sandbox_counts_rate_limit_violations_a_client_limit_avoids() {
    let (_, violations, _) = read_sandbox_orders(None, 0).await;
    assert_eq!(violations, 1, "the fifth call within a second is refused");
    let (read, violations, notices) = read_sandbox_orders(Some("3/1s"), 0).await;
    assert!(read >= 40, "{read}");
    assert_eq!(violations, 0);
    assert!(notices.is_empty(), "{notices:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_09_a_sandbox_listing_repeating_its_token_ends_with_a_notice() {
    let (read, violations, notices) = read_sandbox_orders(Some("3/1s"), 1).await;
    assert_eq!(reasons(&notices), vec!["repeated-token"]);
    assert!(read < 40, "{read}");
    assert_eq!(violations, 0);
}
