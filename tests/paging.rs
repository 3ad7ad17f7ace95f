//! Issue 6, item 1, the hard cases of keyset paging, against a listing API whose ordering,
//! filter precision and paging can be bent: long runs of records sharing one cursor value
//! updated while read, an API that ignores the offset, a filter coarser than the cursor
//! values, numeric cursors sent as strings.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use serde_json::{Value, json};
use switchyard::connectors::http::HttpSystemConfig;
use switchyard::connectors::http::{HttpFromConfig, HttpSource, HttpSystem};

#[derive(Default)]
struct Api {
    /// id -> cursor value
    records: BTreeMap<i64, Value>,
    ignore_offset: bool,
    /// The server truncates `since` to whole seconds (RFC 3339 cursors).
    truncate_since: bool,
    /// Cursor values are numeric strings, compared numerically by the server.
    numeric_strings: bool,
    /// `since` is exclusive (records strictly after it).
    exclusive: bool,
    /// Before request n (1-based): set these ids' cursor values.
    updates: HashMap<usize, Vec<(i64, Value)>>,
    requests: usize,
}

fn key(api: &Api, v: &Value) -> f64 {
    if let Some(f) = v.as_f64() {
        return f;
    }
    let s = v.as_str().unwrap();
    if api.numeric_strings {
        return s.parse().unwrap();
    }
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as f64
}

async fn list(
    State(api): State<Arc<Mutex<Api>>>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    let mut api = api.lock().unwrap();
    api.requests += 1;
    let n = api.requests;
    if let Some(ups) = api.updates.remove(&n) {
        for (id, v) in ups {
            api.records.insert(id, v);
        }
    }
    let since = q.get("since").map(|s| {
        if api.numeric_strings {
            s.parse::<f64>().unwrap()
        } else if let Ok(n) = s.parse::<f64>() {
            n
        } else {
            let ts: jiff::Timestamp = s.parse().unwrap();
            let ms = ts.as_millisecond();
            if api.truncate_since {
                (ms / 1000 * 1000) as f64
            } else {
                ms as f64
            }
        }
    });
    let mut rows: Vec<(f64, i64, Value)> = api
        .records
        .iter()
        .map(|(id, v)| (key(&api, v), *id, v.clone()))
        .filter(|(k, _, _)| since.is_none_or(|s| if api.exclusive { *k > s } else { *k >= s }))
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let limit: usize = q.get("limit").map(|l| l.parse().unwrap()).unwrap_or(100);
    let offset: usize = if api.ignore_offset {
        0
    } else if let Some(p) = q.get("page") {
        (p.parse::<usize>().unwrap() - 1) * limit
    } else {
        q.get("offset").map(|o| o.parse().unwrap()).unwrap_or(0)
    };
    let items: Vec<Value> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, id, v)| json!({"id": id, "ts": v}))
        .collect();
    axum::Json(json!({ "items": items }))
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

fn source(base: &str, style: &str, size: u32, position: Value) -> HttpSource {
    let system: HttpSystemConfig = serde_json::from_value(json!({ "base_url": base })).unwrap();
    let system = HttpSystem::new(&system, Duration::from_secs(5), |_| None).unwrap();
    let config: HttpFromConfig = serde_json::from_value(json!({
        "request": { "path": "/items", "query": { "since": "{{cursor}}" } },
        "records": "/items",
        "pagination": { "style": style, "size": size },
        "cursor": "ts"
    }))
    .unwrap();
    HttpSource::new(system, &config, &position).unwrap()
}

/// Reads the whole listing; returns ids read and the final checkpoint position.
async fn read_all(src: &mut HttpSource) -> Result<(Vec<i64>, Value), String> {
    let mut ids = Vec::new();
    let mut position = Value::Null;
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(5), src.next_batch())
            .await
            .map_err(|_| "next_batch did not return within 5 s".to_string())?
            .map_err(|e| e.to_string())?;
        let Some(batch) = batch else { break };
        for i in 0..batch.len() {
            let raw = batch.get(i).unwrap();
            let v: Value = serde_json::from_slice(&raw.original()).unwrap();
            ids.push(v["id"].as_i64().unwrap());
        }
        position = batch.position.clone();
    }
    Ok((ids, position))
}

