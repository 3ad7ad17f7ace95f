//! The settlement business metrics through `serve`'s real `/metrics`: unmatched lines by side
//! and age (from each line's date, or its cycle's end), variances by kind (a commission off
//! its contracted rate among them), and days to close a cycle — open and growing until the
//! reconciliation that first ties it out, fixed from then on, and the same after a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use crate::daemon::Daemon;
use crate::util::{TestState, copy_dir};

const FLOW: &str = "recon";
const DAY: f64 = 86_400.0;

const FLOW_FILE: &str = r#"flow: recon
object: settlement-line
pattern: batch
latency: finance-close
trigger: { poll: 1s }
from: { system: marketplace-statement, path: statement.jsonl, format: jsonl }
reconcile:
  ledger: { system: finance-ledger, path: ledger.csv, format: csv }
  key: { statement: /transaction_id, ledger: /reference }
  cycle: { statement: /billing_cycle_id, ledger: /billing_cycle_id }
  amount: { statement: /amount, ledger: /amount }
  currency: { statement: /currency, ledger: /currency }
  ledger_line: /journal_id
  line_date: { statement: /date_created, ledger: /posted_at }
  rates:
    commission-rate:
      charged: { field: /type, equals: COMMISSION_FEE }
      base: { field: /type, equals: ORDER_AMOUNT }
      per: /order_line_id
      default: "0.12"
failures:
  reconciliation-variance: { owner: finance-ops, action: repair, runbook: Correct the posting. }
  ownership-violation: { owner: finance-ops, action: repair, runbook: Move the posting. }
  source-unavailable: { owner: finance-ops, action: retry, runbook: Try again. }
"#;

/// A statement line `days` ago.
fn line(
    now: Timestamp,
    tid: &str,
    cycle: &str,
    kind: &str,
    order: &str,
    amount: &str,
    days: i64,
) -> String {
    let at = now - SignedDuration::from_hours(24 * days);
    format!(
        r#"{{"transaction_id":"{tid}","billing_cycle_id":"{cycle}","type":"{kind}","order_line_id":"{order}","amount":"{amount}","currency":"EUR","date_created":"{at}"}}"#
    )
}

