//! Security regressions of issue 6 (items 12-16 and 18): each test reproduces an attack or a
//! careless set-up against the real binary or the real HTTP surfaces on loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchyard::sandbox::{Sandbox, SandboxConfig};

use crate::daemon::Daemon;
use crate::util::{TestState, copy_dir};

/// A private copy of the reference workspace on a fresh state store (held by the guard).
fn workspace(name: &str) -> (PathBuf, TestState) {
    let dir =
        std::env::temp_dir().join(format!("switchyard-security-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), &dir);
    let state = TestState::attach(&format!("security_{name}"), &dir);
    (dir, state)
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
    let (root, _state) = workspace("admin-guard");
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
    let suppress = format!("{}/admin/dead-letters/999999999/suppress", daemon.base);
    let status = send(
        client
            .post(&suppress)
            .header("Content-Type", "text/plain")
            .body(r#"{"reason": "csrf", "actor": "evil"}"#),
    )
    .await;
    assert_eq!(status, 415, "text/plain suppress");
    let replay = format!("{}/admin/dead-letters/999999999/replay", daemon.base);
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
        .env("MARKETPLACE_CLIENT_ID", "x")
        .env("MARKETPLACE_CLIENT_SECRET", "x")
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
    let (root, _state) = workspace("weak-token");
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
            .with("MARKETPLACE_CLIENT_ID", "test-client")
            .with("MARKETPLACE_CLIENT_SECRET", "test-secret")
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

        pub(super) async fn stored(&self) -> Vec<String> {
            self.state
                .store
                .inbox_pending("offers-to-storefront", 100)
                .await
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
    assert_eq!(intake.stored().await, vec!["evt-1".to_owned()]);
}

// --- Item 15 --------------------------------------------------------------------------------

mod redirects {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::any;

    /// Path and headers of every request a server received.
    pub(super) type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

    /// A loopback server that redirects `/away-port` to `other`, `/away-host` to the same port
    /// under the name `localhost`, `/same` to its own `/landing`, and records every request.
    pub(super) async fn server(seen: Seen, other: Option<SocketAddr>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().fallback(any(move |uri: axum::http::Uri, headers: HeaderMap| {
            let seen = Arc::clone(&seen);
            async move {
                let path = uri.path().to_owned();
                seen.lock().expect("lock").push((path.clone(), headers));
                let location = match path.as_str() {
                    "/away-port" => other.map(|o| format!("http://{o}/landing")),
                    "/away-host" => Some(format!("http://localhost:{}/landing", addr.port())),
                    "/same" => Some("/landing".to_owned()),
                    _ => None,
                };
                match location {
                    Some(location) => (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(axum::http::header::LOCATION, location)],
                    )
                        .into_response(),
                    None => (StatusCode::OK, axum::Json(serde_json::json!({"ok": true})))
                        .into_response(),
                }
            }
        }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }
}

#[tokio::test]
async fn item_15_credential_headers_are_not_forwarded_on_cross_origin_redirects() {
    use axum::http::HeaderMap;
    use redirects::Seen;
    use switchyard::connectors::Outgoing;
    use switchyard::connectors::http::{HttpSink, HttpSystem};

    let elsewhere: Seen = Seen::default();
    let other = redirects::server(std::sync::Arc::clone(&elsewhere), None).await;
    let origin: Seen = Seen::default();
    let addr = redirects::server(std::sync::Arc::clone(&origin), Some(other)).await;
    let config: switchyard::connectors::http::HttpSystemConfig =
        serde_json::from_value(serde_json::json!({
            "base_url": format!("http://{addr}"),
            "headers": {"X-Api-Key": "k-secret-123", "X-Tenant": "acme"},
            "auth": {"bearer_env": "SHOP_TOKEN"},
        }))
        .expect("system config");
    let system = HttpSystem::new(&config, Duration::from_secs(5), |name| {
        (name == "SHOP_TOKEN").then(|| "b-secret-456".to_owned())
    })
    .expect("system");
    let record = Outgoing {
        idempotency_key: "key-1".into(),
        body: serde_json::json!({"offer_id": "o-1"}),
    };
    for path in ["/away-port", "/away-host", "/same"] {
        let sink_config: switchyard::connectors::http::HttpToConfig = serde_json::from_value(
            serde_json::json!({"request": {"method": "POST", "path": path}}),
        )
        .expect("sink config");
        let sink = HttpSink::new(system.clone(), &sink_config).expect("sink");
        sink.send(&record)
            .await
            .unwrap_or_else(|f| panic!("{path}: {}", f.message));
    }

    let landed = |seen: &Seen| -> Vec<HeaderMap> {
        let seen = seen.lock().expect("lock");
        seen.iter()
            .filter(|(path, _)| path == "/landing")
            .map(|(_, headers)| headers.clone())
            .collect()
    };
    let leaked = |headers: &HeaderMap| {
        ["x-api-key", "x-tenant", "authorization"]
            .into_iter()
            .filter(|name| headers.contains_key(*name))
            .collect::<Vec<_>>()
    };
    // Another port, and the same port under another name, are other origins.
    let other_origin = landed(&elsewhere);
    assert_eq!(other_origin.len(), 1);
    assert_eq!(leaked(&other_origin[0]), Vec::<&str>::new(), "to {other}");
    let at_origin = landed(&origin);
    assert_eq!(at_origin.len(), 2, "one via localhost, one same-origin");
    let by_host: Vec<_> = at_origin
        .iter()
        .map(|h| {
            let host = h
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (host.starts_with("localhost"), leaked(h))
        })
        .collect();
    for (via_localhost, leaked) in by_host {
        if via_localhost {
            assert_eq!(leaked, Vec::<&str>::new(), "to localhost");
        } else {
            // Same origin: the credentials are still sent, as before.
            assert_eq!(leaked, vec!["x-api-key", "x-tenant", "authorization"]);
        }
    }
    // The idempotency key is not a credential: it follows the record.
    assert!(other_origin[0].contains_key("idempotency-key"));
}

// --- Item 16 --------------------------------------------------------------------------------

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// SQLite only: it reads the alert outbox from the state file directly.
#[test]
fn item_16_url_credentials_never_reach_logs_alerts_or_the_outbox() {
    let (root, _state) = workspace("url-credentials");
    // Source reads are retried under the flow's policy: a short window ends the run soon.
    let flow = root.join("flows").join("offers-to-storefront.yaml");
    let text = std::fs::read_to_string(&flow).expect("flow");
    let text = text.replace(
        "initial: 1s, max_delay: 2m, window: 30m",
        "initial: 100ms, max_delay: 200ms, window: 1s",
    );
    std::fs::write(&flow, text).expect("flow");
    let state = root.join("state.db");
    let source_port = closed_port();
    let alerts_port = closed_port();
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--log-format", "json", "run"])
        .arg(&root)
        .arg("offers-to-storefront")
        .arg("--state")
        .arg(&state)
        .env(
            "MARKETPLACE_URL",
            format!("http://sy-user:s3cr3t-pass@127.0.0.1:{source_port}/api"),
        )
        .env("MARKETPLACE_CLIENT_ID", "client")
        .env("MARKETPLACE_CLIENT_SECRET", "XCLIENTSECRETX")
        .env("STOREFRONT_URL", "http://127.0.0.1:9")
        .env("OMS_URL", "http://127.0.0.1:9")
        .env("ORDERS_WEBHOOK_SECRET", "secret")
        .env(
            "ALERTS_URL",
            format!("http://127.0.0.1:{alerts_port}/services/T000/B000/XSECRETX"),
        )
        .env_remove("STOREFRONT_TOKEN")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The run did reach both leaky paths: the source failed and the alert was not delivered.
    assert!(stderr.contains("Source read failed"), "{stderr}");
    assert!(stderr.contains("Alert delivery failed"), "{stderr}");
    for secret in ["s3cr3t-pass", "sy-user", "XSECRETX", "XCLIENTSECRETX"] {
        assert!(
            !stderr.contains(secret),
            "`{secret}` in the logs:\n{stderr}"
        );
    }
    let conn = rusqlite::Connection::open(&state).expect("state");
    let rows: Vec<(String, Option<String>)> = conn
        .prepare("SELECT payload, last_error FROM alert_outbox")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .expect("outbox");
    assert!(!rows.is_empty(), "an alert was queued");
    for (payload, last_error) in &rows {
        assert!(last_error.is_some(), "the delivery failure was recorded");
        let text = format!("{payload} {}", last_error.as_deref().unwrap_or(""));
        for secret in ["s3cr3t-pass", "sy-user", "XSECRETX", "XCLIENTSECRETX"] {
            assert!(!text.contains(secret), "`{secret}` in the outbox: {text}");
        }
        assert!(text.contains(&format!("127.0.0.1:{source_port}")), "{text}");
    }
}

// --- Item 18 --------------------------------------------------------------------------------

/// Runs `switchyard args` with its stdout a pipe whose reading end is already closed.
fn with_closed_stdout(dir: &Path, args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .current_dir(dir)
        .args(args)
        .envs(crate::util::FIXTURE_ENV.iter().copied())
        .env("OMS_URL", "http://oms.test")
        .env("ORDERS_WEBHOOK_SECRET", "secret")
        .env("MARKETPLACE_CLIENT_ID", "client")
        .env("MARKETPLACE_CLIENT_SECRET", "secret")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn item_18_no_command_panics_when_stdout_is_closed() {
    let (root, _state) = workspace("epipe");
    // Dead letters to show: the sandbox seeds invalid offers.
    let seeded = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("run")
        .arg(&root)
        .args([
            "offers-to-storefront",
            "--sandbox",
            "--sandbox-offers",
            "400",
        ])
        .stdout(Stdio::null())
        .output()
        .expect("run");
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let ws = root.to_str().expect("utf-8 path");
    for args in [
        &["dlq", "show", ws, "1"][..],
        &["dlq", "list", ws],
        &["dlq", "list", ws, "--json"],
        &["dlq", "export", ws],
        &["explain", ws],
        &["validate", ws],
        &[
            "run",
            ws,
            "offers-to-storefront",
            "--sandbox",
            "--sandbox-offers",
            "5",
            "--json",
        ],
    ] {
        let (code, stderr) = with_closed_stdout(&root, args);
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}:\n{stderr}");
        assert_eq!(code, 0, "{args:?}:\n{stderr}");
    }
}
