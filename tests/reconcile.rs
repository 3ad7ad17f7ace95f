//! `switchyard reconcile` end to end on the shared settlement workload: the real binary
//! reconciles a generated statement against its ledger export, the shared verifier
//! (`verify_settlement.py`) checks the report exactly, a rerun gives the same report and no
//! second dead letter, a corrected ledger resolves the variance's dead letter, and a ledger in
//! a PostgreSQL table reconciles exactly as its CSV export.
//!
//! The workload's generator and verifier are the shared bench's, vendored in `bench/workload`
//! (`$SWITCHYARD_SETTLEMENT_BENCH` names another folder).

use std::path::{Path, PathBuf};
use std::process::Command;

use switchyard::store::{DeadLetterFilter, DeadLetterStatus, testing};

use crate::util::{TestState, copy_dir, switchyard};

const FLOW: &str = "settlement-reconciliation";

fn shared_bench() -> PathBuf {
    // The vendored copy (bench/workload) unless another folder is named; a clean checkout has
    // nothing beside it.
    let dir = std::env::var_os("SWITCHYARD_SETTLEMENT_BENCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/workload"));
    assert!(
        dir.join("verify_settlement.py").is_file(),
        "the settlement workload is not at {} (set SWITCHYARD_SETTLEMENT_BENCH to the folder \
         holding gen_settlement.py and verify_settlement.py)",
        dir.display()
    );
    dir
}

/// The vendored workload is the shared one, when the shared folder is there to compare with.
#[test]
fn the_vendored_workload_is_the_shared_one() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench");
    if !shared.is_dir() {
        return;
    }
    for file in ["gen_settlement.py", "verify_settlement.py"] {
        let ours = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("bench/workload")
                .join(file),
        );
        let theirs = std::fs::read(shared.join(file));
        assert_eq!(
            ours.ok(),
            theirs.ok(),
            "bench/workload/{file} differs from ../shared/bench; see bench/workload/README.md"
        );
    }
}

/// A private copy of `examples/settlement-bench` with a generated workload of `n` lines.
fn workspace(test: &str, n: u32) -> (PathBuf, TestState) {
    let root = std::env::temp_dir().join(format!(
        "switchyard-reconcile-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/settlement-bench"),
        &root,
    );
    let status = Command::new("python3")
        .arg(shared_bench().join("gen_settlement.py"))
        .args(["-n", &n.to_string(), "--seed", "11", "-o"])
        .arg(root.join("data"))
        .status()
        .unwrap_or_else(|err| panic!("python3: {err}"));
    assert!(status.success(), "gen_settlement.py failed");
    let state = TestState::attach(test, &root);
    (root, state)
}

