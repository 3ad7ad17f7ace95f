//! Every metric Switchyard exports, declared once: name, help, type and labels together.
//! The registry renders from this list (so `/metrics` lists them all, with `HELP` and `TYPE`,
//! even before a first series), the events update through these constants, and the metrics
//! table in `docs/operations.md` is checked against it by a test. Labels are bounded: flow,
//! failure mode, owner, outcome; never a record ID.

/// How a metric behaves, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (within a process).
    Counter,
    /// Set to the current value.
    Gauge,
    /// Observations (seconds) in the fixed [`super::BUCKETS`].
    Histogram,
}

impl Kind {
    /// The Prometheus type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric's definition.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    /// The exported name.
    pub name: &'static str,
    /// The `HELP` text.
    pub help: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its label names, in the order they are rendered.
    pub labels: &'static [&'static str],
}

const FLOW: &[&str] = &["flow"];
const FAILURE: &[&str] = &["flow", "failure", "owner"];

/// Records read by a flow (counted as each batch is read).
pub static RECORDS_RECEIVED: Metric = Metric {
    name: "switchyard_records_received_total",
    help: "Records read by a flow.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Records acknowledged by a flow's sink (counted as each record is).
pub static RECORDS_DELIVERED: Metric = Metric {
    name: "switchyard_records_delivered_total",
    help: "Records acknowledged by a flow's sink.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Records dropped as duplicates.
pub static RECORDS_DUPLICATE: Metric = Metric {
    name: "switchyard_records_duplicate_total",
    help: "Records dropped as duplicates.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Records a flow's `where:` conditions filtered out.
pub static RECORDS_FILTERED: Metric = Metric {
    name: "switchyard_records_filtered_total",
    help: "Records filtered out by a flow's where conditions (neither delivered nor dead-lettered).",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Enrichment calls (`enrich:`) by outcome: `called` (a request sent, retries included),
/// `cache_hit` (a record answered from the run's cache), `retried`, `failed` (a request that
/// failed for good).
pub static ENRICHMENT_CALLS: Metric = Metric {
    name: "switchyard_enrichment_calls_total",
    help: "Enrichment requests by enrichment and outcome (called, cache_hit, retried, failed).",
    kind: Kind::Counter,
    labels: &["flow", "enrichment", "outcome"],
};
/// Records dead-lettered, by failure mode and owner.
pub static RECORDS_DEAD_LETTERED: Metric = Metric {
    name: "switchyard_records_dead_lettered_total",
    help: "Records dead-lettered, by failure mode and owner.",
    kind: Kind::Counter,
    labels: FAILURE,
};
/// Delivery attempts that failed transiently and will be retried.
pub static RECORDS_RETRIED: Metric = Metric {
    name: "switchyard_records_retried_total",
    help: "Delivery attempts that failed transiently and are retried.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Batches whose checkpoint was handed to the committer.
pub static BATCHES_COMMITTED: Metric = Metric {
    name: "switchyard_batches_committed_total",
    help: "Batches settled and committed (checkpoint, processed keys, dead letters).",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Runs that finished (possibly stopped early).
pub static RUNS_FINISHED: Metric = Metric {
    name: "switchyard_runs_finished_total",
    help: "Runs that read their source to the end or stopped early on purpose.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Runs that failed before finishing.
pub static RUNS_FAILED: Metric = Metric {
    name: "switchyard_runs_failed_total",
    help: "Runs that failed before finishing.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Run duration.
pub static RUN_DURATION: Metric = Metric {
    name: "switchyard_run_duration_seconds",
    help: "Duration of flow runs.",
    kind: Kind::Histogram,
    labels: FLOW,
};
/// Per-record latency from being read to being acknowledged (sink, then source).
pub static DELIVERY_LATENCY: Metric = Metric {
    name: "switchyard_delivery_latency_seconds",
    help: "Seconds from reading a record to its acknowledgement by the sink (and source).",
    kind: Kind::Histogram,
    labels: FLOW,
};
/// Owners warned of an approaching deadline.
pub static DEADLINE_WARNINGS: Metric = Metric {
    name: "switchyard_deadline_warnings_total",
    help: "Owners warned that a record's deadline was approaching.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// `null`s in typed fields accepted by a lenient contract (`contract_nulls: lenient`).
pub static CONTRACT_NULL_WARNINGS: Metric = Metric {
    name: "switchyard_contract_null_warnings_total",
    help: "Nulls in typed fields that a lenient contract accepted instead of refusing the record.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Source reads that failed (the run stops; the owner of `source-unavailable` is alerted).
pub static SOURCE_UNAVAILABLE: Metric = Metric {
    name: "switchyard_source_unavailable_total",
    help: "Runs stopped because the source could not be read.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Source pages that failed transiently and were asked again under the flow's `retry:`.
pub static SOURCE_RETRIES: Metric = Metric {
    name: "switchyard_source_retries_total",
    help: "Source reads that failed transiently and were retried.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Listings a source ended early so that they end (repeated token, identical page, cap).
pub static LISTINGS_CUT: Metric = Metric {
    name: "switchyard_listings_cut_total",
    help: "Listings ended early so that they end (repeated token, identical page, page cap).",
    kind: Kind::Counter,
    labels: &["flow", "reason"],
};
/// Time calls waited for client-side rate limits, per bucket, since the process started
/// (set from the process-wide registry when `/metrics` is rendered).
pub static RATE_LIMIT_WAITED: Metric = Metric {
    name: "switchyard_rate_limit_waited_seconds",
    help: "Time calls waited for a client-side rate limit since the process started.",
    kind: Kind::Gauge,
    labels: &["limit"],
};
/// Sink outages declared (a record outlived its retry window; the batch stops waiting).
pub static SINK_OUTAGES: Metric = Metric {
    name: "switchyard_sink_outages_total",
    help: "Sink outages declared: a record stayed undeliverable past its retry window.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Runs refused because another process holds the flow's lock.
pub static FLOW_LOCK_REFUSED: Metric = Metric {
    name: "switchyard_flow_lock_refused_total",
    help: "Runs refused because another process holds the flow's lock.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Runs that lost their flow lock to another process while running.
pub static FLOW_LEASE_LOST: Metric = Metric {
    name: "switchyard_flow_lease_lost_total",
    help: "Runs that lost their flow lock to another process while running.",
    kind: Kind::Counter,
    labels: FLOW,
};
/// Webhook events by outcome.
pub static WEBHOOK_EVENTS: Metric = Metric {
    name: "switchyard_webhook_events_total",
    help: "Webhook requests by outcome.",
    kind: Kind::Counter,
    labels: &["flow", "outcome"],
};
/// Time from receiving a webhook request to the event being durable.
pub static WEBHOOK_INTAKE: Metric = Metric {
    name: "switchyard_webhook_intake_seconds",
    help: "Time from receiving a webhook request to the event being durable.",
    kind: Kind::Histogram,
    labels: FLOW,
};
/// Seconds since a flow last delivered something.
pub static FLOW_FRESHNESS: Metric = Metric {
    name: "switchyard_flow_freshness_seconds",
    help: "Seconds since the flow last delivered a change.",
    kind: Kind::Gauge,
    labels: FLOW,
};
/// Open dead letters in the store.
pub static DEAD_LETTERS_OPEN: Metric = Metric {
    name: "switchyard_dead_letters_open",
    help: "Open dead letters in the store.",
    kind: Kind::Gauge,
    labels: FAILURE,
};
/// Dead-lettered / received over the process's life.
pub static OFFER_REJECTION_RATIO: Metric = Metric {
    name: "switchyard_offer_rejection_ratio",
    help: "Records dead-lettered over records received, since the daemon started.",
    kind: Kind::Gauge,
    labels: FLOW,
};
/// Records delivered against a deadline and not acknowledged yet.
pub static AWAITING_ACK: Metric = Metric {
    name: "switchyard_awaiting_acknowledgement",
    help: "Records delivered against a deadline and not acknowledged yet.",
    kind: Kind::Gauge,
    labels: FLOW,
};
/// Seconds left to the soonest open deadline (negative once passed).
pub static DEADLINE_SECONDS_LEFT: Metric = Metric {
    name: "switchyard_deadline_seconds_left",
    help: "Seconds left to the soonest open deadline of a flow.",
    kind: Kind::Gauge,
    labels: FLOW,
};
/// Settlement variance of the latest reconciliation: ledger total minus statement total, in
/// the currency's units, per cycle and currency.
pub static SETTLEMENT_VARIANCE: Metric = Metric {
    name: "switchyard_settlement_variance",
    help: "Ledger total minus statement total of the latest reconciliation, per cycle and currency.",
    kind: Kind::Gauge,
    labels: &["flow", "cycle", "currency"],
};
/// Lines the latest reconciliation left unmatched, by side (`statement`: missing in the
/// ledger; `ledger`: missing in the statement) and age (`0-1d`, `1-7d`, `7-30d`, `30d+`,
/// `unknown`): a snapshot partitioned into buckets, so `sum without (age)` is the total.
pub static RECONCILIATION_UNMATCHED: Metric = Metric {
    name: "switchyard_reconciliation_unmatched_lines",
    help: "Lines the latest reconciliation left unmatched, by side and age since the line's date.",
    kind: Kind::Gauge,
    labels: &["flow", "side", "age"],
};
/// Variances found by the latest reconciliation, by kind.
pub static RECONCILIATION_VARIANCES: Metric = Metric {
    name: "switchyard_reconciliation_variances",
    help: "Variances found by the latest reconciliation, by kind.",
    kind: Kind::Gauge,
    labels: &["flow", "kind"],
};
/// Whether each cycle tied out in the latest reconciliation (1) or not (0).
pub static RECONCILIATION_CYCLE_TIED: Metric = Metric {
    name: "switchyard_reconciliation_cycle_tied_out",
    help: "1 when a billing cycle tied out in the latest reconciliation, else 0.",
    kind: Kind::Gauge,
    labels: &["flow", "cycle"],
};

/// Per billing cycle, seconds from its end to the reconciliation that first tied it out
/// ("days to close", in seconds); for a cycle not tied out yet, seconds it has been open.
pub static RECONCILIATION_CYCLE_CLOSE: Metric = Metric {
    name: "switchyard_reconciliation_cycle_close_seconds",
    help: "Seconds from a billing cycle's end to the reconciliation that first tied it out; while it is open, seconds since its end.",
    kind: Kind::Gauge,
    labels: &["flow", "cycle"],
};

/// Every metric, in the order `/metrics` and the docs list them.
pub static ALL: &[&Metric] = &[
    &RECORDS_RECEIVED,
    &RECORDS_DELIVERED,
    &RECORDS_DUPLICATE,
    &RECORDS_FILTERED,
    &ENRICHMENT_CALLS,
    &RECORDS_DEAD_LETTERED,
    &RECORDS_RETRIED,
    &BATCHES_COMMITTED,
    &RUNS_FINISHED,
    &RUNS_FAILED,
    &RUN_DURATION,
    &DELIVERY_LATENCY,
    &DEADLINE_WARNINGS,
    &CONTRACT_NULL_WARNINGS,
    &SOURCE_UNAVAILABLE,
    &SOURCE_RETRIES,
    &LISTINGS_CUT,
    &RATE_LIMIT_WAITED,
    &SINK_OUTAGES,
    &FLOW_LOCK_REFUSED,
    &FLOW_LEASE_LOST,
    &WEBHOOK_EVENTS,
    &WEBHOOK_INTAKE,
    &FLOW_FRESHNESS,
    &DEAD_LETTERS_OPEN,
    &OFFER_REJECTION_RATIO,
    &AWAITING_ACK,
    &DEADLINE_SECONDS_LEFT,
    &SETTLEMENT_VARIANCE,
    &RECONCILIATION_UNMATCHED,
    &RECONCILIATION_VARIANCES,
    &RECONCILIATION_CYCLE_TIED,
    &RECONCILIATION_CYCLE_CLOSE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prometheus_shaped() {
        let mut seen = std::collections::HashSet::new();
        for metric in ALL {
            assert!(seen.insert(metric.name), "{} listed twice", metric.name);
            assert!(metric.name.starts_with("switchyard_"), "{}", metric.name);
            let total = metric.name.ends_with("_total");
            assert_eq!(total, metric.kind == Kind::Counter, "{}", metric.name);
            assert!(metric.help.ends_with('.'), "{}", metric.name);
        }
    }

    /// The metrics table of `docs/operations.md` lists exactly these metrics, with their
    /// types, in this order.
    #[test]
    fn the_docs_table_matches_the_definitions() {
        let docs = include_str!("../../docs/operations.md");
        let documented: Vec<(String, String)> = docs
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let name = cells
                    .get(1)?
                    .strip_prefix("`switchyard_")?
                    .strip_suffix('`')?;
                Some((format!("switchyard_{name}"), (*cells.get(2)?).to_owned()))
            })
            .collect();
        let defined: Vec<(String, String)> = ALL
            .iter()
            .map(|m| (m.name.to_owned(), m.kind.as_str().to_owned()))
            .collect();
        assert_eq!(
            documented, defined,
            "update the table in docs/operations.md"
        );
    }
}
