//! Settlement in the reference workspace, end to end against the sandbox (issue 9, "done
//! means"): the real `switchyard run` posts the journal finance booked and takes the
//! transaction log by API and the statement files dropped by SFTP into the finance ledger,
//! then `switchyard reconcile` reconciles every seeded billing cycle. The clean cycle ties out
//! to the cent; each cycle's injected defect is exactly one variance of the exact amount
//! (the invoice and payout defects by `invoice-reconciliation` and `payout-reconciliation`),
//! routed to finance-ops, as the sandbox's own expectations say; a rerun gives the same report
//! and no second dead letter. On the embedded SQLite ledger (LEDGER_URL unset, the README's
//! main command on a fresh machine) and on PostgreSQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;
use switchyard::sandbox::{Sandbox, SandboxConfig, StatementDropConfig};
use switchyard::store::testing;

use crate::util::copy_dir;

/// Kinds the reconciliation finds against the ledger; the sandbox's other two cycles carry
/// defects within the statement itself (an invoice total, a payout), which the invoice and
/// payout reconciliations find.
const LEDGER_KINDS: &[&str] = &[
    "missing_in_ledger",
    "duplicate_in_ledger",
    "currency_mismatch",
    "amount_mismatch",
    "rate_mismatch",
    "wrong_party",
    "missing_in_statement",
];

/// The reference workspace copied for one test, and the environment its commands run with
/// (the sandbox's, and `LEDGER_URL` on PostgreSQL).
pub(crate) struct Run {
    pub(crate) root: PathBuf,
    pub(crate) env: Vec<(String, String)>,
}

impl Run {
    /// `switchyard --log warn ARGS` in the workspace, `LEDGER_URL` only if `env` sets it.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .current_dir(&self.root)
            .env_remove("LEDGER_URL")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["--log", "warn"])
            .args(args);
        command
    }

    pub(crate) fn switchyard(&self, args: &[&str]) -> (String, String, i32) {
        let out = self.command(args).output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    }

    pub(crate) fn run(&self, flow: &str) -> String {
        let (stdout, stderr, code) = self.switchyard(&["run", ".", flow]);
        assert_eq!(code, 0, "run {flow}: {stdout}\n{stderr}");
        format!("{stdout}{stderr}")
    }
}

/// The reference workspace `flows/` copied to `root`; with a PostgreSQL ledger `(url,
/// schema)`, its ledger tables moved into that schema (so tests never share a table).
pub(crate) fn reference_workspace(root: &Path, ledger: Option<&(String, String)>) {
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), root);
    let Some((_, schema)) = ledger else {
        return;
    };
    for file in [
        "sql/ledger.sql",
        "flows/settlement-lines-to-ledger.yaml",
        "flows/statement-drops-to-ledger.yaml",
        "flows/journal-to-ledger.yaml",
        "flows/settlement-reconciliation.yaml",
        "flows/invoice-reconciliation.yaml",
        "flows/payout-reconciliation.yaml",
    ] {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .replace(
                "TABLE IF NOT EXISTS statement_lines",
                &format!("TABLE IF NOT EXISTS {schema}.statement_lines"),
            )
            .replace(
                "TABLE IF NOT EXISTS journal_lines",
                &format!("TABLE IF NOT EXISTS {schema}.journal_lines"),
            )
            .replace(
                "ON statement_lines",
                &format!("ON {schema}.statement_lines"),
            )
            .replace("ON journal_lines", &format!("ON {schema}.journal_lines"))
            .replace(
                "table: statement_lines",
                &format!("table: {schema}.statement_lines"),
            )
            .replace(
                "table: journal_lines",
                &format!("table: {schema}.journal_lines"),
            )
            .replace(
                "FROM statement_lines",
                &format!("FROM {schema}.statement_lines"),
            );
        std::fs::write(&path, text).unwrap();
    }
}

/// A fresh schema for a PostgreSQL ledger, `(url, schema)`; `None` (the test skipped, said on
/// stderr) when PostgreSQL does not answer and is not required.
pub(crate) async fn postgres_ledger(test: &str) -> Option<(String, String)> {
    let url = testing::postgres_url();
    let schema = testing::unique_schema(test);
    if !testing::fresh_schema(test, &url, &schema).await {
        return None;
    }
    let client = testing::raw_postgres(&url).await.unwrap();
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .await
        .unwrap();
    Some((url, schema))
}

