//! The resolved phase of a spec: a validated workspace that owns resolved values — references
//! checked, `${ENV}` references expanded, durations and schedules parsed, and each flow's
//! contract and templates compiled into its [`FlowPlan`] once per load. The runtime and the
//! daemon read these types and never the raw YAML ones. Connector settings stay JSON, because
//! their meaning belongs to the connectors: each flow's endpoints ([`Endpoint`]) hold their
//! connector from the registry, the system's settings (`${ENV}` expanded) and the flow's, all
//! checked by that connector at validation.
//!
//! It also owns the plain value types the runtime needs (`Party`, `Action`, `SplitConfig`,
//! ...); the raw phase embeds them so one definition serves the YAML and the runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::compiled::FlowPlan;
use super::raw::{SystemConfig, TestFile};
use crate::connectors::DynConnector;
use crate::contract::Contract;

/// A workspace that passed validation, compiled. Built once per load; the daemon shares it
/// behind an `Arc` and swaps the whole of it on reload.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The workspace folder.
    pub root: PathBuf,
    /// The workspace's display name.
    pub name: Option<String>,
    /// The systems' connector settings, with `${ENV}` references expanded (the connectors own
    /// their meaning).
    pub systems: IndexMap<String, SystemConfig>,
    /// The business objects, by name.
    pub objects: IndexMap<String, Object>,
    /// The flows, by name, in file order.
    pub flows: IndexMap<String, Flow>,
    /// The reconcile flows (`reconcile:`), by name, in file order; they are not in `flows`
    /// (no sink, no mapping) and run through [`crate::reconcile`].
    pub reconciliations: IndexMap<String, crate::reconcile::Reconciliation>,
    /// The flow test files.
    pub tests: Vec<TestSuite>,
    /// The compiled contracts, by object name; the flows of one object share one.
    pub contracts: IndexMap<String, Arc<Contract>>,
    /// The state store `switchyard.yaml` names (`--state` overrides it).
    pub state: crate::store::StoreTarget,
    /// The most of a rejected record's original a dead letter keeps, in bytes.
    pub max_dead_letter_record: u64,
}

/// A business object: identity and ownership.
#[derive(Debug, Clone)]
pub struct Object {
    /// Fields that together identify one object.
    pub key: Vec<String>,
    /// The system whose copy is authoritative.
    pub source_of_truth: String,
    /// Systems allowed to create the object.
    pub create: Vec<String>,
    /// Systems allowed to update the object.
    pub update: Vec<String>,
    /// Systems that only consume the object.
    pub consume: Vec<String>,
    /// Per-field control.
    pub fields: IndexMap<String, FieldControl>,
}

/// A validated, compiled flow.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The flow file, relative to the workspace folder.
    pub file: PathBuf,
    /// The flow's name.
    pub name: String,
    /// The business object it moves.
    pub object: String,
    /// How it syncs.
    pub pattern: Pattern,
    /// Its latency class.
    pub latency: LatencyClass,
    /// Where records come from.
    pub from: Endpoint,
    /// The flow's webhook inbox as a source: pending events stored by the daemon's intake,
    /// read with `from:`'s `records` pointer (see [`crate::connectors::webhook`]).
    pub intake: Endpoint,
    /// Where records go.
    pub to: Endpoint,
    /// The acknowledgement sent back to the source once the sink acknowledged a record.
    pub acknowledge: Option<Acknowledgement>,
    /// The compiled contract, templates, routes, deadline and lookups; shared by every run of
    /// this load of the workspace, so a run never compiles.
    pub plan: Arc<FlowPlan>,
    /// What starts a run.
    pub trigger: Trigger,
    /// The retry policy, with the workspace defaults applied.
    pub retry: RetryPolicy,
    /// The route of every failure mode this flow can produce, with defaults applied.
    pub failures: IndexMap<FailureMode, FailureRoute>,
    /// The SLA freshness target, if any.
    pub freshness: Option<Duration>,
    /// The SLA's largest acceptable share of dead-lettered records, in percent, if any.
    pub max_reject_rate: Option<f64>,
    /// How webhook events are authenticated; set exactly when the trigger is a webhook.
    pub webhook_auth: Option<WebhookAuth>,
}

