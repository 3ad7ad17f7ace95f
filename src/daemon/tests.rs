//! Unit tests of the daemon's HTTP surfaces: each router is served on a loopback port and
//! driven with reqwest (the crate has no `tower` dependency for `oneshot`).

use std::sync::Arc;
use std::time::Duration;

use super::webhook::sign;
use super::{DaemonState, router};
use crate::spec::model::{Flow, Secret, Trigger, WebhookAuth, Workspace};
use crate::spec::{EnvLookup, LoadOptions};
use crate::store::Store;

const SECRET: &str = "test-secret";

fn workspace() -> Workspace {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let env = EnvLookup::empty()
        .with("MARKETPLACE_URL", "http://127.0.0.1:9/marketplace")
        .with("MARKETPLACE_CLIENT_ID", "test-client")
        .with("MARKETPLACE_CLIENT_SECRET", "test-secret")
        .with("STOREFRONT_URL", "http://127.0.0.1:9/storefront")
        .with("ALERTS_URL", "http://127.0.0.1:9/alerts");
    let loaded = crate::spec::load_workspace(&root, &LoadOptions { strict: false, env });
    let mut workspace = loaded.workspace.expect("the reference workspace is valid");
    let flow: &mut Flow = workspace
        .flows
        .get_mut("offers-to-storefront")
        .expect("reference flow");
    flow.trigger = Trigger::Webhook("/hooks/offers".into());
    flow.webhook_auth = Some(WebhookAuth {
        secret_env: "OFFERS_SECRET".into(),
        secret: Secret::new(SECRET),
        signature_header: "X-Signature".into(),
        timestamp_header: "X-Timestamp".into(),
        event_id_header: "X-Event-Id".into(),
        tolerance: Duration::from_secs(300),
        max_body: 1024,
    });
    workspace
}

struct Server {
    base: String,
    state: Arc<DaemonState>,
    client: reqwest::Client,
}

async fn start(token: Option<&str>) -> Server {
    let state = DaemonState::new(
        workspace(),
        Store::in_memory().unwrap(),
        token.map(Into::into),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    state.set_listen_addr(addr);
    let base = format!("http://{addr}");
    let app = router(Arc::clone(&state));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        base,
        state,
        client: crate::connectors::http::client_builder().build().unwrap(),
    }
}

impl Server {
    async fn post_event(
        &self,
        event_id: Option<&str>,
        timestamp: i64,
        signature: Option<String>,
        body: &str,
    ) -> reqwest::StatusCode {
        let mut request = self
            .client
            .post(format!("{}/hooks/offers", self.base))
            .header("X-Timestamp", timestamp.to_string())
            .body(body.to_owned());
        if let Some(id) = event_id {
            request = request.header("X-Event-Id", id);
        }
        if let Some(signature) = signature {
            request = request.header("X-Signature", signature);
        }
        request.send().await.unwrap().status()
    }

