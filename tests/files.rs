//! File flows end to end on real files and the real store: CSV and JSONL rows that cannot be
//! read are dead letters with their bytes and line while the rest of the file flows; an output
//! file the committed state does not cover is refused, never cut; dead letters give back the
//! bytes that arrived (replay, export, show).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use switchyard::runtime::replay::{ReplayOutcome, replay};
use switchyard::runtime::{FlowRun, RunError, RunOptions, RunReport};
use switchyard::spec::model::Workspace;
use switchyard::spec::{EnvLookup, LoadOptions, load_workspace};
use switchyard::store::{DeadLetter, DeadLetterFilter, Store};

use crate::util::{TestState, switchyard};

const FLOW: &str = "items";

const WORKSPACE: &str = r#"version: 1
name: files-test
model: operator
systems:
  partner:
    description: Files a partner drops.
    file: { dir: data }
  feed:
    description: The storefront's import folder.
    file: { dir: out }
owners:
  data-team:
    contact: data-team@example.com
    alert: { webhook: "http://127.0.0.1:9/alerts/data-team" }
defaults:
  failure_owner: data-team
objects:
  item:
    key: [id]
    contract: contracts/item.json
    source_of_truth: partner
    create: [partner]
    update: [partner]
    consume: [feed]
"#;

const CONTRACT: &str = r#"{
  "type": "object",
  "required": ["id", "name"],
  "properties": { "id": { "type": "string", "minLength": 1 }, "name": { "type": "string" } }
}"#;