/// One end of a flow, resolved: the system, its connector and both settings, checked by that
/// connector at validation. The runtime opens it without looking anything up by name.
#[derive(Clone)]
pub struct Endpoint {
    /// The system's name.
    pub system: String,
    /// The connector the system is reached through.
    pub connector: &'static dyn DynConnector,
    /// The system's connector settings, `${ENV}` references expanded.
    pub system_settings: serde_json::Value,
    /// The flow's settings for this end (its `from:`, `to:` or `acknowledge:` connector keys).
    pub settings: serde_json::Value,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The system settings may carry expanded secrets (headers): never printed.
        f.debug_struct("Endpoint")
            .field("system", &self.system)
            .field("connector", &self.connector.name())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A resolved acknowledgement: where it goes, and the body sent.
#[derive(Debug, Clone)]
pub struct Acknowledgement {
    /// The system acknowledged, written to as a per-record sink.
    pub endpoint: Endpoint,
    /// The body sent (`null` when none is given); unused when `map_fields` is not empty.
    pub body: serde_json::Value,
    /// The fields of `acknowledge.map`, when the body is built per record (the mapping itself
    /// is compiled in the flow plan).
    pub map_fields: Vec<String>,
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
    /// On a cron schedule, parsed at load (boxed: the parsed schedule is large).
    Cron(Box<CronSchedule>),
    /// On each event POSTed to this path of the daemon.
    Webhook(String),
}

/// A cron schedule parsed at load, with its time zone resolved: the daemon only computes the
/// next firing time from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    /// The expression, normalised to the 6-field form with seconds first.
    pub expression: String,
    /// IANA time zone name; `UTC` by default.
    pub timezone: String,
    /// The parsed expression.
    pub schedule: cron::Schedule,
    /// The resolved time zone.
    pub tz: jiff::tz::TimeZone,
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
    /// A record's `requires:` guard stayed unmet.
    GuardUnmet,
    /// A record's `enrich:` call failed for good.
    EnrichmentFailed,
    /// A record breached one of the flow's `checks:`.
    CheckFailed,
}

impl FailureMode {
    /// Every failure mode, in documentation order.
    pub const ALL: [FailureMode; 12] = [
        FailureMode::ContractViolation,
        FailureMode::OwnershipViolation,
        FailureMode::Duplicate,
        FailureMode::MappingError,
        FailureMode::SourceUnavailable,
        FailureMode::SinkRejected,
        FailureMode::SinkUnavailable,
        FailureMode::DeadlineMissed,
        FailureMode::ReconciliationVariance,
        FailureMode::GuardUnmet,
        FailureMode::EnrichmentFailed,
        FailureMode::CheckFailed,
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
            FailureMode::GuardUnmet => "guard-unmet",
            FailureMode::EnrichmentFailed => "enrichment-failed",
            FailureMode::CheckFailed => "check-failed",
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

/// Who controls one field of an object.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldControl {
    /// The party that sets the field.
    pub controlled_by: Party,
    /// Whether the operator may override the value the controlling party set.
    #[serde(default)]
    pub operator_override: bool,
}

/// A party of the marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Party {
    /// The seller: owns their offers, prices, stock and shipments.
    Seller,
    /// The operator: hosts the marketplace, validates offers, routes orders, settles.
    Operator,
}

/// How a record is split into legs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// JSON Pointer to the array of items to distribute (for example `/order_lines`).
    pub items: String,
    /// Field of each item whose value names its leg (for example `shop_id`); items with the
    /// same value form one leg, in order of first appearance.
    pub by: String,
}

/// How a flow syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Pushed by the source (webhook or queue), usually against a deadline.
    Event,
    /// Short polling or a stream, for price and stock freshness.
    NearRealTime,
    /// A schedule or a file drop; settlement, commissions and payouts are batch by nature.
    Batch,
}

/// How late a record may be, in business words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyClass {
    /// A shopper is waiting: seconds matter.
    CheckoutBlocking,
    /// Must land within the business day (offers, stock, order status).
    SameDayOperational,
    /// Enrichment that may wait for the next cycle.
    NextCycleEnrichment,
    /// Must be complete before the finance period closes.
    FinanceClose,
}

/// What an owner does about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Replay the record once the cause is gone.
    Retry,
    /// Fix the record and replay it.
    Repair,
    /// Accept that the record will not be delivered, with a reason.
    Suppress,
    /// Hand over to the escalation owner.
    Escalate,
    /// Ask the party that owns the data to correct it at the source.
    RequestCorrection,
}
