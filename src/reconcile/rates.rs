//! Contracted rates checked within the statement (`reconcile.rates`): a charged line (a
//! `COMMISSION_FEE`) must be the contracted rate times its base lines (the `ORDER_AMOUNT` of
//! the same order line), rounded to the currency's ISO 4217 minor units, within a tolerance.
//!
//! The statement streams past once, in any order (a commission may come before its order
//! amount), so each check keeps one compact slot per `per` value it saw — sums and the first
//! charged line's reference — and judges them all when the statement ends. Nothing is kept
//! for lines that are neither charged nor a base, and nothing at all when a flow declares no
//! rate. This module knows nothing of the ledger: the matcher turns findings into variances.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rust_decimal::Decimal;

use super::amount::Amount;
use super::extract::Slot as Field;
use super::ledger::{FxHasher, Interner, NONE, key_hash};
use super::plan::{RateCheck, RateSign};
use crate::money::{Currency, Money};

/// Several currencies under one `per` value.
const MIXED: u32 = NONE - 1;

/// Where a check's fields sit in the statement's fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Positions {
    pub(crate) charged: usize,
    pub(crate) base: usize,
    pub(crate) per: usize,
    pub(crate) by: Option<usize>,
}

/// One statement line as a rate check sees it.
pub(crate) struct Line<'a> {
    pub(crate) transaction_id: &'a str,
    pub(crate) cycle: u32,
    pub(crate) currency: u32,
    pub(crate) amount: Amount,
    pub(crate) line: u64,
}

/// What one check holds while the statement streams past: per `per` value one fixed-size
/// slot (sums as 64-bit units, the first charged line's place) and its bytes in an arena, so
/// a million-line statement costs tens of bytes per order line, not a few allocations each.
#[derive(Debug, Default)]
pub(crate) struct RateState {
    /// `per` values and transaction IDs, back to back.
    arena: Vec<u8>,
    /// Key hash to the newest slot with that hash; slots chain through `next`.
    index: HashMap<u64, u32, BuildHasherDefault<FxHasher>>,
    slots: Vec<Joined>,
    /// Charged lines without a `per` value: they cannot be joined to a base.
    orphans: Vec<Orphan>,
}

/// A charge that is not, or cannot be shown to be, the contracted rate of its base.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    /// The first charged line's statement key.
    pub(crate) transaction_id: String,
    /// Its cycle (interned).
    pub(crate) cycle: u32,
    /// The first charged line's currency (interned).
    pub(crate) currency: u32,
    /// Its line number.
    pub(crate) line: u64,
    /// What the statement charged (summed over the `per` value's charged lines).
    pub(crate) charged: Amount,
    /// What the contract says, when it can be computed.
    pub(crate) expected: Option<Amount>,
    /// How many charged lines were summed.
    pub(crate) charged_lines: u32,
    /// What was found, for people.
    pub(crate) detail: String,
}

/// The lines sharing one `per` value.
#[derive(Debug)]
struct Joined {
    per: Span,
    next: u32,
    base: Packed,
    base_currency: u32,
    base_lines: u32,
    charged: Packed,
    charged_currency: u32,
    charged_lines: u32,
    /// The first charged line (`transaction_id` empty until one came): the variance is
    /// keyed by it.
    first: First,
}

/// A stretch of the arena.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// A sum as units at a scale, in 64 bits; not `ok` once it left them (judged unverifiable).
#[derive(Debug, Clone, Copy)]
struct Packed {
    units: i64,
    scale: u8,
    ok: bool,
}

/// Where the first charged line of a `per` value is.
#[derive(Debug, Clone, Copy, Default)]
struct First {
    transaction_id: Span,
    cycle: u32,
    currency: u32,
    line: u64,
    by: u32,
}

/// A charged line that names no `per` value.
#[derive(Debug)]
struct Orphan {
    first: First,
    amount: Amount,
}

impl Packed {
    const ZERO: Packed = Packed {
        units: 0,
        scale: 0,
        ok: true,
    };

    fn get(self) -> Option<Amount> {
        self.ok
            .then(|| Amount::new(i128::from(self.units), self.scale))
    }

    fn add(&mut self, amount: Amount) {
        let sum = self
            .get()
            .and_then(|sum| sum.checked_add(amount).ok())
            .and_then(|sum| Some((i64::try_from(sum.units()).ok()?, sum.scale())));
        match sum {
            Some((units, scale)) => {
                self.units = units;
                self.scale = scale;
            }
            None => self.ok = false,
        }
    }
}

