//! The simulated marketplace's settlement: the seller transaction log (one line per order
//! amount, shipping amount, commission fee and VAT, refund, chargeback and payout, each with
//! its billing cycle, accounting document number and payment state), the invoices per billing
//! cycle, shop and currency, and the journal the operator's finance system posted from it (the
//! ledger side a reconciliation joins against). It owns that data and its HTTP routes; the
//! seeded cycles (and any volume cycles) and their expected variances come from
//! `settlement_seed`, the statement files from `statement_drop`.
//!
//! Amounts are integers in the currency's minor units (JPY 0 decimals, EUR 2, BHD 3) and leave
//! as exact decimal strings: there is no float anywhere on the way.
//!
//! The transaction listing pages with an opaque `page_token` that names the last line handed
//! out (its append sequence), never an offset: lines appended while a reader pages show up
//! on a later page, and no line is read twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::faults::{self, FaultQueue};
use super::marketplace::number;
use super::settlement_seed::{self, ExpectedCycle};
use super::{ApiError, SandboxState};

/// Page size of the transaction listing when `limit` is not given, and its cap: real
/// transaction logs hand out thousands of lines per page.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 5000;
/// What a page token says before base64: a version tag, so a token of another listing (or a
/// guessed offset) is refused instead of silently read as a position.
const TOKEN_TAG: &str = "tl1:";
/// The columns of the ledger journal, as `gen_settlement.py` writes `ledger.csv`.
pub(crate) const JOURNAL_COLUMNS: [&str; 7] = [
    "journal_id",
    "reference",
    "account",
    "amount",
    "currency",
    "posted_at",
    "billing_cycle_id",
];
/// The columns of a statement line, in the order of `gen_settlement.py`'s statement lines
/// (plus `payment_state`), which is also the column order of the dropped statement files.
pub(crate) const STATEMENT_COLUMNS: [&str; 12] = [
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

/// A currency and its ISO 4217 minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Currency {
    pub(crate) code: &'static str,
    pub(crate) exponent: u32,
}

pub(crate) const EUR: Currency = Currency {
    code: "EUR",
    exponent: 2,
};
pub(crate) const GBP: Currency = Currency {
    code: "GBP",
    exponent: 2,
};
pub(crate) const USD: Currency = Currency {
    code: "USD",
    exponent: 2,
};
pub(crate) const JPY: Currency = Currency {
    code: "JPY",
    exponent: 0,
};
pub(crate) const BHD: Currency = Currency {
    code: "BHD",
    exponent: 3,
};
const CURRENCIES: [Currency; 5] = [EUR, GBP, USD, JPY, BHD];

impl Currency {
    fn parse(code: &str) -> Option<Currency> {
        CURRENCIES.iter().copied().find(|c| c.code == code)
    }

    /// `minor` units as a decimal string with exactly this currency's exponent.
    pub(crate) fn format(self, minor: i64) -> String {
        let sign = if minor < 0 { "-" } else { "" };
        let magnitude = minor.unsigned_abs();
        if self.exponent == 0 {
            return format!("{sign}{magnitude}");
        }
        let scale = 10_u64.pow(self.exponent);
        let width = self.exponent as usize;
        format!("{sign}{}.{:0width$}", magnitude / scale, magnitude % scale)
    }

    /// Parses a decimal string with at most this currency's exponent of fraction digits
    /// into minor units; more digits would need rounding, which a statement never does.
    fn parse_amount(self, text: &str) -> Result<i64, String> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(format!("{text:?} is not a decimal amount like \"12.30\""));
        }
        if fraction.len() > self.exponent as usize {
            return Err(format!(
                "{text:?} has {} fraction digits; {} has {}",
                fraction.len(),
                self.code,
                self.exponent
            ));
        }
        let padded = format!("{fraction:0<width$}", width = self.exponent as usize);
        let minor = format!("{whole}{padded}")
            .parse::<i64>()
            .map_err(|_| format!("{text:?} is too large an amount"))?;
        Ok(if negative { -minor } else { minor })
    }
}

/// The type of a transaction line, as a real operator's transaction log names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum LineType {
    OrderAmount,
    OrderShippingAmount,
    CommissionFee,
    CommissionVat,
    RefundOrderAmount,
    RefundCommissionFee,
    Chargeback,
    Payment,
}

