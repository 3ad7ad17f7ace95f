//! Tests of the sandbox over real HTTP: a sandbox started on an ephemeral loopback port and
//! driven with reqwest, as flows and integration tests will drive it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Fault, Sandbox, SandboxConfig, SandboxState, seed};

async fn start(offers: usize) -> (Sandbox, reqwest::Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = SandboxConfig {
        offers,
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    (sandbox, reqwest::Client::new())
}

async fn get_json(client: &reqwest::Client, url: &str, query: &[(&str, &str)]) -> Value {
    let response = client.get(url).query(query).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK, "GET {url} {query:?}");
    response.json().await.expect("JSON body")
}

async fn put_offer(
    client: &reqwest::Client,
    sandbox: &Sandbox,
    sku: &str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .put(format!("{}/catalog/offers/{sku}", sandbox.storefront_url()))
        .json(&json!({ "sku": sku, "price_cents": 12995 }));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("request")
}

fn ids(offers: &[Value]) -> Vec<i64> {
    offers
        .iter()
        .map(|o| o["offer_id"].as_i64().expect("integer offer_id"))
        .collect()
}

fn all_offers(state: &SandboxState) -> Vec<Value> {
    state.marketplace().page(None, 0, usize::MAX).0
}

#[test]
fn seeded_counts_are_deterministic_for_a_seed() {
    let config = SandboxConfig::default();
    let first = SandboxState::new(&config);
    let again = SandboxState::new(&config);
    let summary = first.marketplace().summary();
    assert_eq!(summary, again.marketplace().summary());
    assert_eq!(all_offers(&first), all_offers(&again));
    assert_eq!(summary.offers, 1000);
    assert_eq!(summary.missing_price, 20);
    assert_eq!(summary.negative_quantity, 20);
    assert_eq!(summary.unknown_currency, 20);
    assert_eq!(summary.duplicates, 20);
    assert_eq!(summary.ownership_violations, 10);
    assert_eq!(summary.other_invalid, 0);
    assert_eq!(summary.valid, 910);
    assert_eq!(summary.valid_offer_ids.len(), 910);

    let other = SandboxState::new(&SandboxConfig { seed: 7, ..config });
    assert_ne!(all_offers(&first), all_offers(&other));
    assert_eq!(other.marketplace().summary().valid, 910);
}

#[test]
fn duplicates_are_exact_copies_of_an_earlier_valid_offer() {
    let offers = all_offers(&SandboxState::new(&SandboxConfig::default()));
    let valid: HashSet<i64> = SandboxState::new(&SandboxConfig::default())
        .marketplace()
        .summary()
        .valid_offer_ids
        .into_iter()
        .collect();
    let mut first_seen: HashMap<i64, &Value> = HashMap::new();
    let mut copies = 0;
    for offer in &offers {
        let id = offer["offer_id"].as_i64().expect("integer offer_id");
        if let Some(original) = first_seen.get(&id) {
            assert_eq!(*original, offer, "a duplicate is an exact copy");
            assert!(valid.contains(&id), "only valid offers are duplicated");
            copies += 1;
        } else {
            first_seen.insert(id, offer);
        }
    }
    assert_eq!(copies, 20);
}

#[test]
fn seeded_offers_look_like_real_marketplace_data() {
    let offers = seed::offers(42, 1000);
    let titles: Vec<&str> = offers.iter().filter_map(|o| o["title"].as_str()).collect();
    for needle in ["é", "ü", "ß", "\"", "{", "\\"] {
        assert!(
            titles.iter().any(|t| t.contains(needle)),
            "a title contains {needle}"
        );
    }
    assert!(titles.contains(&"12\" Pizza Stone {Pro}"));

    for offer in &offers {
        if let Some(price) = offer.get("price") {
            let price = price.as_str().expect("price is a string");
            let (whole, fraction) = price.split_once('.').unwrap_or((price, ""));
            assert!(
                !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()),
                "{price}"
            );
            assert!(fraction.len() <= 2 && fraction.bytes().all(|b| b.is_ascii_digit()));
        }
        let sku = offer["shop_sku"].as_str().expect("shop_sku");
        assert!(sku.starts_with("SKU-") && sku.chars().any(|c| c.is_ascii_lowercase()));
        let updated_at = offer["updated_at"].as_str().expect("updated_at");
        assert!(updated_at.ends_with('Z'), "{updated_at}");
        updated_at.parse::<Timestamp>().expect("RFC 3339");
    }
    let shops: HashSet<i64> = offers
        .iter()
        .filter_map(|o| o["shop_id"].as_i64())
        .collect();
    assert_eq!(shops.len(), 20);
    let timestamps: HashSet<&str> = offers
        .iter()
        .filter_map(|o| o["updated_at"].as_str())
        .collect();
    assert!(
        timestamps.len() < offers.len() / 2,
        "several offers share a timestamp"
    );
    let most = offers.iter().filter(|o| o["state_code"] == "11").count();
    assert!(most > offers.len() / 2, "state 11 is the common case");
}

