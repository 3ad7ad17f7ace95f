//! Tests of the order, OMS and webhook simulations over real HTTP: a sandbox on an ephemeral
//! loopback port driven with reqwest, and a tiny axum receiver for the webhooks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Fault, OrderState, Sandbox, SandboxConfig, SandboxState, sign_event, verify};

async fn start(config: SandboxConfig) -> (Sandbox, reqwest::Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    (sandbox, reqwest::Client::new())
}

fn with_orders(orders: usize) -> SandboxConfig {
    SandboxConfig {
        offers: 0,
        orders,
        ..SandboxConfig::default()
    }
}

async fn get_order(client: &reqwest::Client, sandbox: &Sandbox, id: &str) -> Value {
    let url = format!("{}/api/orders/{id}", sandbox.marketplace_url());
    let response = client.get(&url).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    response.json().await.expect("JSON order")
}

/// Accepts (or refuses) every line of an order by its ID, as the acceptance API requires.
async fn decide_all(
    client: &reqwest::Client,
    sandbox: &Sandbox,
    id: &str,
    accepted: bool,
) -> reqwest::Response {
    let order = get_order(client, sandbox, id).await;
    let lines: Vec<Value> = order["order_lines"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|l| json!({ "id": l["order_line_id"], "accepted": accepted }))
                .collect()
        })
        .unwrap_or_else(|| vec![json!({ "id": "L-1", "accepted": accepted })]);
    accept(client, sandbox, id, json!({ "order_lines": lines })).await
}

async fn accept(
    client: &reqwest::Client,
    sandbox: &Sandbox,
    id: &str,
    body: Value,
) -> reqwest::Response {
    client
        .put(format!(
            "{}/api/orders/{id}/accept",
            sandbox.marketplace_url()
        ))
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn ship(
    client: &reqwest::Client,
    sandbox: &Sandbox,
    id: &str,
    lines: &[(&str, u64)],
) -> reqwest::Response {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(line, quantity)| json!({ "order_line_id": line, "quantity": quantity }))
        .collect();
    client
        .post(format!(
            "{}/api/orders/{id}/shipments",
            sandbox.marketplace_url()
        ))
        .json(&json!({ "carrier": "DHL", "tracking_number": "JJD0001", "lines": lines }))
        .send()
        .await
        .expect("request")
}

async fn post_oms(
    client: &reqwest::Client,
    sandbox: &Sandbox,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = client
        .post(format!("{}/orders", sandbox.oms_url()))
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("request")
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string"))
}

/// Waits until `done` holds, polling every 50 ms, for at most `limit`.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[test]
fn seeded_orders_are_deterministic_with_split_baskets() {
    let now = Timestamp::constant(1_741_082_400, 0);
    let config = with_orders(200);
    let first = SandboxState::at(&config, now);
    let again = SandboxState::at(&config, now);
    let orders = first.orders().all();
    assert_eq!(orders, again.orders().all());
    let other = SandboxState::at(&SandboxConfig { seed: 7, ..config }, now);
    assert_ne!(orders, other.orders().all());

    let summary = first.orders().summary();
    assert_eq!(summary.baskets, 200);
    assert_eq!(summary.legs, orders.len());
    assert_eq!(summary.waiting_acceptance, orders.len());
    // About 30% of baskets are split, each into 2 or 3 legs.
    assert!((40..=80).contains(&summary.split_baskets), "{summary:?}");
    assert!(summary.legs >= 200 + summary.split_baskets);
    assert!(summary.legs <= 200 + 2 * summary.split_baskets);

    let mut legs_by_basket: HashMap<&str, Vec<&Value>> = HashMap::new();
    for order in &orders {
        legs_by_basket
            .entry(str_of(order, "commercial_id"))
            .or_default()
            .push(order);
    }
    for (basket, legs) in &legs_by_basket {
        let shops: HashSet<i64> = legs.iter().filter_map(|o| o["shop_id"].as_i64()).collect();
        assert_eq!(shops.len(), legs.len(), "one leg per seller in {basket}");
        for (leg, order) in legs.iter().enumerate() {
            let letter = char::from(b'A' + u8::try_from(leg).expect("few legs"));
            assert_eq!(str_of(order, "order_id"), format!("{basket}-{letter}"));
        }
    }
    let first_order = &orders[0];
    assert_eq!(str_of(first_order, "order_id"), "MKP-000123-A");
    assert_eq!(str_of(first_order, "order_state"), "WAITING_ACCEPTANCE");
    assert_eq!(str_of(first_order, "created_at"), "2025-03-04T10:00:00Z");
    assert_eq!(
        str_of(first_order, "acceptance_deadline"),
        "2025-03-04T10:01:00Z"
    );
    for order in &orders {
        let lines = order["order_lines"].as_array().expect("lines");
        assert!((1..=3).contains(&lines.len()));
        let mut total = 0_i64;
        for (n, line) in lines.iter().enumerate() {
            assert_eq!(
                str_of(line, "order_line_id"),
                format!("{}-{}", str_of(order, "order_id"), n + 1)
            );
            let price = str_of(line, "price");
            let (whole, cents) = price.split_once('.').expect("two decimals");
            let cents: i64 =
                whole.parse::<i64>().expect("whole") * 100 + cents.parse::<i64>().expect("cents");
            total += cents * line["quantity"].as_i64().expect("quantity");
        }
        assert_eq!(str_of(order, "total_price"), super::seed::decimal(total));
        assert!(order["customer"]["shipping_address"]["country"].is_string());
    }
}

