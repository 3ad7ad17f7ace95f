//! The seeded settlement: eight billing cycles of a small marketplace, one clean and one per
//! money edge case, the ledger journal finance posted from them, and what a correct
//! reconciliation must report for each. The data is fixed (not drawn from the sandbox seed):
//! its amounts are quoted in `docs/sandbox.md` and in tests.
//!
//! Every cycle is first built correctly — each statement line posted once to its account,
//! one payout per shop and currency settling the cycle — and then given its one defect by
//! changing exactly one thing, so the expected variance is known by construction rather than
//! by running a reconciliation. This module only builds values; it owns no state and knows
//! nothing of HTTP.
//!
//! On request it adds volume after the eight: clean cycles of thousands of lines (orders in
//! four currencies, each line posted once, paid out in full), so a flow reading the log spans
//! many pages and a crash can land in the middle of it. They come after the seeded cycles and
//! draw from the same random stream after them, so the seeded cycles, their IDs and their
//! expectations are the same with or without volume.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

use super::settlement::{
    BHD, Currency, EUR, GBP, JPY, JournalLine, Line, LineType, document_number,
};

/// The commission rate every shop is contracted at, as a decimal string.
pub(crate) const CONTRACTED_RATE: &str = "0.12";
/// The same, and the rate the commission adjustment cycle charges, in basis points.
const CONTRACTED_BP: i64 = 1200;
const ADJUSTED_BP: i64 = 1500;
/// VAT on commission, in basis points.
const VAT_BP: i64 = 2000;
/// Who owns every seeded variance (issue 9: finance owns settlement failures).
const OWNER: &str = "finance-ops";
/// The fixed random stream of the filler orders.
const SEED: u64 = 0x5e77_1e00;
/// 2026-10-01T00:00:00Z, the first cycle's first day; each cycle spans three days.
const FIRST_DAY: Timestamp = Timestamp::constant(1_790_812_800, 0);
const CYCLE_DAYS: i64 = 3;
/// 2026-11-01T00:00:00Z, the first volume cycle's first day.
const VOLUME_FIRST_DAY: Timestamp = Timestamp::constant(1_793_491_200, 0);
/// Lines per volume cycle at most: about a thousand orders in a three-day cycle.
const VOLUME_CYCLE_LINES: usize = 5_000;
/// The most volume lines the sandbox makes (`SandboxConfig::settlement_lines`): it keeps the
/// whole log in memory and answers from it.
pub(crate) const MAX_VOLUME_LINES: usize = 200_000;
/// The `edge_case` of a volume cycle.
pub(crate) const VOLUME: &str = "volume";
/// The shops of the volume cycles, each selling in one currency, taken in turn.
const VOLUME_SHOPS: [(&str, Currency); 6] = [
    ("S2001", EUR),
    ("S2002", EUR),
    ("S2003", EUR),
    ("S2004", GBP),
    ("S2005", JPY),
    ("S2006", BHD),
];

/// What the seed hands to `Settlement`.
#[derive(Debug)]
pub(crate) struct Seed {
    pub(crate) lines: Vec<Line>,
    pub(crate) journal: Vec<JournalLine>,
    pub(crate) invoice_skew: BTreeMap<String, i64>,
    pub(crate) expected: Vec<ExpectedCycle>,
    /// Journal lines numbered so far (IDs are never reused, even for a posting removed).
    pub(crate) journal_numbers: u64,
}

/// One seeded cycle and what a correct reconciliation reports for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ExpectedCycle {
    pub(crate) billing_cycle_id: String,
    /// The edge case it carries (`clean` for none).
    pub(crate) edge_case: &'static str,
    pub(crate) description: &'static str,
    /// True when the cycle reconciles with no variance at all.
    pub(crate) ties_out: bool,
    pub(crate) statement_lines: usize,
    pub(crate) ledger_lines: usize,
    pub(crate) variances: Vec<ExpectedVariance>,
    /// Per currency, as `verify_settlement.py` totals them.
    pub(crate) totals: Vec<CycleTotal>,
}

