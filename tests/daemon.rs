//! `switchyard serve`: the real binary against a copy of the reference workspace, with the
//! in-process sandbox standing in for the marketplace and the storefront.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::daemon::webhook::sign;
use switchyard::sandbox::{Sandbox, SandboxConfig};

use crate::util::{TestState, copy_dir};

const FLOW: &str = "offers-to-storefront";
const SECRET: &str = "integration-secret";

pub(crate) struct Daemon {
    child: Child,
    pub(crate) base: String,
    logs: Arc<Mutex<String>>,
    client: reqwest::Client,
}

impl Daemon {
    fn start(workspace: &Path, sandbox: &Sandbox) -> Daemon {
        Daemon::start_with(workspace, sandbox, &[])
    }

    /// Starts `serve` on a free loopback port with the sandbox's URLs and `extra` variables.
    pub(crate) fn start_with(
        workspace: &Path,
        sandbox: &Sandbox,
        extra: &[(&str, &str)],
    ) -> Daemon {
        let mut env = sandbox.env();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Daemon::start_env(workspace, &env)
    }

    /// Starts `serve` on a free loopback port with the variables `env` (no sandbox).
    pub(crate) fn start_env(workspace: &Path, env: &[(String, String)]) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["--log-format", "json", "serve"])
            .arg(workspace)
            .args(["--listen", "127.0.0.1:0", "--shutdown-timeout", "5s"])
            .env("OFFERS_WEBHOOK_SECRET", SECRET)
            .env_remove("SWITCHYARD_ADMIN_TOKEN")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start switchyard serve");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Daemon listening.") {
                    let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    let _ = tx.send(value["listen"].as_str().unwrap_or_default().to_owned());
                }
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("daemon did not start: {}", logs.lock().unwrap()));
        Daemon {
            child,
            base: format!("http://{addr}"),
            logs,
            client: client(),
        }
    }

    pub(crate) fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Waits until `/metrics` contains `needle`.
    pub(crate) async fn wait_for_metric(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, text) = self.get("/metrics").await;
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in:\n{text}\nlogs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, then the exit code (must come within 10 s).
    /// SIGKILL: no chance to clean up.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn terminate(mut self) -> (i32, Duration) {
        let started = Instant::now();
        self.signal("TERM");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status.code().unwrap_or(-1), started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("daemon did not exit within 10 s: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn client() -> reqwest::Client {
    switchyard::connectors::http::client_builder()
        .build()
        .expect("client")
}

/// A private copy of the reference workspace on a fresh state store (held by the guard).
fn workspace(name: &str) -> (PathBuf, TestState) {
    let dir = std::env::temp_dir().join(format!("switchyard-daemon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), &dir);
    let state = TestState::attach(&format!("daemon_{name}"), &dir);
    (dir, state)
}

fn flow_file(root: &Path) -> PathBuf {
    root.join("flows").join(format!("{FLOW}.yaml"))
}

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig {
        offers: 30,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_polls_delivers_and_exits_zero_on_sigterm() {
    let sandbox = sandbox().await;
    let (root, _state) = workspace("poll");
    let daemon = Daemon::start(&root, &sandbox);
    assert_eq!(daemon.get("/healthz").await.0, 200);
    assert_eq!(daemon.get("/readyz").await.0, 200);
    let metrics = daemon
        .wait_for_metric("switchyard_run_duration_seconds_count{flow=\"offers-to-storefront\"} 1")
        .await;
    assert!(metrics.contains("switchyard_records_delivered_total{flow=\"offers-to-storefront\"}"));
    // The run's duration is observed when its last event is handled; the flow's status (and
    // with it the freshness gauge) is updated by the scheduler right after: wait for it too
    // rather than race it (it failed once on a loaded machine).
    let metrics = daemon
        .wait_for_metric("switchyard_flow_freshness_seconds{flow=\"offers-to-storefront\"}")
        .await;
    assert!(
        metrics.contains("# TYPE switchyard_dead_letters_open gauge"),
        "{metrics}"
    );
    assert!(sandbox.storefront_stats().records > 0);
    let (code, elapsed) = daemon.terminate();
    assert_eq!(code, 0);
    assert!(elapsed < Duration::from_secs(10));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_workspace_keeps_the_running_one() {
    let sandbox = sandbox().await;
    let (root, _state) = workspace("reload");
    let daemon = Daemon::start(&root, &sandbox);
    let file = flow_file(&root);
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        original.replace("trigger: { poll: 30s }", "trigger: { poll: soon }"),
    )
    .unwrap();
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.logs().contains("keeping the running configuration") {
        assert!(Instant::now() < deadline, "{}", daemon.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = daemon.logs();
    assert!(logs.contains("error[E0403]"), "{logs}");
    assert_eq!(daemon.get("/readyz").await.0, 200);
    std::fs::write(&file, original).unwrap();
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.logs().contains("Workspace reloaded.") {
        assert!(Instant::now() < deadline, "{}", daemon.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(daemon.terminate().0, 0);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhook_event_is_stored_and_processed_and_forged_gets_401() {
    let sandbox = sandbox().await;
    let (root, _state) = workspace("webhook");
    let file = flow_file(&root);
    let spec = std::fs::read_to_string(&file).unwrap().replace(
        "trigger: { poll: 30s }",
        "trigger: { webhook: /hooks/offers, webhook_auth: { secret_env: OFFERS_WEBHOOK_SECRET } }",
    );
    std::fs::write(&file, spec).unwrap();
    let daemon = Daemon::start(&root, &sandbox);
    let listing: serde_json::Value = client()
        .get(format!("{}/api/offers?max=1", sandbox.marketplace_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = listing["offers"][0].to_string();
    let ts = jiff::Timestamp::now().as_second();
    let post = |id: &'static str, signature: String, body: String| {
        daemon
            .client
            .post(format!("{}/hooks/offers", daemon.base))
            .header("X-Event-Id", id)
            .header("X-Timestamp", ts.to_string())
            .header("X-Signature", signature)
            .body(body)
            .send()
    };
    let forged = post(
        "evt-forged",
        sign(b"wrong", ts, body.as_bytes()),
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let accepted = post(
        "evt-1",
        sign(SECRET.as_bytes(), ts, body.as_bytes()),
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(accepted.status().as_u16(), 202);
    let again = post(
        "evt-1",
        sign(SECRET.as_bytes(), ts, body.as_bytes()),
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(again.status().as_u16(), 200);
    let metrics = daemon
        .wait_for_metric("switchyard_records_received_total{flow=\"offers-to-storefront\"} 1")
        .await;
    assert!(metrics.contains("outcome=\"unauthorized\"} 1"), "{metrics}");
    assert!(metrics.contains("outcome=\"duplicate\"} 1"), "{metrics}");
    assert_eq!(daemon.terminate().0, 0);
    sandbox.shutdown().await;
}