/// A fresh workspace with one flow from `data/<input>` (`format`) to `out/items.jsonl`.
fn file_workspace(name: &str, input: &str, format: &str, content: &[u8]) -> (PathBuf, TestState) {
    let root = std::env::temp_dir().join(format!("switchyard-files-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["flows", "contracts", "data"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("switchyard.yaml"), WORKSPACE).unwrap();
    std::fs::write(root.join("contracts/item.json"), CONTRACT).unwrap();
    let flow = format!(
        "flow: {FLOW}\n\
         description: Partner items to the storefront's import folder.\n\
         object: item\n\
         pattern: batch\n\
         latency: next-cycle-enrichment\n\
         from: {{ system: partner, path: {input}, format: {format} }}\n\
         to: {{ system: feed, path: items.jsonl, format: jsonl }}\n\
         map:\n  id: \"{{{{id}}}}\"\n  name: \"{{{{name}}}}\"\n"
    );
    std::fs::write(root.join(format!("flows/{FLOW}.yaml")), flow).unwrap();
    std::fs::write(root.join("data").join(input), content).unwrap();
    let state = TestState::attach(&format!("files_{name}"), &root);
    (root, state)
}

fn load(root: &Path) -> Workspace {
    let options = LoadOptions {
        strict: true,
        env: EnvLookup::empty(),
    };
    let loaded = load_workspace(root, &options);
    loaded
        .workspace
        .unwrap_or_else(|| panic!("workspace does not load: {:?}", loaded.diagnostics))
}

async fn run(workspace: &Workspace, batch_size: usize) -> Result<RunReport, RunError> {
    let store = Store::open_target(&workspace.state).await.unwrap();
    let options = RunOptions {
        progress: false,
        batch_size,
        ..RunOptions::default()
    };
    FlowRun::new(workspace, FLOW, store, options, None, None)
        .await?
        .run()
        .await
}

fn output(root: &Path) -> Vec<u8> {
    std::fs::read(root.join("out/items.jsonl")).unwrap_or_default()
}

fn delivered_ids(root: &Path) -> Vec<String> {
    String::from_utf8(output(root))
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn dead_letters(workspace: &Workspace) -> Vec<DeadLetter> {
    let store = Store::open_target(&workspace.state).await.unwrap();
    store
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap()
}

/// A letter as the admin API and `dlq list --json` show it.
fn shown(letter: &DeadLetter) -> serde_json::Value {
    serde_json::to_value(letter).unwrap()
}

/// Asserts one malformed-row dead letter: its mode, reason, owner, line and exact bytes.
#[track_caller]
fn assert_malformed(letter: &DeadLetter, reason: &str, line: u64, bytes: &[u8]) {
    assert_eq!(
        (
            letter.letter.failure.as_str(),
            letter.letter.reason.as_str(),
            letter.letter.owner.as_str()
        ),
        ("contract-violation", reason, "data-team"),
        "{letter:#?}"
    );
    assert_eq!(shown(letter)["line"], line, "{letter:#?}");
    assert_eq!(
        letter.letter.record.as_bytes(),
        bytes,
        "the original, byte for byte"
    );
}

#[tokio::test]
async fn item_03_csv_unterminated_quote_does_not_swallow_rows() {
    let csv = b"id,name\n1,one\n2,\"two\n3,three\n4,four\n";
    for batch_size in [10_000, 1] {
        let (root, _state) = file_workspace(
            &format!("unterminated-{batch_size}"),
            "items.csv",
            "csv",
            csv,
        );
        let workspace = load(&root);
        let report = run(&workspace, batch_size).await.expect("the file flows");
        assert_eq!(
            delivered_ids(&root),
            ["1", "3", "4"],
            "batch size {batch_size}"
        );
        assert_eq!(
            (report.read, report.delivered, report.dead_lettered),
            (4, 3, 1)
        );
        let letters = dead_letters(&workspace).await;
        assert_eq!(letters.len(), 1, "{letters:#?}");
        assert_malformed(&letters[0], "malformed", 3, b"2,\"two");
        assert!(
            letters[0].letter.error.contains("unterminated quote"),
            "{}",
            letters[0].letter.error
        );
        // Routed like any dead letter: its owner's alert is in the outbox.
        let store = Store::open_target(&workspace.state).await.unwrap();
        let alerts = store.due_alerts(i64::MAX, 10).await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].alert.owner, "data-team");
        assert_eq!(alerts[0].alert.payload["line"], 3);
        // A second run reads nothing again.
        let again = run(&workspace, batch_size).await.unwrap();
        assert_eq!((again.read, again.delivered), (0, 0));
        assert_eq!(dead_letters(&workspace).await.len(), 1);
    }
}

#[tokio::test]
async fn item_03_csv_ragged_row_does_not_block_file() {
    let csv = b"id,name\n1,one\n2,two,extra\n3,three\n";
    let (root, _state) = file_workspace("ragged", "items.csv", "csv", csv);
    let workspace = load(&root);
    let report = run(&workspace, 10_000).await.expect("the file flows");
    assert_eq!(delivered_ids(&root), ["1", "3"]);
    assert_eq!((report.delivered, report.dead_lettered), (2, 1));
    let letters = dead_letters(&workspace).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_malformed(&letters[0], "malformed", 3, b"2,two,extra");
    assert!(
        letters[0]
            .letter
            .error
            .contains("3 fields where the header has 2")
    );
}

#[tokio::test]
async fn item_03_csv_non_utf8_row_does_not_block_file() {
    let csv = b"id,name\r\n1,one\r\n2,caf\xe9\r\n3,\"multi\r\nline\"\r\n";
    let (root, _state) = file_workspace("latin1", "items.csv", "csv", csv);
    let workspace = load(&root);
    let report = run(&workspace, 10_000).await.expect("the file flows");
    assert_eq!(delivered_ids(&root), ["1", "3"]);
    assert_eq!((report.delivered, report.dead_lettered), (2, 1));
    let letters = dead_letters(&workspace).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_malformed(&letters[0], "malformed", 3, b"2,caf\xe9");
    assert!(output(&root).ends_with(b"\"multi\\r\\nline\"}\n"));
}

#[tokio::test]
async fn item_03_jsonl_bad_lines_are_dead_lettered_with_line_numbers() {
    let jsonl = b"{\"id\":\"1\",\"name\":\"one\"}\nnot json\n{\"id\":\"2\",\"name\":\"caf\xe9\"}\n{\"id\":\"3\",\"name\":\"three\"}\n";
    let (root, _state) = file_workspace("jsonl", "items.jsonl", "jsonl", jsonl);
    let workspace = load(&root);
    let report = run(&workspace, 10_000).await.expect("the file flows");
    assert_eq!(delivered_ids(&root), ["1", "3"]);
    assert_eq!(report.dead_lettered, 2);
    let letters = dead_letters(&workspace).await;
    assert_eq!(letters.len(), 2, "{letters:#?}");
    assert_malformed(&letters[0], "malformed_json", 2, b"not json");
    assert_malformed(
        &letters[1],
        "malformed_json",
        3,
        b"{\"id\":\"2\",\"name\":\"caf\xe9\"}",
    );
}

#[tokio::test]
async fn item_06_file_sink_refuses_to_truncate_unproven_output() {
    let jsonl = b"{\"id\":\"1\",\"name\":\"one\"}\n";
    let (root, _state) = file_workspace("unproven", "items.jsonl", "jsonl", jsonl);
    // Another run's output, and no state file that says this flow wrote it.
    std::fs::create_dir_all(root.join("out")).unwrap();
    let theirs = b"{\"id\":\"0\",\"name\":\"written by a run whose state was lost\"}\n";
    std::fs::write(root.join("out/items.jsonl"), theirs).unwrap();
    let workspace = load(&root);
    let err = run(&workspace, 10_000)
        .await
        .expect_err("an output no checkpoint covers is refused");
    let message = err.to_string();
    assert!(message.contains("out/items.jsonl"), "{message}");
    assert!(message.contains("move the file away"), "{message}");
    assert_eq!(output(&root), theirs, "not a byte cut");
    assert!(dead_letters(&workspace).await.is_empty());
    let store = Store::open_target(&workspace.state).await.unwrap();
    assert_eq!(
        store.checkpoint(FLOW).await.unwrap(),
        None,
        "nothing committed"
    );

    // Moved away, the flow starts a new output.
    std::fs::rename(root.join("out/items.jsonl"), root.join("out/kept.jsonl")).unwrap();
    run(&workspace, 10_000).await.unwrap();
    assert_eq!(delivered_ids(&root), ["1"]);
}

#[tokio::test]
async fn item_06_file_sink_refuses_a_replaced_or_truncated_output() {
    let jsonl = b"{\"id\":\"1\",\"name\":\"one\"}\n{\"id\":\"2\",\"name\":\"two\"}\n";
    let (root, _state) = file_workspace("replaced", "items.jsonl", "jsonl", jsonl);
    let workspace = load(&root);
    run(&workspace, 10_000).await.unwrap();
    let ours = output(&root);
    assert_eq!(delivered_ids(&root), ["1", "2"]);
    let mut input = jsonl.to_vec();
    input.extend_from_slice(b"{\"id\":\"3\",\"name\":\"three\"}\n");
    std::fs::write(root.join("data/items.jsonl"), &input).unwrap();

    // Replaced by a longer file: cutting it to the committed length would destroy it.
    let replacement =
        b"{\"id\":\"9\",\"name\":\"a different export, longer than ours\"}\n".repeat(3);
    std::fs::write(root.join("out/items.jsonl"), &replacement).unwrap();
    let err = run(&workspace, 10_000).await.expect_err("replaced output");
    assert!(
        err.to_string().contains("not the ones this flow wrote"),
        "{err}"
    );
    assert_eq!(output(&root), replacement);

    // Truncated: shorter than committed.
    std::fs::write(root.join("out/items.jsonl"), &ours[..10]).unwrap();
    let err = run(&workspace, 10_000).await.expect_err("truncated output");
    assert!(err.to_string().contains("were committed"), "{err}");
    assert_eq!(output(&root), &ours[..10]);

    // Restored: the run goes on where it stopped, each record once.
    std::fs::write(root.join("out/items.jsonl"), &ours).unwrap();
    run(&workspace, 10_000).await.unwrap();
    assert_eq!(delivered_ids(&root), ["1", "2", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_07_dead_letter_keeps_original_bytes() {
    // A Latin-1 "é": not UTF-8, so not JSON; a U+FFFD copy would be valid JSON.
    let original: &[u8] = b"{\"id\":\"7\",\"name\":\"caf\xe9\"}";
    let mut jsonl = original.to_vec();
    jsonl.extend_from_slice(b"\n{\"id\":\"8\",\"name\":\"ok\"}\n");
    let (root, _state) = file_workspace("bytes", "items.jsonl", "jsonl", &jsonl);
    let workspace = load(&root);
    run(&workspace, 10_000).await.unwrap();
    let letters = dead_letters(&workspace).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(
        letter.letter.record.as_bytes(),
        original,
        "stored byte for byte"
    );

    // Replay reads the bytes that arrived: still not JSON, so nothing is delivered (a lossy
    // copy would have been delivered with U+FFFD in place of the é).
    let store = Store::open_target(&workspace.state).await.unwrap();
    let outcome = replay(&workspace, &store, letter.id, "test").await.unwrap();
    assert!(
        matches!(&outcome, ReplayOutcome::Failed(error) if error.contains("not valid JSON")),
        "{outcome:?}"
    );
    assert_eq!(delivered_ids(&root), ["8"]);
    let again = store.dead_letter(letter.id).await.unwrap();
    assert_eq!(again.letter.record.as_bytes(), original);

    // Export gives the exact bytes (base64: JSON text cannot hold them); show says so.
    let ws = root.to_str().unwrap();
    let export = switchyard(&root, &["dlq", "export", ws]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let line: serde_json::Value = serde_json::from_str(export.stdout.trim()).unwrap();
    assert_eq!(line["raw"], serde_json::Value::Null, "{line}");
    let exported = base64::engine::general_purpose::STANDARD
        .decode(line["raw_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(exported, original);
    let show = switchyard(&root, &["dlq", "show", ws, &letter.id.to_string()]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout
            .contains("original is not UTF-8; 24 bytes, shown with U+FFFD"),
        "{}",
        show.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_replays_of_one_letter_append_its_line_once() {
    let jsonl = b"{\"id\":\"1\",\"name\":\"lamp\"}\n{\"id\":\"2\"}\n";
    let (root, _state) = file_workspace("replay-race", "items.jsonl", "jsonl", jsonl);
    let workspace = load(&root);
    run(&workspace, 10_000).await.unwrap();
    let letters = dead_letters(&workspace).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    // The spec is fixed: a missing name is now allowed and mapped to nothing.
    std::fs::write(
        root.join("contracts/item.json"),
        r#"{"type": "object", "required": ["id"],
            "properties": { "id": { "type": "string" }, "name": { "type": "string" } }}"#,
    )
    .unwrap();
    std::fs::write(
        root.join(format!("flows/{FLOW}.yaml")),
        std::fs::read_to_string(root.join(format!("flows/{FLOW}.yaml")))
            .unwrap()
            .replace("  name: \"{{name}}\"\n", ""),
    )
    .unwrap();
    let workspace = load(&root);
    let id = letters[0].id;
    let store = Store::open_target(&workspace.state).await.unwrap();
    // Each keeps trying while the other holds the flow's lease, as two operators would.
    let replayer = |actor: &'static str| {
        let (workspace, store) = (workspace.clone(), store.clone());
        async move {
            loop {
                match replay(&workspace, &store, id, actor).await {
                    Err(RunError::Store(switchyard::store::StoreError::FlowLocked { .. })) => {
                        tokio::task::yield_now().await;
                    }
                    other => return other.unwrap(),
                }
            }
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(replayer("alice")),
        tokio::spawn(replayer("bob"))
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        [
            ReplayOutcome::AlreadyResolved(switchyard::store::DeadLetterStatus::Replayed),
            ReplayOutcome::Delivered,
        ]
    );
    assert_eq!(delivered_ids(&root), ["1", "2"], "the replayed line once");
}