/// A variance's cycle, currency, difference and owner.
pub(crate) type Found = (Value, Value, Option<Decimal>, Value, Value);

/// Variances by kind and reference (the journal ID for `missing_in_statement`, else the
/// transaction ID).
pub(crate) type Variances = BTreeMap<(String, String), Found>;

fn dec(v: &Value) -> Option<Decimal> {
    v.as_str()
        .map(|s| Decimal::from_str_exact(s).unwrap().normalize())
}

fn variance_entry(v: &Value) -> ((String, String), Found) {
    let kind = v["kind"].as_str().unwrap();
    let reference = if kind == "missing_in_statement" {
        &v["journal_id"]
    } else {
        &v["transaction_id"]
    };
    // The rate that failed, by name: the seed states it in an object with the rates, the
    // report as a string (only rates are compared: a `wrong_party` names its rule too).
    let rule = match &v["rule"] {
        Value::Object(seeded) => seeded.get("rule").cloned().unwrap_or(Value::Null),
        named if kind == "rate_mismatch" => named.clone(),
        _ => Value::Null,
    };
    (
        (kind.to_owned(), reference.as_str().unwrap().to_owned()),
        (
            v["billing_cycle_id"].clone(),
            v["currency"].clone(),
            dec(&v["difference"]),
            v["owner"].clone(),
            rule,
        ),
    )
}

/// The variances the sandbox seeded that a reconciliation against the ledger finds.
pub(crate) fn seeded_ledger_variances(expected: &Value) -> Variances {
    expected["cycles"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|cycle| cycle["variances"].as_array().unwrap())
        .filter(|v| LEDGER_KINDS.contains(&v["kind"].as_str().unwrap()))
        .map(variance_entry)
        .collect()
}

/// The variances of a report's `variances.jsonl`, each at most once.
pub(crate) fn reported_variances(variances: &[Value]) -> Variances {
    let mut got = Variances::new();
    for v in variances {
        let (key, value) = variance_entry(v);
        let previous = got.insert(key, value);
        assert!(previous.is_none(), "a variance reported twice: {v}");
    }
    got
}

