//! PostgreSQL as the state store of real processes (issue 7): the reference workspace served
//! end to end on it, two `run`s of one flow refused by its lease, and a holder killed with
//! `kill -9` taken over without a record lost or delivered twice.
//!
//! Always PostgreSQL (whatever `SWITCHYARD_TEST_STATE` says), each test on a fresh schema; without
//! a server each says `SKIPPED` and passes, unless `SWITCHYARD_REQUIRE_POSTGRES=1`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard::sandbox::{Fault, Sandbox, SandboxConfig};
use switchyard::store::{Store, testing};

use crate::runtime::{FLOW, assert_each_valid_offer_once, workspace_copy};

/// A fresh schema of the test server for `test`, dropped when this is dropped (kept when the
/// test failed); `None` when PostgreSQL does not answer and is not required.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    async fn fresh(test: &str) -> Option<Schema> {
        let url = testing::postgres_url();
        let name = testing::unique_schema(test);
        let test = format!("postgres_state::{test}");
        testing::fresh_schema(&test, &url, &name)
            .await
            .then_some(Schema { url, name })
    }

    /// The state target, as `--state` takes it.
    fn target(&self) -> String {
        testing::with_schema(&self.url, &self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(testing::drop_schema(&url, &name))
        })
        .join();
    }
}

/// Polls `done` every 100 ms for up to `timeout`, panicking with `what` (and `detail`) past it.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match done().await {
            Ok(()) => return,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Collects a child's stderr lines as they come.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let stderr = child.stderr.take().expect("stderr piped");
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    response.json().await.map_err(|e| e.to_string())
}

/// Item 3: `switchyard serve flows --sandbox --state postgres://...` runs the reference
/// workspace end to end: every valid offer reaches the storefront once, every order leg
/// reaches the OMS and is accepted before its deadline; SIGTERM stops it cleanly; the state
/// is in the schema and nothing is written into the workspace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_reference_workspace_on_postgres_state() {
    let Some(schema) = Schema::fresh("serve_flows").await else {
        return;
    };
    let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let had_state_folder = flows.join(".switchyard").exists();
    // The sandbox sends its order webhooks to the address given, so it must be a real port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .arg(&flows)
        .args([
            "--sandbox",
            "--sandbox-orders",
            "20",
            "--sandbox-ack-deadline",
            "120",
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--state",
            &schema.target(),
        ])
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env("SWITCHYARD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("switchyard serve starts");
    let logs = collect_stderr(&mut child);
    let client = switchyard::connectors::http::client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let mut sandbox_url = String::new();
    wait_until("the sandbox to listen", Duration::from_secs(30), || {
        let logs = logs.lock().unwrap().clone();
        let found = logs
            .lines()
            .find_map(|l| l.strip_prefix("Sandbox listening on "))
            .map(str::to_owned);
        if let Some(url) = found {
            sandbox_url = url;
        }
        let ready = !sandbox_url.is_empty();
        async move { if ready { Ok(()) } else { Err(logs) } }
    })
    .await;
    wait_until(
        "every offer and every order leg delivered",
        Duration::from_secs(120),
        || {
            let (client, base) = (client.clone(), sandbox_url.clone());
            async move {
                let offers =
                    get_json(&client, &format!("{base}/_sandbox/marketplace/summary")).await?;
                let received =
                    get_json(&client, &format!("{base}/_sandbox/storefront/received")).await?;
                let orders = get_json(
                    &client,
                    &format!("{base}/_sandbox/marketplace/orders/summary"),
                )
                .await?;
                let delivered: Vec<i64> = received["records"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    // Offers, not the stock levels stock-to-storefront also writes there.
                    .filter(|r| r["body"].get("title").is_some())
                    .filter_map(|r| r["body"]["offer_id"].as_i64())
                    .collect();
                let unique: HashSet<i64> = delivered.iter().copied().collect();
                assert_eq!(delivered.len(), unique.len(), "no offer delivered twice");
                let valid = offers["valid"].as_u64().unwrap_or(0) as usize;
                let legs = orders["legs"].as_u64().unwrap_or(0);
                let accepted = orders["accepted_before_deadline"].as_u64().unwrap_or(0);
                if valid > 0 && unique.len() == valid && legs > 0 && accepted == legs {
                    Ok(())
                } else {
                    Err(format!(
                        "offers {}/{valid}, legs accepted {accepted}/{legs}",
                        unique.len()
                    ))
                }
            }
        },
    )
    .await;

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let logs = logs.lock().unwrap().clone();
    assert_eq!(status, Some(0), "exit 0 on SIGTERM:\n{logs}");
    assert!(
        logs.lines().any(|l| l.contains("Opening the state store.")
            && l.contains(&format!("schema={}", schema.name))),
        "the store in use is logged:\n{logs}"
    );
    // The state is in the schema, and the workspace is left as it was.
    let store = Store::connect(&schema.target()).await.unwrap();
    assert!(
        store.checkpoint(FLOW).await.unwrap().is_some(),
        "offers checkpoint in PostgreSQL"
    );
    assert_eq!(
        flows.join(".switchyard").exists(),
        had_state_folder,
        "no state file written"
    );
}

/// Item 4: with PostgreSQL state, a second `run` of a flow that is running is refused and
/// names the holder (its pid and host); the holder killed with `kill -9` mid-run loses the
/// flow, and a third `run` takes it over and finishes it: every valid offer reaches the
/// storefront exactly once, none lost, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_refused_and_a_killed_holder_is_taken_over() {
    let Some(schema) = Schema::fresh("lease_takeover").await else {
        return;
    };
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    // Slow writes: the run lasts long enough to be refused beside and killed in the middle.
    sandbox.inject_storefront_fault(Fault::latency(15));
    let (root, _state) = workspace_copy("pg-lease", false);
    let run = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["--log", "warn", "run"])
            .arg(&root)
            .args([FLOW, "--concurrency", "4", "--state", &schema.target()])
            .env("ORDERS_WEBHOOK_SECRET", "pg-lease")
            .envs(sandbox.env())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let mut holder = run().spawn().expect("first run starts");
    wait_until("the first run to deliver", Duration::from_secs(30), || {
        let records = sandbox.storefront_stats().records;
        async move {
            if records >= 50 {
                Ok(())
            } else {
                Err(format!("{records} delivered"))
            }
        }
    })
    .await;

    let refused = run().output().expect("second run");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    assert!(
        stderr.contains(&format!(
            "flow `{FLOW}` is already running (pid {} on {host} since ",
            holder.id()
        )),
        "the refusal names the holder: {stderr}"
    );

    holder.kill().unwrap(); // SIGKILL
    holder.wait().unwrap();
    let before = sandbox.storefront_stats().records;
    let valid = sandbox.summary().valid;
    assert!(
        before > 0 && before < valid,
        "killed mid-run ({before} of {valid} delivered)"
    );

    sandbox.clear_storefront_faults();
    let taker = run().output().expect("third run");
    let stderr = String::from_utf8_lossy(&taker.stderr);
    assert!(
        taker.status.success() || taker.status.code() == Some(1),
        "the takeover run ends: {stderr}"
    );
    assert!(
        stderr.contains("Taking over the lock of a crashed run."),
        "{stderr}"
    );
    assert_each_valid_offer_once(
        &sandbox,
        "after kill -9 and a takeover: each valid offer exactly once",
    );
    let store = Store::connect(&schema.target()).await.unwrap();
    assert_eq!(
        store.flow_lock_holder(FLOW).await.unwrap(),
        None,
        "lock released"
    );
    sandbox.shutdown().await;
}