impl LineType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::OrderAmount => "ORDER_AMOUNT",
            Self::OrderShippingAmount => "ORDER_SHIPPING_AMOUNT",
            Self::CommissionFee => "COMMISSION_FEE",
            Self::CommissionVat => "COMMISSION_VAT",
            Self::RefundOrderAmount => "REFUND_ORDER_AMOUNT",
            Self::RefundCommissionFee => "REFUND_COMMISSION_FEE",
            Self::Chargeback => "CHARGEBACK",
            Self::Payment => "PAYMENT",
        }
    }

    /// The ledger account finance posts a line of this type to; a chargeback's depends on
    /// its reason: the party that bears it by rule.
    pub(crate) fn account(self, reason: Option<&str>) -> &'static str {
        match self {
            Self::OrderAmount | Self::OrderShippingAmount | Self::Payment => "seller-payable",
            Self::CommissionFee | Self::CommissionVat | Self::RefundCommissionFee => {
                "commission-revenue"
            }
            Self::RefundOrderAmount => "refunds",
            Self::Chargeback => match reason {
                Some("fraud") => "chargebacks-operator",
                _ => "chargebacks-seller",
            },
        }
    }
}

/// One line of the seller transaction log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    /// Append order; what a page token points after.
    pub(crate) seq: u64,
    pub(crate) transaction_id: String,
    pub(crate) billing_cycle_id: String,
    pub(crate) shop_id: String,
    pub(crate) line_type: LineType,
    pub(crate) order_id: Option<String>,
    pub(crate) order_line_id: Option<String>,
    pub(crate) minor: i64,
    pub(crate) currency: Currency,
    pub(crate) date_created: Timestamp,
    pub(crate) accounting_document_number: String,
    pub(crate) payment_state: String,
    pub(crate) reason: Option<String>,
}

impl Line {
    /// The line as the API serves it: `gen_settlement.py`'s field names, amounts as strings.
    pub(crate) fn to_json(&self) -> Value {
        let mut line = Map::new();
        for (column, value) in STATEMENT_COLUMNS.iter().zip(self.cells()) {
            line.insert(
                (*column).to_owned(),
                value.map_or(Value::Null, Value::String),
            );
        }
        Value::Object(line)
    }

    /// The line's values in `STATEMENT_COLUMNS` order; `None` is a null.
    pub(crate) fn cells(&self) -> [Option<String>; 12] {
        [
            Some(self.transaction_id.clone()),
            Some(self.billing_cycle_id.clone()),
            Some(self.shop_id.clone()),
            Some(self.line_type.as_str().to_owned()),
            self.order_id.clone(),
            self.order_line_id.clone(),
            Some(self.currency.format(self.minor)),
            Some(self.currency.code.to_owned()),
            Some(self.date_created.to_string()),
            Some(self.accounting_document_number.clone()),
            Some(self.payment_state.clone()),
            self.reason.clone(),
        ]
    }
}

/// One journal line the operator's finance system posted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JournalLine {
    pub(crate) journal_id: String,
    /// The statement line's `transaction_id` it posts.
    pub(crate) reference: String,
    pub(crate) account: String,
    pub(crate) minor: i64,
    /// The currency it was posted in, which a defect may make differ from the statement's.
    pub(crate) currency: Currency,
    pub(crate) posted_at: Timestamp,
    pub(crate) billing_cycle_id: String,
}

impl JournalLine {
    /// The values in `JOURNAL_COLUMNS` order.
    pub(crate) fn cells(&self) -> [String; 7] {
        [
            self.journal_id.clone(),
            self.reference.clone(),
            self.account.clone(),
            self.currency.format(self.minor),
            self.currency.code.to_owned(),
            self.posted_at.to_string(),
            self.billing_cycle_id.clone(),
        ]
    }
}

/// A statement file written into the drop folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedStatement {
    /// The file name in the drop folder (after the rename from `.part`).
    pub file: String,
    /// The billing cycle whose lines it holds.
    pub billing_cycle_id: String,
    /// Statement lines in it (the header row not counted).
    pub lines: usize,
    /// Its size in bytes.
    pub bytes: usize,
    /// SHA-256 of its content, hex.
    pub sha256: String,
    /// For a re-drop, the file it repeats byte for byte (the intake must ignore it).
    pub duplicate_of: Option<String>,
}

