//! The `reconcile:` section of a flow file, as written: the raw phase of a reconciliation.
//! Plain serde + schemars types (their doc comments are the published schema's descriptions);
//! validation (`crate::spec::validate`) checks them and resolves them into a
//! [`super::plan::ReconcilePlan`]. No I/O here.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::raw::SourceConfig;

/// Joins the flow's statement (its `from:`) to a ledger on financial references, per billing
/// cycle and currency, and reports every variance. A reconcile flow has no `to:` and no `map:`:
/// its output is the reconciliation report and one dead letter per variance.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// The other side: the finance ledger, read through its system's connector like any
    /// `from:` (a ledger export file, a PostgreSQL table, an HTTP API).
    pub ledger: SourceConfig,
    /// The financial reference joining the two sides: a statement line matches the ledger
    /// lines whose `ledger` field equals its `statement` field (for example
    /// `{ statement: /transaction_id, ledger: /reference }`).
    pub key: FieldPair,
    /// The billing cycle of a line on each side; totals and ties-out are per cycle and
    /// currency, and `--cycle` reconciles one.
    pub cycle: FieldPair,
    /// The signed amount of a line on each side, as a decimal string (`-12.30`) or number.
    pub amount: FieldPair,
    /// The ISO 4217 currency code of a line on each side. Amounts are never converted: a
    /// ledger line in another currency is a `currency_mismatch`.
    pub currency: FieldPair,
    /// JSON Pointer to the ledger line's own ID (for example `/journal_id`), named in the
    /// report for ledger lines no statement line explains. Defaults to the line's position.
    #[serde(default)]
    pub ledger_line: Option<String>,
    /// How lines pair up: `one-to-one` (default), `one-to-many` (one statement line against
    /// the sum of several ledger lines) or `many-to-one` (statement lines sharing a key, such
    /// as an invoice's `accounting_document_number`, summed against one ledger line).
    #[serde(default)]
    pub strategy: Strategy,
    /// Largest difference still matched, per currency code, with `default` for the others
    /// (for example `{ default: "0.00", JPY: "1" }`). Defaults to exact.
    #[serde(default)]
    pub tolerance: IndexMap<String, String>,
    /// Dates compared on each side, and how far apart they may be; a ledger date outside
    /// the window is a `date_outside_window` variance.
    #[serde(default)]
    pub date: Option<DateMatch>,
    /// Named checks of matched lines: a breach is a `wrong_party` variance routed as an
    /// `ownership-violation` (for example a chargeback booked to the party that does not bear
    /// it).
    #[serde(default)]
    pub rules: IndexMap<String, RuleConfig>,
    /// Named checks of the statement against a contracted rate table: each line charged at a
    /// rate (a `COMMISSION_FEE`) must be the contracted rate times its base line (the
    /// `ORDER_AMOUNT` of the same order line), rounded to the currency's minor units. A breach
    /// is a `rate_mismatch` variance naming the rate that failed.
    #[serde(default)]
    pub rates: IndexMap<String, RateConfig>,
    /// When each line happened, for the age of unmatched lines and the end of a billing cycle
    /// in the metrics. Never a variance: a line whose date is missing or not an RFC 3339 time
    /// counts as of unknown age. Defaults to `date`'s fields when `date` is declared.
    #[serde(default)]
    pub line_date: Option<LineDate>,
}

/// Where each side dates its lines.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineDate {
    /// JSON Pointer to the statement line's RFC 3339 time (for example `/date_created`); the
    /// latest in a cycle is the cycle's end.
    pub statement: String,
    /// JSON Pointer to the ledger line's RFC 3339 time (for example `/posted_at`). Without
    /// it, a ledger line no statement explains is as old as its cycle's end.
    #[serde(default)]
    pub ledger: Option<String>,
}

