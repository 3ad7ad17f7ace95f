//! The resolved phase of a spec: a validated workspace with references checked, durations and
//! schedules parsed and `${ENV}` references expanded. The runtime builds its compiled plan
//! from these types and never sees YAML.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::raw::{Action, FlowFile, TestFile, WorkspaceFile};

/// A workspace that passed validation.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The workspace folder.
    pub root: PathBuf,
    /// `switchyard.yaml`, with `${ENV}` references expanded.
    pub spec: WorkspaceFile,
    /// The flows, by name, in file order.
    pub flows: IndexMap<String, Flow>,
    /// The flow test files.
    pub tests: Vec<TestSuite>,
    /// The contracts (JSON Schemas), by object name.
    pub contracts: IndexMap<String, serde_json::Value>,
    /// The state store `switchyard.yaml` names (`--state` overrides it).
    pub state: crate::store::StoreTarget,
}

/// A validated flow.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The flow file, relative to the workspace folder.
    pub file: PathBuf,
    /// The flow as written (templates still uncompiled).
    pub spec: FlowFile,
    /// What starts a run.
    pub trigger: Trigger,
    /// The retry policy, with the workspace defaults applied.
    pub retry: RetryPolicy,
    /// The route of every failure mode this flow can produce, with defaults applied.
    pub failures: IndexMap<FailureMode, FailureRoute>,
    /// The SLA freshness target, if any.
    pub freshness: Option<Duration>,
    /// How webhook events are authenticated; set exactly when the trigger is a webhook.
    pub webhook_auth: Option<WebhookAuth>,
}

/// Resolved HMAC settings of a webhook trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAuth {
    /// The environment variable the secret was read from.
    pub secret_env: String,
    /// The shared secret.
    pub secret: Secret,
    /// Header carrying `sha256=<hex HMAC>`.
    pub signature_header: String,
    /// Header carrying the signing time in Unix seconds.
    pub timestamp_header: String,
    /// Header carrying the sender's event ID.
    pub event_id_header: String,
    /// Largest accepted distance between the signing time and the daemon's clock.
    pub tolerance: Duration,
    /// Largest accepted body, in bytes.
    pub max_body: usize,
}

/// A secret value; its `Debug` output is redacted so it never reaches a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret's bytes, for signing.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A validated test file.
#[derive(Debug, Clone)]
pub struct TestSuite {
    /// The test file, relative to the workspace folder.
    pub file: PathBuf,
    /// Its content.
    pub spec: TestFile,
}

/// What starts a run of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Only on demand.
    Manual,
    /// Every interval.
    Poll(Duration),
    /// On a cron schedule; `expression` is normalised to the 6-field form with seconds first.
    Cron {
        /// The 6-field expression.
        expression: String,
        /// IANA time zone name; `UTC` by default.
        timezone: String,
    },
    /// On each event POSTed to this path of the daemon.
    Webhook(String),
}

/// A retry policy with parsed durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Whether delays double after each attempt.
    pub exponential: bool,
    /// Delay before the first retry.
    pub initial: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// Time from the first failure after which the record is dead-lettered.
    pub window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            exponential: true,
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(120),
            window: Duration::from_secs(30 * 60),
        }
    }
}

/// A named condition the runtime detects; each has an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// A record breaks the object's contract.
    ContractViolation,
    /// A system wrote an object or field it does not own.
    OwnershipViolation,
    /// The same change arrived again.
    Duplicate,
    /// The mapping could not render a record.
    MappingError,
    /// The source could not be read.
    SourceUnavailable,
    /// The sink refused the record permanently.
    SinkRejected,
    /// The sink kept failing past the retry window.
    SinkUnavailable,
    /// A deadline passed.
    DeadlineMissed,
    /// A reconciliation found a variance.
    ReconciliationVariance,
}

impl FailureMode {
    /// Every failure mode, in documentation order.
    pub const ALL: [FailureMode; 9] = [
        FailureMode::ContractViolation,
        FailureMode::OwnershipViolation,
        FailureMode::Duplicate,
        FailureMode::MappingError,
        FailureMode::SourceUnavailable,
        FailureMode::SinkRejected,
        FailureMode::SinkUnavailable,
        FailureMode::DeadlineMissed,
        FailureMode::ReconciliationVariance,
    ];

    /// The name used in specs, metrics and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::ContractViolation => "contract-violation",
            FailureMode::OwnershipViolation => "ownership-violation",
            FailureMode::Duplicate => "duplicate",
            FailureMode::MappingError => "mapping-error",
            FailureMode::SourceUnavailable => "source-unavailable",
            FailureMode::SinkRejected => "sink-rejected",
            FailureMode::SinkUnavailable => "sink-unavailable",
            FailureMode::DeadlineMissed => "deadline-missed",
            FailureMode::ReconciliationVariance => "reconciliation-variance",
        }
    }

    /// Parses a spec name such as `contract-violation`.
    pub fn parse(name: &str) -> Option<FailureMode> {
        FailureMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == name)
    }
}

impl std::fmt::Display for FailureMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a failure goes: its owner, their action, the runbook and the escalation path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRoute {
    /// The owner's name.
    pub owner: String,
    /// What the owner does.
    pub action: Option<Action>,
    /// Likely cause and recovery steps.
    pub runbook: Option<String>,
    /// Who is told next, and after how long.
    pub escalate: Option<Escalation>,
}

/// An escalation path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    /// The owner told next.
    pub to: String,
    /// How long the failure may stay unresolved first, as written in the spec.
    pub after: String,
}
