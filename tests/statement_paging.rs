//! Statement intake over HTTP: a marketplace's seller transaction log read with seek paging,
//! thousands of lines per page, end to end through a flow into a file. A line appended to the
//! log while it is being paged is read once, and nothing twice; the next run continues after
//! the last line read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::get;
use serde_json::{Value, json};
use switchyard::runtime::{FlowRun, RunOptions, RunReport};
use switchyard::spec::model::Workspace;
use switchyard::spec::{EnvLookup, LoadOptions, load_workspace};
use switchyard::store::Store;

use crate::util::TestState;

const FLOW: &str = "transaction-log";
const PAGE: usize = 2_000;

/// The operator's transaction log: lines in `id` order, served after a key.
#[derive(Default)]
struct Log {
    lines: Vec<Value>,
    /// Before request n (1-based), this many lines are appended.
    appends: HashMap<usize, usize>,
    requests: usize,
    /// Lines served, over every page.
    served: usize,
}

impl Log {
    fn append(&mut self, count: usize) {
        let currencies = ["EUR", "JPY", "BHD", "USD", "GBP"];
        let kinds = ["ORDER_AMOUNT", "COMMISSION_FEE", "COMMISSION_VAT", "REFUND"];
        for _ in 0..count {
            let id = self.lines.len() as u64 + 1;
            let kind = kinds[id as usize % 4];
            self.lines.push(json!({
                "id": id,
                "billing_cycle_id": format!("2026-11-{}", 1 + id % 2),
                "type": kind,
                "amount": format!("{}.{:02}", id % 500, id % 100),
                "currency": currencies[id as usize % 5],
                "order_id": format!("MKP-{:07}", id / 4),
            }));
        }
    }
}

/// `GET /api/transactions?since=&after=&limit=`: lines whose `id` is greater than both keys.
async fn transactions(
    State(log): State<Arc<Mutex<Log>>>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    let mut log = log.lock().unwrap();
    log.requests += 1;
    let n = log.requests;
    if let Some(count) = log.appends.remove(&n) {
        log.append(count);
    }
    let key = |name: &str| q.get(name).map_or(0, |v| v.parse::<u64>().unwrap());
    let after = key("since").max(key("after"));
    let limit: usize = q["limit"].parse().unwrap();
    let lines: Vec<Value> = log
        .lines
        .iter()
        .filter(|l| l["id"].as_u64().unwrap() > after)
        .take(limit)
        .cloned()
        .collect();
    log.served += lines.len();
    axum::Json(json!({ "lines": lines }))
}

async fn serve(log: Log) -> (String, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(log));
    let app = axum::Router::new()
        .route("/api/transactions", get(transactions))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

fn workspace(base: &str) -> (PathBuf, TestState, Workspace) {
    let root = std::env::temp_dir().join(format!("switchyard-txlog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["flows", "contracts"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(
        root.join("switchyard.yaml"),
        r#"version: 1
name: statement-paging-test
model: operator
systems:
  marketplace:
    description: The marketplace's seller transaction log API.
    http: { base_url: "${MARKETPLACE_URL}" }
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
    key: [id]
    contract: contracts/line.json
    source_of_truth: marketplace
    create: [marketplace]
    update: [marketplace]
    consume: [finance]
"#,
    )
    .unwrap();
    std::fs::write(
        root.join("contracts/line.json"),
        r#"{ "type": "object", "required": ["id", "amount", "currency"],
  "properties": { "id": { "type": "integer" }, "amount": { "type": "string" },
                  "currency": { "type": "string" } } }"#,
    )
    .unwrap();
    std::fs::write(
        root.join(format!("flows/{FLOW}.yaml")),
        format!(
            "flow: {FLOW}\n\
             description: The seller transaction log, into finance.\n\
             object: settlement-line\n\
             pattern: batch\n\
             latency: finance-close\n\
             from:\n  system: marketplace\n  request: {{ path: /api/transactions, query: {{ since: \"{{{{cursor}}}}\" }} }}\n  \
             records: /lines\n  cursor: id\n  pagination: {{ style: seek, from: /id, size: {PAGE} }}\n\
             to: {{ system: finance, path: lines.jsonl, format: jsonl }}\n\
             map:\n  id: {{ from: /id, type: integer }}\n  amount: \"{{{{amount}}}}\"\n  currency: \"{{{{currency}}}}\"\n"
        ),
    )
    .unwrap();
    let state = TestState::attach("statement_paging", &root);
    let options = LoadOptions {
        strict: true,
        env: EnvLookup::empty().with("MARKETPLACE_URL", base),
    };
    let loaded = load_workspace(&root, &options);
    let workspace = loaded
        .workspace
        .unwrap_or_else(|| panic!("workspace does not load: {:?}", loaded.diagnostics));
    (root, state, workspace)
}

async fn run(workspace: &Workspace) -> RunReport {
    let store = Store::open_target(&workspace.state).await.unwrap();
    let options = RunOptions {
        progress: false,
        ..RunOptions::default()
    };
    FlowRun::new(workspace, FLOW, store, options, None, None)
        .await
        .expect("flow")
        .run()
        .await
        .expect("run")
}

fn delivered_ids(root: &Path) -> Vec<u64> {
    std::fs::read_to_string(root.join("out/lines.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_log_of_five_pages_of_2000_lines_with_a_line_appended_while_paging() {
    let mut log = Log::default();
    log.append(5 * PAGE);
    // A line lands in the log while the third page is being asked for.
    log.appends.insert(3, 1);
    let (base, log) = serve(log).await;
    let (root, _state, workspace) = workspace(&base);

    let report = run(&workspace).await;
    let total = 5 * PAGE + 1;
    {
        let log = log.lock().unwrap();
        // Five full pages, then the appended line on a short sixth: each line served once.
        assert_eq!((log.requests, log.served), (6, total));
    }
    assert_eq!(
        (
            report.read,
            report.delivered,
            report.duplicates,
            report.dead_lettered
        ),
        (total as u64, total as u64, 0, 0)
    );
    let expected: Vec<u64> = (1..=total as u64).collect();
    assert_eq!(
        delivered_ids(&root),
        expected,
        "every line once, in log order"
    );

    // The next run asks from the last line read: nothing again, then only what is new.
    assert_eq!(run(&workspace).await.read, 0);
    log.lock().unwrap().append(3);
    let next = run(&workspace).await;
    assert_eq!((next.read, next.delivered), (3, 3));
    let expected: Vec<u64> = (1..=total as u64 + 3).collect();
    assert_eq!(delivered_ids(&root), expected);
    assert_eq!(log.lock().unwrap().served, total + 3);
    let _ = std::fs::remove_dir_all(&root);
}
