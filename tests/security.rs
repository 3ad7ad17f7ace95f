//! Security regressions of issue 6 (items 12-16 and 18): each test reproduces an attack or a
//! careless set-up against the real binary or the real HTTP surfaces on loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchyard::sandbox::{Sandbox, SandboxConfig};

use crate::daemon::Daemon;
use crate::util::copy_dir;

fn workspace(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("switchyard-security-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), &dir);
    dir
}

fn client() -> reqwest::Client {
    switchyard::connectors::http::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

// --- Item 12 --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_12_admin_refuses_foreign_host_and_cross_origin() {
    let sandbox = Sandbox::start(SandboxConfig {
        offers: 5,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let root = workspace("admin-guard");
    let daemon = Daemon::start_with(&root, &sandbox, &[]);
    let port = daemon
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("port");
    let client = client();
    let pause = format!("{}/admin/flows/offers-to-storefront/pause", daemon.base);
    let send = |request: reqwest::RequestBuilder| async move {
        request.send().await.expect("request").status().as_u16()
    };

    // DNS rebinding: the page's own name in `Host`, with or without the right port.
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        let status = send(client.post(&pause).header("Host", &host)).await;
        assert_eq!(status, 403, "POST pause with Host: {host}");
        let status = send(
            client
                .get(format!("{}/admin/flows", daemon.base))
                .header("Host", &host),
        )
        .await;
        assert_eq!(status, 403, "GET flows with Host: {host}");
    }
    // CSRF: a foreign page's `Origin`, and the `text/plain` bodies a form or `fetch` sends
    // without a preflight.
    let status = send(client.post(&pause).header("Origin", "http://evil.example")).await;
    assert_eq!(status, 403, "cross-origin pause");
    let status = send(client.post(&pause).header("Origin", "null")).await;
    assert_eq!(status, 403, "opaque-origin pause");
    let suppress = format!("{}/admin/dead-letters/1/suppress", daemon.base);
    let status = send(
        client
            .post(&suppress)
            .header("Content-Type", "text/plain")
            .body(r#"{"reason": "csrf", "actor": "evil"}"#),
    )
    .await;
    assert_eq!(status, 415, "text/plain suppress");
    let replay = format!("{}/admin/dead-letters/1/replay", daemon.base);
    let status = send(
        client
            .post(&replay)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("actor=evil"),
    )
    .await;
    assert_eq!(status, 415, "form-encoded replay");
    let status = send(client.post(&replay).body(r#"{"actor": "evil"}"#)).await;
    assert_eq!(status, 415, "a body without a content type");

    let flows: serde_json::Value = client
        .get(format!("{}/admin/flows", daemon.base))
        .send()
        .await
        .expect("flows")
        .json()
        .await
        .expect("json");
    let paused = flows
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "offers-to-storefront"))
        .map(|f| f["paused"].clone());
    assert_eq!(paused, Some(serde_json::json!(false)), "{flows}");

    // What the CLI, curl and scripts send still works: loopback names with the right port,
    // a same-origin `Origin`, no body or a JSON one.
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let status = send(client.post(&pause).header("Host", &host)).await;
        assert_eq!(status, 200, "pause with Host: {host}");
    }
    let status = send(
        client
            .post(&pause)
            .header("Origin", format!("http://127.0.0.1:{port}")),
    )
    .await;
    assert_eq!(status, 200, "same-origin pause");
    let status = send(
        client
            .post(&suppress)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(r#"{"reason": "test", "actor": "ops"}"#),
    )
    .await;
    assert_eq!(
        status, 404,
        "JSON suppress reaches the handler (no such letter)"
    );
    daemon.kill();
    sandbox.shutdown().await;
}

// --- Item 13 --------------------------------------------------------------------------------

/// Starts `serve` on `listen` with `token`; returns its exit code and stderr if it exits
/// within `wait`, or `None` (after killing it) if it kept running.
fn serve_with_token(
    root: &Path,
    listen: &str,
    token: &str,
    wait: Duration,
) -> Option<(i32, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .arg(root)
        .args(["--listen", listen, "--state"])
        .arg(root.join("state.db"))
        .env("SWITCHYARD_ADMIN_TOKEN", token)
        .env("MARKETPLACE_URL", "http://127.0.0.1:9")
        .env("STOREFRONT_URL", "http://127.0.0.1:9")
        .env("ALERTS_URL", "http://127.0.0.1:9")
        .env("OMS_URL", "http://127.0.0.1:9")
        .env("ORDERS_WEBHOOK_SECRET", "secret")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(pipe) = child.stderr.take() {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    stderr.push_str(&line);
                    stderr.push('\n');
                }
            }
            return Some((status.code().unwrap_or(-1), stderr));
        }
        if started.elapsed() > wait {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn item_13_weak_admin_token_is_refused_beyond_loopback() {
    let root = workspace("weak-token");
    for token in ["x", "0123456789abcdef0123456789abcde", &"a".repeat(64)] {
        let outcome = serve_with_token(&root, "0.0.0.0:0", token, Duration::from_secs(10));
        let Some((code, stderr)) = outcome else {
            panic!(
                "serve accepted the {}-character token {token:?} on 0.0.0.0",
                token.len()
            );
        };
        assert_ne!(code, 0, "{stderr}");
        assert!(
            stderr.contains("at least 32 characters") && stderr.contains("openssl rand -hex 32"),
            "the error names the rule and how to make a token: {stderr}"
        );
    }
    // A generated token is accepted: the daemon keeps running.
    let strong = "3f9a1c0e7b2d4f6a8c1e3b5d7f9a2c4e6b8d0f1a3c5e7b9d2f4a6c8e0b1d3f5a";
    let outcome = serve_with_token(&root, "0.0.0.0:0", strong, Duration::from_secs(3));
    assert!(outcome.is_none(), "a strong token was refused: {outcome:?}");
}

// --- Item 14 --------------------------------------------------------------------------------

mod webhook_replay {
    use std::sync::Arc;
    use std::time::Duration;

    use switchyard::daemon::webhook::sign;
    use switchyard::daemon::{DaemonState, router};
    use switchyard::spec::model::{Secret, Trigger, WebhookAuth};
    use switchyard::spec::{EnvLookup, LoadOptions};
    use switchyard::store::Store;

    pub(super) const SECRET: &str = "replay-secret";

    pub(super) struct Intake {
        pub(super) url: String,
        pub(super) state: Arc<DaemonState>,
    }

    pub(super) async fn start() -> Intake {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
        let env = EnvLookup::empty()
            .with("MARKETPLACE_URL", "http://127.0.0.1:9")
            .with("STOREFRONT_URL", "http://127.0.0.1:9")
            .with("ALERTS_URL", "http://127.0.0.1:9")
            .with("OMS_URL", "http://127.0.0.1:9")
            .with("ORDERS_WEBHOOK_SECRET", "unused");
        let loaded = switchyard::spec::load_workspace(&root, &LoadOptions { strict: false, env });
        let mut workspace = loaded.workspace.expect("the reference workspace is valid");
        let flow = workspace
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
            max_body: 4096,
        });
        let state = DaemonState::new(workspace, Store::in_memory().expect("store"), None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/hooks/offers",
            listener.local_addr().expect("addr")
        );
        let app = router(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Intake { url, state }
    }

    impl Intake {
        pub(super) async fn post(
            &self,
            event_id: &str,
            timestamp: i64,
            signature: &str,
            body: &str,
        ) -> u16 {
            super::client()
                .post(&self.url)
                .header("X-Event-Id", event_id)
                .header("X-Timestamp", timestamp.to_string())
                .header("X-Signature", signature)
                .body(body.to_owned())
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }

        pub(super) fn stored(&self) -> Vec<String> {
            self.state
                .store
                .inbox_pending("offers-to-storefront", 100)
                .expect("inbox")
                .into_iter()
                .map(|e| e.event_id)
                .collect()
        }
    }

    pub(super) fn legacy_signature(timestamp: i64, body: &str) -> String {
        sign(SECRET.as_bytes(), timestamp, body.as_bytes())
    }
}

#[tokio::test]
async fn item_14_replayed_signature_with_a_new_event_id_is_refused() {
    let intake = webhook_replay::start().await;
    let body = r#"{"offer_id": "o-1", "price": "9.99"}"#;
    let timestamp = jiff::Timestamp::now().as_second();
    // A sender that signs `"<timestamp>.<body>"` only.
    let signature = webhook_replay::legacy_signature(timestamp, body);
    assert_eq!(intake.post("evt-1", timestamp, &signature, body).await, 202);
    // The sender's own redelivery (same event ID, same signature) is still a duplicate.
    assert_eq!(intake.post("evt-1", timestamp, &signature, body).await, 200);
    // An attacker who captured the request replays it under fresh event IDs.
    for forged_id in ["evt-2", "evt-1-again", "x"] {
        let status = intake.post(forged_id, timestamp, &signature, body).await;
        assert_eq!(status, 401, "replay as {forged_id} was not refused");
    }
    assert_eq!(intake.stored(), vec!["evt-1".to_owned()]);
}
