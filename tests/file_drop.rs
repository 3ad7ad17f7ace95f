//! Drop folders end to end on real files and the real store: each dropped statement is read
//! once, in name order, then archived; the same content under another name is archived unread
//! and reported; a file being written (a `.part` name, or one modified within the settle
//! interval) is not read; CSV quoting, a BOM and a bad row; a file that cannot be read stops
//! the intake with its name; and `kill -9` of a real `switchyard run` in the middle of a large
//! drop, then a rerun, leaves every record exactly once in the sink.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use switchyard::runtime::{FlowRun, RunError, RunOptions, RunReport};
use switchyard::spec::model::Workspace;
use switchyard::spec::{EnvLookup, LoadOptions, load_workspace};
use switchyard::store::{DeadLetter, DeadLetterFilter, Store};

use crate::util::{StateHold, TestState};

const FLOW: &str = "statements";

const WORKSPACE: &str = r#"version: 1
name: file-drop-test
model: operator
systems:
  marketplace:
    description: The operator's statement drop (SFTP landing folder).
    file: { dir: drop }
  finance:
    description: The finance import folder.
    file: { dir: out }
owners:
  finance-ops:
    contact: finance-ops@example.com
defaults:
  failure_owner: finance-ops
objects:
  settlement-line:
    key: [line_id]
    contract: contracts/line.json
    source_of_truth: marketplace
    create: [marketplace]
    update: [marketplace]
    consume: [finance]
"#;

const CONTRACT: &str = r#"{
  "type": "object",
  "required": ["line_id", "amount"],
  "properties": { "line_id": { "type": "string", "minLength": 1 }, "amount": { "type": "string" } }
}"#;