/// Item 4, a holder that is alive but stalled (SIGSTOP: a long GC pause, a frozen VM): it
/// keeps the flow while its lease lasts, loses it when the lease expires (shortened to 6 s
/// through `SWITCHYARD_LOCK_STALE_AFTER`), another process takes over and finishes, and the
/// stalled holder, resumed, cannot commit over it. Each valid offer reaches the storefront
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_holder_loses_its_lease_and_cannot_commit_after_the_takeover() {
    const STALE: &str = "6s";
    let Some(schema) = Schema::fresh("lease_expiry").await else {
        return;
    };
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.inject_storefront_fault(Fault::latency(15));
    let (root, _state) = workspace_copy("pg-stall", false);
    let run = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(["--log", "warn", "run"])
            .arg(&root)
            .args([FLOW, "--concurrency", "4", "--state", &schema.target()])
            .env("ORDERS_WEBHOOK_SECRET", "pg-stall")
            .env("SWITCHYARD_LOCK_STALE_AFTER", STALE)
            .envs(sandbox.env())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let signal = |pid: u32, name: &str| {
        let status = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    };
    let holder = run().spawn().expect("first run starts");
    wait_until("the first run to deliver", Duration::from_secs(30), || {
        let records = sandbox.storefront_stats().records;
        async move {
            if records >= 50 {
                Ok(())
            } else {
                Err(format!("{records} delivered"))
            }
        }
    })
    .await;
    signal(holder.id(), "STOP");
    let stalled_at = Instant::now();

    // Alive, and its lease (refreshed every 2 s) runs at least 4 s more: refused.
    let refused = run().output().expect("second run");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stalled_at.elapsed() < Duration::from_secs(4),
        "the machine is too slow for this test"
    );
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("is already running (pid {} on ", holder.id())),
        "{stderr}"
    );

    // Past the lease: taken over, and finished.
    tokio::time::sleep(Duration::from_secs(7).saturating_sub(stalled_at.elapsed())).await;
    sandbox.clear_storefront_faults();
    let taker = run().output().expect("the takeover run");
    let stderr = String::from_utf8_lossy(&taker.stderr);
    assert!(
        stderr.contains("Taking over the lock of a crashed run.")
            && stderr.contains("its lease expired"),
        "{stderr}"
    );
    assert!(
        taker.status.success() || taker.status.code() == Some(1),
        "{stderr}"
    );

    // The stalled holder wakes up: its next commit is refused.
    signal(holder.id(), "CONT");
    let resumed = tokio::task::spawn_blocking(move || holder.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(!resumed.status.success(), "{stderr}");
    assert!(
        stderr.contains("this run lost its lock to another process"),
        "{stderr}"
    );

    assert_each_valid_offer_once(
        &sandbox,
        "after a stall and a takeover: each valid offer exactly once",
    );
    sandbox.shutdown().await;
}

/// Waits up to `timeout` for `child` to exit; kills it past that.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