#[tokio::test]
async fn offset_pagination_enumerates_every_offer_exactly_once() {
    let (sandbox, client) = start(1000).await;
    let url = format!("{}/api/offers", sandbox.marketplace_url());
    let expected = ids(&all_offers(&sandbox.state));
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = get_json(
            &client,
            &url,
            &[("offset", &offset.to_string()), ("max", "137")],
        )
        .await;
        assert_eq!(page["total_count"], 1000);
        let offers = page["offers"].as_array().expect("offers array");
        if offers.is_empty() {
            break;
        }
        seen.extend(ids(offers));
        offset += offers.len();
    }
    assert_eq!(seen, expected, "every entry once, in delivery order");

    let default_page = get_json(&client, &url, &[]).await;
    assert_eq!(default_page["offers"].as_array().map(Vec::len), Some(100));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn token_pagination_enumerates_every_offer_exactly_once() {
    let (sandbox, client) = start(1000).await;
    let url = format!("{}/api/v2/offers", sandbox.marketplace_url());
    let expected = ids(&all_offers(&sandbox.state));
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "90".to_owned())];
        if let Some(token) = &token {
            query.push(("page_token", token.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = get_json(&client, &url, &query).await;
        seen.extend(ids(page["data"].as_array().expect("data array")));
        pages += 1;
        match &page["next_page_token"] {
            Value::Null => break,
            Value::String(next) => token = Some(next.clone()),
            other => panic!("unexpected next_page_token {other}"),
        }
    }
    assert_eq!(pages, 12);
    assert_eq!(seen, expected, "every entry once, in delivery order");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn updated_since_is_inclusive() {
    let (sandbox, client) = start(1000).await;
    let all = all_offers(&sandbox.state);
    // A timestamp shared by several offers, in the middle of the range.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for offer in &all {
        *counts
            .entry(offer["updated_at"].as_str().expect("ts"))
            .or_default() += 1;
    }
    let mut shared: Vec<&str> = counts
        .iter()
        .filter(|(_, n)| **n >= 3)
        .map(|(t, _)| *t)
        .collect();
    shared.sort_unstable();
    let since = shared[shared.len() / 2];
    let since_ts: Timestamp = since.parse().expect("ts");
    let expected: Vec<i64> = ids(&all)
        .into_iter()
        .zip(&all)
        .filter(|(_, o)| {
            o["updated_at"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
                >= Some(since_ts)
        })
        .map(|(id, _)| id)
        .collect();

    for (path, items) in [("/api/offers", "offers"), ("/api/v2/offers", "data")] {
        let url = format!("{}{path}", sandbox.marketplace_url());
        let page = get_json(
            &client,
            &url,
            &[("updated_since", since), ("max", "1000"), ("limit", "1000")],
        )
        .await;
        let offers = page[items].as_array().expect("array");
        assert_eq!(ids(offers), expected, "{path}");
        let at_since = offers.iter().filter(|o| o["updated_at"] == since).count();
        assert_eq!(
            at_since, counts[since],
            "{path} includes every offer at the cursor"
        );
    }
    // The same instant in another offset still matches.
    let shifted = since_ts
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(1)))
        .to_string();
    let shifted = shifted.split('[').next().expect("offset form").to_owned();
    let url = format!("{}/api/offers", sandbox.marketplace_url());
    let page = get_json(&client, &url, &[("updated_since", shifted.as_str())]).await;
    assert_eq!(page["total_count"], expected.len());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn page_size_is_capped_at_1000() {
    let (sandbox, client) = start(1200).await;
    let page = get_json(
        &client,
        &format!("{}/api/offers", sandbox.marketplace_url()),
        &[("max", "5000")],
    )
    .await;
    assert_eq!(page["offers"].as_array().map(Vec::len), Some(1000));
    assert_eq!(page["total_count"], 1200);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn malformed_queries_get_json_400() {
    let (sandbox, client) = start(50).await;
    let cases = [
        ("/api/offers", ("updated_since", "yesterday")),
        ("/api/offers", ("offset", "-1")),
        ("/api/offers", ("max", "ten")),
        ("/api/v2/offers", ("page_token", "not-a-token")),
        ("/api/v2/offers", ("limit", "1.5")),
    ];
    for (path, param) in cases {
        let response = client
            .get(format!("{}{path}", sandbox.marketplace_url()))
            .query(&[param])
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{path} {param:?}"
        );
        let body: Value = response.json().await.expect("JSON error");
        assert!(body["error"].is_string(), "{body}");
    }
    sandbox.shutdown().await;
}

#[tokio::test]
async fn posted_offers_replace_by_id_and_default_to_now() {
    let (sandbox, client) = start(100).await;
    let before = Timestamp::now();
    let existing = all_offers(&sandbox.state)[0].clone();
    let id = existing["offer_id"].as_i64().expect("id");
    let mut changed = existing.clone();
    changed["quantity"] = json!(-3);
    changed
        .as_object_mut()
        .expect("object")
        .remove("updated_at");
    let new = json!({
        "offer_id": 1, "shop_id": 2001, "shop_sku": "SKU-New-1", "price": "9.5",
        "currency_iso_code": "EUR", "quantity": 4, "updated_at": "2030-01-01T00:00:00+01:00",
        "last_updated_by": "marketplace"
    });
    let response = client
        .post(format!(
            "{}/_sandbox/marketplace/offers",
            sandbox.base_url()
        ))
        .json(&json!([changed, new]))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);

    let summary = sandbox.summary();
    assert_eq!(
        summary.offers, 101,
        "the changed offer replaced its original"
    );
    assert!(!summary.valid_offer_ids.contains(&id));
    assert_eq!(
        summary.valid_offer_ids.last(),
        Some(&1),
        "the newest offer is last"
    );

    // Posted offers get `now` truncated to whole seconds, so ask from that second.
    let since = Timestamp::from_second(before.as_second())
        .expect("ts")
        .to_string();
    let page = get_json(
        &client,
        &format!("{}/api/offers", sandbox.marketplace_url()),
        &[("updated_since", since.as_str())],
    )
    .await;
    assert_eq!(ids(page["offers"].as_array().expect("offers")), vec![id, 1]);
    assert_eq!(page["offers"][1]["updated_at"], "2029-12-31T23:00:00Z");

    let bad = client
        .post(format!(
            "{}/_sandbox/marketplace/offers",
            sandbox.base_url()
        ))
        .json(&json!([{ "title": "no id" }]))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        sandbox.summary().offers,
        101,
        "a refused batch changes nothing"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn summary_endpoint_matches_the_handle() {
    let (sandbox, client) = start(1000).await;
    let body = get_json(
        &client,
        &format!("{}/_sandbox/marketplace/summary", sandbox.base_url()),
        &[],
    )
    .await;
    let summary = sandbox.summary();
    assert_eq!(body["valid"], summary.valid);
    assert_eq!(body["duplicates"], 20);
    assert_eq!(body["ownership_violations"], 10);
    assert_eq!(body["valid_offer_ids"].as_array().map(Vec::len), Some(910));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn storefront_suppresses_replayed_idempotency_keys() {
    let (sandbox, client) = start(10).await;
    let first = put_offer(&client, &sandbox, "sku-ab12-3", Some("2001:1:t1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let body: Value = first.json().await.expect("JSON");
    assert_eq!(body, json!({ "sku": "sku-ab12-3", "status": "accepted" }));

    let replay = put_offer(&client, &sandbox, "sku-ab12-3", Some("2001:1:t1")).await;
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");

    let update = put_offer(&client, &sandbox, "sku-ab12-3", Some("2001:1:t2")).await;
    assert_eq!(
        update.status(),
        StatusCode::OK,
        "an existing SKU answers 200"
    );
    assert!(update.headers().get("idempotent-replayed").is_none());

    let records = sandbox.received();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].key.as_deref(), Some("2001:1:t1"));
    assert_eq!(records[0].method, "PUT");
    assert_eq!(records[0].path, "/storefront/catalog/offers/sku-ab12-3");
    assert_eq!(records[0].body["price_cents"], 12995);
    let stats = sandbox.storefront_stats();
    assert_eq!(
        (stats.requests, stats.records, stats.duplicates_suppressed),
        (3, 2, 1)
    );

    let received = get_json(
        &client,
        &format!("{}/_sandbox/storefront/received", sandbox.base_url()),
        &[],
    )
    .await;
    assert_eq!(received["records"].as_array().map(Vec::len), Some(2));
    assert_eq!(received["requests"], 3);
    assert_eq!(received["duplicates_suppressed"], 1);
    assert_eq!(received["missing_idempotency_key"], 0);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn storefront_counts_missing_keys_and_refuses_invalid_json() {
    let (sandbox, client) = start(10).await;
    for method in [reqwest::Method::POST, reqwest::Method::PATCH] {
        let response = client
            .request(
                method,
                format!("{}/catalog/offers/sku-1", sandbox.storefront_url()),
            )
            .json(&json!({ "stock": 3 }))
            .send()
            .await
            .expect("request");
        assert!(response.status().is_success());
    }
    let invalid = client
        .put(format!("{}/catalog/offers/sku-2", sandbox.storefront_url()))
        .header("Idempotency-Key", "k")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    let error: Value = invalid.json().await.expect("JSON error");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("JSON")));

    let stats = sandbox.storefront_stats();
    assert_eq!(stats.missing_idempotency_key, 2);
    assert_eq!(stats.records, 2);
    assert_eq!(stats.invalid_body, 1);
    // The refused write did not burn its key: a valid retry is accepted.
    let retry = put_offer(&client, &sandbox, "sku-2", Some("k")).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn fail_three_times_fails_exactly_three_writes_then_accepts() {
    let (sandbox, client) = start(10).await;
    let injected = client
        .post(format!("{}/_sandbox/storefront/faults", sandbox.base_url()))
        .json(&json!({ "status": 503, "times": 3 }))
        .send()
        .await
        .expect("request");
    assert_eq!(injected.status(), StatusCode::NO_CONTENT);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            put_offer(&client, &sandbox, "sku-1", Some("same-key"))
                .await
                .status(),
        );
    }
    assert_eq!(
        statuses,
        [503, 503, 503, 201, 200].map(|s| StatusCode::from_u16(s).expect("status"))
    );
    let stats = sandbox.storefront_stats();
    assert_eq!(stats.faulted, 3);
    assert_eq!(stats.records, 1, "failed writes are not recorded");
    assert_eq!(stats.duplicates_suppressed, 1);
    assert_eq!(sandbox.pending_storefront_faults(), 0);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let (sandbox, client) = start(10).await;
    sandbox.inject_storefront_fault(Fault::fail(429, 2).with_retry_after(1));
    for _ in 0..2 {
        let response = put_offer(&client, &sandbox, "sku-1", Some("k1")).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["status"], 429);
    }
    let accepted = put_offer(&client, &sandbox, "sku-1", Some("k1")).await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    assert!(accepted.headers().get("retry-after").is_none());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn faults_queue_in_order_and_clear() {
    let (sandbox, client) = start(10).await;
    sandbox.inject_storefront_fault(Fault::fail(503, 1));
    sandbox.inject_storefront_fault(Fault::fail(500, 1));
    let first = put_offer(&client, &sandbox, "a", Some("a")).await.status();
    let second = put_offer(&client, &sandbox, "b", Some("b")).await.status();
    let third = put_offer(&client, &sandbox, "c", Some("c")).await.status();
    assert_eq!(
        (first.as_u16(), second.as_u16(), third.as_u16()),
        (503, 500, 201)
    );

    let url = format!("{}/_sandbox/storefront/faults", sandbox.base_url());
    let injected = client
        .post(&url)
        .json(&json!({ "status": 500, "for_secs": 3600 }))
        .send()
        .await;
    assert_eq!(injected.expect("request").status(), StatusCode::NO_CONTENT);
    for key in ["d", "e", "f", "g"] {
        let status = put_offer(&client, &sandbox, key, Some(key)).await.status();
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "fails for the whole hour"
        );
    }
    let cleared = client.delete(&url).send().await.expect("request");
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    let status = put_offer(&client, &sandbox, "d", Some("d")).await.status();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(sandbox.received().len(), 2);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn latency_fault_delays_every_write() {
    let (sandbox, client) = start(10).await;
    sandbox.inject_storefront_fault(Fault::latency(200));
    sandbox.inject_storefront_fault(Fault::fail(503, 1));
    let started = Instant::now();
    let failed = put_offer(&client, &sandbox, "a", Some("a")).await.status();
    let accepted = put_offer(&client, &sandbox, "a", Some("a")).await.status();
    assert_eq!((failed.as_u16(), accepted.as_u16()), (503, 201));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "both writes were delayed"
    );
    sandbox.clear_storefront_faults();
    let started = Instant::now();
    put_offer(&client, &sandbox, "b", Some("b")).await;
    assert!(started.elapsed() < Duration::from_millis(200));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn invalid_faults_are_refused() {
    let (sandbox, client) = start(10).await;
    let url = format!("{}/_sandbox/storefront/faults", sandbox.base_url());
    for body in [
        json!({ "status": 200 }),
        json!({}),
        json!({ "status": 503, "tims": 3 }),
    ] {
        let response = client.post(&url).json(&body).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.expect("JSON error");
        assert!(error["error"].is_string());
    }
    assert_eq!(sandbox.pending_storefront_faults(), 0);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn marketplace_faults_make_the_source_unavailable() {
    let (sandbox, client) = start(10).await;
    let url = format!("{}/_sandbox/marketplace/faults", sandbox.base_url());
    let injected = client
        .post(&url)
        .json(&json!({ "status": 503, "times": 2 }))
        .send()
        .await;
    assert_eq!(injected.expect("request").status(), StatusCode::NO_CONTENT);
    for path in ["/api/offers", "/api/v2/offers"] {
        let response = client
            .get(format!("{}{path}", sandbox.marketplace_url()))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
    let page = get_json(
        &client,
        &format!("{}/api/offers", sandbox.marketplace_url()),
        &[],
    )
    .await;
    assert_eq!(page["total_count"], 10);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn alert_delivery_can_be_failed_then_is_stored() {
    let (sandbox, client) = start(10).await;
    sandbox.inject_alert_fault(Fault::fail(500, 1));
    let url = format!("{}/marketplace-ops", sandbox.alerts_url());
    let alert = json!({ "flow": "offers-to-storefront", "failure": "sink-unavailable" });
    let failed = client
        .post(&url)
        .json(&alert)
        .send()
        .await
        .expect("request");
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(sandbox.alerts().is_empty(), "a failed alert is not stored");
    let stored = client
        .post(&url)
        .json(&alert)
        .send()
        .await
        .expect("request");
    assert_eq!(stored.status(), StatusCode::NO_CONTENT);

    let alerts = sandbox.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].owner, "marketplace-ops");
    assert_eq!(alerts[0].body, alert);
    let listed = get_json(
        &client,
        &format!("{}/_sandbox/alerts", sandbox.base_url()),
        &[],
    )
    .await;
    assert_eq!(listed["alerts"][0]["owner"], "marketplace-ops");
    assert_eq!(listed["requests"], 2);

    let invalid = client
        .post(&url)
        .body("nope")
        .send()
        .await
        .expect("request");
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn health_urls_and_unknown_routes() {
    let (sandbox, client) = start(10).await;
    let base = sandbox.base_url();
    assert!(base.starts_with("http://127.0.0.1:"));
    assert_ne!(sandbox.addr().port(), 0);
    let health = client
        .get(format!("{base}/_sandbox/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), StatusCode::OK);
    let missing = client
        .get(format!("{base}/nowhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let error: Value = missing.json().await.expect("JSON error");
    assert!(error["error"].is_string());
    let env: HashMap<String, String> = sandbox.env().into_iter().collect();
    assert_eq!(env["MARKETPLACE_URL"], format!("{base}/marketplace"));
    assert_eq!(env["STOREFRONT_URL"], format!("{base}/storefront"));
    assert_eq!(env["ALERTS_URL"], format!("{base}/alerts"));
    sandbox.shutdown().await;
    assert!(
        client
            .get(format!("{base}/_sandbox/health"))
            .send()
            .await
            .is_err(),
        "stopped"
    );
}

#[test]
fn fail_for_secs_ends_by_the_wall_clock() {
    use super::faults::FaultQueue;
    let start = Instant::now();
    let mut queue = FaultQueue::default();
    queue.push(Fault::fail_for(500, 60), start);
    queue.push(Fault::fail(503, 1), start);
    let status = |decision: super::faults::FaultDecision| {
        decision.failure.map(|failure| failure.status_code())
    };
    // Within the minute every request fails with 500 and the 503 waits its turn.
    for offset in [0, 10, 59] {
        let decision = queue.decide(start + Duration::from_secs(offset));
        assert_eq!(status(decision), Some(500));
    }
    // Past the minute the 500 has expired; the queued 503 fails one request, then none.
    let later = start + Duration::from_secs(61);
    assert_eq!(status(queue.decide(later)), Some(503));
    assert_eq!(status(queue.decide(later)), None);
    assert_eq!(queue.len(later), 0);
}