/// The workspace: `examples/settlement-bench`'s systems with the flow above.
fn workspace(test: &str) -> (PathBuf, TestState) {
    let root = std::env::temp_dir().join(format!(
        "switchyard-recon-metrics-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/settlement-bench");
    copy_dir(&bench.join("contracts"), &root.join("contracts"));
    std::fs::copy(bench.join("switchyard.yaml"), root.join("switchyard.yaml")).unwrap();
    std::fs::create_dir_all(root.join("flows")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(root.join("flows/recon.yaml"), FLOW_FILE).unwrap();
    let state = TestState::attach(test, &root);
    (root, state)
}

/// Cycle A ended 40 days ago, B 3 days ago. `fixed`: every line posted at its amount and
/// the commission charged at its rate; otherwise A's refund was never posted, B's commission
/// was charged at 15 % (the ledger posted the contracted 12 %), and two journal lines no
/// statement explains sit in B, one posted two hours ago, one undated.
fn write_sides(root: &Path, now: Timestamp, fixed: bool) {
    let fee = if fixed { "-6.00" } else { "-7.50" };
    let statement = [
        line(now, "T1", "A", "ORDER_AMOUNT", "O1", "100.00", 41),
        line(now, "T2", "A", "COMMISSION_FEE", "O1", "-12.00", 41),
        line(now, "T3", "A", "REFUND_ORDER_AMOUNT", "O1", "-100.00", 40),
        line(now, "T4", "B", "ORDER_AMOUNT", "O2", "50.00", 3),
        line(now, "T5", "B", "COMMISSION_FEE", "O2", fee, 3),
    ];
    replace(
        &root.join("data/statement.jsonl"),
        &(statement.join("\n") + "\n"),
    );
    let posted = |days: i64| (now - SignedDuration::from_hours(24 * days)).to_string();
    let mut ledger = vec![
        "journal_id,reference,amount,currency,posted_at,billing_cycle_id".to_owned(),
        format!("J1,T1,100.00,EUR,{},A", posted(41)),
        format!("J2,T2,-12.00,EUR,{},A", posted(41)),
        format!("J4,T4,50.00,EUR,{},B", posted(3)),
        format!("J5,T5,-6.00,EUR,{},B", posted(3)),
    ];
    if fixed {
        ledger.push(format!("J3,T3,-100.00,EUR,{},A", posted(40)));
    } else {
        let recent = now - SignedDuration::from_hours(2);
        ledger.push(format!("J8,X8,1.00,EUR,{recent},B"));
        ledger.push("J9,X9,2.00,EUR,,B".to_owned());
    }
    replace(&root.join("data/ledger.csv"), &(ledger.join("\n") + "\n"));
}

/// Writes `path` whole at once (a rename), so a run under way never reads half of it.
fn replace(path: &Path, text: &str) {
    let part = path.with_extension("part");
    std::fs::write(&part, text).unwrap();
    std::fs::rename(&part, path).unwrap();
}

/// The value of the series `name{labels}`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn unmatched(side: &str, age: &str) -> String {
    format!(
        "switchyard_reconciliation_unmatched_lines{{flow=\"{FLOW}\",side=\"{side}\",age=\"{age}\"}}"
    )
}

fn close(cycle: &str) -> String {
    format!("switchyard_reconciliation_cycle_close_seconds{{flow=\"{FLOW}\",cycle=\"{cycle}\"}}")
}

fn tied(cycle: &str) -> String {
    format!("switchyard_reconciliation_cycle_tied_out{{flow=\"{FLOW}\",cycle=\"{cycle}\"}}")
}

/// Scrapes until `ready` holds of the text (30 s at most).
async fn scrape_until(daemon: &Daemon, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = daemon.get("/metrics").await;
        if ready(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}:\n{text}\nlogs:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn near(got: Option<f64>, want: f64, slack: f64) -> bool {
    got.is_some_and(|got| (got - want).abs() <= slack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_unmatched_lines_by_age_and_days_to_close() {
    let (root, _state) = workspace("serve");
    let now = Timestamp::now();
    write_sides(&root, now, false);
    let daemon = Daemon::start_env(&root, &[]);
    let text = scrape_until(&daemon, "reconciled", |t| value(t, &tied("A")).is_some()).await;
    for (side, age, n) in [
        ("statement", "30d+", 1.0),
        ("statement", "0-1d", 0.0),
        ("statement", "unknown", 0.0),
        ("ledger", "0-1d", 1.0),
        // Undated: as old as its cycle's end.
        ("ledger", "1-7d", 1.0),
        ("ledger", "7-30d", 0.0),
        ("ledger", "unknown", 0.0),
    ] {
        assert_eq!(
            value(&text, &unmatched(side, age)),
            Some(n),
            "{side} {age}:\n{text}"
        );
    }
    let kind =
        |k: &str| format!("switchyard_reconciliation_variances{{flow=\"{FLOW}\",kind=\"{k}\"}}");
    assert_eq!(value(&text, &kind("rate_mismatch")), Some(1.0), "{text}");
    assert_eq!(value(&text, &kind("amount_mismatch")), None, "{text}");
    assert_eq!(value(&text, &tied("A")), Some(0.0));
    assert_eq!(value(&text, &tied("B")), Some(0.0));
    // Open cycles: days since their end, growing between scrapes.
    let open_a = value(&text, &close("A"));
    assert!(near(open_a, 40.0 * DAY, 120.0), "{open_a:?}");
    assert!(near(value(&text, &close("B")), 3.0 * DAY, 120.0), "{text}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (_, text) = daemon.get("/metrics").await;
    assert!(value(&text, &close("A")) > open_a, "{text}");

    // Finance posts the refund, reverses the stray lines, the marketplace corrects its
    // charge: both cycles tie out, and their time to close stops growing.
    write_sides(&root, now, true);
    let text = scrape_until(&daemon, "tied out", |t| {
        value(t, &tied("A")) == Some(1.0) && value(t, &tied("B")) == Some(1.0)
    })
    .await;
    for side in ["statement", "ledger"] {
        for age in ["0-1d", "1-7d", "7-30d", "30d+", "unknown"] {
            assert_eq!(
                value(&text, &unmatched(side, age)),
                Some(0.0),
                "{side} {age}"
            );
        }
    }
    assert_eq!(
        value(&text, &kind("rate_mismatch")),
        None,
        "gone with its variance:\n{text}"
    );
    let closed_a = value(&text, &close("A")).expect("A");
    let closed_b = value(&text, &close("B")).expect("B");
    assert!(near(Some(closed_a), 40.0 * DAY, 120.0), "{closed_a}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (_, text) = daemon.get("/metrics").await;
    assert_eq!(value(&text, &close("A")), Some(closed_a), "{text}");
    daemon.kill();

    // A restart keeps when each cycle closed: the store has it.
    let daemon = Daemon::start_env(&root, &[]);
    let (_, text) = daemon.get("/metrics").await;
    assert_eq!(value(&text, &close("A")), Some(closed_a), "{text}");
    assert_eq!(value(&text, &close("B")), Some(closed_b), "{text}");
    daemon.kill();
    let _ = std::fs::remove_dir_all(&root);
}
