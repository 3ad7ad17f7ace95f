//! Tests of the sandbox's settlement and stock routes over real HTTP on loopback: paging
//! with lines appended mid-listing, OAuth and rate limits, the expected variances checked
//! against a reconciliation this file does on its own from the served statement and journal,
//! invoice totals, the statement drop folder, and the stock feed's flags.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use super::{OAuthConfig, Sandbox, SandboxConfig, StatementDropConfig};

/// Each currency's minor-unit exponent, from ISO 4217 (not from the sandbox's table).
const EXPONENTS: [(&str, u32); 5] = [("EUR", 2), ("GBP", 2), ("USD", 2), ("JPY", 0), ("BHD", 3)];

async fn start(config: SandboxConfig) -> (Sandbox, reqwest::Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    (sandbox, reqwest::Client::new())
}

fn small() -> SandboxConfig {
    SandboxConfig {
        offers: 10,
        ..SandboxConfig::default()
    }
}

async fn get(client: &reqwest::Client, url: &str, query: &[(&str, &str)]) -> Value {
    let response = client.get(url).query(query).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK, "GET {url} {query:?}");
    response.json().await.expect("JSON body")
}

/// Every transaction line of `cycle` (all cycles when empty), page by page, and how many
/// pages it took.
async fn all_lines(
    client: &reqwest::Client,
    sandbox: &Sandbox,
    cycle: &str,
    limit: usize,
) -> (Vec<Value>, usize) {
    let url = format!("{}/api/settlement/transactions", sandbox.marketplace_url());
    let limit = limit.to_string();
    let mut token = String::new();
    let mut lines = Vec::new();
    for pages in 1..=10_000 {
        let page = get(
            client,
            &url,
            &[
                ("billing_cycle_id", cycle),
                ("limit", &limit),
                ("page_token", &token),
            ],
        )
        .await;
        lines.extend(page["data"].as_array().expect("data array").iter().cloned());
        match page["next_page_token"].as_str() {
            Some(next) => token = next.to_owned(),
            None => return (lines, pages),
        }
    }
    panic!("the listing did not end in 10000 pages");
}

