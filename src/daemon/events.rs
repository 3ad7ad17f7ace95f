//! Named daemon events: each is a struct with one `emit()` that logs once and counts once,
//! so a log line and its metric can never disagree. Metric names are the constants below;
//! labels are flow, failure mode, owner and outcome only (a bounded set, never a record ID).

use std::time::Duration;

use super::metrics::Metrics;
use crate::runtime::RunReport;
use crate::spec::model::FailureMode;

/// Records read by a flow.
pub const RECORDS_RECEIVED: &str = "switchyard_records_received_total";
/// Records acknowledged by a flow's sink.
pub const RECORDS_DELIVERED: &str = "switchyard_records_delivered_total";
/// Records dropped as duplicates.
pub const RECORDS_DUPLICATE: &str = "switchyard_records_duplicate_total";
/// Records dead-lettered, by failure mode and owner.
pub const RECORDS_DEAD_LETTERED: &str = "switchyard_records_dead_lettered_total";
/// Runs that failed before finishing (source, store or setup error).
pub const RUNS_FAILED: &str = "switchyard_runs_failed_total";
/// Run duration.
pub const RUN_DURATION: &str = "switchyard_run_duration_seconds";
/// Webhook events by outcome.
pub const WEBHOOK_EVENTS: &str = "switchyard_webhook_events_total";
/// Time from receiving a webhook request to the event being durable.
pub const WEBHOOK_INTAKE: &str = "switchyard_webhook_intake_seconds";
/// Seconds since a flow last delivered something.
pub const FLOW_FRESHNESS: &str = "switchyard_flow_freshness_seconds";
/// Open dead letters in the store.
pub const DEAD_LETTERS_OPEN: &str = "switchyard_dead_letters_open";
/// Dead-lettered / received over the daemon's life.
pub const OFFER_REJECTION_RATIO: &str = "switchyard_offer_rejection_ratio";
/// Records (orders) delivered against a deadline and not acknowledged yet.
pub const AWAITING_ACK: &str = "switchyard_awaiting_acknowledgement";
/// Seconds left to the soonest open deadline (negative once passed).
pub const DEADLINE_SECONDS_LEFT: &str = "switchyard_deadline_seconds_left";
/// Per-record latency from being read to being acknowledged (sink, then source).
pub const DELIVERY_LATENCY: &str = "switchyard_delivery_latency_seconds";
/// Owners warned of an approaching deadline.
pub const DEADLINE_WARNINGS: &str = "switchyard_deadline_warnings_total";

/// A scheduled or event-driven run finished (possibly stopped early).
pub struct FlowRunCompleted<'a> {
    /// The flow.
    pub flow: &'a str,
    /// What the run did.
    pub report: &'a RunReport,
    /// How long it took.
    pub elapsed: Duration,
    /// The owner of each failure mode in the report, as routed by the spec.
    pub owner_of: &'a dyn Fn(&str) -> String,
}

impl FlowRunCompleted<'_> {
    /// Logs the run and counts its records.
    pub fn emit(&self, metrics: &Metrics) {
        let report = self.report;
        tracing::info!(
            flow = %self.flow, read = report.read, delivered = report.delivered,
            duplicates = report.duplicates, dead_lettered = report.dead_lettered,
            elapsed_ms = self.elapsed.as_millis() as u64,
            stopped_early = report.stopped_early.as_deref().unwrap_or(""),
            "Scheduled run completed."
        );
        let flow = || vec![("flow", self.flow.to_owned())];
        metrics.count(
            RECORDS_RECEIVED,
            "Records read by a flow.",
            flow(),
            report.read,
        );
        metrics.count(
            RECORDS_DELIVERED,
            "Records acknowledged by a flow's sink.",
            flow(),
            report.delivered,
        );
        metrics.count(
            RECORDS_DUPLICATE,
            "Records dropped as duplicates.",
            flow(),
            report.duplicates,
        );
        metrics.count(
            DEADLINE_WARNINGS,
            "Owners warned that a record's deadline was approaching.",
            flow(),
            report.deadline_warnings,
        );
        for (failure, count) in &report.by_failure {
            let labels = vec![
                ("flow", self.flow.to_owned()),
                ("failure", failure.clone()),
                ("owner", (self.owner_of)(failure)),
            ];
            metrics.count(
                RECORDS_DEAD_LETTERED,
                "Records dead-lettered, by failure mode and owner.",
                labels,
                *count,
            );
        }
        metrics.observe(
            RUN_DURATION,
            "Duration of flow runs.",
            flow(),
            self.elapsed.as_secs_f64(),
        );
    }
}