/// One variance a correct reconciliation must report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ExpectedVariance {
    /// `verify_settlement.py`'s kinds (`missing_in_ledger`, `duplicate_in_ledger`,
    /// `currency_mismatch`, `amount_mismatch`, `wrong_party`), the contracted rate table's
    /// `rate_mismatch` (a commission charged at another rate, the rule named in `rule`), plus
    /// the statement's own tie-outs: `invoice_total_mismatch` and `payout_mismatch`.
    pub(crate) kind: &'static str,
    /// The failure mode of the dead letter: `reconciliation-variance`, or for a chargeback
    /// on the wrong party `ownership-violation`.
    pub(crate) failure: &'static str,
    pub(crate) owner: &'static str,
    pub(crate) billing_cycle_id: String,
    pub(crate) transaction_id: Option<String>,
    pub(crate) journal_id: Option<String>,
    pub(crate) accounting_document_number: String,
    pub(crate) currency: &'static str,
    /// Ledger minus statement (for the tie-outs: invoice minus lines, paid minus owed; for
    /// a rate: contracted minus charged); null for a currency mismatch.
    pub(crate) difference: Option<String>,
    /// The rule that failed, where one names it (the commission rate: `rule` is its name in
    /// the reference workspace, with the contracted and charged rates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rule: Option<Value>,
    pub(crate) explanation: String,
}

/// A cycle's totals in one currency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CycleTotal {
    pub(crate) currency: &'static str,
    pub(crate) statement_total: String,
    pub(crate) ledger_total: String,
    /// Ledger minus statement.
    pub(crate) variance: String,
}

/// One sold order line, for refunds and chargebacks against it.
#[derive(Debug, Clone)]
struct Sale {
    order_id: String,
    order_line_id: String,
    shop: &'static str,
    currency: Currency,
    price: i64,
    commission: i64,
    at: Timestamp,
}

struct Cycle {
    id: String,
    start: Timestamp,
    clock: Timestamp,
    /// Time between two orders.
    step: SignedDuration,
}

impl Cycle {
    fn new(number: i64) -> Self {
        let start = FIRST_DAY + SignedDuration::from_hours(24 * CYCLE_DAYS * (number - 1));
        Self {
            id: format!("BC-2026-10-{number}"),
            start,
            clock: start + SignedDuration::from_hours(8),
            step: SignedDuration::from_mins(47),
        }
    }

    /// The `number`th volume cycle (from 1): `BC-2026-11-<number>`, three days each from
    /// 2026-11-01, orders three minutes apart so a full one still closes in time.
    fn volume(number: i64) -> Self {
        let start = VOLUME_FIRST_DAY + SignedDuration::from_hours(24 * CYCLE_DAYS * (number - 1));
        Self {
            id: format!("BC-2026-11-{number}"),
            start,
            clock: start + SignedDuration::from_hours(8),
            step: SignedDuration::from_mins(3),
        }
    }

    /// The next order's time: orders come in `step` apart from 08:00 of the first day.
    fn tick(&mut self) -> Timestamp {
        self.clock += self.step;
        self.clock
    }

    /// Payouts happen at the cycle's last second.
    fn close(&self) -> Timestamp {
        self.start + SignedDuration::from_hours(24 * CYCLE_DAYS) - SignedDuration::from_secs(1)
    }
}

struct Builder {
    rng: StdRng,
    lines: Vec<Line>,
    journal: Vec<JournalLine>,
    invoice_skew: BTreeMap<String, i64>,
    expected: Vec<ExpectedCycle>,
    orders: u32,
    journal_numbers: u64,
}

/// Builds the eight seeded cycles, then clean volume cycles of `volume_lines` lines in all
/// (rounded up to whole orders and their payouts; none when 0, at most
/// [`MAX_VOLUME_LINES`]).
pub(crate) fn build(volume_lines: usize) -> Seed {
    let mut b = Builder {
        rng: StdRng::seed_from_u64(SEED),
        lines: Vec::new(),
        journal: Vec::new(),
        invoice_skew: BTreeMap::new(),
        expected: Vec::new(),
        orders: 0,
        journal_numbers: 0,
    };
    clean(&mut b);
    multi_currency(&mut b);
    commission_adjustment(&mut b);
    seller_return(&mut b);
    chargeback_wrong_party(&mut b);
    refund_not_posted(&mut b);
    invoice_total_mismatch(&mut b);
    payout_mismatch(&mut b);
    volume(&mut b, volume_lines.min(MAX_VOLUME_LINES));
    Seed {
        lines: b.lines,
        journal: b.journal,
        invoice_skew: b.invoice_skew,
        expected: b.expected,
        journal_numbers: b.journal_numbers,
    }
}