/// The settlement state: statement lines, the ledger journal, invoice skews and the drops.
#[derive(Debug)]
pub(crate) struct Settlement {
    /// In append order (`seq` ascending).
    pub(crate) lines: Vec<Line>,
    pub(crate) journal: Vec<JournalLine>,
    /// Seeded differences between an invoice's stated total and the sum of its lines, by
    /// accounting document number.
    pub(crate) invoice_skew: BTreeMap<String, i64>,
    pub(crate) expected: Vec<ExpectedCycle>,
    pub(crate) drops: Vec<DroppedStatement>,
    next_transaction: u64,
    next_journal: u64,
    pub(crate) faults: FaultQueue,
}

impl Settlement {
    /// The seeded cycles (the same every time: the amounts are part of the documentation),
    /// then clean volume cycles of about `volume_lines` lines (none when 0).
    pub(crate) fn seeded(volume_lines: usize) -> Self {
        let seed = settlement_seed::build(volume_lines);
        let next_transaction = seed.lines.len() as u64 + 1;
        let next_journal = seed.journal_numbers + 1;
        Self {
            lines: seed.lines,
            journal: seed.journal,
            invoice_skew: seed.invoice_skew,
            expected: seed.expected,
            drops: Vec::new(),
            next_transaction,
            next_journal,
            faults: FaultQueue::default(),
        }
    }

    /// What `GET /_sandbox/marketplace/settlement/expected` serves.
    pub(crate) fn expected_json(&self) -> Value {
        json!({
            "contracted_commission_rate": settlement_seed::CONTRACTED_RATE,
            "cycles": self.expected,
        })
    }

    /// The billing cycles in the order they first appear in the log.
    pub(crate) fn cycles(&self) -> Vec<String> {
        let mut cycles: Vec<String> = Vec::new();
        for line in &self.lines {
            if !cycles.contains(&line.billing_cycle_id) {
                cycles.push(line.billing_cycle_id.clone());
            }
        }
        cycles
    }

    /// The append sequence of the line with `transaction_id`.
    fn seq_of(&self, transaction_id: &str) -> Option<u64> {
        self.lines
            .iter()
            .rev()
            .find(|l| l.transaction_id == transaction_id)
            .map(|l| l.seq)
    }

    /// Lines of `cycle` (every cycle when `None`) after sequence `after`, at most `limit`,
    /// and whether more follow.
    fn page(&self, cycle: Option<&str>, after: u64, limit: usize) -> (Vec<&Line>, bool) {
        let start = self.lines.partition_point(|l| l.seq <= after);
        let mut matching = self.lines[start..]
            .iter()
            .filter(|l| cycle.is_none_or(|c| l.billing_cycle_id == c));
        let page: Vec<&Line> = matching.by_ref().take(limit).collect();
        let more = matching.next().is_some();
        (page, more)
    }