#[tokio::test]
async fn accept_before_deadline_ships_after_deadline_is_refused_and_auto_cancelled() {
    let (sandbox, client) = start(SandboxConfig {
        ack_deadline_secs: 1,
        ..with_orders(5)
    })
    .await;
    let orders = sandbox.marketplace_orders();
    let first = str_of(&orders[0], "order_id").to_owned();
    let second = str_of(&orders[1], "order_id").to_owned();

    // A whole-order `accepted` is refused like a real acceptance API refuses it.
    let whole = accept(&client, &sandbox, &first, json!({ "accepted": true })).await;
    assert_eq!(whole.status(), StatusCode::BAD_REQUEST);
    let error: Value = whole.json().await.expect("JSON error");
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("order_lines is required"),
        "{error}"
    );
    let response = decide_all(&client, &sandbox, &first, true).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let order = get_order(&client, &sandbox, &first).await;
    assert_eq!(str_of(&order, "order_state"), "SHIPPING");
    assert!(
        order["order_lines"]
            .as_array()
            .expect("lines")
            .iter()
            .all(|l| l["order_line_state"] == "SHIPPING")
    );

    // Re-accepting the same way is a no-op; the per-line form of the same decision too.
    let lines: Vec<Value> = order["order_lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| json!({ "id": l["order_line_id"], "accepted": true }))
        .collect();
    let again = accept(&client, &sandbox, &first, json!({ "order_lines": lines })).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    let changed = decide_all(&client, &sandbox, &first, false).await;
    assert_eq!(changed.status(), StatusCode::CONFLICT);
    let unknown = accept(
        &client,
        &sandbox,
        "MKP-999999-Z",
        json!({ "accepted": true }),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let malformed = accept(&client, &sandbox, &second, json!({ "order_lines": "all" })).await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

    // The background task, not a request, cancels the rest once the second has passed.
    let legs = sandbox.orders_summary().legs;
    let cancelled = eventually(Duration::from_secs(3), || {
        sandbox.orders_summary().auto_cancelled == legs - 1
    })
    .await;
    assert!(cancelled, "{:?}", sandbox.orders_summary());
    let late = decide_all(&client, &sandbox, &second, true).await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    let error: Value = late.json().await.expect("JSON error");
    assert_eq!(error["error"], "deadline passed; order auto-cancelled");
    assert_eq!(
        str_of(&get_order(&client, &sandbox, &second).await, "order_state"),
        "CANCELED"
    );
    // The accepted order stays accepted after its deadline.
    let late_replay = decide_all(&client, &sandbox, &first, true).await;
    assert_eq!(late_replay.status(), StatusCode::NO_CONTENT);

    let summary = sandbox.orders_summary();
    assert_eq!(summary.accepted_before_deadline, 1);
    assert_eq!(summary.accepted_late_refused, 1);
    assert_eq!((summary.shipping, summary.canceled), (1, legs - 1));
    assert_eq!(summary.waiting_acceptance, 0);
    let over_http: Value = client
        .get(format!(
            "{}/_sandbox/marketplace/orders/summary",
            sandbox.base_url()
        ))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON summary");
    assert_eq!(over_http, serde_json::to_value(&summary).expect("summary"));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn refusing_every_line_refuses_the_order_and_listing_follows_updates() {
    let (sandbox, client) = start(with_orders(10)).await;
    let orders = sandbox.marketplace_orders();
    let id = str_of(&orders[3], "order_id").to_owned();
    let listed: Value = client
        .get(format!("{}/api/orders", sandbox.marketplace_url()))
        .query(&[("max", "4")])
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON page");
    assert_eq!(listed["total_count"], orders.len());
    assert_eq!(listed["orders"].as_array().expect("orders").len(), 4);

    let response = decide_all(&client, &sandbox, &id, false).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let order = get_order(&client, &sandbox, &id).await;
    assert_eq!(str_of(&order, "order_state"), "REFUSED");

    // The refused order is now the latest update; an inclusive cursor at it returns it.
    let since = str_of(&order, "updated_at");
    let page: Value = client
        .get(format!("{}/api/orders", sandbox.marketplace_url()))
        .query(&[("updated_since", since)])
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON page");
    assert_eq!(page["total_count"], 1);
    assert_eq!(page["orders"][0]["order_id"], id.as_str());
    assert_eq!(sandbox.orders_summary().refused, 1);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn partial_shipment_keeps_shipping_full_shipment_ships_and_overshipping_is_422() {
    let (sandbox, client) = start(with_orders(30)).await;
    // An order with more than one unit in total can be shipped in two parts.
    let order = sandbox
        .marketplace_orders()
        .into_iter()
        .find(|o| {
            o["order_lines"]
                .as_array()
                .is_some_and(|lines| lines.len() >= 2)
        })
        .expect("a multi-line order in 30 baskets");
    let id = str_of(&order, "order_id").to_owned();
    let lines: Vec<(String, u64)> = order["order_lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                str_of(l, "order_line_id").to_owned(),
                l["quantity"].as_u64().expect("quantity"),
            )
        })
        .collect();

    let early = ship(&client, &sandbox, &id, &[(&lines[0].0, 1)]).await;
    assert_eq!(early.status(), StatusCode::CONFLICT, "not accepted yet");
    let response = decide_all(&client, &sandbox, &id, true).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let first = ship(&client, &sandbox, &id, &[(&lines[0].0, lines[0].1)]).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let created: Value = first.json().await.expect("JSON");
    assert_eq!(created["order_state"], "SHIPPING");
    let partly = get_order(&client, &sandbox, &id).await;
    assert_eq!(str_of(&partly, "order_state"), "SHIPPING");
    assert_eq!(partly["order_lines"][0]["shipped_quantity"], lines[0].1);
    assert_eq!(partly["order_lines"][0]["order_line_state"], "SHIPPED");
    assert_eq!(partly["order_lines"][1]["shipped_quantity"], 0);
    assert_eq!(sandbox.orders_summary().partially_shipped, 1);

    let over = ship(&client, &sandbox, &id, &[(&lines[1].0, lines[1].1 + 1)]).await;
    assert_eq!(over.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = over.json().await.expect("JSON error");
    assert!(error["error"].is_string());
    let unknown_line = ship(&client, &sandbox, &id, &[("nope", 1)]).await;
    assert_eq!(unknown_line.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let rest: Vec<(&str, u64)> = lines[1..].iter().map(|(l, q)| (l.as_str(), *q)).collect();
    let second = ship(&client, &sandbox, &id, &rest).await;
    assert_eq!(second.status(), StatusCode::CREATED);
    let shipped = get_order(&client, &sandbox, &id).await;
    assert_eq!(str_of(&shipped, "order_state"), "SHIPPED");
    let again = ship(&client, &sandbox, &id, &[(&lines[0].0, 1)]).await;
    assert_eq!(again.status(), StatusCode::CONFLICT, "already shipped");

    let summary = sandbox.orders_summary();
    assert_eq!((summary.shipments, summary.shipped), (2, 1));
    assert_eq!(summary.partially_shipped, 0);
    let recorded = sandbox.marketplace_shipments();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0]["tracking_number"], "JJD0001");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn oms_replays_the_same_key_and_refuses_a_duplicate_marketplace_order() {
    let (sandbox, client) = start(with_orders(0)).await;
    let leg = json!({
        "marketplace_order_id": "MKP-000123-A",
        "lines": [
            { "order_line_id": "MKP-000123-A-1", "sku": "SKU-Ab01-1", "quantity": 2 },
            { "order_line_id": "MKP-000123-A-2", "sku": "SKU-Cd02-2", "quantity": 1 }
        ]
    });
    let first = post_oms(&client, &sandbox, Some("k-1"), &leg).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let created: Value = first.json().await.expect("JSON");
    assert_eq!(created["oms_order_id"], "OMS-1");

    let replay = post_oms(&client, &sandbox, Some("k-1"), &leg).await;
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let replayed: Value = replay.json().await.expect("JSON");
    assert_eq!(replayed["oms_order_id"], "OMS-1");

    let duplicate = post_oms(&client, &sandbox, Some("k-2"), &leg).await;
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);
    let conflict: Value = duplicate.json().await.expect("JSON");
    assert_eq!(
        conflict,
        json!({ "error": "duplicate marketplace order", "oms_order_id": "OMS-1" })
    );

    let other = json!({ "marketplace_order_id": "MKP-000124-A" });
    let reused = post_oms(&client, &sandbox, Some("k-1"), &other).await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let keyless = post_oms(&client, &sandbox, None, &other).await;
    assert_eq!(keyless.status(), StatusCode::BAD_REQUEST);
    let no_id = post_oms(&client, &sandbox, Some("k-3"), &json!({ "lines": [] })).await;
    assert_eq!(no_id.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let received = sandbox.oms_received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].key, "k-1");
    assert_eq!(received[0].marketplace_order_id, "MKP-000123-A");
    let stats = sandbox.oms_stats();
    assert_eq!(
        (
            stats.requests,
            stats.received,
            stats.replays,
            stats.duplicate_orders
        ),
        (6, 1, 1, 1)
    );
    assert_eq!((stats.key_reused, stats.missing_idempotency_key), (1, 1));
    assert_eq!(stats.invalid_body, 1);

    // The OMS ships every unit it received, in one or two shipments.
    let page: Value = client
        .get(format!("{}/shipments", sandbox.oms_url()))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON page");
    let shipments = page["shipments"].as_array().expect("shipments");
    assert!((1..=2).contains(&shipments.len()), "{page}");
    let mut shipped: HashMap<String, u64> = HashMap::new();
    for shipment in shipments {
        assert_eq!(shipment["oms_order_id"], "OMS-1");
        assert!(shipment["tracking_number"].is_string());
        for line in shipment["lines"].as_array().expect("lines") {
            *shipped
                .entry(str_of(line, "order_line_id").to_owned())
                .or_default() += line["quantity"].as_u64().expect("quantity");
        }
    }
    assert_eq!(shipped["MKP-000123-A-1"], 2);
    assert_eq!(shipped["MKP-000123-A-2"], 1);

    let http: Value = client
        .get(format!("{}/_sandbox/oms/received", sandbox.base_url()))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(http["orders"][0]["oms_order_id"], "OMS-1");
    assert_eq!(http["stats"]["received"], 1);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn oms_faults_delay_and_fail_receipts() {
    let (sandbox, client) = start(with_orders(0)).await;
    sandbox.inject_oms_fault(Fault::latency(300));
    let leg = json!({ "marketplace_order_id": "MKP-000200-A" });
    let started = Instant::now();
    let slow = post_oms(&client, &sandbox, Some("slow"), &leg).await;
    assert_eq!(slow.status(), StatusCode::CREATED);
    assert!(started.elapsed() >= Duration::from_millis(300));
    sandbox.clear_oms_faults();

    let fault = client
        .post(format!("{}/_sandbox/oms/faults", sandbox.base_url()))
        .json(&json!({ "status": 503, "times": 1 }))
        .send()
        .await
        .expect("request");
    assert_eq!(fault.status(), StatusCode::NO_CONTENT);
    let other = json!({ "marketplace_order_id": "MKP-000201-A" });
    let failed = post_oms(&client, &sandbox, Some("fast"), &other).await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retried = post_oms(&client, &sandbox, Some("fast"), &other).await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    let cleared = client
        .delete(format!("{}/_sandbox/oms/faults", sandbox.base_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(sandbox.oms_stats().faulted, 1);
    assert_eq!(sandbox.oms_received().len(), 2);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn oms_shipments_appear_after_the_delay_and_some_orders_ship_in_two_parts() {
    let (sandbox, client) = start(SandboxConfig {
        ship_after_ms: 300,
        ..with_orders(0)
    })
    .await;
    for n in 0..40 {
        let leg = json!({
            "marketplace_order_id": format!("MKP-{n:06}-A"),
            "order_lines": [
                { "order_line_id": format!("MKP-{n:06}-A-1"), "quantity": 1 },
                { "order_line_id": format!("MKP-{n:06}-A-2"), "quantity": 3 }
            ]
        });
        let response = post_oms(&client, &sandbox, Some(&format!("key-{n}")), &leg).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let url = format!("{}/shipments", sandbox.oms_url());
    let list = |query: Vec<(&'static str, String)>| {
        let request = client.get(&url).query(&query);
        async move {
            let page: Value = request
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("JSON page");
            page
        }
    };
    assert_eq!(list(vec![]).await["total_count"], 0, "none shipped yet");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let page = list(vec![("max", "1000".to_owned())]).await;
    let shipments = page["shipments"].as_array().expect("shipments");
    let created = sandbox.oms_stats().shipments;
    assert_eq!(shipments.len(), created);
    // About a fifth of the 40 orders ship in two parts: first line first, the rest later.
    let split = created - 40;
    assert!((2..=16).contains(&split), "{split} split orders");
    let mut by_order: HashMap<&str, Vec<&Value>> = HashMap::new();
    for shipment in shipments {
        by_order
            .entry(str_of(shipment, "oms_order_id"))
            .or_default()
            .push(shipment);
    }
    for parts in by_order.values().filter(|parts| parts.len() == 2) {
        assert_eq!(parts[0]["lines"].as_array().map(Vec::len), Some(1));
        assert!(str_of(parts[0], "updated_at") < str_of(parts[1], "updated_at"));
    }
    // Inclusive cursor: the last shipment's timestamp returns at least that shipment.
    let last = str_of(&shipments[shipments.len() - 1], "updated_at").to_owned();
    let tail = list(vec![("updated_since", last)]).await;
    assert!(tail["total_count"].as_u64().is_some_and(|n| n >= 1));
    sandbox.shutdown().await;
}

/// What the test receiver saw: every request's headers and raw body, in arrival order.
#[derive(Debug, Default)]
struct Receiver {
    requests: Vec<(HeaderMap, Bytes)>,
    failed_first: bool,
}

/// Starts a receiver that fails its very first request with 500 and accepts the rest.
async fn start_receiver() -> (String, Arc<Mutex<Receiver>>) {
    let seen = Arc::new(Mutex::new(Receiver::default()));
    let state = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hooks/orders",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&state);
            async move {
                let mut seen = state.lock().expect("receiver lock");
                seen.requests.push((headers, body));
                if seen.failed_first {
                    AxumStatus::NO_CONTENT
                } else {
                    seen.failed_first = true;
                    AxumStatus::INTERNAL_SERVER_ERROR
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hooks/orders"), seen)
}

#[tokio::test]
async fn webhooks_are_signed_retried_redelivered_and_duplicated() {
    let (url, seen) = start_receiver().await;
    let (sandbox, _client) = start(SandboxConfig {
        webhook_url: Some(url),
        webhook_secret: "s3cret".to_owned(),
        ..with_orders(40)
    })
    .await;
    let legs = sandbox.orders_summary().legs;
    let redelivered = (legs * 2).div_ceil(100);
    let duplicated = legs.div_ceil(100);
    let expected = legs + redelivered + duplicated;
    let done = eventually(Duration::from_secs(20), || {
        sandbox.orders_summary().events_delivered == expected
    })
    .await;
    let summary = sandbox.orders_summary();
    assert!(done, "{summary:?}");
    assert_eq!(summary.duplicate_events_sent, redelivered);
    assert_eq!(summary.duplicate_order_ids_sent, duplicated);
    assert_eq!(summary.events_failed, 0);

    let requests = std::mem::take(&mut seen.lock().expect("receiver lock").requests);
    // One more request than deliveries: the first one failed and was retried.
    assert_eq!(requests.len(), expected + 1);
    let mut deliveries_by_event: HashMap<String, Vec<Bytes>> = HashMap::new();
    let mut events_by_order: HashMap<String, HashSet<String>> = HashMap::new();
    for (headers, body) in &requests {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{name} header"))
                .to_owned()
        };
        let event_id = header("x-event-id");
        let timestamp: i64 = header("x-timestamp").parse().expect("unix seconds");
        let signature = header("x-signature");
        // The event ID is signed: the signature is worthless under another one.
        assert_eq!(signature, sign_event("s3cret", timestamp, &event_id, body));
        assert_ne!(signature, sign_event("wrong", timestamp, &event_id, body));
        assert_ne!(
            signature,
            sign_event("s3cret", timestamp, "evt-other", body)
        );
        assert_ne!(
            signature,
            sign_event("s3cret", timestamp + 1, &event_id, body)
        );
        assert!(
            !verify("s3cret", timestamp, body, &signature),
            "not the legacy form"
        );
        let event: Value = serde_json::from_slice(body).expect("JSON event");
        assert_eq!(event["event_id"], event_id.as_str());
        assert_eq!(event["type"], "ORDER_CREATED");
        assert_eq!(event["order"]["order_state"], "WAITING_ACCEPTANCE");
        assert!(event["occurred_at"].is_string());
        let order_id = str_of(&event["order"], "order_id").to_owned();
        events_by_order
            .entry(order_id)
            .or_default()
            .insert(event_id.clone());
        deliveries_by_event
            .entry(event_id)
            .or_default()
            .push(body.clone());
    }
    // The retried first request plus the redeliveries share an event ID with an earlier one.
    let repeated: Vec<&Vec<Bytes>> = deliveries_by_event
        .values()
        .filter(|bodies| bodies.len() > 1)
        .collect();
    assert!((redelivered..=redelivered + 1).contains(&repeated.len()));
    assert!(
        repeated
            .iter()
            .all(|bodies| bodies.iter().all(|b| b == &bodies[0])),
        "a redelivery repeats the same event"
    );
    assert_eq!(deliveries_by_event.len(), legs + duplicated);
    assert_eq!(events_by_order.len(), legs);
    let duplicates = events_by_order
        .values()
        .filter(|events| events.len() == 2)
        .count();
    assert_eq!(
        duplicates, duplicated,
        "duplicate order IDs arrive as new events"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn emit_endpoint_needs_a_url_and_restarts_emission() {
    let (sandbox, client) = start(with_orders(3)).await;
    let emit = format!("{}/_sandbox/marketplace/orders/emit", sandbox.base_url());
    let missing = client.post(&emit).send().await.expect("request");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let bad = client
        .post(&emit)
        .json(&json!({ "url": "ftp://example" }))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let (url, seen) = start_receiver().await;
    // The receiver fails its first request; accept it up front so counts are exact.
    seen.lock().expect("receiver lock").failed_first = true;
    let started = client
        .post(&emit)
        .json(&json!({ "url": url }))
        .send()
        .await
        .expect("request");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let legs = sandbox.orders_summary().legs;
    let expected = legs + (legs * 2).div_ceil(100) + legs.div_ceil(100);
    assert!(
        eventually(Duration::from_secs(5), || {
            sandbox.orders_summary().events_delivered == expected
        })
        .await
    );
    // The Rust handle restarts the same emission.
    sandbox.emit_orders(&url);
    assert!(
        eventually(Duration::from_secs(5), || {
            sandbox.orders_summary().events_delivered == 2 * expected
        })
        .await
    );
    assert_eq!(
        seen.lock().expect("receiver lock").requests.len(),
        2 * expected
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn order_faults_and_env() {
    let (sandbox, client) = start(with_orders(2)).await;
    sandbox.inject_orders_fault(Fault::fail(503, 1));
    let listed = client
        .get(format!("{}/api/orders", sandbox.marketplace_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(listed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let listed = client
        .get(format!("{}/api/orders", sandbox.marketplace_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(listed.status(), StatusCode::OK);
    sandbox.clear_orders_faults();
    let missing = client
        .get(format!(
            "{}/api/orders/MKP-000001-A",
            sandbox.marketplace_url()
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let env: HashMap<String, String> = sandbox.env().into_iter().collect();
    assert_eq!(env["OMS_URL"], format!("{}/oms", sandbox.base_url()));
    assert_eq!(
        serde_json::to_value(OrderState::WaitingAcceptance).expect("state"),
        "WAITING_ACCEPTANCE"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn order_items_are_served_and_a_shipment_before_acceptance_counts_as_out_of_order() {
    let (sandbox, client) = start(with_orders(5)).await;
    let order = sandbox.marketplace_orders()[0].clone();
    let id = str_of(&order, "order_id").to_owned();
    let items: Value = client
        .get(format!(
            "{}/api/orders/{id}/items",
            sandbox.marketplace_url()
        ))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON items");
    assert_eq!(items["items"], order["order_lines"]);
    let missing = client
        .get(format!(
            "{}/api/orders/NOPE/items",
            sandbox.marketplace_url()
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Still WAITING_ACCEPTANCE: the shipment is refused and counted.
    let line = str_of(&order["order_lines"][0], "order_line_id").to_owned();
    let response = ship(&client, &sandbox, &id, &[(&line, 1)]).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(sandbox.orders_summary().calls_out_of_order, 1);
    sandbox.shutdown().await;
}