/// A fresh workspace reading `drop/in/*.<format>` into `out/lines.jsonl`.
fn drop_workspace(name: &str, format: &str) -> (PathBuf, TestState) {
    let root = std::env::temp_dir().join(format!("switchyard-drop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["flows", "contracts", "drop/in"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("switchyard.yaml"), WORKSPACE).unwrap();
    std::fs::write(root.join("contracts/line.json"), CONTRACT).unwrap();
    let flow = format!(
        "flow: {FLOW}\n\
         description: Settlement statements dropped by the marketplace, into finance.\n\
         object: settlement-line\n\
         pattern: batch\n\
         latency: finance-close\n\
         from: {{ system: marketplace, files: \"in/*.{format}\", format: {format}, \
         archive: archive, settle: 30s }}\n\
         to: {{ system: finance, path: lines.jsonl, format: jsonl }}\n\
         map:\n  line_id: \"{{{{line_id}}}}\"\n  amount: \"{{{{amount}}}}\"\n"
    );
    std::fs::write(root.join(format!("flows/{FLOW}.yaml")), flow).unwrap();
    let state = TestState::attach(&format!("file_drop_{name}"), &root);
    (root, state)
}

/// Writes a file into the drop folder as a finished upload: modified a minute ago, well past
/// the 30 s settle interval (no test waits on a real clock for it).
fn drop_file(root: &Path, name: &str, content: &[u8]) {
    let path = root.join("drop/in").join(name);
    std::fs::write(&path, content).unwrap();
    age(&path, Duration::from_secs(60));
}

/// Sets a file's modification time `by` in the past.
fn age(path: &Path, by: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
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

/// The line IDs the sink received, in order.
fn delivered(root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join("out/lines.jsonl")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["line_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The names of the files in a folder of the drop system, sorted.
fn files_in(root: &Path, folder: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("drop").join(folder)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The audit entries of `action`, oldest first.
async fn audited(workspace: &Workspace, action: &str) -> Vec<serde_json::Value> {
    let store = Store::open_target(&workspace.state).await.unwrap();
    let mut entries: Vec<_> = store
        .audit_trail(1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| e.detail)
        .collect();
    entries.reverse();
    entries
}

async fn dead_letters(workspace: &Workspace) -> Vec<DeadLetter> {
    let store = Store::open_target(&workspace.state).await.unwrap();
    store
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap()
}

fn csv(ids: std::ops::Range<u32>) -> Vec<u8> {
    let mut text = String::from("line_id,amount\n");
    for id in ids {
        text.push_str(&format!("L{id:06},{}.{:02}\n", id, id % 100));
    }
    text.into_bytes()
}

fn ids(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|id| format!("L{id:06}")).collect()
}

#[tokio::test]
async fn each_dropped_file_is_read_once_in_name_order_then_archived() {
    let (root, _state) = drop_workspace("once", "csv");
    // Dropped out of order; the header-only file has no record but is archived all the same.
    drop_file(&root, "2026-11-02.csv", &csv(10..15));
    drop_file(&root, "2026-11-01.csv", &csv(0..10));
    drop_file(&root, "2026-11-03.csv", b"line_id,amount\n");
    let workspace = load(&root);
    // Batches of 3: files end mid-batch and on a batch boundary.
    let report = run(&workspace, 3).await.expect("the drop is read");
    assert_eq!(delivered(&root), ids(0..15), "by name, each record once");
    assert_eq!((report.read, report.delivered), (15, 15));
    assert_eq!(files_in(&root, "in"), Vec::<String>::new());
    assert_eq!(
        files_in(&root, "archive"),
        ["2026-11-01.csv", "2026-11-02.csv", "2026-11-03.csv"]
    );
    let archived = audited(&workspace, "file-drop-archived").await;
    let names: Vec<&str> = archived.iter().filter_map(|d| d["file"].as_str()).collect();
    assert_eq!(
        names,
        [
            "in/2026-11-01.csv",
            "in/2026-11-02.csv",
            "in/2026-11-03.csv"
        ]
    );
    assert_eq!(archived[0]["archived_as"], "archive/2026-11-01.csv");

    // Nothing new: nothing read. A new file: only it.
    let again = run(&workspace, 3).await.unwrap();
    assert_eq!(again.read, 0);
    drop_file(&root, "2026-11-04.csv", &csv(15..17));
    let next = run(&workspace, 3).await.unwrap();
    assert_eq!(next.read, 2);
    assert_eq!(delivered(&root), ids(0..17));
}

#[tokio::test]
async fn the_same_content_under_another_name_is_archived_unread_and_reported() {
    let (root, _state) = drop_workspace("duplicate", "csv");
    drop_file(&root, "a.csv", &csv(0..4));
    let workspace = load(&root);
    assert_eq!(run(&workspace, 100).await.unwrap().read, 4);

    // Dropped again under another name, in a later run; and twice within one run.
    drop_file(&root, "a-resent.csv", &csv(0..4));
    drop_file(&root, "b.csv", &csv(4..6));
    drop_file(&root, "b-copy.csv", &csv(4..6));
    let report = run(&workspace, 100).await.unwrap();
    assert_eq!(report.read, 2, "only b's records are read");
    assert_eq!(
        report.duplicates, 0,
        "duplicates are files, not records read"
    );
    assert_eq!(delivered(&root), ids(0..6));
    assert_eq!(files_in(&root, "in"), Vec::<String>::new());
    assert_eq!(
        files_in(&root, "archive"),
        ["a-resent.csv", "a.csv", "b-copy.csv", "b.csv"]
    );
    let duplicates = audited(&workspace, "file-drop-duplicate").await;
    let pairs: Vec<(&str, &str)> = duplicates
        .iter()
        .map(|d| {
            (
                d["file"].as_str().unwrap(),
                d["duplicate_of"].as_str().unwrap(),
            )
        })
        .collect();
    // `b-copy.csv` sorts before `b.csv`: it is the one read, `b.csv` the duplicate.
    assert_eq!(
        pairs,
        [
            ("in/a-resent.csv", "in/a.csv"),
            ("in/b.csv", "in/b-copy.csv")
        ]
    );

    // The same content under the first name again (after archiving): still a duplicate,
    // archived beside the first under a name with its hash.
    drop_file(&root, "a.csv", &csv(0..4));
    assert_eq!(run(&workspace, 100).await.unwrap().read, 0);
    let archive = files_in(&root, "archive");
    assert_eq!(archive.len(), 5, "{archive:?}");
    assert!(
        archive
            .iter()
            .any(|n| n.starts_with("a.") && n.ends_with(".csv") && n.len() == "a.".len() + 12 + 4),
        "{archive:?}"
    );
}

#[tokio::test]
async fn a_file_still_being_written_is_not_read() {
    let (root, _state) = drop_workspace("partial", "csv");
    let workspace = load(&root);
    // An upload under a temporary name, a dotfile, and a file written in place just now.
    drop_file(&root, "2026-11-01.csv.part", &csv(0..3));
    drop_file(&root, ".2026-11-01.csv", &csv(10..13));
    let growing = root.join("drop/in/2026-11-02.csv");
    std::fs::write(&growing, &csv(20..22)[..20]).unwrap();
    let report = run(&workspace, 100).await.unwrap();
    assert_eq!(report.read, 0, "nothing complete yet");
    assert_eq!(delivered(&root), Vec::<String>::new());
    assert_eq!(files_in(&root, "archive"), Vec::<String>::new());

    // The upload is renamed into place; the writer finishes and the file settles.
    std::fs::rename(
        root.join("drop/in/2026-11-01.csv.part"),
        root.join("drop/in/2026-11-01.csv"),
    )
    .unwrap();
    std::fs::write(&growing, csv(20..22)).unwrap();
    // Modified 5 s ago: still inside the 30 s settle interval.
    age(&growing, Duration::from_secs(5));
    let report = run(&workspace, 100).await.unwrap();
    assert_eq!(delivered(&root), ids(0..3), "only the renamed upload");
    assert_eq!(report.read, 3);
    age(&growing, Duration::from_secs(31));
    run(&workspace, 100).await.unwrap();
    let mut expected = ids(0..3);
    expected.extend(ids(20..22));
    assert_eq!(delivered(&root), expected);
    assert_eq!(files_in(&root, "in"), [".2026-11-01.csv"], "dotfiles stay");
}

#[tokio::test]
async fn csv_quotes_line_breaks_a_bom_and_a_bad_row_naming_file_and_line() {
    let (root, _state) = drop_workspace("csv", "csv");
    let statement = b"\xef\xbb\xbfline_id,amount\r\n\
        L1,\"1,234.50\"\r\n\
        \"L2\",\"multi\r\nline \"\"quoted\"\"\"\r\n\
        L3,9.99,extra\r\n\
        L4,4.00\r\n";
    drop_file(&root, "q.csv", statement);
    let workspace = load(&root);
    let report = run(&workspace, 2).await.unwrap();
    assert_eq!(
        (report.read, report.delivered, report.dead_lettered),
        (4, 3, 1)
    );
    let text = std::fs::read_to_string(root.join("out/lines.jsonl")).unwrap();
    let amounts: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["amount"].clone())
        .collect();
    assert_eq!(amounts, ["1,234.50", "multi\r\nline \"quoted\"", "4.00"]);
    let letters = dead_letters(&workspace).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0].letter;
    assert_eq!(letter.line, Some(5));
    assert_eq!(letter.owner, "finance-ops");
    assert_eq!(letter.record.as_bytes(), b"L3,9.99,extra");
    assert!(
        letter
            .error
            .starts_with("in/q.csv line 5: ragged row: 3 fields where the header has 2"),
        "{}",
        letter.error
    );
    assert_eq!(files_in(&root, "archive"), ["q.csv"]);
}

#[tokio::test]
async fn a_file_that_cannot_be_read_stops_the_intake_with_its_name_and_is_kept() {
    let (root, _state) = drop_workspace("corrupt", "csv");
    drop_file(&root, "a.csv", &csv(0..2));
    // Not a CSV statement at all: its header is not UTF-8.
    drop_file(&root, "b.csv", b"\xff\xfe\x00l\x00i\x00n\x00e,x\n1,2\n");
    drop_file(&root, "c.csv", &csv(2..4));
    let workspace = load(&root);
    let err = run(&workspace, 100).await.unwrap_err().to_string();
    assert!(
        err.contains("in/b.csv: line 1: header field 1 is not valid UTF-8"),
        "{err}"
    );
    assert_eq!(
        delivered(&root),
        ids(0..2),
        "the file before it went through"
    );
    assert_eq!(files_in(&root, "in"), ["b.csv", "c.csv"], "nothing lost");
    assert_eq!(files_in(&root, "archive"), ["a.csv"]);

    // Taken away to be repaired: the intake goes on.
    std::fs::rename(root.join("drop/in/b.csv"), root.join("b.csv.bad")).unwrap();
    run(&workspace, 100).await.unwrap();
    assert_eq!(delivered(&root), ids(0..4));

    // A JSONL drop with lines that are not JSON: dead letters with their lines, the rest
    // flows.
    let (root, _state) = drop_workspace("corrupt-jsonl", "jsonl");
    let lines = b"{\"line_id\":\"L1\",\"amount\":\"1\"}\n{\"line_id\": tru\n\
                  {\"line_id\":\"L2\",\"amount\":\"2\"}\n";
    drop_file(&root, "s.jsonl", lines);
    let workspace = load(&root);
    let report = run(&workspace, 100).await.unwrap();
    assert_eq!((report.delivered, report.dead_lettered), (2, 1));
    let letters = dead_letters(&workspace).await;
    assert_eq!(letters[0].letter.line, Some(2));
    assert_eq!(letters[0].letter.record.as_bytes(), b"{\"line_id\": tru");
    assert_eq!(files_in(&root, "archive"), ["s.jsonl"]);
}

/// Waits until the sink file holds more than `lines` lines; fails past `timeout` or if the
/// run ends first.
async fn wait_for_lines(
    root: &Path,
    child: &mut std::process::Child,
    lines: usize,
    timeout: Duration,
) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let now = std::fs::read(root.join("out/lines.jsonl"))
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if now > lines {
            return now;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed ({now} lines)"
        );
        assert!(
            Instant::now() < deadline,
            "the output stayed at {now} lines for {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn switchyard_run(root: &Path, state: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command.current_dir(root).args([
        "run",
        ".",
        FLOW,
        "--batch-size",
        "1000",
        "--json",
        "--state",
        state,
    ]);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_in_a_large_drop_then_rerun_reads_every_record_exactly_once() {
    let (root, state) = drop_workspace("kill9", "jsonl");
    // Three statements of 20,000 lines: 60 batches in all.
    const PER_FILE: u32 = 20_000;
    for (n, name) in ["s1.jsonl", "s2.jsonl", "s3.jsonl"].iter().enumerate() {
        let start = n as u32 * PER_FILE;
        let mut text = String::new();
        for id in start..start + PER_FILE {
            text.push_str(&format!(
                "{{\"line_id\":\"L{id:06}\",\"amount\":\"{id}.00\"}}\n"
            ));
        }
        drop_file(&root, name, text.as_bytes());
    }
    let total = 3 * PER_FILE as usize;

    let mut child = switchyard_run(&root, state.target())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Into the second file, then the store is held: the next batch reaches the output but
    // not the checkpoint, and the run is killed right there.
    let first = wait_for_lines(&root, &mut child, 25_000, Duration::from_secs(120)).await;
    let hold = StateHold::take(state.target()).await;
    wait_for_lines(&root, &mut child, first, Duration::from_secs(60)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    hold.release().await;
    assert!(
        files_in(&root, "in").contains(&"s2.jsonl".to_owned()),
        "killed in the second file"
    );

    let rerun = switchyard_run(&root, state.target()).output().unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
    let read = report["read"].as_u64().unwrap() as usize;
    assert!(
        read < total - PER_FILE as usize,
        "the rerun resumed in the second file, it did not read everything again ({read})"
    );
    let got = delivered(&root);
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a record twice");
    assert_eq!(
        got,
        ids(0..3 * PER_FILE),
        "every record exactly once, in order"
    );
    assert_eq!(files_in(&root, "in"), Vec::<String>::new());
    assert_eq!(
        files_in(&root, "archive"),
        ["s1.jsonl", "s2.jsonl", "s3.jsonl"]
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn a_file_committed_but_not_archived_is_archived_on_the_next_run_without_rereading() {
    let (root, _state) = drop_workspace("unarchived", "csv");
    drop_file(&root, "a.csv", &csv(0..5));
    // The archive cannot be created (a file stands where the folder should be): the records
    // commit, then the move fails, as a crash between the two would leave it.
    std::fs::write(root.join("drop/archive"), b"in the way").unwrap();
    let workspace = load(&root);
    let err = run(&workspace, 2).await.unwrap_err().to_string();
    assert!(err.contains("archiving in/a.csv"), "{err}");
    assert_eq!(
        delivered(&root),
        ids(0..5),
        "committed before the archiving failed"
    );
    assert_eq!(files_in(&root, "in"), ["a.csv"]);

    std::fs::remove_file(root.join("drop/archive")).unwrap();
    let report = run(&workspace, 2).await.unwrap();
    assert_eq!(report.read, 0, "its hash is committed: not read again");
    assert_eq!(delivered(&root), ids(0..5));
    assert_eq!(files_in(&root, "archive"), ["a.csv"]);
    assert_eq!(audited(&workspace, "file-drop-duplicate").await.len(), 0);
}