    async fn stored(&self) -> usize {
        self.state
            .store
            .inbox_pending("offers-to-storefront", 100)
            .await
            .unwrap()
            .len()
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test]
async fn valid_signature_is_stored_and_a_redelivery_is_not() {
    let server = start(None).await;
    let body = r#"{"offer_id": "1"}"#;
    let ts = now();
    let signature = sign(SECRET.as_bytes(), ts, body.as_bytes());
    let first = server
        .post_event(Some("evt-1"), ts, Some(signature.clone()), body)
        .await;
    assert_eq!(first, reqwest::StatusCode::ACCEPTED);
    let again = server
        .post_event(Some("evt-1"), ts, Some(signature), body)
        .await;
    assert_eq!(again, reqwest::StatusCode::OK);
    assert_eq!(server.stored().await, 1);
    let metrics = server.state.render_metrics().await;
    assert!(
        metrics.contains(
            "switchyard_webhook_events_total{flow=\"offers-to-storefront\",outcome=\"accepted\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_webhook_intake_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test]
async fn forged_signature_is_refused_and_not_stored() {
    let server = start(None).await;
    let ts = now();
    let forged = sign(b"another-secret", ts, b"{}");
    let status = server
        .post_event(Some("evt-1"), ts, Some(forged), "{}")
        .await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    // Signed body, then tampered.
    let signed = sign(SECRET.as_bytes(), ts, b"{}");
    let status = server
        .post_event(Some("evt-2"), ts, Some(signed), r#"{"x":1}"#)
        .await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(server.stored().await, 0);
}

#[tokio::test]
async fn stale_timestamp_is_refused() {
    let server = start(None).await;
    let ts = now() - 301;
    let signature = sign(SECRET.as_bytes(), ts, b"{}");
    let status = server
        .post_event(Some("evt-1"), ts, Some(signature), "{}")
        .await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(server.stored().await, 0);
}

#[tokio::test]
async fn missing_headers_are_refused() {
    let server = start(None).await;
    let ts = now();
    let status = server.post_event(Some("evt-1"), ts, None, "{}").await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    let signature = sign(SECRET.as_bytes(), ts, b"{}");
    let status = server.post_event(None, ts, Some(signature), "{}").await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(server.stored().await, 0);
}

#[tokio::test]
async fn oversized_body_is_refused_with_413() {
    let server = start(None).await;
    let body = format!(r#"{{"pad": "{}"}}"#, "x".repeat(2048));
    let ts = now();
    let signature = sign(SECRET.as_bytes(), ts, body.as_bytes());
    let status = server
        .post_event(Some("evt-1"), ts, Some(signature), &body)
        .await;
    assert_eq!(status, reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(server.stored().await, 0);
}

#[tokio::test]
async fn intake_answers_503_while_shutting_down() {
    let server = start(None).await;
    server
        .state
        .shutting_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let ts = now();
    let signature = sign(SECRET.as_bytes(), ts, b"{}");
    let status = server
        .post_event(Some("evt-1"), ts, Some(signature), "{}")
        .await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let ready = server
        .client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn admin_api_needs_the_token_and_pauses_flows() {
    let server = start(Some("s3cret")).await;
    let url = format!("{}/admin/flows", server.base);
    let denied = server.client.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), reqwest::StatusCode::UNAUTHORIZED);
    let wrong = server
        .client
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    let pause = server
        .client
        .post(format!(
            "{}/admin/flows/offers-to-storefront/pause",
            server.base
        ))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(pause.status(), reqwest::StatusCode::OK);
    let flows: serde_json::Value = server
        .client
        .get(&url)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offers = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "offers-to-storefront")
        .expect("offers-to-storefront is listed");
    assert_eq!(offers["paused"], true);
    assert_eq!(offers["trigger"], "webhook /hooks/offers");
    let unknown = server
        .client
        .post(format!("{}/admin/flows/nope/pause", server.base))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);
    let body: serde_json::Value = unknown.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    let letters = server
        .client
        .get(format!("{}/admin/dead-letters?status=bogus", server.base))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(letters.status(), reqwest::StatusCode::BAD_REQUEST);
    let deadlines: serde_json::Value = server
        .client
        .get(format!("{}/admin/deadlines", server.base))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deadlines, serde_json::json!([]));
}

#[tokio::test]
async fn an_event_signed_with_its_id_is_accepted_and_its_signature_fits_no_other_id() {
    let server = start(None).await;
    let body = r#"{"offer_id": "1"}"#;
    let ts = now();
    let signature = super::webhook::sign_event(SECRET.as_bytes(), ts, "evt-1", body.as_bytes());
    let first = server
        .post_event(Some("evt-1"), ts, Some(signature.clone()), body)
        .await;
    assert_eq!(first, reqwest::StatusCode::ACCEPTED);
    let moved = server
        .post_event(Some("evt-2"), ts, Some(signature), body)
        .await;
    assert_eq!(moved, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(server.stored().await, 1);
}

#[test]
fn the_replay_cache_forgets_a_signature_once_it_is_stale() {
    use super::webhook::{ReplayCache, ReplayRefusal, Verified};
    let cache = ReplayCache::default();
    let event = |id: &str| Verified {
        event_id: id.into(),
        event_id_signed: false,
        signed_at: 1_000,
        mac: [7; 32],
    };
    assert_eq!(cache.admit("flow", &event("a"), 1_301, 1_000), Ok(()));
    assert_eq!(cache.admit("flow", &event("a"), 1_301, 1_200), Ok(()));
    assert_eq!(
        cache.admit("flow", &event("b"), 1_301, 1_301),
        Err(ReplayRefusal::Replayed)
    );
    assert_eq!(
        cache.admit("other-flow", &event("a"), 1_301, 1_301),
        Err(ReplayRefusal::Replayed),
        "the same signature sent to another flow sharing the secret"
    );
    // Past the expiry the timestamp check refuses it anyway; the entry is gone.
    assert_eq!(cache.admit("flow", &event("b"), 1_600, 1_302), Ok(()));
}

#[test]
fn admin_token_strength_rule() {
    use super::admin::{TokenWeakness, check_token_strength};
    assert_eq!(check_token_strength("x"), Err(TokenWeakness::TooShort(1)));
    assert_eq!(
        check_token_strength(&"ab".repeat(20)),
        Err(TokenWeakness::Repetitive(2))
    );
    assert_eq!(
        check_token_strength(&format!("{} ", "0123456789abcdef".repeat(2))),
        Err(TokenWeakness::NotVisibleAscii)
    );
    // `openssl rand -hex 16` and `openssl rand -base64 32` shapes.
    assert_eq!(
        check_token_strength("9f86d081884c7d659a2feaa0c55ad015"),
        Ok(())
    );
    assert_eq!(
        check_token_strength("n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="),
        Ok(())
    );
}

#[tokio::test]
async fn admin_api_refuses_everything_until_it_knows_its_listen_address() {
    let state = DaemonState::new(workspace(), Store::in_memory().unwrap(), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(Arc::clone(&state));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = crate::connectors::http::client_builder().build().unwrap();
    let flows = client
        .get(format!("{base}/admin/flows"))
        .send()
        .await
        .unwrap();
    assert_eq!(flows.status(), reqwest::StatusCode::FORBIDDEN);
}

/// A file-backed store in a fresh folder, so a second connection can write what intake never
/// would.
fn file_store(name: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-daemon-{name}-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.db");
    (Store::open(&path).unwrap(), path)
}

const FLOW: &str = "offers-to-storefront";

#[tokio::test]
async fn item_02_undecodable_inbox_event_is_dead_lettered() {
    let (store, _) = file_store("undecodable");
    // Intake refuses such bodies; an older version or a repair by hand can still store them.
    for (event, body) in [("evt-truncated", "{\"offer_id\": 1"), ("evt-scalar", "42")] {
        store.inbox_insert(FLOW, event, body).await.unwrap();
    }
    let state = DaemonState::new(workspace(), store.clone(), None);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    super::scheduler::drain_inbox(&state, FLOW, &stop).await;

    assert_eq!(store.inbox_count(FLOW, "pending").await.unwrap(), 0);
    assert_eq!(store.inbox_count(FLOW, "processed").await.unwrap(), 2);
    let letters = store
        .dead_letters(&crate::store::DeadLetterFilter::default())
        .await
        .unwrap();
    let got: Vec<_> = letters
        .iter()
        .map(|l| {
            (
                l.letter.failure.as_str(),
                l.letter.reason.as_str(),
                l.letter.owner.as_str(),
                l.letter.record.as_bytes(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "contract-violation",
                "malformed_json",
                "seller-support",
                &b"{\"offer_id\": 1"[..]
            ),
            (
                "contract-violation",
                "malformed_json",
                "seller-support",
                b"42"
            ),
        ]
    );
    assert!(letters[0].letter.error.contains("evt-truncated"));
    // Each owner is told, as for any dead letter.
    let alerts = store.due_alerts(i64::MAX, 10).await.unwrap();
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().all(|a| a.alert.owner == "seller-support"));
    let metrics = state.render_metrics().await;
    assert!(
        metrics.contains(
            "switchyard_records_dead_lettered_total{flow=\"offers-to-storefront\",\
             failure=\"contract-violation\",owner=\"seller-support\"} 2"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn item_02_non_utf8_inbox_event_does_not_block_the_inbox() {
    let (store, path) = file_store("non-utf8");
    store
        .inbox_insert(FLOW, "evt-latin1", "placeholder")
        .await
        .unwrap();
    store
        .inbox_insert(FLOW, "evt-empty-array", "[]")
        .await
        .unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE inbox SET body = CAST(X'7B226F66666572223A2263616FE9227D' AS TEXT)
         WHERE event_id = 'evt-latin1'",
        [],
    )
    .unwrap();
    let state = DaemonState::new(workspace(), store.clone(), None);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    super::scheduler::drain_inbox(&state, FLOW, &stop).await;

    assert_eq!(store.inbox_count(FLOW, "pending").await.unwrap(), 0);
    let letters = store
        .dead_letters(&crate::store::DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(
        letters[0].letter.record.as_bytes(),
        b"{\"offer\":\"cao\xe9\"}",
        "the body byte for byte"
    );
    assert!(letters[0].letter.error.contains("not UTF-8"));
}

/// `--watch` leaves the SQLite state file out (every commit changes it) and, with a store
/// that is no file (PostgreSQL), watches every workspace file.
#[test]
fn the_watch_leaves_out_the_state_file_and_only_it() {
    let dir = std::env::temp_dir().join(format!("switchyard-watch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("switchyard.yaml"), "version: 1\n").unwrap();
    std::fs::write(dir.join("flows/a.yaml"), "flow: a\n").unwrap();
    std::fs::write(dir.join("state.db"), "").unwrap();
    std::fs::write(dir.join("state.db-wal"), "").unwrap();
    let names = |state: Option<&std::path::Path>| -> Vec<String> {
        super::fingerprint(&dir, state)
            .into_iter()
            .map(|(path, _, _)| path.strip_prefix(&dir).unwrap().display().to_string())
            .collect()
    };
    assert_eq!(
        names(Some(&dir.join("state.db"))),
        ["flows/a.yaml", "switchyard.yaml"]
    );
    assert_eq!(
        names(None),
        [
            "flows/a.yaml",
            "state.db",
            "state.db-wal",
            "switchyard.yaml"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn inbox_events_are_only_taken_under_the_flow_lease() {
    let (store, _) = file_store("leased");
    store
        .inbox_insert(FLOW, "evt-1", r#"{"offer_id": "o-1"}"#)
        .await
        .unwrap();
    // Another daemon runs the flow.
    let other = crate::store::LockHolder::this_process();
    store.acquire_flow_lock(FLOW, &other).await.unwrap();
    let state = DaemonState::new(workspace(), store.clone(), None);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    super::scheduler::drain_inbox(&state, FLOW, &stop).await;

    // The event is not taken: still pending, with the failed attempt recorded.
    let pending = store.inbox_pending(FLOW, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event_id, "evt-1");
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(store.inbox_count(FLOW, "processed").await.unwrap(), 0);
    let letters = store
        .dead_letters(&crate::store::DeadLetterFilter::default())
        .await
        .unwrap();
    assert!(letters.is_empty(), "{letters:#?}");
}