/// An API that ignores the offset, with a run of ties as long as a page: the listing ends
/// (with a warning) instead of asking for the same page forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_01_an_api_ignoring_the_offset_ends_the_listing_instead_of_looping() {
    let mut api = Api {
        ignore_offset: true,
        ..Api::default()
    };
    for id in 1..=10 {
        api.records.insert(id, json!(100));
    }
    api.records.insert(11, json!(200));
    let (base, api) = serve(api).await;
    let mut src = source(&base, "offset", 4, json!({"cursor": null}));
    let result = read_all(&mut src).await;
    let requests = api.lock().unwrap().requests;
    assert!(result.is_ok(), "hung: {requests} requests, {result:?}");
}

/// Page-number paging through a tie run longer than a page: a tie updated between two pages
/// pulls an unread one behind the page boundary; the run is read again before the cursor
/// leaves its value, so nothing is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_01_page_numbers_through_a_long_tie_run_skip_nothing_when_a_tie_moves() {
    let mut api = Api::default();
    for id in 1..=10 {
        api.records.insert(id, json!(100));
    }
    api.records.insert(11, json!(200));
    api.records.insert(12, json!(300));
    // Before the 2nd request, record 2 is updated (moves to the end).
    api.updates.insert(2, vec![(2, json!(400))]);
    let (base, _api) = serve(api).await;
    let mut src = source(&base, "page", 4, json!({"cursor": null}));
    let (ids, position) = read_all(&mut src).await.unwrap();
    let mut seen = ids.clone();
    seen.sort();
    seen.dedup();
    let missing: Vec<i64> = (1..=12).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "never read: {missing:?}, checkpoint {position}"
    );
}

/// Offset paging through a long tie run with more than half a page of ties updated between
/// two pages: the pass over the run before the cursor moves finds the ones slid back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_01_offsets_through_a_long_tie_run_skip_nothing_when_many_ties_move() {
    let mut api = Api::default();
    for id in 1..=12 {
        api.records.insert(id, json!(100));
    }
    api.records.insert(13, json!(200));
    api.updates
        .insert(2, vec![(1, json!(400)), (2, json!(401)), (3, json!(402))]);
    let (base, _api) = serve(api).await;
    let mut src = source(&base, "offset", 4, json!({"cursor": null}));
    let (ids, position) = read_all(&mut src).await.unwrap();
    let missing: Vec<i64> = (1..=13).filter(|i| !ids.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "never read: {missing:?}, checkpoint {position}"
    );
}

/// An API whose `since` filter has whole-second precision while records carry milliseconds
/// returns records before the cursor again: they are overlap, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_01_a_filter_coarser_than_the_cursor_values_still_reads_the_listing() {
    let mut api = Api {
        truncate_since: true,
        ..Api::default()
    };
    for id in 1..=6 {
        api.records
            .insert(id, json!(format!("2025-03-04T10:00:00.{:03}Z", id * 100)));
    }
    let (base, _api) = serve(api).await;
    let mut src = source(&base, "offset", 4, json!({"cursor": null}));
    let result = read_all(&mut src).await;
    assert!(result.is_ok(), "{result:?}");
}

/// Numeric cursor values sent as strings ("98", "100") compare as numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_01_numeric_string_cursors_compare_as_numbers() {
    let mut api = Api {
        numeric_strings: true,
        ..Api::default()
    };
    for id in 1..=12 {
        api.records.insert(id, json!(format!("{}", 90 + id * 2)));
    }
    let (base, _api) = serve(api).await;
    let mut src = source(&base, "offset", 4, json!({"cursor": null}));
    let result = read_all(&mut src).await;
    assert!(result.is_ok(), "{result:?}");
}