    /// The invoices of `cycle` (every cycle when `None`): per accounting document, the total
    /// of its lines other than payouts (plus any seeded skew) and the payout.
    pub(crate) fn invoices(&self, cycle: Option<&str>) -> Vec<Value> {
        struct Invoice<'a> {
            first: &'a Line,
            total: i64,
            paid: i64,
            count: usize,
            last: Timestamp,
        }
        let mut invoices: Vec<Invoice<'_>> = Vec::new();
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        for line in self
            .lines
            .iter()
            .filter(|l| cycle.is_none_or(|c| l.billing_cycle_id == c))
        {
            let key = (line.accounting_document_number.as_str(), line.currency.code);
            let at = *index.entry(key).or_insert_with(|| {
                invoices.push(Invoice {
                    first: line,
                    total: 0,
                    paid: 0,
                    count: 0,
                    last: line.date_created,
                });
                invoices.len() - 1
            });
            let invoice = &mut invoices[at];
            if line.line_type == LineType::Payment {
                invoice.paid -= line.minor;
            } else {
                invoice.total += line.minor;
                invoice.count += 1;
            }
            invoice.last = invoice.last.max(line.date_created);
        }
        invoices
            .into_iter()
            .map(|invoice| {
                let line = invoice.first;
                let skew = self
                    .invoice_skew
                    .get(&line.accounting_document_number)
                    .copied()
                    .unwrap_or(0);
                json!({
                    "accounting_document_number": line.accounting_document_number,
                    "billing_cycle_id": line.billing_cycle_id,
                    "shop_id": line.shop_id,
                    "currency": line.currency.code,
                    "total": line.currency.format(invoice.total + skew),
                    "transaction_count": invoice.count,
                    "payout": line.currency.format(invoice.paid),
                    "issued_at": invoice.last.to_string(),
                })
            })
            .collect()
    }

    /// Appends lines given as JSON objects (see `append_lines`), posting each to the ledger
    /// too when `post` is set. All or nothing. Returns the new transaction IDs.
    pub(crate) fn append(
        &mut self,
        lines: &[Value],
        post: bool,
        now: Timestamp,
    ) -> Result<Vec<String>, String> {
        let parsed = lines
            .iter()
            .enumerate()
            .map(|(i, value)| parse_line(value, now).map_err(|err| format!("line [{i}]: {err}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids = Vec::with_capacity(parsed.len());
        for mut line in parsed {
            let seq = self.lines.last().map_or(1, |l| l.seq + 1);
            line.seq = seq;
            line.transaction_id = format!("T{:010}", self.next_transaction);
            self.next_transaction += 1;
            if post {
                self.journal.push(JournalLine {
                    journal_id: format!("J{:010}", self.next_journal),
                    reference: line.transaction_id.clone(),
                    account: line.line_type.account(line.reason.as_deref()).to_owned(),
                    minor: line.minor,
                    currency: line.currency,
                    posted_at: line.date_created,
                    billing_cycle_id: line.billing_cycle_id.clone(),
                });
                self.next_journal += 1;
            }
            ids.push(line.transaction_id.clone());
            self.lines.push(line);
        }
        Ok(ids)
    }

    /// The lines of one cycle as a statement CSV file (header row, then one row per line).
    pub(crate) fn statement_csv(&self, cycle: &str) -> (String, usize) {
        let mut csv = csv_row(STATEMENT_COLUMNS.iter().map(|c| Some((*c).to_owned())));
        let mut count = 0;
        for line in self.lines.iter().filter(|l| l.billing_cycle_id == cycle) {
            csv.push_str(&csv_row(line.cells()));
            count += 1;
        }
        (csv, count)
    }

    /// The journal as CSV (the shape of `gen_settlement.py`'s `ledger.csv`).
    fn journal_csv(&self, cycle: Option<&str>) -> String {
        let mut csv = csv_row(JOURNAL_COLUMNS.iter().map(|c| Some((*c).to_owned())));
        for line in self.journal_of(cycle) {
            csv.push_str(&csv_row(line.cells().into_iter().map(Some)));
        }
        csv
    }

    /// The journal as JSON objects of strings, one per journal line.
    pub(crate) fn journal_json(&self, cycle: Option<&str>) -> Vec<Value> {
        self.journal_of(cycle)
            .map(|line| {
                let object: Map<String, Value> = JOURNAL_COLUMNS
                    .iter()
                    .zip(line.cells())
                    .map(|(c, v)| ((*c).to_owned(), Value::String(v)))
                    .collect();
                Value::Object(object)
            })
            .collect()
    }

    fn journal_of<'a>(&'a self, cycle: Option<&'a str>) -> impl Iterator<Item = &'a JournalLine> {
        self.journal
            .iter()
            .filter(move |l| cycle.is_none_or(|c| l.billing_cycle_id == c))
    }
}

/// One CSV row, RFC 4180: a field with a comma, quote or line break is quoted; `None` is an
/// empty field (a null).
pub(crate) fn csv_row(cells: impl IntoIterator<Item = Option<String>>) -> String {
    let mut row = String::new();
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            row.push(',');
        }
        let cell = cell.unwrap_or_default();
        if cell.contains([',', '"', '\n', '\r']) {
            row.push('"');
            row.push_str(&cell.replace('"', "\"\""));
            row.push('"');
        } else {
            row.push_str(&cell);
        }
    }
    row.push('\n');
    row
}