fn clean(b: &mut Builder) {
    let mut c = Cycle::new(1);
    b.random_order(&mut c, "S2001", EUR);
    b.random_order(&mut c, "S2001", EUR);
    let sales = b.random_order(&mut c, "S2002", EUR);
    b.refund(&c, &sales[0], "customer_cancellation");
    b.random_order(&mut c, "S2002", EUR);
    let sales = b.random_order(&mut c, "S2003", EUR);
    b.chargeback(&c, &sales[0], "item_not_received");
    b.payouts(&c, None);
    b.finish(
        &c,
        "clean",
        "Orders, a cancellation refund and a chargeback, all posted correctly: ties out to \
         the cent.",
        Vec::new(),
    );
}

fn multi_currency(b: &mut Builder) {
    let mut c = Cycle::new(2);
    b.random_order(&mut c, "S2001", EUR);
    b.random_order(&mut c, "S2001", GBP);
    b.random_order(&mut c, "S2004", GBP);
    let sales = b.order(&mut c, "S2005", JPY, &[4980, 12_800], 850, CONTRACTED_BP);
    b.order(&mut c, "S2006", BHD, &[12_345, 7_890], 2_500, CONTRACTED_BP);
    b.random_order(&mut c, "S2006", BHD);
    b.payouts(&c, None);
    // Finance booked the JPY shipping amount in the shop's home currency, EUR, figure for
    // figure: 850 JPY became 850.00 EUR.
    let shipping = b.line_of(&sales[0], LineType::OrderShippingAmount);
    let transaction_id = b.lines[shipping].transaction_id.clone();
    let posted = b.journal_mut(&transaction_id);
    posted.currency = EUR;
    posted.minor = 85_000;
    let journal_id = posted.journal_id.clone();
    let variance = b.variance(
        &c,
        shipping,
        "currency_mismatch",
        Some(journal_id),
        None,
        "The JPY shipping amount (850 JPY) was posted in EUR as 850.00: no conversion may \
         happen silently; finance reposts it in JPY.",
    );
    b.finish(
        &c,
        "multi-currency",
        "Lines in EUR, GBP, JPY (no decimals) and BHD (three decimals); one shop sells in two \
         currencies. One JPY line was posted in EUR.",
        vec![variance],
    );
}

fn commission_adjustment(b: &mut Builder) {
    let mut c = Cycle::new(3);
    b.random_order(&mut c, "S2001", EUR);
    let sales = b.order(&mut c, "S2002", EUR, &[20_000], 495, ADJUSTED_BP);
    b.random_order(&mut c, "S2003", EUR);
    b.payouts(&c, None);
    // Finance posted the commission at the contracted 12 %, the statement charged 15 %.
    let fee = b.line_of(&sales[0], LineType::CommissionFee);
    let transaction_id = b.lines[fee].transaction_id.clone();
    let contracted = -rate(sales[0].price, CONTRACTED_BP);
    let posted = b.journal_mut(&transaction_id);
    posted.minor = contracted;
    let journal_id = posted.journal_id.clone();
    let charged = b.lines[fee].minor;
    let mut variance = b.variance(
        &c,
        fee,
        "rate_mismatch",
        Some(journal_id),
        Some(contracted - charged),
        "The statement charged 15 % commission (-30.00 EUR on 200.00) where the shop's \
         contract says 12 % (-24.00 EUR, as the ledger posted it): the commission-rate rule \
         fails; the marketplace corrects its charge.",
    );
    variance.rule = Some(json!({
        "rule": "commission-rate",
        "contracted_rate": CONTRACTED_RATE,
        "charged_rate": "0.15",
        "order_amount": EUR.format(sales[0].price),
        "expected_amount": EUR.format(contracted),
    }));
    b.finish(
        &c,
        "commission-adjustment",
        "One order line charged 15 % commission where the contracted rate is 12 %; the \
         ledger posted the contracted commission.",
        vec![variance],
    );
}