/// Runs the verifier on a report folder; returns its output, asserting exit 0.
fn verify(data: &Path, out: &Path) -> String {
    let output = Command::new("python3")
        .arg(shared_bench().join("verify_settlement.py"))
        .arg(data)
        .arg(out.join("variances.jsonl"))
        .arg(out.join("totals.jsonl"))
        .output()
        .unwrap_or_else(|err| panic!("python3: {err}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "verify_settlement.py: {text}");
    text
}

fn reconcile(root: &Path, out: &Path) -> crate::util::Output {
    let out = out.display().to_string();
    let root_text = root.display().to_string();
    let output = switchyard(root, &["reconcile", &root_text, FLOW, "--out", &out]);
    assert_eq!(output.code, 0, "{output:?}");
    output
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

async fn letters(state: &TestState, status: Option<DeadLetterStatus>) -> Vec<(String, String)> {
    let store = state.open().await;
    let filter = DeadLetterFilter {
        flow: Some(FLOW.into()),
        status,
        ..DeadLetterFilter::default()
    };
    store
        .dead_letters(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|l| {
            (
                l.letter.idempotency_key.unwrap_or_default(),
                l.letter.failure,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_the_shared_workload_once_and_resolves_what_gets_corrected() {
    let (root, state) = workspace("shared", 5000);
    let data = root.join("data");
    let first = root.join("out-1");
    let output = reconcile(&root, &first);
    let verdict = verify(&data, &first);
    assert!(verdict.starts_with("ok: "), "{verdict}");

    let variances = read(&first.join("variances.jsonl"));
    let count = variances.lines().count();
    assert!(
        count > 10,
        "the workload has defects of every kind: {variances}"
    );
    for kind in [
        "missing_in_ledger",
        "missing_in_statement",
        "amount_mismatch",
        "currency_mismatch",
        "duplicate_in_ledger",
    ] {
        assert!(variances.contains(kind), "no {kind} in {variances}");
    }
    assert!(
        output
            .stdout
            .contains(&format!("dead letters: {count} new, 0 already")),
        "{}",
        output.stdout
    );
    let open = letters(&state, Some(DeadLetterStatus::Open)).await;
    assert_eq!(open.len(), count);
    let wrong_party = variances
        .lines()
        .filter(|l| l.contains("wrong_party"))
        .count();
    assert_eq!(
        open.iter()
            .filter(|(_, failure)| failure == "ownership-violation")
            .count(),
        wrong_party
    );
    let report = read(&first.join("report.md"));
    assert!(report.contains("does not tie out"), "{report}");
    assert!(report.contains("finance-ops"), "{report}");
    let csv = read(&first.join("report.csv"));
    assert_eq!(csv.lines().count(), count + 1);

    // The same inputs: the same report, and no dead letter twice.
    let second = root.join("out-2");
    let output = reconcile(&root, &second);
    for file in ["variances.jsonl", "totals.jsonl", "report.csv"] {
        assert_eq!(read(&first.join(file)), read(&second.join(file)), "{file}");
    }
    assert!(
        output
            .stdout
            .contains(&format!("dead letters: 0 new, {count} already")),
        "{}",
        output.stdout
    );
    assert_eq!(letters(&state, None).await.len(), count);

    // Finance reverses the ledger lines no statement line explains: their variances are gone
    // and their dead letters resolved; the others stay open.
    let ledger = read(&data.join("ledger.csv"));
    let unexplained: Vec<&str> = ledger
        .lines()
        .filter(|line| line.split(',').nth(1).is_some_and(|r| r.starts_with('X')))
        .collect();
    assert!(!unexplained.is_empty());
    let corrected: String = ledger
        .lines()
        .filter(|line| !unexplained.contains(line))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(data.join("ledger.csv"), corrected).unwrap();
    let third = root.join("out-3");
    let output = reconcile(&root, &third);
    verify(&data, &third);
    assert!(
        output
            .stdout
            .contains(&format!("{} resolved", unexplained.len())),
        "{}",
        output.stdout
    );
    let open = letters(&state, Some(DeadLetterStatus::Open)).await;
    assert_eq!(open.len(), count - unexplained.len());
    // Resolved, not "replayed": nothing was delivered, the variance is gone at its source.
    let resolved = letters(&state, Some(DeadLetterStatus::Resolved)).await;
    assert_eq!(resolved.len(), unexplained.len());
    assert!(
        resolved
            .iter()
            .all(|(key, _)| key.contains("missing_in_statement"))
    );
    assert!(
        letters(&state, Some(DeadLetterStatus::Replayed))
            .await
            .is_empty()
    );
    assert!(
        open.iter()
            .all(|(key, _)| !key.contains("missing_in_statement"))
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_reconcile_flow_on_its_trigger_without_repeating_letters() {
    let (root, state) = workspace("serve", 2000);
    let flow_file = root.join("flows/settlement-reconciliation.yaml");
    let text = read(&flow_file).replace(
        "trigger: { cron: \"0 6 * * *\", timezone: Europe/Paris }",
        "trigger: { poll: 1s }",
    );
    assert!(text.contains("poll: 1s"));
    std::fs::write(&flow_file, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .arg(&root)
        .args(["--listen", "127.0.0.1:0", "--shutdown-timeout", "5s"])
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start switchyard serve");
    // Bounded: 60 checks a quarter of a second apart, then three more poll periods.
    let mut found = 0;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        found = letters(&state, None).await.len();
        if found > 0 {
            break;
        }
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = letters(&state, None).await.len();
    let _ = child.kill();
    let _ = child.wait();
    assert!(found > 0, "serve never reconciled");
    assert_eq!(after, found, "later runs under serve repeated dead letters");
    // The same state: a run by hand finds every variance already dead-lettered.
    let output = reconcile(&root, &root.join("out"));
    assert!(
        output
            .stdout
            .contains(&format!("dead letters: 0 new, {found} already")),
        "{}",
        output.stdout
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn one_cycle_is_reconciled_alone_and_fail_on_variance_fails() {
    let (root, _state) = workspace("cycle", 2000);
    let root_text = root.display().to_string();
    let output = switchyard(
        &root,
        &[
            "reconcile",
            &root_text,
            FLOW,
            "--cycle",
            "BC-2026-11-2",
            "--format",
            "json",
            "--fail-on-variance",
        ],
    );
    assert_eq!(output.code, 1, "{output:?}");
    let report: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    let totals = report["totals"].as_array().unwrap();
    assert!(!totals.is_empty());
    assert!(
        totals
            .iter()
            .all(|t| t["billing_cycle_id"] == "BC-2026-11-2")
    );
    let variances = report["variances"].as_array().unwrap();
    assert!(!variances.is_empty());
    assert!(
        variances
            .iter()
            .all(|v| v["billing_cycle_id"] == "BC-2026-11-2")
    );
    let unknown = switchyard(&root, &["reconcile", &root_text, "no-such-flow"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .contains("no reconcile flow \"no-such-flow\" in the workspace; reconcile flows: settlement-reconciliation"),
        "{unknown:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_in_postgresql_reconciles_as_its_csv_export() {
    let url = testing::postgres_url();
    let schema = testing::unique_schema("reconcile_ledger");
    if !testing::fresh_schema("reconcile::postgres_ledger", &url, &schema).await {
        return;
    }
    let (root, _state) = workspace("pg", 2000);
    let csv_out = root.join("out-csv");
    reconcile(&root, &csv_out);

    let client = testing::raw_postgres(&url).await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.journal (journal_id text PRIMARY KEY, reference text NOT NULL,
               account text NOT NULL, amount numeric NOT NULL, currency text NOT NULL,
               posted_at text NOT NULL, billing_cycle_id text NOT NULL);"
        ))
        .await
        .unwrap();
    let ledger = read(&root.join("data/ledger.csv"));
    let rows: Vec<Vec<&str>> = ledger
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    for chunk in rows.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|r| {
                format!(
                    "('{}','{}','{}',{},'{}','{}','{}')",
                    r[0], r[1], r[2], r[3], r[4], r[5], r[6]
                )
            })
            .collect();
        client
            .batch_execute(&format!(
                "INSERT INTO {schema}.journal VALUES {}",
                values.join(",")
            ))
            .await
            .unwrap();
    }
    let workspace_file = root.join("switchyard.yaml");
    let text = read(&workspace_file).replace(
        "systems:\n",
        &format!("systems:\n  ledger-db:\n    postgres: {{ url: \"{url}\" }}\n"),
    );
    std::fs::write(&workspace_file, text).unwrap();
    let flow_file = root.join("flows/settlement-reconciliation.yaml");
    let text = read(&flow_file).replace(
        "ledger: { system: finance-ledger, path: ledger.csv, format: csv }",
        &format!(
            "ledger: {{ system: ledger-db, table: {schema}.journal, cursor: posted_at, key: journal_id }}"
        ),
    );
    std::fs::write(&flow_file, text).unwrap();

    let pg_out = root.join("out-pg");
    reconcile(&root, &pg_out);
    verify(&root.join("data"), &pg_out);
    assert_eq!(
        read(&csv_out.join("totals.jsonl")),
        read(&pg_out.join("totals.jsonl"))
    );
    // The same variances; only where they were read differs (a CSV line, a row number).
    let without_line = |text: String| -> Vec<serde_json::Value> {
        text.lines()
            .map(|line| {
                let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
                value.as_object_mut().unwrap().remove("line");
                value
            })
            .collect()
    };
    assert_eq!(
        without_line(read(&csv_out.join("variances.jsonl"))),
        without_line(read(&pg_out.join("variances.jsonl")))
    );
    let _ = testing::drop_schema(&url, &schema).await;
    let _ = std::fs::remove_dir_all(&root);
}