impl RateState {
    fn store(&mut self, bytes: &[u8]) -> Span {
        // Past 4 GiB of keys the span saturates: such a statement is far past what one run
        // reconciles (the ledger refuses it first).
        let start = u32::try_from(self.arena.len()).unwrap_or(u32::MAX);
        self.arena.extend_from_slice(bytes);
        Span {
            start,
            len: u32::try_from(bytes.len()).unwrap_or(0),
        }
    }

    fn text(&self, span: Span) -> &str {
        let (start, end) = (span.start as usize, span.start as usize + span.len as usize);
        self.arena
            .get(start..end)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or("")
    }

    /// The slot of `per`, made when new.
    fn slot(&mut self, per: &str) -> usize {
        let hash = key_hash(per.as_bytes());
        let mut at = self.index.get(&hash).copied().unwrap_or(NONE);
        while at != NONE {
            let joined = &self.slots[at as usize];
            if self.text(joined.per) == per {
                return at as usize;
            }
            at = joined.next;
        }
        let span = self.store(per.as_bytes());
        let slot = self.slots.len();
        let next = self.index.insert(hash, slot as u32).unwrap_or(NONE);
        self.slots.push(Joined {
            per: span,
            next,
            base: Packed::ZERO,
            base_currency: NONE,
            base_lines: 0,
            charged: Packed::ZERO,
            charged_currency: NONE,
            charged_lines: 0,
            first: First::default(),
        });
        slot
    }