fn seller_return(b: &mut Builder) {
    let mut c = Cycle::new(4);
    b.random_order(&mut c, "S2001", EUR);
    let sales = b.order(&mut c, "S2003", EUR, &[8_990], 450, CONTRACTED_BP);
    let refund = b.refund(&c, &sales[0], "seller_initiated_return");
    b.random_order(&mut c, "S2002", EUR);
    b.payouts(&c, None);
    // The return's refund was posted twice: once from the returns desk, once from the
    // statement.
    let transaction_id = b.lines[refund].transaction_id.clone();
    let copy = b.journal_mut(&transaction_id).clone();
    let again = b.post_copy(copy);
    let refunded = b.lines[refund].minor;
    let variance = b.variance(
        &c,
        refund,
        "duplicate_in_ledger",
        Some(again),
        Some(refunded),
        "The seller-initiated return's refund (-89.90 EUR) was posted to the ledger twice; \
         finance reverses the second posting.",
    );
    b.finish(
        &c,
        "seller-initiated-return",
        "A seller-initiated return refunds the order amount and the commission on it; the \
         refund was posted to the ledger twice.",
        vec![variance],
    );
}

fn chargeback_wrong_party(b: &mut Builder) {
    let mut c = Cycle::new(5);
    b.random_order(&mut c, "S2001", EUR);
    let sales = b.random_order(&mut c, "S2002", EUR);
    b.chargeback(&c, &sales[0], "item_not_received");
    let sales = b.order(&mut c, "S2004", GBP, &[6_400], 399, CONTRACTED_BP);
    let chargeback = b.chargeback(&c, &sales[0], "fraud");
    b.payouts(&c, None);
    // A fraud chargeback is the operator's to bear; finance booked it against the seller.
    let transaction_id = b.lines[chargeback].transaction_id.clone();
    let posted = b.journal_mut(&transaction_id);
    posted.account = "chargebacks-seller".to_owned();
    let journal_id = posted.journal_id.clone();
    let variance = b.variance(
        &c,
        chargeback,
        "wrong_party",
        Some(journal_id),
        Some(0),
        "A fraud chargeback (-64.00 GBP) is borne by the operator (chargebacks-operator) but \
         was booked to chargebacks-seller.",
    );
    b.finish(
        &c,
        "chargeback-wrong-party",
        "Two chargebacks: item not received (the seller bears it, booked right) and fraud (the \
         operator bears it, booked against the seller).",
        vec![variance],
    );
}

fn refund_not_posted(b: &mut Builder) {
    let mut c = Cycle::new(6);
    let sales = b.order(&mut c, "S2001", EUR, &[12_000], 590, CONTRACTED_BP);
    let refund = b.refund(&c, &sales[0], "customer_cancellation");
    b.random_order(&mut c, "S2002", EUR);
    b.random_order(&mut c, "S2003", EUR);
    b.payouts(&c, None);
    // The marketplace cleared the refund; finance never posted it.
    let transaction_id = b.lines[refund].transaction_id.clone();
    b.journal.retain(|j| j.reference != transaction_id);
    let cleared = b.lines[refund].minor;
    let variance = b.variance(
        &c,
        refund,
        "missing_in_ledger",
        None,
        Some(-cleared),
        "A refund of -120.00 EUR cleared at the marketplace was never posted to the ledger.",
    );
    b.finish(
        &c,
        "refund-not-posted",
        "A customer cancellation refunded at the marketplace; the refund's order amount never \
         reached the ledger (its commission refund did).",
        vec![variance],
    );
}

fn invoice_total_mismatch(b: &mut Builder) {
    let mut c = Cycle::new(7);
    b.random_order(&mut c, "S2001", EUR);
    b.random_order(&mut c, "S2002", EUR);
    b.random_order(&mut c, "S2002", EUR);
    b.random_order(&mut c, "S2003", EUR);
    b.payouts(&c, None);
    let document = document_number(&c.id, "S2002", EUR);
    b.invoice_skew.insert(document.clone(), 1_000);
    let variance = ExpectedVariance {
        kind: "invoice_total_mismatch",
        failure: "reconciliation-variance",
        owner: OWNER,
        billing_cycle_id: c.id.clone(),
        transaction_id: None,
        journal_id: None,
        accounting_document_number: document,
        currency: EUR.code,
        difference: Some(EUR.format(1_000)),
        rule: None,
        explanation: "The invoice states a total 10.00 EUR above the sum of its lines; the \
                      lines and the ledger agree."
            .to_owned(),
    };
    b.finish(
        &c,
        "invoice-total-mismatch",
        "The statement does not tie out: one invoice's total is not the sum of its lines.",
        vec![variance],
    );
}