/// A run could not start or stopped on an error; the flow keeps its schedule.
#[derive(Debug)]
pub struct FlowRunFailed<'a> {
    /// The flow.
    pub flow: &'a str,
    /// The error, for people.
    pub error: &'a str,
    /// How long it ran.
    pub elapsed: Duration,
}

impl FlowRunFailed<'_> {
    /// Logs the failure and counts it.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::error!(
            flow = %self.flow, error = %self.error,
            "Scheduled run failed; the flow keeps its schedule."
        );
        let flow = || vec![("flow", self.flow.to_owned())];
        metrics.count(RUNS_FAILED, "Runs that failed before finishing.", flow(), 1);
        metrics.observe(
            RUN_DURATION,
            "Duration of flow runs.",
            flow(),
            self.elapsed.as_secs_f64(),
        );
    }
}

/// An inbox event the flow cannot read was dead-lettered with its body.
#[derive(Debug)]
pub struct InboxEventDeadLettered<'a> {
    /// The flow.
    pub flow: &'a str,
    /// The owner the dead letter is routed to.
    pub owner: &'a str,
    /// Why the event cannot be read.
    pub error: &'a str,
}

impl InboxEventDeadLettered<'_> {
    /// Logs the dead letter and counts the event as received and dead-lettered.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::warn!(
            flow = %self.flow, failure = FailureMode::ContractViolation.as_str(),
            owner = %self.owner, error = %self.error,
            "Inbox event cannot be read; dead-lettered."
        );
        metrics.count(
            RECORDS_RECEIVED,
            "Records read by a flow.",
            vec![("flow", self.flow.to_owned())],
            1,
        );
        let labels = vec![
            ("flow", self.flow.to_owned()),
            (
                "failure",
                FailureMode::ContractViolation.as_str().to_owned(),
            ),
            ("owner", self.owner.to_owned()),
        ];
        metrics.count(
            RECORDS_DEAD_LETTERED,
            "Records dead-lettered, by failure mode and owner.",
            labels,
            1,
        );
    }
}

/// What became of one webhook request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Authenticated and stored in the inbox.
    Accepted,
    /// A redelivery of an event already stored.
    Duplicate,
    /// Unsigned, forged or stale.
    Unauthorized,
    /// Body over the flow's limit.
    TooLarge,
    /// Authenticated but not a JSON object or array.
    Invalid,
}

impl WebhookOutcome {
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Unauthorized => "unauthorized",
            WebhookOutcome::TooLarge => "too_large",
            WebhookOutcome::Invalid => "invalid",
        }
    }
}

/// A webhook request was answered.
#[derive(Debug)]
pub struct WebhookEventHandled<'a> {
    /// The flow the path belongs to.
    pub flow: &'a str,
    /// The outcome.
    pub outcome: WebhookOutcome,
    /// Why it was refused, for refusals.
    pub reason: Option<&'a str>,
    /// Receive -> durable, for accepted events.
    pub intake: Option<Duration>,
}

impl WebhookEventHandled<'_> {
    /// Logs the outcome and counts it.
    pub fn emit(&self, metrics: &Metrics) {
        let reason = self.reason.unwrap_or("");
        match self.outcome {
            WebhookOutcome::Accepted => {
                tracing::debug!(flow = %self.flow, "Webhook event stored.")
            }
            WebhookOutcome::Duplicate => {
                tracing::info!(flow = %self.flow, "Webhook event redelivered; already stored.")
            }
            _ => tracing::warn!(
                flow = %self.flow, outcome = self.outcome.as_str(), reason = %reason,
                "Webhook event refused."
            ),
        }
        let labels = vec![
            ("flow", self.flow.to_owned()),
            ("outcome", self.outcome.as_str().to_owned()),
        ];
        metrics.count(WEBHOOK_EVENTS, "Webhook requests by outcome.", labels, 1);
        if let Some(intake) = self.intake {
            metrics.observe(
                WEBHOOK_INTAKE,
                "Time from receiving a webhook request to the event being durable.",
                vec![("flow", self.flow.to_owned())],
                intake.as_secs_f64(),
            );
        }
    }
}
