//! `switchyard docs` and `explain --format`: the evidence pack of the reference workspace, its
//! pages and their content, opened in headless Chromium (Debian's `chromium` driven by
//! playwright-core from tests/browser): no console error, no network request, the ownership
//! matrix and every flow diagram rendered.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn switchyard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .current_dir(ROOT)
        .args(args)
        .output()
        .unwrap()
}

fn facts() -> Value {
    let out = switchyard(&["explain", "flows", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn pack(format: &str, test: &str) -> PathBuf {
    let dir = temp(&format!("pack-{format}-{test}"));
    let out = switchyard(&[
        "docs",
        "flows",
        "--out",
        dir.to_str().unwrap(),
        "--format",
        format,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn every_flow_has_a_page_with_its_diagram_and_every_failure_its_owner_and_runbook() {
    let facts = facts();
    let dir = pack("html", "pages");
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(index.contains("id=\"ownership-matrix\""));
    // Every flow file has its facts, reconcile flows included: a flow the facts drop would
    // otherwise drop silently from every page below too.
    let names: Vec<&str> = facts["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    let declared = crate::explain::reference_flows();
    assert_eq!(
        names,
        declared.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
    );
    for (name, reconcile) in &declared {
        let flow = facts["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name.as_str())
            .unwrap();
        assert_eq!(
            flow["kind"],
            if *reconcile { "reconcile" } else { "move" },
            "{name}"
        );
        assert!(
            index.contains(&format!(
                "<td><a href=\"flows/{name}.html\">{name}</a></td><td>{}</td>",
                flow["object"].as_str().unwrap()
            )),
            "{name} missing from the index's flow list"
        );
    }
    for flow in facts["flows"].as_array().unwrap() {
        let name = flow["name"].as_str().unwrap();
        assert!(
            index.contains(&format!("href=\"flows/{name}.html\"")),
            "index lacks {name}"
        );
        let page = std::fs::read_to_string(dir.join(format!("flows/{name}.html"))).unwrap();
        assert!(
            page.contains("<svg class=\"flow-diagram\""),
            "{name}: no diagram"
        );
        for failure in flow["failures"].as_array().unwrap() {
            let mode = failure["mode"].as_str().unwrap();
            let owner = failure["owner"].as_str().unwrap();
            let row_start = page
                .find(&format!("<tr><td>{mode}</td><td>{owner}</td>"))
                .unwrap_or_else(|| panic!("{name}: no row for {mode} owned by {owner}"));
            let row = &page[row_start..row_start + page[row_start..].find("</tr>").unwrap()];
            if let Some(runbook) = failure["runbook"].as_str() {
                let first_words: String = runbook
                    .split_whitespace()
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" ");
                assert!(
                    row.contains(&first_words.replace('\'', "&#39;")),
                    "{name}/{mode}: runbook missing in {row}"
                );
            }
        }
    }
    // Self-contained: nothing is fetched. The SVG namespace is a name, not a request.
    for entry in walk(&dir) {
        let text = std::fs::read_to_string(&entry).unwrap();
        let cleaned = text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for needle in [
            "src=\"http",
            "href=\"http",
            "url(http",
            "<script",
            "@import",
        ] {
            assert!(
                !cleaned.contains(needle),
                "{} contains {needle}",
                entry.display()
            );
        }
    }
}

#[test]
fn a_reconcile_flow_page_shows_its_matching_rules_rates_and_samples() {
    let dir = pack("html", "reconcile");
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(
        index.contains("<tr><td>finance-ops</td><td><a href=\"flows/settlement-reconciliation.html\">settlement-reconciliation</a></td><td>ownership-violation, source-unavailable, reconciliation-variance</td></tr>"),
        "the failure owners table lacks settlement-reconciliation: {index}"
    );
    assert!(
        index
            .contains("statement from ledger against ledger from ledger → report and dead letters")
    );
    let page = std::fs::read_to_string(dir.join("flows/settlement-reconciliation.html")).unwrap();
    for expected in [
        "<svg class=\"flow-diagram\"",
        "class=\"stage stage-source\"><title>statement: ledger</title>",
        "class=\"stage stage-ledger\"><title>ledger: ledger</title>",
        "class=\"stage stage-reconcile\"><title>reconcile one-to-one</title>",
        "class=\"stage stage-report\">",
        "<table class=\"matching\">",
        "<tr><th>join key</th><td><code>/transaction_id</code></td><td><code>/reference</code></td></tr>",
        "<tr><th>billing cycle</th><td><code>/billing_cycle_id</code></td><td><code>/billing_cycle_id</code></td></tr>",
        "<tr><th>currency</th><td><code>/currency</code></td><td><code>/currency</code></td></tr>",
        "ledger (postgres): table `journal_lines`",
        "Strategy <code>one-to-one</code>",
        "<table class=\"rules\">",
        "<code>/reason</code> = fraud → chargebacks-operator",
        "wrong_party (ownership-violation)",
        "<table class=\"rates\">",
        "<td>commission-rate<br>",
        "default: 12% (0.12)",
        "half-away-from-zero",
        "rate_mismatch (reconciliation-variance)",
        "a cycle that ties out says so",
        "<tr><td>reconciliation-variance</td><td>finance-ops</td><td>repair</td>",
        "<p>statement lines</p><pre>{&quot;transaction_id&quot;:&quot;T1&quot;",
        "<p>ledger lines</p><pre>{&quot;journal_id&quot;:&quot;J1&quot;",
        "expected variances: none (every cycle ties out)",
        "<p>expected variances</p><pre>{&quot;kind&quot;:&quot;currency_mismatch&quot;",
    ] {
        assert!(page.contains(expected), "missing {expected:?} in the page");
    }
    // A reconcile flow has no mapping and no delivery retry: none is shown as if it had.
    assert!(!page.contains("<h2>Mapping</h2>"));
    assert!(!page.contains("retry window"));

    let invoice = std::fs::read_to_string(dir.join("flows/invoice-reconciliation.html")).unwrap();
    assert!(invoice.contains("Strategy <code>many-to-one</code>"));
    assert!(invoice.contains("No rule is declared."));

    let md = pack("markdown", "reconcile");
    assert!(md.join("flows/settlement-reconciliation.svg").exists());
    let page = std::fs::read_to_string(md.join("flows/settlement-reconciliation.md")).unwrap();
    for expected in [
        "![path of settlement-reconciliation](settlement-reconciliation.svg)",
        "| join key | `/transaction_id` | `/reference` |",
        "| chargeback-bearer | `/type` = \"CHARGEBACK\" | `/account` | `/reason` = fraud → chargebacks-operator; `/reason` = item_not_received → chargebacks-seller | wrong_party (ownership-violation) | finance-ops |",
        "| commission-rate | `/type` = \"COMMISSION_FEE\" | `/type` = \"ORDER_AMOUNT\" | `/order_line_id` | `/shop_id` | default: 12% (0.12) | opposite | half-away-from-zero | exact | rate_mismatch (reconciliation-variance) | finance-ops |",
        "| reconciliation-variance | finance-ops | repair |",
        "ledger lines:\n\n```json\n{\"journal_id\":\"J1\"",
        "expected variances: none (every cycle ties out)",
    ] {
        assert!(page.contains(expected), "missing {expected:?} in:\n{page}");
    }
    let index = std::fs::read_to_string(md.join("index.md")).unwrap();
    assert!(index.contains("- [settlement-reconciliation](flows/settlement-reconciliation.md)"));

    let markdown = switchyard(&["explain", "flows", "--format", "markdown"]);
    let markdown = String::from_utf8(markdown.stdout).unwrap();
    for (name, reconcile) in crate::explain::reference_flows() {
        assert!(markdown.contains(&format!("## Flow {name}\n")), "{name}");
        if reconcile {
            assert!(markdown.contains(&format!("## Flow {name}\n\n{name}: reconciles ")));
        }
    }
}

#[test]
fn markdown_pack_and_explain_formats() {
    let dir = pack("markdown", "markdown");
    let index = std::fs::read_to_string(dir.join("index.md")).unwrap();
    assert!(index.contains("| offer | **SoT** C U |"), "{index}");
    assert!(dir.join("flows/orders-to-oms.svg").exists());
    let page = std::fs::read_to_string(dir.join("flows/orders-to-oms.md")).unwrap();
    assert!(page.contains("![path of orders-to-oms](orders-to-oms.svg)"));
    assert!(
        page.contains("| deadline-missed | order-desk | escalate |"),
        "{page}"
    );

    let markdown = switchyard(&["explain", "flows", "--format", "markdown"]);
    let markdown = String::from_utf8(markdown.stdout).unwrap();
    assert!(markdown.starts_with("# marketplace-reference\n"));
    assert!(markdown.contains("## Flow shipments-to-marketplace"));
    let facts = facts();
    let orders = facts["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "orders-to-oms")
        .unwrap();
    assert_eq!(orders["acknowledge"], "marketplace");
    assert_eq!(orders["kind"], "move");
    assert_eq!(orders["retry"]["window"], "10m");
    assert_eq!(orders["freshness"], "5m");
    assert!(
        orders["filters"][0]
            .as_str()
            .unwrap()
            .contains("WAITING_ACCEPTANCE")
    );
    assert!(
        orders["mapping"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["field"] == "total_minor" && m["kind"] == "integer")
    );
}

/// The pack in a real browser. Needs Debian's chromium and `npm ci --prefix tests/browser`
/// (`.ci/run` does both); skipped otherwise unless SWITCHYARD_REQUIRE_BROWSER=1.
#[test]
fn the_pack_opens_offline_in_chromium_without_errors() {
    let script = Path::new(ROOT).join("tests/browser/check-pack.mjs");
    let ready = Path::new("/usr/bin/chromium").exists()
        && Path::new(ROOT)
            .join("tests/browser/node_modules/playwright-core")
            .exists();
    if !ready {
        assert!(
            std::env::var_os("SWITCHYARD_REQUIRE_BROWSER").is_none(),
            "SWITCHYARD_REQUIRE_BROWSER is set but chromium or tests/browser/node_modules is missing"
        );
        eprintln!(
            "SKIPPED the_pack_opens_offline_in_chromium_without_errors: install chromium \
             (apt-get install chromium) and run `npm ci --prefix tests/browser`"
        );
        return;
    }
    let dir = pack("html", "browser");
    let shots = dir.join("screenshots");
    let out = Command::new("node")
        .arg(&script)
        .arg(&dir)
        .arg(&shots)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    let pages = report["pages"].as_array().unwrap();
    let facts = facts();
    let index = &pages[0];
    assert_eq!(index["file"], "index.html");
    assert_eq!(
        index["matrixRows"].as_u64().unwrap() as usize,
        facts["objects"].as_array().unwrap().len() + 1
    );
    assert!(index["matrix"]["w"].as_f64().unwrap() > 100.0, "{index}");
    assert!(
        index["matrixPng"].as_u64().unwrap() > 2_000,
        "the matrix screenshot is blank: {index}"
    );
    assert_eq!(pages.len(), facts["flows"].as_array().unwrap().len() + 1);
    for page in &pages[1..] {
        let file = page["file"].as_str().unwrap();
        assert!(
            page["diagram"]["w"].as_f64().unwrap() > 300.0,
            "{file}: {page}"
        );
        assert!(page["stages"].as_u64().unwrap() >= 4, "{file}: {page}");
        assert_eq!(
            page["failures"], page["failureRows"],
            "{file}: a failure mode missing from the diagram"
        );
        assert!(page["owners"].as_u64().unwrap() >= 1, "{file}");
        assert!(
            page["diagramPng"].as_u64().unwrap() > 4_000,
            "{file}: the diagram screenshot is blank"
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path
            .extension()
            .is_some_and(|e| e == "html" || e == "md" || e == "svg")
        {
            out.push(path);
        }
    }
    out
}