fn payout_mismatch(b: &mut Builder) {
    let mut c = Cycle::new(8);
    b.random_order(&mut c, "S2001", EUR);
    b.random_order(&mut c, "S2002", EUR);
    b.random_order(&mut c, "S2003", EUR);
    b.random_order(&mut c, "S2003", EUR);
    let payouts = b.payouts(&c, Some(("S2003", -500)));
    let payout = payouts
        .iter()
        .find(|(shop, _)| *shop == "S2003")
        .map_or(0, |(_, at)| *at);
    let transaction_id = b.lines[payout].transaction_id.clone();
    let journal_id = b.journal_mut(&transaction_id).journal_id.clone();
    let variance = b.variance(
        &c,
        payout,
        "payout_mismatch",
        Some(journal_id),
        Some(-500),
        "The payout line paid 5.00 EUR less than the shop's lines add up to; the ledger \
         posted the payout as paid.",
    );
    b.finish(
        &c,
        "payout-mismatch",
        "The statement does not tie out: one payout line disagrees with the lines it pays.",
        vec![variance],
    );
}

/// Clean cycles of `lines` lines in all, at most [`VOLUME_CYCLE_LINES`] each: orders of the
/// six shops in turn (EUR, GBP, JPY, BHD), then one payout per shop settling the cycle.
/// Nothing is wrong in them: each ties out, and `expected` says so.
fn volume(b: &mut Builder, lines: usize) {
    let mut left = lines;
    let mut number = 0;
    while left > 0 {
        number += 1;
        let mut c = Cycle::volume(number);
        let first = b.lines.len();
        let budget = left.min(VOLUME_CYCLE_LINES);
        let mut orders = 0;
        // Every shop that sold gets a payout line: room is kept for them.
        while b.lines.len() - first + orders.min(VOLUME_SHOPS.len()) < budget {
            let (shop, currency) = VOLUME_SHOPS[orders % VOLUME_SHOPS.len()];
            b.random_order(&mut c, shop, currency);
            orders += 1;
        }
        b.payouts(&c, None);
        left = left.saturating_sub(b.lines.len() - first);
        b.finish(
            &c,
            VOLUME,
            "Volume: orders in EUR, GBP, JPY and BHD, each line posted once and paid out in \
             full; ties out to the minor unit.",
            Vec::new(),
        );
    }
}

impl Builder {
    /// Appends a statement line and posts it to its account, as finance would.
    #[allow(clippy::too_many_arguments)]
    fn line(
        &mut self,
        cycle: &Cycle,
        shop: &str,
        line_type: LineType,
        order: Option<(&str, &str)>,
        minor: i64,
        currency: Currency,
        at: Timestamp,
        reason: Option<&str>,
    ) -> usize {
        let seq = self.lines.len() as u64 + 1;
        let line = Line {
            seq,
            transaction_id: format!("T{seq:010}"),
            billing_cycle_id: cycle.id.clone(),
            shop_id: shop.to_owned(),
            line_type,
            order_id: order.map(|(o, _)| o.to_owned()),
            order_line_id: order.map(|(_, l)| l.to_owned()),
            minor,
            currency,
            date_created: at,
            accounting_document_number: document_number(&cycle.id, shop, currency),
            payment_state: "PAID".to_owned(),
            reason: reason.map(str::to_owned),
        };
        let posting = JournalLine {
            journal_id: String::new(),
            reference: line.transaction_id.clone(),
            account: line_type.account(reason).to_owned(),
            minor,
            currency,
            posted_at: at,
            billing_cycle_id: cycle.id.clone(),
        };
        self.post_copy(posting);
        self.lines.push(line);
        self.lines.len() - 1
    }

    /// Posts a journal line under the next journal ID; returns that ID.
    fn post_copy(&mut self, mut posting: JournalLine) -> String {
        self.journal_numbers += 1;
        posting.journal_id = format!("J{:010}", self.journal_numbers);
        let id = posting.journal_id.clone();
        self.journal.push(posting);
        id
    }