async fn settle(test: &str, ledger_url: Option<(String, String)>) {
    let base =
        std::env::temp_dir().join(format!("switchyard-settle-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let drop = base.join("drop");
    let sandbox = Sandbox::start(SandboxConfig {
        statement_drop: Some(StatementDropConfig {
            interval: Duration::from_millis(100),
            upload: Duration::from_millis(50),
            ..StatementDropConfig::new(&drop)
        }),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let root = base.join("ws");
    reference_workspace(&root, ledger_url.as_ref());
    let mut env: Vec<(String, String)> = sandbox.env();
    if let Some((url, _)) = &ledger_url {
        env.push(("LEDGER_URL".into(), url.clone()));
    }
    let run = Run {
        root: root.clone(),
        env,
    };
    // Every cycle's statement file is dropped (and the duplicate), then old enough to read.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = std::fs::read_dir(&drop)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".csv"))
                    .count()
            })
            .unwrap_or(0);
        if done >= 9 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox dropped {done} of 9 files"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let posted = run.run("journal-to-ledger");
    if ledger_url.is_none() {
        assert!(
            posted.contains("LEDGER_URL is not set; posting into the embedded SQLite ledger"),
            "the fallback is not announced: {posted}"
        );
    }
    let first = run.run("settlement-lines-to-ledger");
    assert!(!first.contains("read 0,"), "{first}");
    // The next run starts after the last line checkpointed (seek paging with a cursor), not
    // from the top of the log.
    let next = run.run("settlement-lines-to-ledger");
    assert!(
        next.contains("read 0,") && next.contains("duplicates 0"),
        "the log was read again: {next}"
    );
    tokio::time::sleep(Duration::from_millis(2_100)).await; // `settle: 2s`
    let drops = run.run("statement-drops-to-ledger");
    assert!(drops.contains("dead letters 0"), "{drops}");
    assert!(drop.join("archive").read_dir().unwrap().count() >= 9);
    // Posting the journal again posts nothing twice.
    let again = run.run("journal-to-ledger");
    assert!(again.contains("delivered 0"), "{again}");

    let out = base.join("report");
    let (stdout, stderr, code) = run.switchyard(&[
        "reconcile",
        ".",
        "settlement-reconciliation",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let variances = read_lines(&out.join("variances.jsonl"));
    let client = switchyard::connectors::http::client_builder()
        .build()
        .expect("client");
    let expected: Value = client
        .get(format!(
            "{}/_sandbox/marketplace/settlement/expected",
            sandbox.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = seeded_ledger_variances(&expected);
    assert!(
        want.len() >= 5,
        "the sandbox seeds at least five ledger defects: {want:?}"
    );
    let got = reported_variances(&variances);
    assert_eq!(
        got, want,
        "variances differ from the sandbox's seeded defects"
    );
    // The clean cycle ties out to the cent, and the report says so.
    let totals = read_lines(&out.join("totals.jsonl"));
    let clean: Vec<&Value> = totals
        .iter()
        .filter(|t| t["billing_cycle_id"] == "BC-2026-10-1")
        .collect();
    assert!(!clean.is_empty());
    for t in clean {
        assert_eq!(dec(&t["variance"]), Some(Decimal::ZERO), "{t}");
        assert_eq!(t["ties_out"], true, "{t}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for (_, reference) in want.keys() {
        assert!(
            report.contains(reference.as_str()),
            "report.md does not name {reference}"
        );
    }
    assert!(report.contains("ties out"), "{report}");
    // A rerun gives the same report and no second dead letter.
    let out2 = base.join("report2");
    let (stdout, _, code) = run.switchyard(&[
        "reconcile",
        ".",
        "settlement-reconciliation",
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(out.join("variances.jsonl")).unwrap(),
        std::fs::read_to_string(out2.join("variances.jsonl")).unwrap()
    );
    assert!(
        stdout.contains(&format!(
            "dead letters: 0 new, {} already recorded",
            want.len()
        )),
        "{stdout}"
    );
    let (list, _, _) = run.switchyard(&["dlq", "list", ".", "--flow", "settlement-reconciliation"]);
    assert!(
        list.contains(&format!("{} dead letter(s)", want.len())),
        "{list}"
    );
    assert!(list.contains("ownership-violation"), "{list}");
    // The checks within the statement: invoice totals and payouts against the lines they
    // cover, each the one seeded defect of its cycle, keyed by the invoice.
    for (flow, kind) in [
        ("invoice-reconciliation", "invoice_total_mismatch"),
        ("payout-reconciliation", "payout_mismatch"),
    ] {
        let seeded: Vec<&Value> = expected["cycles"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["variances"].as_array().unwrap())
            .filter(|v| v["kind"] == kind)
            .collect();
        assert_eq!(seeded.len(), 1, "the sandbox seeds one {kind}");
        let dir = base.join(flow);
        let (stdout, stderr, code) =
            run.switchyard(&["reconcile", ".", flow, "--out", dir.to_str().unwrap()]);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        let found = read_lines(&dir.join("variances.jsonl"));
        assert_eq!(found.len(), 1, "{flow}: {found:?}");
        let (got, want) = (&found[0], seeded[0]);
        assert_eq!(got["kind"], "amount_mismatch", "{flow}: {got}");
        assert_eq!(
            got["transaction_id"], want["accounting_document_number"],
            "{flow}: {got}"
        );
        assert_eq!(got["currency"], want["currency"], "{flow}: {got}");
        assert_eq!(
            dec(&got["difference"]),
            dec(&want["difference"]),
            "{flow}: {got}"
        );
        assert_eq!(got["owner"], "finance-ops", "{flow}: {got}");
    }
    let _ = std::fs::remove_dir_all(&base);
}

pub(crate) fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_reconciles_every_seeded_cycle_on_the_embedded_ledger() {
    settle("sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_reconciles_every_seeded_cycle_on_postgres() {
    let Some(ledger) = postgres_ledger("settlement::on_postgres").await else {
        return;
    };
    settle("postgres", Some(ledger)).await;
}
