//! Billing cycles over time, for "days to close": when a reconciliation first saw each cycle,
//! when the cycle ended (its latest statement line, when the flow dates its lines), and the
//! reconciliation at which it first tied out. Kept in the reconcile flow's checkpoint (its
//! `position`, beside `reconciled_at`), so a restart loses none of it; written only when
//! something changed, so an idle schedule adds nothing to the audit trail.
//!
//! This module owns the record and the gauges read from it; it does no I/O of its own (the
//! caller loads and commits the checkpoint).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::metrics::catalog::RECONCILIATION_CYCLE_CLOSE;

/// Cycles remembered per flow; past it the ones first seen longest ago are forgotten (a weekly
/// cycle takes twenty years to get there).
pub const MAX_CYCLES: usize = 1000;

/// What is remembered of each cycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CycleBook {
    cycles: BTreeMap<String, CycleRecord>,
}

/// One cycle's dates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// The first reconciliation that saw the cycle.
    pub seen: Timestamp,
    /// Its latest statement line, when the flow dates its lines (frozen once it closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    /// The first reconciliation at which it tied out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Timestamp>,
}

impl CycleRecord {
    /// Seconds from the cycle's end (or, undated, from the first reconciliation that saw it)
    /// to the reconciliation that first tied it out; for a cycle still open, to `now`.
    pub fn close_seconds(&self, now: Timestamp) -> f64 {
        let from = self.end.unwrap_or(self.seen);
        let to = self.closed.unwrap_or(now);
        to.duration_since(from).as_secs_f64().max(0.0)
    }
}

impl CycleBook {
    /// The book kept in a reconcile flow's checkpoint position (empty when there is none or
    /// it cannot be read: the cycles are then counted afresh from this run).
    pub fn from_position(position: &Value) -> Self {
        position
            .get("cycles")
            .and_then(|cycles| serde_json::from_value(cycles.clone()).ok())
            .map(|cycles| Self { cycles })
            .unwrap_or_default()
    }

    /// The checkpoint position holding this book, stamped with the run's time.
    pub fn to_position(&self, reconciled_at: Timestamp) -> Value {
        json!({
            "reconciled_at": reconciled_at.to_string(),
            "cycles": serde_json::to_value(&self.cycles).unwrap_or_default(),
        })
    }

    /// Takes in one run: whether each cycle it reconciled tied out, and each one's latest
    /// statement line date (Unix seconds). Returns whether anything changed.
    pub fn update(
        &mut self,
        tied: &BTreeMap<String, bool>,
        ends: &BTreeMap<String, i64>,
        now: Timestamp,
    ) -> bool {
        let mut changed = false;
        for (cycle, &tied) in tied {
            let record = self.cycles.entry(cycle.clone()).or_insert_with(|| {
                changed = true;
                CycleRecord {
                    seen: now,
                    end: None,
                    closed: None,
                }
            });
            if record.closed.is_some() {
                continue;
            }
            let end = ends
                .get(cycle)
                .and_then(|&at| Timestamp::from_second(at).ok());
            if end.is_some() && end != record.end {
                record.end = end;
                changed = true;
            }
            if tied {
                record.closed = Some(now);
                changed = true;
            }
        }
        while self.cycles.len() > MAX_CYCLES {
            let oldest = self
                .cycles
                .iter()
                .min_by_key(|(name, record)| (record.seen, (*name).clone()))
                .map(|(name, _)| name.clone());
            match oldest {
                Some(name) => {
                    self.cycles.remove(&name);
                }
                None => break,
            }
        }
        changed
    }

    /// The cycles, by name.
    pub fn cycles(&self) -> &BTreeMap<String, CycleRecord> {
        &self.cycles
    }

    /// Sets `switchyard_reconciliation_cycle_close_seconds` for every cycle of `flow`.
    pub fn set_metrics(&self, metrics: &Metrics, flow: &str, now: Timestamp) {
        for (cycle, record) in &self.cycles {
            metrics.set(
                &RECONCILIATION_CYCLE_CLOSE,
                vec![("flow", flow.to_owned()), ("cycle", cycle.clone())],
                record.close_seconds(now),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn tied(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
        pairs.iter().map(|(c, t)| ((*c).to_owned(), *t)).collect()
    }

    #[test]
    fn a_cycle_closes_once_counted_from_its_end() {
        let mut book = CycleBook::default();
        let ends: BTreeMap<String, i64> =
            [("C1".to_owned(), at("2026-10-03T23:59:59Z").as_second())].into();
        let first = at("2026-10-05T06:00:00Z");
        assert!(book.update(&tied(&[("C1", false), ("C2", false)]), &ends, first));
        // Still open two days later: open since its end, and since first seen when undated.
        let later = at("2026-10-07T06:00:00Z");
        let c1 = &book.cycles()["C1"];
        assert_eq!(c1.close_seconds(later), 3.0 * 86_400.0 + 6.0 * 3600.0 + 1.0);
        assert_eq!(book.cycles()["C2"].close_seconds(later), 2.0 * 86_400.0);
        // Nothing new: nothing to write.
        assert!(!book.update(&tied(&[("C1", false)]), &ends, later));
        // C1 ties out: its time to close is fixed from then on, even if it opens again.
        assert!(book.update(&tied(&[("C1", true)]), &ends, later));
        let closed = book.cycles()["C1"].close_seconds(at("2026-12-01T00:00:00Z"));
        assert_eq!(closed, 3.0 * 86_400.0 + 6.0 * 3600.0 + 1.0);
        assert!(!book.update(&tied(&[("C1", false)]), &ends, at("2026-10-09T00:00:00Z")));
        assert_eq!(book.cycles()["C1"].closed, Some(later));
    }

    #[test]
    fn the_book_survives_the_checkpoint_and_stays_bounded() {
        let mut book = CycleBook::default();
        let now = at("2026-10-05T06:00:00Z");
        book.update(&tied(&[("C1", true)]), &BTreeMap::new(), now);
        let position = book.to_position(now);
        assert_eq!(position["reconciled_at"], "2026-10-05T06:00:00Z");
        assert_eq!(position["cycles"]["C1"]["closed"], "2026-10-05T06:00:00Z");
        assert_eq!(CycleBook::from_position(&position), book);
        assert_eq!(
            CycleBook::from_position(&json!({"reconciled_at": "x"})),
            CycleBook::default()
        );
        assert_eq!(
            CycleBook::from_position(&json!({"cycles": 7})),
            CycleBook::default()
        );
        let many: BTreeMap<String, bool> = (0..MAX_CYCLES + 5)
            .map(|n| (format!("C{n:05}"), false))
            .collect();
        let mut book = CycleBook::default();
        book.update(&many, &BTreeMap::new(), now);
        assert_eq!(book.cycles().len(), MAX_CYCLES);
        assert!(!book.cycles().contains_key("C00000"));
    }
}