    /// An order with one line per price, commission and VAT on each, shipping on the first.
    fn order(
        &mut self,
        cycle: &mut Cycle,
        shop: &'static str,
        currency: Currency,
        prices: &[i64],
        shipping: i64,
        commission_bp: i64,
    ) -> Vec<Sale> {
        self.orders += 1;
        let order_id = format!("O{:08}-A", self.orders);
        let at = cycle.tick();
        let mut sales = Vec::new();
        for (n, &price) in prices.iter().enumerate() {
            let order_line_id = format!("{order_id}-{}", n + 1);
            let refs = Some((order_id.as_str(), order_line_id.as_str()));
            let commission = rate(price, commission_bp);
            let vat = rate(commission, VAT_BP);
            self.line(
                cycle,
                shop,
                LineType::OrderAmount,
                refs,
                price,
                currency,
                at,
                None,
            );
            self.line(
                cycle,
                shop,
                LineType::CommissionFee,
                refs,
                -commission,
                currency,
                at,
                None,
            );
            self.line(
                cycle,
                shop,
                LineType::CommissionVat,
                refs,
                -vat,
                currency,
                at,
                None,
            );
            if n == 0 {
                self.line(
                    cycle,
                    shop,
                    LineType::OrderShippingAmount,
                    refs,
                    shipping,
                    currency,
                    at,
                    None,
                );
            }
            sales.push(Sale {
                order_id: order_id.clone(),
                order_line_id,
                shop,
                currency,
                price,
                commission,
                at,
            });
        }
        sales
    }

    /// An order of one to three lines at random prices in the currency's usual range.
    fn random_order(
        &mut self,
        cycle: &mut Cycle,
        shop: &'static str,
        currency: Currency,
    ) -> Vec<Sale> {
        let (price_range, shipping_range) = match currency.code {
            "JPY" => (500..=40_000, 200..=1_500),
            "BHD" => (2_000..=150_000, 1_000..=5_000),
            _ => (500..=40_000, 200..=1_500),
        };
        let lines = self.rng.random_range(1..=3);
        let prices: Vec<i64> = (0..lines)
            .map(|_| self.rng.random_range(price_range.clone()))
            .collect();
        let shipping = self.rng.random_range(shipping_range);
        self.order(cycle, shop, currency, &prices, shipping, CONTRACTED_BP)
    }

    /// Refunds a sold line a day later: its amount and the commission on it. Returns the
    /// index of the `REFUND_ORDER_AMOUNT` line.
    fn refund(&mut self, cycle: &Cycle, sale: &Sale, reason: &str) -> usize {
        let at = sale.at + SignedDuration::from_hours(24);
        let refs = Some((sale.order_id.as_str(), sale.order_line_id.as_str()));
        let refund = self.line(
            cycle,
            sale.shop,
            LineType::RefundOrderAmount,
            refs,
            -sale.price,
            sale.currency,
            at,
            Some(reason),
        );
        self.line(
            cycle,
            sale.shop,
            LineType::RefundCommissionFee,
            refs,
            sale.commission,
            sale.currency,
            at,
            Some(reason),
        );
        refund
    }

    /// Charges a sold line back a day later.
    fn chargeback(&mut self, cycle: &Cycle, sale: &Sale, reason: &str) -> usize {
        let at = sale.at + SignedDuration::from_hours(24);
        let refs = Some((sale.order_id.as_str(), sale.order_line_id.as_str()));
        self.line(
            cycle,
            sale.shop,
            LineType::Chargeback,
            refs,
            -sale.price,
            sale.currency,
            at,
            Some(reason),
        )
    }

    /// One payout per shop and currency, paying what the cycle's lines owe the shop (less
    /// `short` for the one shop named). Returns each payout line's shop and index.
    fn payouts(&mut self, cycle: &Cycle, short: Option<(&str, i64)>) -> Vec<(String, usize)> {
        let mut owed: BTreeMap<(String, Currency), i64> = BTreeMap::new();
        for line in self.lines.iter().filter(|l| l.billing_cycle_id == cycle.id) {
            *owed
                .entry((line.shop_id.clone(), line.currency))
                .or_default() += line.minor;
        }
        let mut payouts = Vec::new();
        for ((shop, currency), owed) in owed {
            let paid = match short {
                Some((short_shop, delta)) if short_shop == shop => owed + delta,
                _ => owed,
            };
            let at = self.line(
                cycle,
                &shop,
                LineType::Payment,
                None,
                -paid,
                currency,
                cycle.close(),
                None,
            );
            payouts.push((shop, at));
        }
        payouts
    }

