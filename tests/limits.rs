//! Input never decides how deep we recurse or how much we read (issue 6, items 8, 10 and 17):
//! templates nested thousands of levels deep, oversized HTTP bodies, endless contract files and
//! contract paths outside the workspace are all refused with a message naming the limit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchyard::runtime::replay::{ReplayOutcome, replay};
use switchyard::runtime::{FlowRun, RunError, RunOptions, RunReport, alerts};
use switchyard::spec::model::Workspace;
use switchyard::spec::{EnvLookup, LoadOptions, load_workspace};
use switchyard::store::{DeadLetterFilter, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::util::{TestState, assert_output, copy_dir, fixtures, switchyard};

const FLOW_FILE: &str = "flows/offers-to-storefront.yaml";

/// A private copy of the `valid` fixture workspace.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-limits-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&fixtures().join("valid"), &dir);
    dir
}

/// Replaces `from` with `to` in a file of the workspace.
fn patch(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{file}: {err}"));
    assert!(text.contains(from), "{file} has no {from:?}");
    std::fs::write(&path, text.replace(from, to)).unwrap_or_else(|err| panic!("{file}: {err}"));
}

#[test]
fn item_08_validate_refuses_deep_nesting() {
    let helpers = |levels: usize| {
        format!(
            "{{{{lower {}shop_sku{}}}}}",
            "(lower ".repeat(levels),
            ")".repeat(levels)
        )
    };
    let blocks = format!(
        "{}x{}",
        "{{#if shop_sku}}".repeat(5_000),
        "{{/if}}".repeat(5_000)
    );
    // Before: 1,000 helpers passed validate and 2,000 overflowed the stack (debug build).
    // The template starts at column 9; the 33rd level is the token past the limit.
    for (name, template, column) in [
        ("helpers-1000", helpers(1_000), 9 + 8 + 7 * 32),
        ("helpers-3000", helpers(3_000), 9 + 8 + 7 * 32),
        ("blocks-5000", blocks, 9 + 16 * 32),
    ] {
        let root = scratch(&format!("nesting-{name}"));
        patch(&root, FLOW_FILE, "{{lower shop_sku}}", &template);
        let output = switchyard(&root, &["validate"]);
        assert_output(
            &output,
            &format!(
                "{FLOW_FILE}:18:{column}: error[E0304]: template does not compile: template nests \
                 deeper than 32 levels (blocks, `else` chains, subexpressions and literals count \
                 together) (at 1:{} of the template)\n  = hint: split the logic over several `map` \
                 fields, or flatten the nesting\n1 error, 0 warnings\n",
                column - 8
            ),
            1,
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}

#[test]
fn item_17_contract_outside_workspace_refused() {
    let root = scratch("outside");
    // A valid contract outside the workspace, so only confinement can refuse it.
    let outside = root.with_extension("outside.json");
    std::fs::copy(root.join("contracts/offer.json"), &outside).unwrap();
    let outside_name = outside
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap()
        .to_owned();
    std::os::unix::fs::symlink(&outside, root.join("contracts/link.json")).unwrap();
    let expected = |path: &str| {
        format!(
            "switchyard.yaml:16:15: error[E0604]: contract file {path} is outside the workspace \
             folder\n  = hint: keep contracts inside the workspace (for example under contracts/); \
             paths are relative to the workspace folder, and symbolic links that lead out of it \
             are refused\n1 error, 0 warnings\n"
        )
    };
    let mut current = "contracts/offer.json".to_owned();
    for path in [
        format!("../{outside_name}"),
        format!("contracts/../../{outside_name}"),
        outside.display().to_string(),
        "/proc/self/environ".to_owned(),
        "contracts/link.json".to_owned(),
    ] {
        patch(
            &root,
            "switchyard.yaml",
            &format!("contract: {current}"),
            &format!("contract: {path}"),
        );
        current = path.clone();
        assert_output(&switchyard(&root, &["validate"]), &expected(&path), 1);
    }
    // Inside the workspace, `..` that stays inside is fine.
    patch(
        &root,
        "switchyard.yaml",
        &format!("contract: {current}"),
        "contract: flows/../contracts/offer.json",
    );
    assert_output(
        &switchyard(&root, &["validate"]),
        "0 errors, 0 warnings\n",
        0,
    );
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(&outside);
}

#[test]
fn item_10_contract_files_are_read_up_to_the_limit() {
    let root = scratch("contract-size");
    // A valid JSON Schema, 5 MiB long.
    let text = std::fs::read_to_string(root.join("contracts/offer.json")).unwrap();
    let padded = text.replacen(
        '{',
        &format!("{{\"description\": \"{}\",", "x".repeat(5 << 20)),
        1,
    );
    std::fs::write(root.join("contracts/offer.json"), padded).unwrap();
    assert_output(
        &switchyard(&root, &["validate"]),
        "switchyard.yaml:16:15: error[E0001]: contract file contracts/offer.json is larger than \
         4 MiB (the limit for spec and contract files)\n1 error, 0 warnings\n",
        1,
    );
    // An endless file is refused without being read: `/dev/zero` is outside the workspace,
    // and a link to it inside the workspace leads outside.
    std::os::unix::fs::symlink("/dev/zero", root.join("contracts/zero.json")).unwrap();
    patch(
        &root,
        "switchyard.yaml",
        "contract: contracts/offer.json",
        "contract: contracts/zero.json",
    );
    let output = switchyard(&root, &["validate"]);
    assert!(output.stdout.contains("error[E0604]"), "{output:?}");
    // A spec file is capped the same way.
    std::fs::write(root.join("flows/huge.yaml"), "#".repeat(5 << 20)).unwrap();
    let output = switchyard(&root, &["validate"]);
    assert!(
        output.stdout.contains(
            "flows/huge.yaml:1:1: error[E0001]: cannot read file: file is larger than 4 MiB"
        ),
        "{output:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// What the peer answers on each route.
#[derive(Debug, Clone)]
enum Answer {
    /// `200` with this JSON body.
    Json(Value),
    /// This status and a body that goes on until the client hangs up (or [`STREAM_CAP`]),
    /// chunked, or with a `Content-Length` declaring a gibibyte.
    Endless { status: u16, declared: bool },
}

/// A body the peer never streams past, so that a client without a limit still finishes.
const STREAM_CAP: u64 = 96 << 20;

/// A client that stops at its limit leaves this much unsent at most: its limit, what the
/// loopback socket buffers hold, and margin.
const READ_BOUND: u64 = 32 << 20;

/// A small HTTP/1.1 peer on loopback, written on plain tokio so that it can stream a body
/// that never ends and count what it sent.
struct Peer {
    url: String,
    source: Mutex<Answer>,
    sink: Mutex<Answer>,
    /// The most bytes of body one endless answer got out before the client hung up.
    streamed: AtomicU64,
    alerts: Mutex<Vec<Value>>,
}

impl Peer {
    async fn start(source: Answer, sink: Answer) -> Arc<Peer> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = Arc::new(Peer {
            url: format!("http://{}", listener.local_addr().unwrap()),
            source: Mutex::new(source),
            sink: Mutex::new(sink),
            streamed: AtomicU64::new(0),
            alerts: Mutex::new(Vec::new()),
        });
        let serving = peer.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let peer = serving.clone();
                tokio::spawn(async move {
                    let _ = peer.answer(stream).await;
                });
            }
        });
        peer
    }

    async fn answer(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut request = Vec::new();
        let mut buf = [0u8; 8192];
        let head_end = loop {
            let read = stream.read(&mut buf).await?;
            if read == 0 {
                return Ok(());
            }
            request.extend_from_slice(&buf[..read]);
            if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        while request.len() < head_end + length {
            let read = stream.read(&mut buf).await?;
            if read == 0 {
                break;
            }
            request.extend_from_slice(&buf[..read]);
        }
        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
        let answer = if path.starts_with("/api/offers") {
            self.source.lock().unwrap().clone()
        } else if path.starts_with("/catalog/offers/") {
            self.sink.lock().unwrap().clone()
        } else {
            let body = serde_json::from_slice(&request[head_end..]).unwrap_or(Value::Null);
            self.alerts.lock().unwrap().push(body);
            Answer::Json(json!({}))
        };
        match answer {
            Answer::Json(body) => {
                let body = body.to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
            }
            Answer::Endless { status, declared } => {
                let framing = if declared {
                    format!("Content-Length: {}", 1u64 << 30)
                } else {
                    "Transfer-Encoding: chunked".to_owned()
                };
                let head = format!(
                    "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).await?;
                let chunk = vec![b'e'; 64 * 1024];
                let mut sent = 0u64;
                while sent < STREAM_CAP {
                    let written = if declared {
                        stream.write_all(&chunk).await
                    } else {
                        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                        framed.extend_from_slice(&chunk);
                        framed.extend_from_slice(b"\r\n");
                        stream.write_all(&framed).await
                    };
                    if written.is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                    self.streamed.fetch_max(sent, Ordering::SeqCst);
                }
                if !declared && sent >= STREAM_CAP {
                    let _ = stream.write_all(b"0\r\n\r\n").await;
                }
            }
        }
        stream.shutdown().await
    }
}

/// Loads the workspace at `root` with its systems at `peer`, on a fresh state store (held
/// by the returned guard).
fn load(root: &Path, peer: &Peer) -> (Workspace, TestState) {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let state = TestState::attach(&name, root);
    let mut env = EnvLookup::empty();
    for name in ["MARKETPLACE_URL", "STOREFRONT_URL", "ALERTS_URL"] {
        env = env.with(name, &peer.url);
    }
    for name in ["MARKETPLACE_CLIENT_ID", "MARKETPLACE_CLIENT_SECRET"] {
        env = env.with(name, "x");
    }
    let loaded = load_workspace(root, &LoadOptions { strict: true, env });
    let workspace = loaded
        .workspace
        .unwrap_or_else(|| panic!("workspace does not load: {:?}", loaded.diagnostics));
    (workspace, state)
}

async fn run(workspace: &Workspace, store: &Store) -> Result<RunReport, RunError> {
    let options = RunOptions {
        progress: false,
        ..RunOptions::default()
    };
    FlowRun::new(
        workspace,
        "offers-to-storefront",
        store.clone(),
        options,
        None,
        None,
    )
    .await
    .expect("flow")
    .run()
    .await
}

async fn open_store(workspace: &Workspace) -> Store {
    Store::open_target(&workspace.state).await.unwrap()
}

fn offer(id: &str, price: Option<&str>, title_len: usize) -> Value {
    let mut offer = json!({
        "offer_id": id, "shop_sku": format!("SKU-{id}"), "quantity": 3,
        "updated_at": "2026-01-01T00:00:00Z", "listing_status": "x".repeat(title_len)
    });
    if let Some(price) = price {
        offer["price"] = json!(price);
    }
    offer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_10_http_source_caps_response_size() {
    for declared in [false, true] {
        let peer = Peer::start(
            Answer::Endless {
                status: 200,
                declared,
            },
            Answer::Json(json!({})),
        )
        .await;
        let root = scratch(&format!("source-cap-{declared}"));
        patch(
            &root,
            "switchyard.yaml",
            "base_url: \"${MARKETPLACE_URL}\" }",
            "base_url: \"${MARKETPLACE_URL}\", max_response_size: 1MiB }",
        );
        let (workspace, _state) = load(&root, &peer);
        let store = open_store(&workspace).await;
        let err = run(&workspace, &store)
            .await
            .expect_err("the page is over the limit");
        let message = err.to_string();
        assert!(
            message.contains(
                "the response body is larger than 1 MiB (`max_response_size` of this system; raise \
                 it under the system's `http` section in switchyard.yaml"
            ),
            "{message}"
        );
        assert!(matches!(err, RunError::Source { .. }), "{err:?}");
        let streamed = peer.streamed.load(Ordering::SeqCst);
        assert!(
            streamed < READ_BOUND,
            "the client read on: {streamed} bytes sent"
        );
        // The owner of `source-unavailable` hears of it, with the limit named.
        assert_eq!(alerts::drain(&store, Duration::from_secs(10)).await, 0);
        let alerts = peer.alerts.lock().unwrap().clone();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0]["failure"], "source-unavailable");
        assert!(
            alerts[0]["error"]
                .as_str()
                .unwrap_or_default()
                .contains("max_response_size")
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_10_http_sink_reads_bounded_bodies() {
    // A rejection with an endless body: the dead letter quotes its start.
    let peer = Peer::start(
        Answer::Json(json!({"offers": [offer("1", Some("1.00"), 1)]})),
        Answer::Endless {
            status: 422,
            declared: false,
        },
    )
    .await;
    let root = scratch("sink-error-body");
    let (workspace, _state) = load(&root, &peer);
    let store = open_store(&workspace).await;
    let report = run(&workspace, &store).await.expect("run");
    assert_eq!(
        report.by_failure.get("sink-rejected"),
        Some(&1),
        "{report:?}"
    );
    let letters = store
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(
        letters[0].letter.error,
        format!("HTTP 422: {}...", "e".repeat(200))
    );
    let streamed = peer.streamed.load(Ordering::SeqCst);
    assert!(
        streamed < READ_BOUND,
        "the error body was read on: {streamed} bytes sent"
    );
    let _ = std::fs::remove_dir_all(&root);

    // An acknowledgement with an endless body: the write counts, the body is not read.
    let peer = Peer::start(
        Answer::Json(json!({"offers": [offer("1", Some("1.00"), 1)]})),
        Answer::Endless {
            status: 200,
            declared: false,
        },
    )
    .await;
    let root = scratch("sink-ack-body");
    patch(
        &root,
        "switchyard.yaml",
        "base_url: \"${STOREFRONT_URL}\" }",
        "base_url: \"${STOREFRONT_URL}\", max_response_size: 1MiB }",
    );
    let (workspace, _state) = load(&root, &peer);
    let store = open_store(&workspace).await;
    let report = run(&workspace, &store).await.expect("run");
    assert_eq!(
        (report.delivered, report.dead_lettered),
        (1, 0),
        "{report:?}"
    );
    let streamed = peer.streamed.load(Ordering::SeqCst);
    assert!(
        streamed < READ_BOUND,
        "the acknowledgement was read on: {streamed} bytes sent"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_10_dead_letters_keep_a_bounded_original_and_say_so() {
    let big = offer("big", None, 10_000);
    let small = offer("small", None, 10);
    let peer = Peer::start(
        Answer::Json(json!({"offers": [big.clone(), small.clone()]})),
        Answer::Json(json!({})),
    )
    .await;
    let root = scratch("dead-letter-cap");
    patch(
        &root,
        "switchyard.yaml",
        "model: operator\n",
        "model: operator\nstate: { max_dead_letter_record_size: 1KiB }\n",
    );
    let (workspace, _state) = load(&root, &peer);
    let store = open_store(&workspace).await;
    let report = run(&workspace, &store).await.expect("run");
    assert_eq!(
        report.by_failure.get("contract-violation"),
        Some(&2),
        "{report:?}"
    );
    let letters = store
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    let original = big.to_string();
    let cut = letters
        .iter()
        .find(|l| l.letter.record_key.as_deref() == Some("big"))
        .unwrap();
    assert_eq!(cut.letter.record.as_bytes(), &original.as_bytes()[..1024]);
    // Read through the letter's JSON form, as `dlq show` prints it.
    let letter = serde_json::to_value(&cut.letter).unwrap();
    assert_eq!(
        letter["record_truncated"],
        json!({
            "original_bytes": original.len(),
            "sha256": hex::encode(Sha256::digest(original.as_bytes())),
        })
    );
    let whole = letters
        .iter()
        .find(|l| l.letter.record_key.as_deref() == Some("small"))
        .unwrap();
    assert_eq!(whole.letter.record.as_bytes(), small.to_string().as_bytes());
    assert_eq!(
        serde_json::to_value(&whole.letter).unwrap()["record_truncated"],
        Value::Null
    );
    // A cut original is never replayed as if it were the record.
    match replay(&workspace, &store, cut.id, "test")
        .await
        .expect("replay")
    {
        ReplayOutcome::Failed(error) => assert!(
            error.contains(&format!(
                "keeps only the first 1 KiB of the original's {} bytes",
                original.len()
            )),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    // `dlq show` says it too.
    let output = switchyard(&root, &["dlq", "show", ".", &cut.id.to_string()]);
    let shown: Value =
        serde_json::from_str(&output.stdout).unwrap_or_else(|err| panic!("{err}: {output:?}"));
    assert_eq!(
        shown["record_truncated"]["original_bytes"],
        json!(original.len())
    );
    let _ = std::fs::remove_dir_all(&root);
}
