//! The resolved phase of a reconciliation: what validation built from a flow's `reconcile:`
//! section (pointers checked, tolerances and the date window parsed, both sides resolved to
//! their connectors). The engine reads only this. No I/O here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use rust_decimal::Decimal;

use super::amount::Amount;
pub use super::config::{RateSign, Strategy};
use crate::money::Rounding;
use crate::spec::model::{Endpoint, FailureMode, FailureRoute, LatencyClass, Pattern, Trigger};

/// A validated reconcile flow.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    /// The flow file, relative to the workspace folder.
    pub file: PathBuf,
    /// The flow's name.
    pub name: String,
    /// What the flow reconciles and why, in business words (its `description:`).
    pub description: Option<String>,
    /// The business object reconciled (for dead letters).
    pub object: String,
    /// How the flow syncs (a reconciliation is normally `batch`).
    pub pattern: Pattern,
    /// How late a variance may be found before the business notices.
    pub latency: LatencyClass,
    /// The statement: the flow's `from:`.
    pub statement: Endpoint,
    /// The ledger: `reconcile.ledger`.
    pub ledger: Endpoint,
    /// What starts a run under `serve`.
    pub trigger: Trigger,
    /// Routes of `reconciliation-variance` and `ownership-violation` (and the others).
    pub failures: IndexMap<FailureMode, FailureRoute>,
    /// Alert webhook per owner.
    pub alert_urls: Arc<IndexMap<String, String>>,
    /// The matching rules.
    pub plan: ReconcilePlan,
}

/// The matching rules of a reconciliation.
#[derive(Debug, Clone)]
pub struct ReconcilePlan {
    /// The join key: statement pointer, ledger pointer.
    pub key: Pair,
    /// The billing cycle.
    pub cycle: Pair,
    /// The amount.
    pub amount: Pair,
    /// The currency.
    pub currency: Pair,
    /// Pointer to the ledger line's own ID.
    pub ledger_line: Option<String>,
    /// How lines pair up.
    pub strategy: Strategy,
    /// Largest difference still matched.
    pub tolerance: Tolerance,
    /// Dates compared, if any.
    pub date: Option<DateWindow>,
    /// Named checks of matched pairs, in declaration order.
    pub rules: Vec<Rule>,
    /// Contracted rates checked within the statement, in declaration order.
    pub rates: Vec<RateCheck>,
    /// Where lines are dated, for ages and cycle ends (`line_date`, else `date`'s fields).
    pub line_date: Option<LineDates>,
}

/// Pointers to each side's line date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDates {
    /// In a statement line.
    pub statement: String,
    /// In a ledger line, if the ledger dates its lines.
    pub ledger: Option<String>,
}

/// A contracted rate checked on the statement's own lines.
#[derive(Debug, Clone)]
pub struct RateCheck {
    /// Its name, quoted in variances as the rule that failed.
    pub name: String,
    /// What it protects.
    pub description: Option<String>,
    /// The charged lines: (pointer, value).
    pub charged: (String, String),
    /// The base lines: (pointer, value).
    pub base: (String, String),
    /// Pointer to the field joining a charged line to its base lines.
    pub per: String,
    /// Pointer to the field selecting the rate, if rates differ by it.
    pub by: Option<String>,
    /// Contracted rate per value of `by`.
    pub contracted: IndexMap<String, Decimal>,
    /// The rate for values not listed.
    pub default: Option<Decimal>,
    /// The charge's sign against its base.
    pub sign: RateSign,
    /// How the rate times the base is rounded to minor units.
    pub rounding: Rounding,
    /// Largest accepted difference.
    pub tolerance: Tolerance,
}

impl RateCheck {
    /// The contracted rate for a value of `by` (`None` when none applies).
    pub fn rate_for(&self, by: Option<&str>) -> Option<Decimal> {
        by.and_then(|value| self.contracted.get(value))
            .copied()
            .or(self.default)
    }
}

/// A field on each side, as JSON Pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// In a statement line.
    pub statement: String,
    /// In a ledger line.
    pub ledger: String,
}

/// Tolerances per currency.
#[derive(Debug, Clone, Default)]
pub struct Tolerance {
    /// For currencies not listed (exact when absent).
    pub default: Option<Amount>,
    /// By currency code.
    pub by_currency: IndexMap<String, Amount>,
}

impl Tolerance {
    /// The tolerance of `currency`: a difference whose absolute value is at most this matches.
    pub fn of(&self, currency: &str) -> Amount {
        self.by_currency
            .get(currency)
            .copied()
            .or(self.default)
            .unwrap_or(Amount::ZERO)
    }
}

/// Dates that must fall within a window of each other.
#[derive(Debug, Clone)]
pub struct DateWindow {
    /// Pointer to the statement line's time.
    pub statement: String,
    /// Pointer to the ledger line's time.
    pub ledger: String,
    /// The largest distance allowed.
    pub window: Duration,
}

/// A named check of a matched pair.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name, quoted in variances.
    pub name: String,
    /// What it protects.
    pub description: Option<String>,
    /// The statement lines it applies to: (pointer, value); all when `None`.
    pub when: Option<(String, String)>,
    /// Pointer to the ledger field checked.
    pub ledger_field: String,
    /// Pointer to the statement field selecting the expected value.
    pub by: String,
    /// Expected ledger value by value of `by`.
    pub expect: IndexMap<String, String>,
}