/// A contracted rate: which statement lines are charged at it, on which base line, and the
/// rate table.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// What the rate protects, in business words; quoted in the variance.
    #[serde(default)]
    pub description: Option<String>,
    /// The statement lines charged at the rate (for example `{ field: /type, equals:
    /// COMMISSION_FEE }`).
    pub charged: RuleCondition,
    /// The statement lines the rate applies to (for example `{ field: /type, equals:
    /// ORDER_AMOUNT }`).
    pub base: RuleCondition,
    /// JSON Pointer to the field a charged line shares with its base lines (for example
    /// `/order_line_id`). The charged lines sharing a value are summed and checked against
    /// the rate times the sum of the base lines sharing it.
    pub per: String,
    /// JSON Pointer to the statement field of the charged line that selects the rate in
    /// `contracted` (for example `/shop_id`, or a category). Every line is at `default` when
    /// absent.
    #[serde(default)]
    pub by: Option<String>,
    /// The contracted rate per value of `by`, as a decimal fraction between 0 and 1 (12 % is
    /// `"0.12"`; quote it so YAML keeps its digits).
    #[serde(default)]
    pub contracted: IndexMap<String, String>,
    /// The rate for values of `by` not in `contracted`. Without it, a charged line whose
    /// value is not listed breaches the rate: no rate is contracted for it.
    #[serde(default)]
    pub default: Option<String>,
    /// The sign of a charged line against its base: `opposite` (default: a commission of
    /// `-12.00` on an order of `100.00`) or `same` (VAT of `-2.40` on a commission of
    /// `-12.00`).
    #[serde(default)]
    pub sign: RateSign,
    /// How the rate times the base is rounded to the currency's ISO 4217 minor units:
    /// `half-even` (default) or `half-away-from-zero`.
    #[serde(default)]
    pub rounding: crate::money::Rounding,
    /// Largest difference between the charged and the contracted amount still accepted, per
    /// currency code, with `default` for the others (for example `{ default: "0.00", JPY: "1"
    /// }`). Exact when absent.
    #[serde(default)]
    pub tolerance: IndexMap<String, String>,
}

/// The sign of a charged line against its base line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RateSign {
    /// The charge is a debit against a credit (a commission taken from an order amount).
    #[default]
    Opposite,
    /// The charge has the base's sign (VAT on a commission).
    Same,
}

/// A field on each side, as JSON Pointers (a CSV column is `/column`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldPair {
    /// JSON Pointer to the field in a statement line (for example `/transaction_id`).
    pub statement: String,
    /// JSON Pointer to the field in a ledger line (for example `/reference`).
    pub ledger: String,
}

/// How statement lines and ledger lines pair up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Each statement line against exactly one ledger line; two or more is a
    /// `duplicate_in_ledger`.
    #[default]
    OneToOne,
    /// Each statement line against the sum of every ledger line with its key (a payout
    /// booked in several journal lines).
    OneToMany,
    /// The sum of the statement lines sharing a key against exactly one ledger line (the
    /// lines of an invoice against its one posting).
    ManyToOne,
}

/// Dates to compare, and the window they must fall in.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DateMatch {
    /// JSON Pointer to the statement line's RFC 3339 time (for example `/date_created`).
    pub statement: String,
    /// JSON Pointer to the ledger line's RFC 3339 time (for example `/posted_at`).
    pub ledger: String,
    /// How far apart the two may be, as a duration such as `3d` or `72h`.
    pub window: String,
}

/// A named check of a matched pair: which ledger value the statement line requires.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// What the rule protects, in business words; quoted in the variance.
    #[serde(default)]
    pub description: Option<String>,
    /// The statement lines the rule applies to; every matched line when absent.
    #[serde(default)]
    pub when: Option<RuleCondition>,
    /// JSON Pointer to the ledger field checked (for example `/account`).
    pub ledger_field: String,
    /// JSON Pointer to the statement field whose value selects the expected ledger value
    /// (for example `/reason`).
    pub by: String,
    /// The expected ledger value for each value of `by` (for example `{ fraud:
    /// chargebacks-operator, item_not_received: chargebacks-seller }`). A value of `by` not
    /// listed is a breach too: nobody is declared to bear it.
    pub expect: IndexMap<String, String>,
}

/// A statement field equal to a value.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleCondition {
    /// JSON Pointer to the statement field (for example `/type`).
    pub field: String,
    /// The value it must have (for example `CHARGEBACK`).
    pub equals: String,
}