    /// Takes in a statement line if the check charges it or bases on it.
    pub(crate) fn add(
        &mut self,
        check: &RateCheck,
        at: Positions,
        values: &[Field<'_>],
        line: &Line<'_>,
        names: &mut Interner,
    ) {
        let field = |at: usize| values.get(at).and_then(Option::as_deref);
        let charged = field(at.charged) == Some(check.charged.1.as_str());
        let base = field(at.base) == Some(check.base.1.as_str());
        if !charged && !base {
            return;
        }
        let mut first = |state: &mut Self| First {
            transaction_id: state.store(line.transaction_id.as_bytes()),
            cycle: line.cycle,
            currency: line.currency,
            line: line.line,
            by: match at.by.and_then(field) {
                Some(by) => names.intern(by),
                None => NONE,
            },
        };
        let per = match field(at.per) {
            Some(per) if !per.is_empty() => per,
            _ => {
                if charged {
                    let first = first(self);
                    self.orphans.push(Orphan {
                        first,
                        amount: line.amount,
                    });
                }
                return;
            }
        };
        let slot = self.slot(per);
        if charged {
            if self.slots[slot].charged_lines == 0 {
                self.slots[slot].first = first(self);
            }
            let joined = &mut self.slots[slot];
            joined.charged.add(line.amount);
            joined.charged_currency = merge(joined.charged_currency, line.currency);
            joined.charged_lines += 1;
        } else {
            let joined = &mut self.slots[slot];
            joined.base.add(line.amount);
            joined.base_currency = merge(joined.base_currency, line.currency);
            joined.base_lines += 1;
        }
    }

    /// Judges every `per` value with a charged line, in the order they were first seen.
    pub(crate) fn finish(self, check: &RateCheck, names: &Interner) -> Vec<Finding> {
        let per_name = check.per.trim_start_matches('/');
        let mut findings = Vec::new();
        for orphan in &self.orphans {
            findings.push(Finding {
                transaction_id: self.text(orphan.first.transaction_id).to_owned(),
                cycle: orphan.first.cycle,
                currency: orphan.first.currency,
                line: orphan.first.line,
                charged: orphan.amount,
                expected: None,
                charged_lines: 1,
                detail: format!(
                    "rate {}: the line has no {per_name}, so its {} line cannot be found and its \
                     rate not checked",
                    check.name, check.base.1
                ),
            });
        }
        for joined in &self.slots {
            if joined.charged_lines == 0 {
                continue;
            }
            let per = self.text(joined.per);
            let transaction_id = self.text(joined.first.transaction_id);
            if let Some(finding) = judge(check, joined, per, transaction_id, names) {
                findings.push(finding);
            }
        }
        findings
    }
}

fn merge(known: u32, currency: u32) -> u32 {
    match known {
        NONE => currency,
        same if same == currency => same,
        _ => MIXED,
    }
}

fn judge(
    check: &RateCheck,
    joined: &Joined,
    per: &str,
    transaction_id: &str,
    names: &Interner,
) -> Option<Finding> {
    let per_name = check.per.trim_start_matches('/');
    let first = &joined.first;
    let mut finding = Finding {
        transaction_id: transaction_id.to_owned(),
        cycle: first.cycle,
        currency: first.currency,
        line: first.line,
        charged: joined.charged.get().unwrap_or(Amount::ZERO),
        expected: None,
        charged_lines: joined.charged_lines,
        detail: String::new(),
    };
    let unchecked = |why: String| format!("rate {}: {why}; the rate cannot be checked", check.name);
    if joined.base_lines == 0 {
        finding.detail = unchecked(format!("no {} line has {per_name} {per}", check.base.1));
        return Some(finding);
    }
    let (Some(charged), Some(base)) = (joined.charged.get(), joined.base.get()) else {
        finding.detail = unchecked(format!(
            "the amounts of {per_name} {per} add up beyond exact 64-bit arithmetic"
        ));
        return Some(finding);
    };
    if joined.charged_currency == MIXED || joined.base_currency != joined.charged_currency {
        finding.detail = unchecked(format!(
            "the {} and {} lines of {per_name} {per} are in different currencies",
            check.charged.1, check.base.1
        ));
        return Some(finding);
    }
    let code = names.name(joined.charged_currency);
    let currency = match Currency::from_code(code) {
        Ok(currency) => currency,
        Err(err) => {
            finding.detail = unchecked(format!("{err}: its minor units are unknown"));
            return Some(finding);
        }
    };
    let by = check
        .by
        .as_ref()
        .map(|pointer| (pointer.trim_start_matches('/'), names.name(first.by)));
    let listed = by
        .and_then(|(_, value)| check.contracted.get(value))
        .copied();
    let Some(rate) = listed.or(check.default) else {
        let (field, value) = by.unwrap_or_default();
        finding.detail = format!(
            "rate {}: no rate is contracted for {field} {value:?} (and no default)",
            check.name
        );
        return Some(finding);
    };
    let expected = match contracted(check, rate, base, currency) {
        Ok(expected) => expected,
        Err(why) => {
            finding.detail = unchecked(why);
            return Some(finding);
        }
    };
    let difference = expected.checked_sub(charged).ok()?;
    if difference.abs().cmp_value(check.tolerance.of(code)).is_le() {
        return None;
    }
    let whose = match (by, listed) {
        (Some((field, value)), Some(_)) => format!(" for {field} {value}"),
        _ => " by default".to_owned(),
    };
    finding.expected = Some(expected);
    finding.detail = format!(
        "rate {}: {per_name} {per} was charged {} {code} on {} {code} (a rate of {}); the \
         contracted rate{whose} is {rate}, which is {expected} {code}",
        check.name,
        charged,
        base,
        charged_rate(charged, base)
    );
    Some(finding)
}

/// The contracted amount: `rate` times `base`, with the charge's sign, rounded to the
/// currency's minor units.
fn contracted(
    check: &RateCheck,
    rate: Decimal,
    base: Amount,
    currency: Currency,
) -> Result<Amount, String> {
    let base = decimal(base).ok_or_else(|| format!("the base {base} is out of range"))?;
    let product = base
        .checked_mul(rate)
        .ok_or_else(|| format!("{base} x {rate} is out of range"))?;
    let signed = match check.sign {
        RateSign::Opposite => -product,
        RateSign::Same => product,
    };
    let money = Money::rounded(signed, currency, check.rounding).map_err(|e| e.to_string())?;
    let amount = money.amount();
    Ok(Amount::new(amount.mantissa(), amount.scale() as u8))
}

fn decimal(amount: Amount) -> Option<Decimal> {
    Decimal::try_from_i128_with_scale(amount.units(), u32::from(amount.scale())).ok()
}

/// The rate actually charged, for the message: |charged| / |base| to four decimals.
fn charged_rate(charged: Amount, base: Amount) -> String {
    match (decimal(charged), decimal(base)) {
        (Some(charged), Some(base)) if !base.is_zero() => charged
            .abs()
            .checked_div(base.abs())
            .map(|r| r.round_dp(4).normalize().to_string())
            .unwrap_or_else(|| "?".into()),
        _ => "?".into(),
    }
}