    /// The index of the line of `line_type` for a sold order line.
    fn line_of(&self, sale: &Sale, line_type: LineType) -> usize {
        self.lines
            .iter()
            .position(|l| {
                l.line_type == line_type
                    && l.order_line_id.as_deref() == Some(sale.order_line_id.as_str())
            })
            .unwrap_or_default()
    }

    /// The (first) journal line posting `transaction_id`. Only called for lines this seed
    /// just posted; a miss would be a bug in the seed, so it falls back to the last posting
    /// rather than panicking.
    fn journal_mut(&mut self, transaction_id: &str) -> &mut JournalLine {
        let at = self
            .journal
            .iter()
            .position(|j| j.reference == transaction_id)
            .unwrap_or(self.journal.len().saturating_sub(1));
        &mut self.journal[at]
    }

    fn variance(
        &self,
        cycle: &Cycle,
        line: usize,
        kind: &'static str,
        journal_id: Option<String>,
        difference: Option<i64>,
        explanation: &str,
    ) -> ExpectedVariance {
        let line = &self.lines[line];
        ExpectedVariance {
            kind,
            failure: if kind == "wrong_party" {
                "ownership-violation"
            } else {
                "reconciliation-variance"
            },
            owner: OWNER,
            billing_cycle_id: cycle.id.clone(),
            transaction_id: Some(line.transaction_id.clone()),
            journal_id,
            accounting_document_number: line.accounting_document_number.clone(),
            currency: line.currency.code,
            difference: difference.map(|d| line.currency.format(d)),
            rule: None,
            explanation: explanation.to_owned(),
        }
    }

    /// Records the cycle's expectation, totals computed from what was seeded.
    fn finish(
        &mut self,
        cycle: &Cycle,
        edge_case: &'static str,
        description: &'static str,
        variances: Vec<ExpectedVariance>,
    ) {
        let mut totals: BTreeMap<Currency, (i64, i64)> = BTreeMap::new();
        let lines: Vec<&Line> = self
            .lines
            .iter()
            .filter(|l| l.billing_cycle_id == cycle.id)
            .collect();
        let postings: Vec<&JournalLine> = self
            .journal
            .iter()
            .filter(|j| j.billing_cycle_id == cycle.id)
            .collect();
        for line in &lines {
            totals.entry(line.currency).or_default().0 += line.minor;
        }
        for posting in &postings {
            totals.entry(posting.currency).or_default().1 += posting.minor;
        }
        let totals = totals
            .into_iter()
            .map(|(currency, (statement, ledger))| CycleTotal {
                currency: currency.code,
                statement_total: currency.format(statement),
                ledger_total: currency.format(ledger),
                variance: currency.format(ledger - statement),
            })
            .collect();
        self.expected.push(ExpectedCycle {
            billing_cycle_id: cycle.id.clone(),
            edge_case,
            description,
            ties_out: variances.is_empty(),
            statement_lines: lines.len(),
            ledger_lines: postings.len(),
            variances,
            totals,
        });
    }
}

/// `amount * bp / 10000`, rounded half away from zero to the minor unit.
fn rate(amount: i64, bp: i64) -> i64 {
    let scaled = amount * bp;
    let half = 5_000 * scaled.signum();
    (scaled + half) / 10_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commission_rounds_half_away_from_zero() {
        assert_eq!(rate(8_990, CONTRACTED_BP), 1_079);
        assert_eq!(rate(20_000, ADJUSTED_BP), 3_000);
        assert_eq!(rate(4_980, CONTRACTED_BP), 598);
        assert_eq!(rate(598, VAT_BP), 120);
        assert_eq!(rate(-8_990, CONTRACTED_BP), -1_079);
    }

    #[test]
    fn the_seed_is_the_same_every_time_and_small() {
        let (one, two) = (build(0), build(0));
        assert_eq!(one.lines, two.lines);
        assert_eq!(one.journal, two.journal);
        assert_eq!(one.expected, two.expected);
        assert_eq!(one.expected.len(), 8);
        for cycle in &one.expected {
            assert!(
                (10..100).contains(&cycle.statement_lines),
                "{}: {} lines",
                cycle.billing_cycle_id,
                cycle.statement_lines
            );
            assert_eq!(cycle.ties_out, cycle.variances.is_empty());
        }
        let clean = &one.expected[0];
        assert_eq!(clean.edge_case, "clean");
        assert!(clean.totals.iter().all(|t| t.variance == "0.00"));
    }
}
