//! Named daemon events: each is a struct with one `emit()` that logs once and counts once,
//! so a log line and its metric can never disagree. The metrics are defined in
//! [`crate::metrics::catalog`]; labels are flow, failure mode, owner and outcome only (a
//! bounded set, never a record ID). What happens inside a run is counted by the runtime's
//! own events ([`crate::runtime::events`]) as it happens; these are the daemon's.

use std::time::Duration;

use crate::metrics::Metrics;
use crate::metrics::catalog::{
    RECORDS_DEAD_LETTERED, RECORDS_RECEIVED, RUN_DURATION, RUNS_FAILED, WEBHOOK_EVENTS,
    WEBHOOK_INTAKE,
};
use crate::runtime::RunReport;
use crate::spec::model::FailureMode;

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
    /// Logs the run. It counts nothing: the run's records, dead letters and duration were
    /// counted by the runtime's events while it ran, and counting the report again would
    /// count them twice.
    pub fn emit(&self) {
        let report = self.report;
        tracing::info!(
            flow = %self.flow, read = report.read, delivered = report.delivered,
            duplicates = report.duplicates, dead_lettered = report.dead_lettered,
            elapsed_ms = self.elapsed.as_millis() as u64,
            stopped_early = report.stopped_early.as_deref().unwrap_or(""),
            "Scheduled run completed."
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
        metrics.count(&RUNS_FAILED, flow(), 1);
        metrics.observe(&RUN_DURATION, flow(), self.elapsed.as_secs_f64());
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
        metrics.count(&RECORDS_RECEIVED, vec![("flow", self.flow.to_owned())], 1);
        let labels = vec![
            ("flow", self.flow.to_owned()),
            (
                "failure",
                FailureMode::ContractViolation.as_str().to_owned(),
            ),
            ("owner", self.owner.to_owned()),
        ];
        metrics.count(&RECORDS_DEAD_LETTERED, labels, 1);
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
        metrics.count(&WEBHOOK_EVENTS, labels, 1);
        if let Some(intake) = self.intake {
            let labels = vec![("flow", self.flow.to_owned())];
            metrics.observe(&WEBHOOK_INTAKE, labels, intake.as_secs_f64());
        }
    }
}