fn dec(value: &Value) -> Decimal {
    Decimal::from_str(value.as_str().expect("amount as a string")).expect("decimal amount")
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// The journal served as CSV, as rows keyed by column name.
async fn journal(client: &reqwest::Client, sandbox: &Sandbox) -> Vec<HashMap<String, String>> {
    let response = client
        .get(format!("{}/_sandbox/ledger/journal", sandbox.base_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    let body = response.text().await.expect("CSV body");
    assert!(!body.contains('"'), "the seeded journal needs no quoting");
    let mut rows = body.lines();
    let header: Vec<&str> = rows.next().expect("header row").split(',').collect();
    assert_eq!(
        header,
        [
            "journal_id",
            "reference",
            "account",
            "amount",
            "currency",
            "posted_at",
            "billing_cycle_id"
        ]
    );
    rows.map(|row| {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), header.len(), "row {row:?}");
        header
            .iter()
            .zip(cells)
            .map(|(h, c)| ((*h).to_owned(), c.to_owned()))
            .collect()
    })
    .collect()
}

/// A variance as this file computes it and as `expected` states it: keyed by kind and the
/// transaction ID (the accounting document for an invoice total), valued by cycle, currency
/// and difference.
type Variances = BTreeMap<(String, String), (String, String, Option<Decimal>)>;

/// The reconciliation of `verify_settlement.py`, plus the statement's own tie-outs (invoice
/// totals and payouts against their lines), done here from what the routes serve.
fn reconcile(
    lines: &[Value],
    journal: &[HashMap<String, String>],
    invoices: &[Value],
) -> Variances {
    let bearer = |reason: &str| match reason {
        "fraud" => "chargebacks-operator",
        _ => "chargebacks-seller",
    };
    let mut ledger: HashMap<&str, Vec<&HashMap<String, String>>> = HashMap::new();
    for row in journal {
        ledger
            .entry(row["reference"].as_str())
            .or_default()
            .push(row);
    }
    // The contracted commission of each order line: 12 % of its order amount, rounded half
    // away from zero to the currency's minor units.
    let exponents: HashMap<&str, u32> = EXPONENTS.into_iter().collect();
    let mut contracted: HashMap<String, Decimal> = HashMap::new();
    for line in lines.iter().filter(|l| l["type"] == "ORDER_AMOUNT") {
        let exponent = exponents[text(&line["currency"]).as_str()];
        let commission = (dec(&line["amount"]) * Decimal::from_str("0.12").expect("rate"))
            .round_dp_with_strategy(exponent, RoundingStrategy::MidpointAwayFromZero);
        contracted.insert(text(&line["order_line_id"]), -commission);
    }
    let mut variances = Variances::new();
    for line in lines {
        let tid = text(&line["transaction_id"]);
        let amount = dec(&line["amount"]);
        let currency = text(&line["currency"]);
        let posted = ledger.get(tid.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let found = match posted {
            [] => Some(("missing_in_ledger", Some(-amount))),
            [one] if one["currency"] != currency => Some(("currency_mismatch", None)),
            [one] if Decimal::from_str(&one["amount"]).ok() != Some(amount) => {
                let ledger_amount = Decimal::from_str(&one["amount"]).expect("ledger amount");
                // A commission charged off contract and posted at the contracted amount is
                // the rate's variance: one defect, one variance.
                let at_contract = line["type"] == "COMMISSION_FEE"
                    && contracted.get(&text(&line["order_line_id"])) == Some(&ledger_amount);
                let kind = if at_contract {
                    "rate_mismatch"
                } else {
                    "amount_mismatch"
                };
                Some((kind, Some(ledger_amount - amount)))
            }
            [one]
                if line["type"] == "CHARGEBACK"
                    && one["account"] != bearer(line["reason"].as_str().unwrap_or_default()) =>
            {
                Some(("wrong_party", Some(Decimal::ZERO)))
            }
            [_] => None,
            many => {
                let sum: Decimal = many
                    .iter()
                    .map(|r| Decimal::from_str(&r["amount"]).expect("ledger amount"))
                    .sum();
                Some(("duplicate_in_ledger", Some(sum - amount)))
            }
        };
        if let Some((kind, difference)) = found {
            let cycle = text(&line["billing_cycle_id"]);
            variances.insert((kind.to_owned(), tid), (cycle, currency, difference));
        }
    }
    let explained: BTreeSet<String> = lines.iter().map(|l| text(&l["transaction_id"])).collect();
    for row in journal
        .iter()
        .filter(|r| !explained.contains(&r["reference"]))
    {
        variances.insert(
            ("missing_in_statement".to_owned(), row["journal_id"].clone()),
            (
                row["billing_cycle_id"].clone(),
                row["currency"].clone(),
                Decimal::from_str(&row["amount"]).ok(),
            ),
        );
    }
    // Per accounting document: what its lines owe the shop, and what the payout paid.
    let mut owed: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut payouts: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for line in lines {
        let document = text(&line["accounting_document_number"]);
        if line["type"] == "PAYMENT" {
            payouts.entry(document).or_default().push(line);
        } else {
            *owed.entry(document).or_default() += dec(&line["amount"]);
        }
    }
    for (document, paid_lines) in &payouts {
        let paid: Decimal = -paid_lines
            .iter()
            .map(|l| dec(&l["amount"]))
            .sum::<Decimal>();
        let due = owed.get(document).copied().unwrap_or_default();
        if paid != due {
            let line = paid_lines[0];
            variances.insert(
                ("payout_mismatch".to_owned(), text(&line["transaction_id"])),
                (
                    text(&line["billing_cycle_id"]),
                    text(&line["currency"]),
                    Some(paid - due),
                ),
            );
        }
    }
    for invoice in invoices {
        let document = text(&invoice["accounting_document_number"]);
        let total = dec(&invoice["total"]);
        let due = owed.get(&document).copied().unwrap_or_default();
        if total != due {
            variances.insert(
                ("invoice_total_mismatch".to_owned(), document),
                (
                    text(&invoice["billing_cycle_id"]),
                    text(&invoice["currency"]),
                    Some(total - due),
                ),
            );
        }
    }
    variances
}

/// Per currency: statement total, ledger total, and ledger minus statement.
type Totals = BTreeMap<String, (Decimal, Decimal, Decimal)>;

/// A cycle's totals per currency as `expected` states them.
fn stated_totals(cycle: &Value) -> Totals {
    cycle["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .map(|t| {
            (
                text(&t["currency"]),
                (
                    dec(&t["statement_total"]),
                    dec(&t["ledger_total"]),
                    dec(&t["variance"]),
                ),
            )
        })
        .collect()
}

/// A cycle's totals per currency, recomputed from the served lines and journal.
fn recomputed_totals(lines: &[Value], journal: &[HashMap<String, String>], cycle: &str) -> Totals {
    let mut totals: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    for line in lines.iter().filter(|l| l["billing_cycle_id"] == cycle) {
        totals.entry(text(&line["currency"])).or_default().0 += dec(&line["amount"]);
    }
    for row in journal.iter().filter(|r| r["billing_cycle_id"] == cycle) {
        totals.entry(row["currency"].clone()).or_default().1 +=
            Decimal::from_str(&row["amount"]).expect("amount");
    }
    totals
        .into_iter()
        .map(|(c, (s, l))| (c, (s, l, l - s)))
        .collect()
}

fn expected_variances(expected: &Value) -> Variances {
    let mut variances = Variances::new();
    for cycle in expected["cycles"].as_array().expect("cycles") {
        for v in cycle["variances"].as_array().expect("variances") {
            let key = match v["transaction_id"].as_str() {
                Some(tid) if v["kind"] != "invoice_total_mismatch" => tid.to_owned(),
                _ => text(&v["accounting_document_number"]),
            };
            let difference = v["difference"]
                .as_str()
                .map(|d| Decimal::from_str(d).expect("decimal"));
            variances.insert(
                (text(&v["kind"]), key),
                (
                    text(&v["billing_cycle_id"]),
                    text(&v["currency"]),
                    difference,
                ),
            );
        }
    }
    variances
}

#[tokio::test]
async fn transaction_pages_return_every_line_once_with_a_line_appended_mid_listing() {
    let (sandbox, client) = start(small()).await;
    let control = format!(
        "{}/_sandbox/marketplace/settlement/transactions",
        sandbox.base_url()
    );
    let line = |n: usize| {
        json!({
            "billing_cycle_id": "BC-PAGING", "shop_id": "S2001", "type": "ORDER_AMOUNT",
            "order_id": format!("O-P{n}-A"), "order_line_id": format!("O-P{n}-A-1"),
            "amount": format!("{}.{:02}", n % 400, n % 100), "currency": "EUR",
        })
    };
    let batch: Vec<Value> = (0..6_000).map(line).collect();
    let response = client
        .post(&control)
        .json(&json!({ "lines": batch }))
        .send()
        .await
        .expect("append");
    assert_eq!(response.status(), StatusCode::CREATED);

    // Read the first page of 2000, append one line, then read on.
    let url = format!("{}/api/settlement/transactions", sandbox.marketplace_url());
    let first = get(
        &client,
        &url,
        &[("billing_cycle_id", "BC-PAGING"), ("limit", "2000")],
    )
    .await;
    let mut seen: Vec<String> = first["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|l| text(&l["transaction_id"]))
        .collect();
    assert_eq!(seen.len(), 2000);
    let appended: Value = client
        .post(&control)
        .json(&json!({ "lines": [line(9_999)] }))
        .send()
        .await
        .expect("append")
        .json()
        .await
        .expect("JSON");
    let appended_id = text(&appended["transaction_ids"][0]);
    let mut token = text(&first["next_page_token"]);
    for _ in 0..100 {
        let page = get(
            &client,
            &url,
            &[
                ("billing_cycle_id", "BC-PAGING"),
                ("limit", "2000"),
                ("page_token", &token),
            ],
        )
        .await;
        seen.extend(
            page["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|l| text(&l["transaction_id"])),
        );
        match page["next_page_token"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        6_001,
        "every line once, the appended one included"
    );
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        6_001,
        "no line twice"
    );
    assert_eq!(seen.last(), Some(&appended_id));
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "append order");

    // A cap, not a refusal: a page never exceeds 5000 lines; every cycle reads in one go.
    let capped = get(&client, &url, &[("limit", "100000")]).await;
    assert_eq!(capped["data"].as_array().expect("data").len(), 5_000);
    let (every, _) = all_lines(&client, &sandbox, "", 5_000).await;
    let seeded: usize = sandbox.settlement_expected()["cycles"]
        .as_array()
        .expect("cycles")
        .iter()
        .map(|c| c["statement_lines"].as_u64().unwrap_or_default() as usize)
        .sum();
    assert_eq!(every.len(), seeded + 6_001);

    // Seek style reads the same lines: `after` = the last transaction_id read; a short page
    // ends it.
    let mut sought: Vec<String> = Vec::new();
    for _ in 0..100 {
        let last = sought.last().cloned().unwrap_or_default();
        let page = get(
            &client,
            &url,
            &[
                ("billing_cycle_id", "BC-PAGING"),
                ("limit", "2500"),
                ("after", &last),
            ],
        )
        .await;
        let data = page["data"].as_array().expect("data");
        sought.extend(data.iter().map(|l| text(&l["transaction_id"])));
        if data.len() < 2500 {
            break;
        }
    }
    assert_eq!(sought, seen);
    let response = client
        .get(&url)
        .query(&[("after", "T9999999999")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A token that is not one the listing handed out is a 400 that says what to send.
    let response = client
        .get(&url)
        .query(&[("page_token", "2000")])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.expect("JSON error");
    assert!(text(&error["error"]).contains("next_page_token"), "{error}");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn appended_lines_are_checked_field_by_field() {
    let (sandbox, client) = start(small()).await;
    let control = format!(
        "{}/_sandbox/marketplace/settlement/transactions",
        sandbox.base_url()
    );
    let good = json!({"billing_cycle_id": "BC-X", "shop_id": "S1", "type": "PAYMENT",
                      "amount": "-10.00", "currency": "EUR"});
    let cases = [
        (json!({"currency": "XYZ"}), "line [1]: `currency` \"XYZ\""),
        (
            json!({"amount": "1.005"}),
            "line [1]: `amount` \"1.005\" has 3 fraction digits",
        ),
        (
            json!({"type": "REFUND"}),
            "line [1]: `type` \"REFUND\" is not one of",
        ),
        (
            json!({"transaction_id": "T1"}),
            "line [1]: unknown field `transaction_id`",
        ),
        (json!({"shop_id": null}), "line [1]: `shop_id` is required"),
    ];
    for (patch, message) in cases {
        let mut bad = good.clone();
        for (k, v) in patch.as_object().expect("object") {
            bad[k] = v.clone();
        }
        let response = client
            .post(&control)
            .json(&json!({ "lines": [good, bad] }))
            .send()
            .await
            .expect("append");
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{patch}"
        );
        let error: Value = response.json().await.expect("JSON error");
        assert!(text(&error["error"]).starts_with(message), "{error}");
    }
    // All or nothing: none of the refused batches left a line behind.
    let (lines, _) = all_lines(&client, &sandbox, "BC-X", 100).await;
    assert!(lines.is_empty());
    let ids = sandbox
        .append_settlement_lines(&[good], false)
        .expect("a good line");
    let (lines, _) = all_lines(&client, &sandbox, "BC-X", 100).await;
    assert_eq!(text(&lines[0]["transaction_id"]), ids[0]);
    assert_eq!(lines[0]["payment_state"], "PENDING");
    assert_eq!(lines[0]["accounting_document_number"], "INV-BC-X-S1-EUR");
    // Not posted, as asked: the ledger has nothing for it.
    let journal = journal(&client, &sandbox).await;
    assert!(journal.iter().all(|r| r["reference"] != ids[0]));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn settlement_and_stock_routes_require_oauth_and_honour_rate_limits() {
    let (sandbox, client) = start(SandboxConfig {
        oauth: Some(OAuthConfig {
            required: true,
            ..OAuthConfig::default()
        }),
        ..small()
    })
    .await;
    let routes = [
        "/api/settlement/transactions",
        "/api/settlement/invoices",
        "/api/stock",
    ];
    for route in routes {
        let response = client
            .get(format!("{}{route}", sandbox.marketplace_url()))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{route}");
    }
    let env: HashMap<String, String> = sandbox.env().into_iter().collect();
    let token: Value = client
        .post(format!("{}/oauth/token", sandbox.marketplace_url()))
        .basic_auth(
            &env["MARKETPLACE_CLIENT_ID"],
            Some(&env["MARKETPLACE_CLIENT_SECRET"]),
        )
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("JSON");
    let bearer = text(&token["access_token"]);
    for route in routes {
        let response = client
            .get(format!("{}{route}", sandbox.marketplace_url()))
            .bearer_auth(&bearer)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{route}");
    }
    assert_eq!(sandbox.oauth_stats().rejected, 3);

    sandbox.set_rate_limit("GET /marketplace/api/settlement/transactions", 1, 60);
    let url = format!("{}/api/settlement/transactions", sandbox.marketplace_url());
    let first = client
        .get(&url)
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("first");
    assert_eq!(first.status(), StatusCode::OK);
    let second = client
        .get(&url)
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("second");
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = second.headers()[reqwest::header::RETRY_AFTER]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        sandbox.rate_limit_violations()["GET /marketplace/api/settlement/transactions"],
        1
    );
    // Injected faults reach the settlement routes too.
    sandbox.inject_settlement_fault(super::Fault::fail(503, 1));
    let invoices = format!("{}/api/settlement/invoices", sandbox.marketplace_url());
    let failed = client
        .get(&invoices)
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("req");
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let again = client
        .get(&invoices)
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("req");
    assert_eq!(again.status(), StatusCode::OK);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn expected_variances_match_an_independent_reconciliation() {
    let (sandbox, client) = start(small()).await;
    // Small pages: the reconciliation reads the log the way a flow would.
    let (lines, pages) = all_lines(&client, &sandbox, "", 25).await;
    assert!(pages > 5, "{pages} pages");
    let journal = journal(&client, &sandbox).await;
    let invoices = get(
        &client,
        &format!("{}/api/settlement/invoices", sandbox.marketplace_url()),
        &[],
    )
    .await["invoices"]
        .as_array()
        .expect("invoices")
        .clone();
    let expected = get(
        &client,
        &format!(
            "{}/_sandbox/marketplace/settlement/expected",
            sandbox.base_url()
        ),
        &[],
    )
    .await;

    // Amounts are exact decimal strings with their currency's minor units, on both sides.
    let exponents: HashMap<&str, u32> = EXPONENTS.into_iter().collect();
    let currencies: BTreeSet<String> = lines.iter().map(|l| text(&l["currency"])).collect();
    assert_eq!(
        currencies,
        ["BHD", "EUR", "GBP", "JPY"].map(str::to_owned).into()
    );
    for (amount, currency) in lines
        .iter()
        .map(|l| (text(&l["amount"]), text(&l["currency"])))
        .chain(
            journal
                .iter()
                .map(|r| (r["amount"].clone(), r["currency"].clone())),
        )
    {
        let scale = Decimal::from_str(&amount).expect("decimal").scale();
        assert_eq!(scale, exponents[currency.as_str()], "{amount} {currency}");
    }

    let journal_ids: BTreeSet<&String> = journal.iter().map(|r| &r["journal_id"]).collect();
    assert_eq!(journal_ids.len(), journal.len(), "journal IDs are unique");
    let transaction_ids: BTreeSet<String> =
        lines.iter().map(|l| text(&l["transaction_id"])).collect();
    assert_eq!(
        transaction_ids.len(),
        lines.len(),
        "transaction IDs are unique"
    );

    let found = reconcile(&lines, &journal, &invoices);
    assert_eq!(found, expected_variances(&expected));

    let cycles = expected["cycles"].as_array().expect("cycles");
    let edge_cases: Vec<String> = cycles.iter().map(|c| text(&c["edge_case"])).collect();
    assert_eq!(
        edge_cases,
        [
            "clean",
            "multi-currency",
            "commission-adjustment",
            "seller-initiated-return",
            "chargeback-wrong-party",
            "refund-not-posted",
            "invoice-total-mismatch",
            "payout-mismatch"
        ]
    );
    for cycle in cycles {
        let variances = cycle["variances"].as_array().expect("variances");
        if cycle["edge_case"] == "clean" {
            assert!(variances.is_empty() && cycle["ties_out"] == true, "{cycle}");
        } else {
            assert_eq!(variances.len(), 1, "one defect, one variance: {cycle}");
        }
        for v in variances {
            assert_eq!(v["owner"], "finance-ops", "{v}");
            let failure = if v["kind"] == "wrong_party" {
                "ownership-violation"
            } else {
                "reconciliation-variance"
            };
            assert_eq!(v["failure"], failure, "{v}");
        }
        let id = text(&cycle["billing_cycle_id"]);
        assert_eq!(
            stated_totals(cycle),
            recomputed_totals(&lines, &journal, &id),
            "totals of {id}"
        );
    }

    // The commission rule, checked on its own: every fee is the contracted 12 % of its order
    // amount, rounded half away from zero to the minor unit, but the one the expectation
    // names.
    let mut prices: HashMap<String, Decimal> = HashMap::new();
    for line in lines.iter().filter(|l| l["type"] == "ORDER_AMOUNT") {
        prices.insert(text(&line["order_line_id"]), dec(&line["amount"]));
    }
    let mut off_contract = Vec::new();
    for fee in lines.iter().filter(|l| l["type"] == "COMMISSION_FEE") {
        let price = prices[&text(&fee["order_line_id"])];
        let exponent = exponents[text(&fee["currency"]).as_str()];
        let contracted = (price * Decimal::from_str("0.12").expect("rate"))
            .round_dp_with_strategy(exponent, RoundingStrategy::MidpointAwayFromZero);
        if -dec(&fee["amount"]) != contracted {
            let charged = (-dec(&fee["amount"]) / price).normalize();
            off_contract.push((text(&fee["transaction_id"]), charged.to_string()));
        }
    }
    let ruled: Vec<(String, String)> = cycles
        .iter()
        .flat_map(|c| c["variances"].as_array().cloned().unwrap_or_default())
        .filter(|v| v["rule"]["rule"] == "commission-rate")
        .map(|v| (text(&v["transaction_id"]), text(&v["rule"]["charged_rate"])))
        .collect();
    assert_eq!(off_contract, ruled);
    assert_eq!(ruled.len(), 1);

    // The JSON-lines journal is the same journal.
    let jsonl = client
        .get(format!("{}/_sandbox/ledger/journal", sandbox.base_url()))
        .query(&[("format", "jsonl")])
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    let rows: Vec<HashMap<String, String>> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object of strings"))
        .collect();
    assert_eq!(rows, journal);
    let json = get(
        &client,
        &format!("{}/_sandbox/ledger/journal", sandbox.base_url()),
        &[("format", "json"), ("billing_cycle_id", "BC-2026-10-6")],
    )
    .await;
    let cycle_rows: Vec<HashMap<String, String>> =
        serde_json::from_value(json["journal"].clone()).expect("objects of strings");
    let of_cycle: Vec<HashMap<String, String>> = journal
        .iter()
        .filter(|r| r["billing_cycle_id"] == "BC-2026-10-6")
        .cloned()
        .collect();
    assert_eq!(cycle_rows, of_cycle);
    sandbox.shutdown().await;
}

/// Volume (`settlement_lines`) comes after the eight seeded cycles and changes nothing about
/// them: the same lines, journal and expectations first, then clean cycles of at most 5,000
/// lines that an independent reconciliation finds nothing wrong with, whose totals are the
/// ones `expected` states, each line posted once at its amount.
#[tokio::test]
async fn volume_cycles_are_clean_and_leave_the_seeded_ones_as_they_are() {
    const VOLUME: usize = 7_000;
    let seeded = super::SandboxState::new(&small());
    let (seeded_lines, seeded_journal, seeded_expected) = {
        let settlement = seeded.settlement();
        let lines: Vec<Value> = settlement.lines.iter().map(|l| l.to_json()).collect();
        (
            lines,
            settlement.journal_json(None),
            settlement.expected_json(),
        )
    };
    let (sandbox, client) = start(SandboxConfig {
        settlement_lines: VOLUME,
        ..small()
    })
    .await;
    let (lines, pages) = all_lines(&client, &sandbox, "", 1000).await;
    assert!(pages >= 8, "{} lines in {pages} pages", lines.len());
    assert_eq!(
        lines,
        sandbox.settlement_log(),
        "the handle serves the same log"
    );
    let journal = journal(&client, &sandbox).await;
    let invoices = get(
        &client,
        &format!("{}/api/settlement/invoices", sandbox.marketplace_url()),
        &[],
    )
    .await["invoices"]
        .as_array()
        .expect("invoices")
        .clone();
    let expected = sandbox.settlement_expected();

    // The seeded cycles first, as they are without volume.
    assert_eq!(lines[..seeded_lines.len()], seeded_lines[..]);
    let served_journal: Vec<Value> = sandbox.settlement_journal();
    assert_eq!(served_journal[..seeded_journal.len()], seeded_journal[..]);
    let cycles = expected["cycles"].as_array().expect("cycles");
    let seeded_cycles = seeded_expected["cycles"].as_array().expect("cycles");
    assert_eq!(cycles[..seeded_cycles.len()], seeded_cycles[..]);
    assert_eq!(
        expected["contracted_commission_rate"],
        seeded_expected["contracted_commission_rate"]
    );

    // Then the volume: rounded up to whole orders and payouts, a few lines per cycle.
    let volume = &cycles[seeded_cycles.len()..];
    let ids: Vec<String> = volume
        .iter()
        .map(|c| text(&c["billing_cycle_id"]))
        .collect();
    assert_eq!(ids, ["BC-2026-11-1", "BC-2026-11-2"]);
    let added = lines.len() - seeded_lines.len();
    assert!(
        (VOLUME..VOLUME + 11 * volume.len()).contains(&added),
        "{added} lines for {VOLUME}"
    );
    for cycle in volume {
        let id = text(&cycle["billing_cycle_id"]);
        assert_eq!(cycle["edge_case"], "volume", "{cycle}");
        assert_eq!(cycle["ties_out"], true, "{id}");
        let count = lines
            .iter()
            .filter(|l| l["billing_cycle_id"] == id.as_str())
            .count();
        assert_eq!(
            cycle["statement_lines"].as_u64(),
            Some(count as u64),
            "{id}"
        );
        assert!(count <= 5_010, "{id}: {count} lines");
        assert_eq!(
            stated_totals(cycle),
            recomputed_totals(&lines, &journal, &id),
            "totals of {id}"
        );
    }
    let currencies: BTreeSet<String> = lines[seeded_lines.len()..]
        .iter()
        .map(|l| text(&l["currency"]))
        .collect();
    assert_eq!(
        currencies,
        ["BHD", "EUR", "GBP", "JPY"].map(str::to_owned).into()
    );
    // Nothing wrong in the volume: an independent reconciliation finds the seeded defects
    // and no other (every line posted once, at its amount and account; every invoice and
    // payout equal to its lines).
    assert_eq!(
        reconcile(&lines, &journal, &invoices),
        expected_variances(&expected)
    );
    sandbox.shutdown().await;
}

/// More volume than the sandbox holds is refused before anything is built.
#[tokio::test]
async fn too_much_volume_is_refused_at_start() {
    let err = Sandbox::start(SandboxConfig {
        settlement_lines: super::MAX_SETTLEMENT_LINES + 1,
        ..small()
    })
    .await
    .expect_err("too many lines");
    assert_eq!(
        err.to_string(),
        "200001 settlement lines asked for; the sandbox makes at most 200000 (it keeps the \
         whole transaction log in memory)"
    );
}

#[tokio::test]
async fn invoice_totals_are_the_sum_of_their_lines_except_where_seeded() {
    let (sandbox, client) = start(small()).await;
    let (lines, _) = all_lines(&client, &sandbox, "BC-2026-10-7", 1000).await;
    let invoices = get(
        &client,
        &format!("{}/api/settlement/invoices", sandbox.marketplace_url()),
        &[("billing_cycle_id", "BC-2026-10-7")],
    )
    .await;
    let invoices = invoices["invoices"].as_array().expect("invoices");
    assert_eq!(invoices.len(), 3, "one per shop and currency");
    for invoice in invoices {
        let document = text(&invoice["accounting_document_number"]);
        let of_it: Vec<&Value> = lines
            .iter()
            .filter(|l| l["accounting_document_number"] == document.as_str())
            .collect();
        let sum: Decimal = of_it
            .iter()
            .filter(|l| l["type"] != "PAYMENT")
            .map(|l| dec(&l["amount"]))
            .sum();
        let paid: Decimal = -of_it
            .iter()
            .filter(|l| l["type"] == "PAYMENT")
            .map(|l| dec(&l["amount"]))
            .sum::<Decimal>();
        assert_eq!(
            invoice["transaction_count"].as_u64(),
            Some(of_it.len() as u64 - 1)
        );
        assert_eq!(dec(&invoice["payout"]), paid, "{document}");
        let skew = if document == "INV-BC-2026-10-7-S2002-EUR" {
            Decimal::from_str("10.00").expect("decimal")
        } else {
            Decimal::ZERO
        };
        assert_eq!(dec(&invoice["total"]) - sum, skew, "{document}");
    }
    sandbox.shutdown().await;
}

/// A fresh folder under the system temp dir, removed by the caller.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn statement_drop_writes_part_files_then_final_names_and_one_duplicate() {
    let dir = scratch("statement-drop");
    let (sandbox, client) = start(SandboxConfig {
        statement_drop: Some(StatementDropConfig {
            interval: Duration::from_millis(150),
            upload: Duration::from_millis(400),
            ..StatementDropConfig::new(&dir)
        }),
        ..small()
    })
    .await;
    let first = "seller-transactions_BC-2026-10-1_20261004T020000Z.csv";
    // Watch the folder: the first file must show as `.part` (partial, no final name yet)
    // before its final name appears.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut partial: Option<Vec<u8>> = None;
    while Instant::now() < deadline {
        let now = names(&dir);
        if now.contains(first) {
            break;
        }
        if now.contains(&format!("{first}.part")) && partial.is_none() {
            partial = std::fs::read(dir.join(format!("{first}.part"))).ok();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let partial = partial.expect("the first file was seen as .part before its final name");
    while sandbox.statement_drops().len() < 9 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drops = sandbox.statement_drops();
    assert_eq!(drops.len(), 9, "eight cycles and one duplicate: {drops:?}");
    let files = names(&dir);
    assert!(files.iter().all(|f| f.ends_with(".csv")), "{files:?}");
    assert_eq!(files.len(), 9);

    let content = std::fs::read(dir.join(first)).expect("first file");
    assert!(partial.len() < content.len() && content.starts_with(&partial));
    // The file holds the cycle's lines as the API serves them, one CSV row each.
    let text_content = String::from_utf8(content.clone()).expect("UTF-8");
    let mut rows = text_content.lines();
    assert_eq!(
        rows.next(),
        Some(
            "transaction_id,billing_cycle_id,shop_id,type,order_id,order_line_id,amount,\
             currency,date_created,accounting_document_number,payment_state,reason"
        )
    );
    let (lines, _) = all_lines(&client, &sandbox, "BC-2026-10-1", 1000).await;
    let columns = [
        "transaction_id",
        "billing_cycle_id",
        "shop_id",
        "type",
        "order_id",
        "order_line_id",
        "amount",
        "currency",
        "date_created",
        "accounting_document_number",
        "payment_state",
        "reason",
    ];
    let rows: Vec<Vec<String>> = rows
        .map(|r| r.split(',').map(str::to_owned).collect())
        .collect();
    // Field for field what the API serves, a null as an empty field.
    let served: Vec<Vec<String>> = lines
        .iter()
        .map(|l| columns.iter().map(|c| text(&l[*c])).collect())
        .collect();
    assert_eq!(rows, served);

    // The duplicate: the first file's bytes again under another name, after the second.
    let duplicate = &drops[2];
    assert_eq!(duplicate.duplicate_of.as_deref(), Some(first));
    assert_ne!(duplicate.file, first);
    assert_eq!(
        std::fs::read(dir.join(&duplicate.file)).expect("dup"),
        content
    );
    assert_eq!(drops[1].billing_cycle_id, "BC-2026-10-2");
    for drop in &drops {
        let bytes = std::fs::read(dir.join(&drop.file)).expect("dropped file");
        use sha2::Digest as _;
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), drop.sha256);
    }
    let served: Value = get(
        &client,
        &format!(
            "{}/_sandbox/marketplace/settlement/drops",
            sandbox.base_url()
        ),
        &[],
    )
    .await;
    assert_eq!(served["drops"].as_array().map(Vec::len), Some(9));
    let env: HashMap<String, String> = sandbox.env().into_iter().collect();
    assert_eq!(env["STATEMENT_DROP_DIR"], dir.display().to_string());
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_drop_folder_that_cannot_be_created_stops_the_start() {
    let dir = scratch("statement-drop-blocked");
    std::fs::write(&dir, "a file, not a folder").expect("write");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let err = Sandbox::start(SandboxConfig {
        statement_drop: Some(StatementDropConfig::new(dir.join("inside"))),
        ..small()
    })
    .await
    .expect_err("cannot create a folder under a file");
    assert!(
        err.to_string().contains(&format!(
            "cannot create the statement drop folder {}",
            dir.display()
        )),
        "{err}"
    );
    let _ = std::fs::remove_file(&dir);
}

#[tokio::test]
async fn stock_feed_pages_and_flags_stale_and_oversold_offers() {
    let (sandbox, client) = start(small()).await;
    let url = format!("{}/api/stock", sandbox.marketplace_url());
    let mut token = String::new();
    let mut stock = Vec::new();
    for _ in 0..100 {
        let page = get(&client, &url, &[("limit", "5"), ("page_token", &token)]).await;
        stock.extend(page["stock"].as_array().expect("stock").iter().cloned());
        match page["next_page_token"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(stock.len(), 24);
    let ids: BTreeSet<i64> = stock
        .iter()
        .filter_map(|s| s["offer_id"].as_i64())
        .collect();
    assert_eq!(ids.len(), 24, "each offer once");

    let now = jiff::Timestamp::now();
    let sla = jiff::SignedDuration::from_hours(24);
    let mut flags: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for s in &stock {
        let at: jiff::Timestamp = text(&s["stock_updated_at"]).parse().expect("RFC 3339");
        let (quantity, open) = (s["quantity"].as_i64(), s["open_order_quantity"].as_i64());
        let mut why = Vec::new();
        if now.duration_since(at) > sla {
            why.push("stale");
        }
        if quantity < open {
            why.push("oversold");
        }
        if !why.is_empty() {
            flags.insert(s["offer_id"].as_i64().unwrap_or_default(), why);
        }
    }
    let expected = get(
        &client,
        &format!("{}/_sandbox/marketplace/stock/expected", sandbox.base_url()),
        &[],
    )
    .await;
    let stated: BTreeMap<i64, Vec<&str>> = expected["flagged"]
        .as_array()
        .expect("flagged")
        .iter()
        .map(|f| {
            assert_eq!(f["owner"], "seller-support");
            let why = f["flags"]
                .as_array()
                .expect("flags")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            (f["offer_id"].as_i64().unwrap_or_default(), why)
        })
        .collect();
    assert_eq!(stated, flags);
    assert_eq!(flags.values().filter(|f| f.contains(&"stale")).count(), 4);
    assert_eq!(
        flags.values().filter(|f| f.contains(&"oversold")).count(),
        3
    );
    assert_eq!(expected["healthy"], 18);

    // `updated_since` keeps the fresh stock only (the stale is days old).
    let since = (now - jiff::SignedDuration::from_hours(23)).to_string();
    let fresh = get(
        &client,
        &url,
        &[("updated_since", &since), ("limit", "1000")],
    )
    .await;
    assert_eq!(fresh["stock"].as_array().map(Vec::len), Some(20));

    // A seller refreshes one stale offer and restocks an oversold one: both flags clear, and
    // the refreshed entry moves to the end of the listing.
    let control = format!("{}/_sandbox/marketplace/stock", sandbox.base_url());
    let response = client
        .post(&control)
        .json(&json!([{"offer_id": 900_008}, {"offer_id": 900_006, "quantity": 5}]))
        .send()
        .await
        .expect("update");
    assert_eq!(response.status(), StatusCode::OK);
    let expected = get(
        &client,
        &format!("{}/_sandbox/marketplace/stock/expected", sandbox.base_url()),
        &[],
    )
    .await;
    let still: BTreeSet<i64> = expected["flagged"]
        .as_array()
        .expect("flagged")
        .iter()
        .filter_map(|f| f["offer_id"].as_i64())
        .collect();
    assert_eq!(still, [900_011, 900_012, 900_016, 900_019].into());
    let listed = get(&client, &url, &[("limit", "1000")]).await;
    let order: Vec<i64> = listed["stock"]
        .as_array()
        .expect("stock")
        .iter()
        .filter_map(|s| s["offer_id"].as_i64())
        .collect();
    assert_eq!(order[order.len() - 2..], [900_006, 900_008]);
    // A new offer without its quantities is refused whole, naming the entry.
    let response = client
        .post(&control)
        .json(&json!([{"offer_id": 900_002, "quantity": 1}, {"offer_id": 1, "shop_id": 2001}]))
        .send()
        .await
        .expect("update");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = response.json().await.expect("JSON error");
    assert!(
        text(&error["error"]).starts_with("update [1]: offer 1 is new"),
        "{error}"
    );
    sandbox.shutdown().await;
}

/// The seeded variances as `docs/sandbox.md` quotes them: a change to the seed that moves
/// one must change the docs too.
#[test]
fn the_documented_variances_are_the_seeded_ones() {
    let state = super::SandboxState::new(&small());
    let expected = state.settlement().expected_json();
    let stated: Vec<(String, String, String, String, Option<String>)> = expected["cycles"]
        .as_array()
        .expect("cycles")
        .iter()
        .flat_map(|c| c["variances"].as_array().cloned().unwrap_or_default())
        .map(|v| {
            let reference = v["transaction_id"]
                .as_str()
                .map_or_else(|| text(&v["accounting_document_number"]), str::to_owned);
            (
                text(&v["billing_cycle_id"]),
                text(&v["kind"]),
                reference,
                text(&v["currency"]),
                v["difference"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let documented = [
        (
            "BC-2026-10-2",
            "currency_mismatch",
            "T0000000063",
            "JPY",
            None,
        ),
        (
            "BC-2026-10-3",
            "rate_mismatch",
            "T0000000097",
            "EUR",
            Some("6.00"),
        ),
        (
            "BC-2026-10-4",
            "duplicate_in_ledger",
            "T0000000124",
            "EUR",
            Some("-89.90"),
        ),
        (
            "BC-2026-10-5",
            "wrong_party",
            "T0000000149",
            "GBP",
            Some("0.00"),
        ),
        (
            "BC-2026-10-6",
            "missing_in_ledger",
            "T0000000157",
            "EUR",
            Some("120.00"),
        ),
        (
            "BC-2026-10-7",
            "invoice_total_mismatch",
            "INV-BC-2026-10-7-S2002-EUR",
            "EUR",
            Some("10.00"),
        ),
        (
            "BC-2026-10-8",
            "payout_mismatch",
            "T0000000237",
            "EUR",
            Some("-5.00"),
        ),
    ]
    .map(|(c, k, r, cur, d)| {
        (
            c.to_owned(),
            k.to_owned(),
            r.to_owned(),
            cur.to_owned(),
            d.map(str::to_owned),
        )
    });
    assert_eq!(stated, documented);
}