/// Parses one appended line: `billing_cycle_id`, `shop_id`, `type`, `amount` and `currency`
/// are required; `order_id`, `order_line_id`, `reason`, `date_created` (default now),
/// `accounting_document_number` (default `INV-<cycle>-<shop>-<currency>`) and
/// `payment_state` (default `PENDING`) are optional. A `transaction_id` is refused: the
/// marketplace assigns it.
fn parse_line(value: &Value, now: Timestamp) -> Result<Line, String> {
    let Value::Object(object) = value else {
        return Err("expected a JSON object".to_owned());
    };
    const KNOWN: [&str; 11] = [
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
    if let Some(unknown) = object.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{unknown}` (the marketplace assigns `transaction_id`; the fields \
             are {})",
            KNOWN.join(", ")
        ));
    }
    let text = |name: &str| -> Result<Option<String>, String> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(format!("`{name}` must be a non-empty string, got {other}")),
        }
    };
    let required = |name: &str| -> Result<String, String> {
        text(name)?.ok_or_else(|| format!("`{name}` is required"))
    };
    let billing_cycle_id = required("billing_cycle_id")?;
    let shop_id = required("shop_id")?;
    let type_text = required("type")?;
    let line_type: LineType =
        serde_json::from_value(Value::String(type_text.clone())).map_err(|_| {
            format!(
                "`type` {type_text:?} is not one of ORDER_AMOUNT, ORDER_SHIPPING_AMOUNT, \
                 COMMISSION_FEE, COMMISSION_VAT, REFUND_ORDER_AMOUNT, REFUND_COMMISSION_FEE, \
                 CHARGEBACK, PAYMENT"
            )
        })?;
    let code = required("currency")?;
    let currency = Currency::parse(&code)
        .ok_or_else(|| format!("`currency` {code:?} is not one of EUR, GBP, USD, JPY, BHD"))?;
    let minor = currency
        .parse_amount(&required("amount")?)
        .map_err(|err| format!("`amount` {err}"))?;
    let date_created = match text("date_created")? {
        None => Timestamp::from_second(now.as_second()).unwrap_or(now),
        Some(t) => t
            .parse::<Timestamp>()
            .map_err(|err| format!("`date_created` {t:?} is not RFC 3339: {err}"))?,
    };
    let accounting_document_number = text("accounting_document_number")?
        .unwrap_or_else(|| document_number(&billing_cycle_id, &shop_id, currency));
    Ok(Line {
        seq: 0,
        transaction_id: String::new(),
        billing_cycle_id,
        shop_id,
        line_type,
        order_id: text("order_id")?,
        order_line_id: text("order_line_id")?,
        minor,
        currency,
        date_created,
        accounting_document_number,
        payment_state: text("payment_state")?.unwrap_or_else(|| "PENDING".to_owned()),
        reason: text("reason")?,
    })
}

/// The accounting document (invoice) number of a shop's lines in one currency of a cycle.
pub(crate) fn document_number(cycle: &str, shop: &str, currency: Currency) -> String {
    format!("INV-{cycle}-{shop}-{}", currency.code)
}

fn encode_token(seq: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{TOKEN_TAG}{seq}"))
}

fn decode_token(token: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix(TOKEN_TAG)?
        .parse()
        .ok()
}

fn cycle_param(query: &HashMap<String, String>) -> Option<&str> {
    query
        .get("billing_cycle_id")
        .map(String::as_str)
        .filter(|c| !c.is_empty())
}

/// `GET /marketplace/api/settlement/transactions?billing_cycle_id=&page_token=&after=&limit=`:
/// transaction lines in append order, `{"data": [...], "next_page_token": ...}`; no token
/// (null) on the last page. `after=TRANSACTION_ID` starts after that line (seek style);
/// `page_token` wins when both are given.
pub(crate) async fn list_transactions(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let token = query.get("page_token").filter(|t| !t.is_empty());
    let seek = query.get("after").filter(|t| !t.is_empty());
    let after = match (token, seek) {
        (Some(token), _) => decode_token(token).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid page_token {token:?}: pass the next_page_token of the previous page \
                 as given, or none for the first page"
            ))
        })?,
        // Seek style: after the line with this transaction ID (a reader's saved cursor).
        (None, Some(id)) => state.settlement().seq_of(id).ok_or_else(|| {
            ApiError::bad_request(format!(
                "after={id:?} is not a transaction_id of this log: pass the transaction_id of \
                 the last line read"
            ))
        })?,
        (None, None) => 0,
    };
    let limit = number(&query, "limit")?
        .unwrap_or(DEFAULT_PAGE)
        .clamp(1, MAX_PAGE);
    if let Some(failure) = faults::apply(&state, faults::Faulty::Settlement).await {
        return Ok(failure);
    }
    let settlement = state.settlement();
    let (page, more) = settlement.page(cycle_param(&query), after, limit);
    let token = match (more, page.last()) {
        (true, Some(last)) => Some(encode_token(last.seq)),
        _ => None,
    };
    let data: Vec<Value> = page.iter().map(|l| l.to_json()).collect();
    Ok(Json(json!({ "data": data, "next_page_token": token })).into_response())
}

/// `GET /marketplace/api/settlement/invoices?billing_cycle_id=`: `{"invoices": [...]}`.
pub(crate) async fn list_invoices(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    if let Some(failure) = faults::apply(&state, faults::Faulty::Settlement).await {
        return Ok(failure);
    }
    let invoices = state.settlement().invoices(cycle_param(&query));
    Ok(Json(json!({ "invoices": invoices })).into_response())
}

/// `GET /_sandbox/marketplace/settlement/expected`: per seeded cycle, its edge case, the
/// exact variances a correct reconciliation reports (and who owns each), and its totals.
pub(crate) async fn expected(State(state): State<Arc<SandboxState>>) -> Response {
    Json(state.settlement().expected_json()).into_response()
}

/// `GET /_sandbox/marketplace/settlement/drops`: the statement files written so far.
pub(crate) async fn drops(State(state): State<Arc<SandboxState>>) -> Response {
    Json(json!({ "drops": state.settlement().drops })).into_response()
}

/// `POST /_sandbox/marketplace/settlement/transactions` with `{"lines": [...], "ledger":
/// true}`: appends lines to the log (and, unless `ledger` is false, posts each to the
/// ledger as finance would). Answers `{"transaction_ids": [...]}`.
pub(crate) async fn append_lines(
    State(state): State<Arc<SandboxState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        lines: Vec<Value>,
        #[serde(default = "yes")]
        ledger: bool,
    }
    fn yes() -> bool {
        true
    }
    let body: Body = serde_json::from_slice(&body).map_err(|err| {
        ApiError::bad_request(format!(
            "expected {{\"lines\": [...], \"ledger\": true}}: {err}"
        ))
    })?;
    let ids = state
        .settlement()
        .append(&body.lines, body.ledger, Timestamp::now())
        .map_err(ApiError::unprocessable)?;
    Ok((StatusCode::CREATED, Json(json!({ "transaction_ids": ids }))).into_response())
}

/// `GET /_sandbox/ledger/journal?format=csv|jsonl|json&billing_cycle_id=`: the journal
/// finance posted, CSV (default, with a header row), JSON lines, or `{"journal": [...]}`.
pub(crate) async fn journal(
    State(state): State<Arc<SandboxState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let settlement = state.settlement();
    let cycle = cycle_param(&query);
    let (body, content_type) = match query.get("format").map(String::as_str) {
        None | Some("csv") => (settlement.journal_csv(cycle), "text/csv; charset=utf-8"),
        Some("jsonl") => {
            let mut out = String::new();
            for line in settlement.journal_json(cycle) {
                out.push_str(&line.to_string());
                out.push('\n');
            }
            (out, "application/x-ndjson")
        }
        // For an HTTP source: `records: /journal`.
        Some("json") => {
            let journal = settlement.journal_json(cycle);
            return Ok(Json(json!({ "journal": journal })).into_response());
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format {other:?} is not csv, jsonl or json"
            )));
        }
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_keep_the_currency_exponent() {
        assert_eq!(EUR.format(-1234), "-12.34");
        assert_eq!(EUR.format(5), "0.05");
        assert_eq!(JPY.format(4980), "4980");
        assert_eq!(BHD.format(12_345), "12.345");
        assert_eq!(BHD.format(-7), "-0.007");
        assert_eq!(EUR.parse_amount("12.3"), Ok(1230));
        assert_eq!(EUR.parse_amount("-0.05"), Ok(-5));
        assert_eq!(JPY.parse_amount("850"), Ok(850));
        assert!(JPY.parse_amount("850.5").is_err());
        assert!(EUR.parse_amount("1.234").is_err());
        assert!(EUR.parse_amount("1e3").is_err());
        assert!(EUR.parse_amount("").is_err());
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_strangers() {
        assert_eq!(decode_token(&encode_token(42)), Some(42));
        assert_eq!(decode_token("42"), None);
        assert_eq!(decode_token("o42"), None);
    }

    #[test]
    fn csv_rows_quote_what_needs_quoting() {
        let row = csv_row([Some("a,b".to_owned()), None, Some("say \"hi\"".to_owned())]);
        assert_eq!(row, "\"a,b\",,\"say \"\"hi\"\"\"\n");
    }
}
