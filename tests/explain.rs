//! `switchyard explain`: the ownership matrix, the field table and flow summaries.

use crate::util::{fixtures, switchyard};

#[test]
fn explains_the_valid_workspace() {
    let output = switchyard(&fixtures().join("valid"), &["explain"]);
    assert_eq!(output.code, 0, "{output:?}");
    let text = output.stdout;
    assert!(
        text.contains("object  marketplace  storefront\n------  -----------  ----------\noffer   SoT C U      consume\n"),
        "{text}"
    );
    assert!(
        text.contains("offer.listing_status  operator       yes\n"),
        "{text}"
    );
    assert!(
        text.contains("offers-to-storefront: moves offer records from marketplace to storefront. It is a near-real-time flow, polled every 30s"),
        "{text}"
    );
    assert!(
        text.contains("contract-violation goes to seller-support (request a correction), escalated to marketplace-ops after 24h"),
        "{text}"
    );
    assert!(
        text.contains("SLA: changes are delivered within 15m."),
        "{text}"
    );
}

#[test]
fn refuses_a_broken_workspace() {
    let output = switchyard(&fixtures().join("unknown-system"), &["explain"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains("E0101"), "{output:?}");
}

#[test]
fn explains_client_side_rate_limits() {
    let dir = std::env::temp_dir().join(format!("switchyard-explain-rates-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    crate::util::copy_dir(&fixtures().join("valid"), &dir);
    let patch = |file: &str, from: &str, to: &str| {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file}: {from}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    };
    patch(
        "switchyard.yaml",
        r#"http: { base_url: "${MARKETPLACE_URL}" }"#,
        r#"http: { base_url: "${MARKETPLACE_URL}", rate_limit: 10/1s, burst: 20 }"#,
    );
    patch(
        "flows/offers-to-storefront.yaml",
        r#"request: { method: PUT, path: "/catalog/offers/{{sku}}" }"#,
        r#"request: { method: PUT, path: "/catalog/offers/{{sku}}", rate_limit: 1/60s }"#,
    );
    let output = switchyard(&dir, &["explain"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output.stdout.contains(
            "Client-side rate limits, shared by every flow of the process: every call to \
             marketplace at most 10/1s (burst 20); its writes to storefront at most 1/60s."
        ),
        "{}",
        output.stdout
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The flow names declared in the reference workspace's flow files, with whether each is a
/// reconcile flow: read from the files, not from switchyard, so a flow the model or a
/// renderer drops is noticed.
pub(crate) fn reference_flows() -> Vec<(String, bool)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows/flows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("flow: "))
                .unwrap_or_else(|| panic!("{}: no `flow:`", path.display()))
                .trim()
                .to_owned();
            (name, text.lines().any(|l| l == "reconcile:"))
        })
        .collect()
}

#[test]
fn explains_every_flow_of_the_reference_workspace_reconcile_flows_included() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = switchyard(root, &["explain", "flows"]);
    assert_eq!(output.code, 0, "{output:?}");
    let text = output.stdout;
    let flows = reference_flows();
    assert!(
        flows.iter().filter(|(_, reconcile)| *reconcile).count() >= 3,
        "{flows:?}"
    );
    for (name, reconcile) in &flows {
        let opening = if *reconcile {
            format!("\n{name}: reconciles ")
        } else {
            format!("\n{name}: moves ")
        };
        assert!(text.contains(&opening), "explain lacks {name}:\n{text}");
    }
}

#[test]
fn explains_a_reconcile_flow_in_business_words() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = switchyard(root, &["explain", "flows"]);
    assert_eq!(output.code, 0, "{output:?}");
    let text = output.stdout;
    let start = text
        .find("\nsettlement-reconciliation: ")
        .expect("settlement-reconciliation is explained");
    let end = text[start + 1..]
        .find("\n\n")
        .map_or(text.len(), |e| start + 1 + e);
    let flow = &text[start + 1..end];
    for expected in [
        "settlement-reconciliation: reconciles settlement_line records: the statement read from system ledger (table `statement_lines`) against the ledger read from system ledger (table `journal_lines`). It is a batch flow, scheduled by cron `30 * * * * *` (Europe/Paris); its latency class is finance-close: it must be complete before the period closes.\n",
        "A statement line is joined to the ledger lines whose `/reference` equals its `/transaction_id`, per billing cycle (`/billing_cycle_id` on the statement, `/billing_cycle_id` in the ledger) and currency (`/currency`, `/currency`);",
        "One to one: each statement line must be posted exactly once",
        "Amounts must agree to the last minor unit in every currency. No date window is checked.",
        "\nRule `chargeback-bearer` (A chargeback is booked to the party that bears it): for statement lines whose `/type` is \"CHARGEBACK\", the ledger's `/account` must be \"chargebacks-operator\" when `/reason` is \"fraud\", \"chargebacks-seller\" when `/reason` is \"item_not_received\"; anything else (or a `/reason` not listed) is a wrong_party variance, dead-lettered as ownership-violation to finance-ops.\n",
        "\nContracted rate `commission-rate` (Each shop is charged the commission its contract states): the statement lines whose `/type` is \"COMMISSION_FEE\" must sum, per `/order_line_id`, to 12% (0.12) times the lines whose `/type` is \"ORDER_AMOUNT\" sharing it (of the opposite sign), rounded half away from zero to the currency's minor units.",
        "A breach is a rate_mismatch variance naming the rate, with the contracted amount, dead-lettered as reconciliation-variance to finance-ops.",
        // A description folded over lines (YAML `>`) reads as one clause of the sentence.
        "\nContracted rate `refund-commission` (A refund gives back the commission on what is refunded, at the rate the sale was charged (a seller-initiated return included)): the statement lines whose `/type` is \"REFUND_COMMISSION_FEE\"",
        "a cycle that ties out says so.",
        "Failures: ownership-violation goes to finance-ops (request a correction); source-unavailable goes to finance-ops (retry); reconciliation-variance goes to finance-ops (repair).",
    ] {
        assert!(flow.contains(expected), "missing {expected:?} in:\n{flow}");
    }
    let invoice = &text[text.find("\ninvoice-reconciliation: ").unwrap()..];
    assert!(
        invoice.contains("Many to one: the statement lines sharing a key are summed"),
        "{invoice}"
    );
    assert!(
        invoice.contains("GET /api/settlement/invoices"),
        "{invoice}"
    );
}
