//! The raw phase of a spec: types that mirror the YAML files one to one.
//!
//! These types derive `Deserialize` (read by `serde-saphyr`) and `JsonSchema` (published in
//! `schemas/`). Their doc comments are the user documentation: schemars turns each into the
//! `description` an editor shows, and a test fails on any property without one.
//!
//! Values that need checking beyond their YAML type (durations, cron expressions, templates,
//! references to systems and owners) stay strings here, so that a bad value is reported by
//! validation with its position and a hint instead of failing the whole file. Keep these
//! types plain: `flatten`, internally tagged and untagged enums lose source positions.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// Plain value types the resolved model owns (the runtime reads them); the raw files embed them.
pub use super::model::{Action, FieldControl, LatencyClass, Party, Pattern, SplitConfig};
// The `map` section is the mapping's own config type.
pub use crate::mapping::{MapField, MapFieldSpec, ValueType};

/// The workspace file, `switchyard.yaml`: systems, owners, business objects and their ownership.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Switchyard workspace")]
pub struct WorkspaceFile {
    /// Version of the spec language; `1` is the only version so far.
    pub version: u32,
    /// A short name for the integration, shown in reports and alerts.
    #[serde(default)]
    pub name: Option<String>,
    /// Who hosts the marketplace: `operator` (you run it) or `syndication` (you sell on it).
    pub model: Model,
    /// Where the runtime keeps its state (cursors, idempotency keys, dead letters, audit trail).
    #[serde(default)]
    pub state: Option<StateConfig>,
    /// Defaults that apply to every flow unless the flow says otherwise.
    #[serde(default)]
    pub defaults: Option<Defaults>,
    /// The systems that take part, by name, each with its connector settings.
    #[serde(default)]
    pub systems: IndexMap<String, SystemConfig>,
    /// The people or teams who own failure modes, by name.
    #[serde(default)]
    pub owners: IndexMap<String, OwnerConfig>,
    /// The business objects, by name, with identity, contract and ownership.
    #[serde(default)]
    pub objects: IndexMap<String, ObjectConfig>,
    /// The exchange rates `convert:` mapping fields use, with their source and date; money is
    /// never converted at any other rate (see docs/money.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_rates: Option<crate::money::rates::ExchangeRatesConfig>,
}

/// The marketplace model of the integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// You host the marketplace: seller onboarding, offer validation, order routing, settlement.
    Operator,
    /// You are the seller, pushing catalog, price and stock to channels and pulling orders back.
    Syndication,
}

/// Where runtime state lives: a store URL (`state: sqlite:PATH` or
/// `state: postgres://...`), or a mapping with `url` and the other state settings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateConfig {
    /// The store: `sqlite:PATH` (relative to the workspace folder) or
    /// `postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME]`; `${ENV}` references are
    /// expanded. Defaults to `sqlite:.switchyard/state.db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Path of the SQLite state file, relative to the workspace folder (the older spelling of
    /// `url: sqlite:PATH`). Defaults to `.switchyard/state.db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<String>,
    /// The most of a dead letter's original record kept in the state file, as a size such as
    /// `1MiB` or `256KiB`. Defaults to `1MiB`. A longer original is cut at the limit, and the
    /// dead letter says so: it records the original's full size and SHA-256, and is not
    /// replayed (the record must be sent again from its source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_dead_letter_record_size: Option<String>,
}

/// The mapping form of `state:`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StateTable {
    /// The store: `sqlite:PATH` (relative to the workspace folder) or
    /// `postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME]`; `${ENV}` references are
    /// expanded. Defaults to `sqlite:.switchyard/state.db`.
    #[serde(default)]
    url: Option<String>,
    /// Path of the SQLite state file, relative to the workspace folder (the older spelling of
    /// `url: sqlite:PATH`). Defaults to `.switchyard/state.db`.
    #[serde(default)]
    sqlite: Option<String>,
    /// The most of a dead letter's original record kept in the state file, as a size such as
    /// `1MiB` or `256KiB`. Defaults to `1MiB`. A longer original is cut at the limit, and the
    /// dead letter says so: it records the original's full size and SHA-256, and is not
    /// replayed (the record must be sent again from its source).
    #[serde(default)]
    max_dead_letter_record_size: Option<String>,
}

// The published shape of `state:`. Only the schema is derived from it: reading goes through
// `StateConfig`'s own `Deserialize`, because an untagged enum loses source positions.
/// Where runtime state lives: a store URL, or a mapping with `url` and the other state
/// settings.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum StateSchema {
    /// The store URL: `sqlite:PATH` (relative to the workspace folder) or
    /// `postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME]`; `${ENV}` references are
    /// expanded.
    Url(String),
    /// The store and its settings.
    Table(StateTable),
}

impl JsonSchema for StateConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StateConfig".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        StateSchema::json_schema(generator)
    }
}

impl<'de> Deserialize<'de> for StateConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StateConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a store URL (`sqlite:PATH` or `postgres://...`) or a mapping")
            }

            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<StateConfig, E> {
                Ok(StateConfig {
                    url: Some(url.to_owned()),
                    ..StateConfig::default()
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StateConfig, A::Error> {
                let table =
                    StateTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(StateConfig {
                    url: table.url,
                    sqlite: table.sqlite,
                    max_dead_letter_record_size: table.max_dead_letter_record_size,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Defaults shared by all flows.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// The retry policy of flows that declare none.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// The owner of failure modes a flow does not declare itself.
    #[serde(default)]
    pub failure_owner: Option<String>,
}

/// A participating system and the connector that reaches it: its generic keys, and exactly
/// one connector key (`http`, `file`, ... — see [`crate::connectors::registry`]) whose value
/// is that connector's settings. The connector checks them at validation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SystemConfig {
    /// What this system is, in a few words (for example "Mirakl operator back office").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The party this system acts for: `seller` or `operator`. Used by per-field ownership.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acts_for: Option<Party>,
    /// The connector keys as written, with their settings (valid: exactly one, known).
    #[serde(flatten)]
    pub connectors: IndexMap<String, Value>,
}

/// A person or team that owns failure modes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerConfig {
    /// How to reach the owner: an e-mail address, a chat channel or a pager rotation.
    pub contact: String,
    /// Where alerts for this owner go.
    #[serde(default)]
    pub alert: Option<AlertConfig>,
}

/// Where an owner's alerts are delivered.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// URL that receives a JSON POST per alert; `${ENV}` references are expanded.
    pub webhook: String,
}

/// A business object: identity, contract and ownership.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectConfig {
    /// What the object is, in business words.
    #[serde(default)]
    pub description: Option<String>,
    /// Fields that together identify one object (for example `[shop_id, offer_id]`).
    pub key: Vec<String>,
    /// Path of the JSON Schema every record of this object must satisfy, relative to the
    /// workspace folder; `file#/pointer` selects one schema inside an OpenAPI 3 or Swagger 2
    /// document (`specs/orders.json#/components/schemas/Order`), its `$ref`s resolved there.
    pub contract: String,
    /// `lenient` accepts `null` in fields the contract types (vendor payloads that break their
    /// own schemas) and counts each as a warning; `strict` (the default) refuses them.
    #[serde(default)]
    pub contract_nulls: ContractNulls,
    /// The system whose copy is authoritative.
    pub source_of_truth: String,
    /// Systems allowed to create the object.
    #[serde(default)]
    pub create: Vec<String>,
    /// Systems allowed to update the object.
    #[serde(default)]
    pub update: Vec<String>,
    /// Systems that only consume the object and may never write it back.
    #[serde(default)]
    pub consume: Vec<String>,
    /// Per-field control: which party sets a field and whether the operator may override it.
    #[serde(default)]
    pub fields: IndexMap<String, FieldControl>,
}

/// How a contract treats `null` in a typed field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContractNulls {
    /// A `null` where the contract declares a type is a contract violation (a dead letter).
    #[default]
    Strict,
    /// A `null` where the contract declares a type is accepted and counted as a warning
    /// (`switchyard_contract_null_warnings_total`); other violations still dead-letter.
    Lenient,
}

/// A flow file, `flows/<name>.yaml`: how one business object moves from one system to another.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Switchyard flow")]
pub struct FlowFile {
    /// Unique name of the flow, used on the command line, in metrics and in alerts.
    pub flow: String,
    /// What the flow does and why, in business words.
    #[serde(default)]
    pub description: Option<String>,
    /// The business object the flow moves; declared under `objects` in `switchyard.yaml`.
    pub object: String,
    /// How the flow syncs.
    pub pattern: Pattern,
    /// What starts a run of the flow.
    #[serde(default)]
    pub trigger: Option<TriggerConfig>,
    /// How late a record may arrive before the business notices, in business words.
    pub latency: LatencyClass,
    /// Where records come from.
    pub from: SourceConfig,
    /// Where records go. Every flow has one except a reconciliation (`reconcile:`), whose
    /// output is its report and its dead letters.
    #[serde(default)]
    pub to: Option<SinkConfig>,
    /// Template that names one change of one object, used for duplicate detection and as the
    /// sink's idempotency key. Defaults to the object's key fields joined by `:`.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Output fields, in order: a template string, or a mapping with `template` or `from` and a
    /// `type`.
    #[serde(default)]
    pub map: IndexMap<String, MapField>,
    /// How long and how often a failing delivery is retried before it becomes a dead letter.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Who owns each failure mode of this flow and what they do about it.
    #[serde(default)]
    pub failures: FailuresConfig,
    /// Service levels in business terms.
    #[serde(default)]
    pub sla: Option<SlaConfig>,
    /// When each record must be delivered and acknowledged by (for example an order's
    /// acceptance deadline). Records still open at the deadline become `deadline-missed`
    /// dead letters; their owner is warned before.
    #[serde(default)]
    pub deadline: Option<DeadlineConfig>,
    /// A request sent back to the source system once the sink acknowledged a record (for
    /// example accepting a marketplace order once the OMS has it). Its path is a template over
    /// the mapped record.
    #[serde(default)]
    pub acknowledge: Option<AcknowledgeConfig>,
    /// Splits one record into several before mapping (for example a basket into one order per
    /// seller leg). Each leg is mapped, delivered and dead-lettered on its own.
    #[serde(default)]
    pub split: Option<SplitConfig>,
    /// Fields added to each record before mapping, looked up in the cross-references earlier
    /// flows stored (for example the marketplace order ID of an OMS order).
    #[serde(default)]
    pub lookup: IndexMap<String, LookupConfig>,
    /// HTTP calls per record whose answers are merged into it, by field name, after `lookup`
    /// and before `where:`, the contract and the mapping (see [`crate::spec::enrich`]).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub enrich: IndexMap<String, crate::spec::enrich::EnrichConfig>,
    /// Which records the flow acts on: every condition must hold; the others are counted as
    /// filtered, never delivered nor dead-lettered (see [`crate::spec::filter`]).
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<crate::spec::filter::ConditionConfig>,
    /// Named conditions that flag a record to the owner of `check-failed` instead of
    /// delivering it (stale or oversold stock before checkout; see [`crate::spec::checks`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::spec::checks::CheckConfig>,
    /// An outcome another flow must have reached for the same record before this flow sends
    /// it (see [`crate::spec::guard`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<crate::spec::guard::GuardConfig>,
    /// Makes the flow a reconciliation: its `from:` (the operator statement) is joined to a
    /// ledger on financial references, per billing cycle and currency, and every variance is
    /// reported and dead-lettered (see [`crate::reconcile`]). Such a flow has no `to:` and
    /// no `map:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<crate::reconcile::ReconcileConfig>,
}

/// Where a record's deadline comes from. Give `at`, or `from` and `plus`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadlineConfig {
    /// JSON Pointer to an RFC 3339 time in the record that is the deadline itself (for
    /// example `/acceptance_deadline`).
    #[serde(default)]
    pub at: Option<String>,
    /// JSON Pointer to an RFC 3339 time in the record the deadline counts from (for example
    /// `/created_at`).
    #[serde(default)]
    pub from: Option<String>,
    /// How long after `from` the deadline falls, as a duration such as `45m`.
    #[serde(default)]
    pub plus: Option<String>,
    /// Share of the window (0 to 1) after which the owner of `deadline-missed` is warned if
    /// the record is still open. Defaults to 0.5.
    #[serde(default)]
    pub warn_at: Option<f64>,
    /// JSON Pointer to the time the window starts, for the warning (defaults to `from`, else
    /// the time the record was read).
    #[serde(default)]
    pub window_start: Option<String>,
}

/// A request acknowledging a record at its source: `system`, `map` or `body`, and the
/// settings of that system's connector for a per-record write (for HTTP, `request`).
#[derive(Debug, Clone, Serialize)]
pub struct AcknowledgeConfig {
    /// The system acknowledged; usually the flow's source system.
    pub system: String,
    /// JSON body sent as it is (for example `{accepted: true}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The body as a mapping over the record as read (with its lookups, and `_leg` for a
    /// leg of a split record), like a flow's `map:`. Give `map` or `body`, not both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<IndexMap<String, MapField>>,
    /// The connector's keys, as written; its `to:` settings type reads them.
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

/// A cross-reference lookup.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The object whose identity key is looked up (for example `order`).
    pub object: String,
    /// The system whose ID is known (for example `oms`).
    pub system: String,
    /// Template rendering that system's ID from the record (for example `{{oms_order_id}}`).
    pub id: String,
}

/// An ID to remember from the sink's answer.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// JSON Pointer to the sink's own ID in its response body (for example `/oms_order_id`).
    /// It is stored as a cross-reference to the record's identity key.
    pub id: String,
}

/// What starts a run. Give exactly one of `poll`, `cron` or `webhook`; a flow without a
/// trigger only runs on demand (`switchyard run`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Run every interval, as a duration such as `30s` or `5m`.
    #[serde(default)]
    pub poll: Option<String>,
    /// Run on a cron schedule: the standard 5-field form (`*/15 * * * *`) or 6 fields with
    /// seconds first.
    #[serde(default)]
    pub cron: Option<String>,
    /// IANA time zone the cron schedule is read in (for example `Europe/Paris`). Defaults to UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Run on each event POSTed to this path of the daemon (for example `/hooks/orders`).
    #[serde(default)]
    pub webhook: Option<String>,
    /// How the daemon authenticates webhook events (HMAC-SHA256 signatures). Required with
    /// `webhook`: an unsigned event is refused with 401.
    #[serde(default)]
    pub webhook_auth: Option<WebhookAuthConfig>,
}

/// HMAC signature settings of a webhook trigger. The sender signs `"<timestamp>.<raw body>"`
/// with HMAC-SHA256 and the shared secret and sends `sha256=<hex>` in the signature header.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookAuthConfig {
    /// Name of the environment variable holding the shared secret (for example
    /// `ORDERS_WEBHOOK_SECRET`); the secret itself never goes in a spec file.
    pub secret_env: String,
    /// Header carrying `sha256=<hex HMAC>`. Defaults to `X-Signature`.
    #[serde(default)]
    pub signature_header: Option<String>,
    /// Header carrying the signing time in Unix seconds. Defaults to `X-Timestamp`.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// Header carrying the sender's event ID, used to drop redeliveries. Defaults to
    /// `X-Event-Id`.
    #[serde(default)]
    pub event_id_header: Option<String>,
    /// How far the signing time may be from the daemon's clock, as a duration such as `5m`.
    /// Older or later events are refused as replays. Defaults to `5m`.
    #[serde(default)]
    pub tolerance: Option<String>,
    /// Largest accepted body, in bytes; larger events are refused with 413. Defaults to
    /// 1048576 (1 MiB).
    #[serde(default)]
    pub max_body: Option<u64>,
}

/// Where a flow's records come from: `system`, `author`, and the keys of the system's
/// connector (for HTTP `request`, `records`, `pagination`, `cursor`; for files `path`,
/// `format`), which its `from:` settings type reads.
#[derive(Debug, Clone, Serialize)]
pub struct SourceConfig {
    /// The system records are read from; declared under `systems`.
    pub system: String,
    /// JSON Pointer to a record field naming the system that authored the change (for example
    /// `/last_updated_by`). That system must be allowed to create or update the object.
    /// Defaults to the source system itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The connector's keys, as written.
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

/// Where a flow's records go: `system`, `capture`, and the keys of the system's connector
/// (for HTTP `request`, `idempotency_header`; for files `path`, `format`), which its `to:`
/// settings type reads.
#[derive(Debug, Clone, Serialize)]
pub struct SinkConfig {
    /// The system records are written to; declared under `systems`.
    pub system: String,
    /// Remember the sink's ID for the record from its answer, for later lookups (per-record
    /// sinks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureConfig>,
    /// The connector's keys, as written.
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

/// Retry policy for deliveries that fail transiently.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// How the delay grows between attempts. Defaults to `exponential`.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Delay before the first retry, as a duration (default `1s`).
    #[serde(default)]
    pub initial: Option<String>,
    /// Longest delay between two attempts (default `2m`).
    #[serde(default)]
    pub max_delay: Option<String>,
    /// How long after the first failure the record keeps being retried before it becomes a
    /// `sink-unavailable` dead letter (default `30m`). Measured across restarts.
    #[serde(default)]
    pub window: Option<String>,
}

/// How the retry delay grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// Doubles after every attempt, with jitter, up to `max_delay`.
    Exponential,
    /// Stays at `initial`, with jitter.
    Fixed,
}

/// Owners of the failure modes a flow can hit, by failure mode.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailuresConfig {
    /// A record breaks the object's contract (JSON Schema).
    #[serde(default, rename = "contract-violation")]
    pub contract_violation: Option<FailureConfig>,
    /// A system wrote an object or field it does not own.
    #[serde(default, rename = "ownership-violation")]
    pub ownership_violation: Option<FailureConfig>,
    /// The same change arrived again. Duplicates are dropped, not dead-lettered; declare this
    /// to name who looks at duplicate rates.
    #[serde(default)]
    pub duplicate: Option<FailureConfig>,
    /// The mapping could not render a record (missing field, value of the wrong type).
    #[serde(default, rename = "mapping-error")]
    pub mapping_error: Option<FailureConfig>,
    /// The source could not be read.
    #[serde(default, rename = "source-unavailable")]
    pub source_unavailable: Option<FailureConfig>,
    /// The sink refused the record permanently (a 4xx other than 408 and 429).
    #[serde(default, rename = "sink-rejected")]
    pub sink_rejected: Option<FailureConfig>,
    /// The sink kept failing past the retry window.
    #[serde(default, rename = "sink-unavailable")]
    pub sink_unavailable: Option<FailureConfig>,
    /// A deadline (for example an order's acknowledgement deadline) passed.
    #[serde(default, rename = "deadline-missed")]
    pub deadline_missed: Option<FailureConfig>,
    /// A reconciliation found amounts that do not match.
    #[serde(default, rename = "reconciliation-variance")]
    pub reconciliation_variance: Option<FailureConfig>,
    /// A record's `requires:` guard stayed unmet (past the retry window with `otherwise:
    /// wait`, or at once with `otherwise: dead-letter`).
    #[serde(default, rename = "guard-unmet")]
    pub guard_unmet: Option<FailureConfig>,
    /// A record's `enrich:` call failed for good (with `on_failure: dead-letter`).
    #[serde(default, rename = "enrichment-failed")]
    pub enrichment_failed: Option<FailureConfig>,
    /// A record breached one of the flow's `checks:` (stale or oversold stock); the dead
    /// letter's reason names the check.
    #[serde(default, rename = "check-failed")]
    pub check_failed: Option<FailureConfig>,
}

/// Who owns one failure mode and what they do.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureConfig {
    /// The owner, declared under `owners`; they receive the alert.
    #[serde(default)]
    pub owner: Option<String>,
    /// What the owner does about it.
    #[serde(default)]
    pub action: Option<Action>,
    /// Likely cause and recovery steps, sent with every alert.
    #[serde(default)]
    pub runbook: Option<String>,
    /// Who is told next if the owner has not resolved it in time.
    #[serde(default)]
    pub escalate: Option<EscalationConfig>,
}

/// Escalation of an unresolved failure.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// The owner told next, declared under `owners`.
    pub to: String,
    /// How long the failure may stay unresolved first, as a duration such as `24h`.
    pub after: String,
}

/// Service levels in business terms.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// Largest acceptable age of the newest delivered change, as a duration such as `15m`.
    #[serde(default)]
    pub freshness: Option<String>,
    /// Largest acceptable share of records dead-lettered, in percent (for example `2.5`).
    #[serde(default)]
    pub max_reject_rate: Option<f64>,
}

/// A flow test file, `tests/<name>.yaml`: cases run by `switchyard test`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Switchyard flow tests")]
pub struct TestFile {
    /// The flow under test.
    pub flow: String,
    /// The cases, run in order, each on fresh state.
    pub cases: Vec<TestCase>,
}

/// One test case: records in, faults injected, outcomes expected.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case proves, in a sentence.
    pub name: String,
    /// Records read from the source, in order.
    #[serde(default)]
    pub input: Vec<serde_json::Value>,
    /// Instead of `input`: the responses of the flow's HTTP source, in request order, served
    /// by a local server its real source code (pagination, retries, paging guards) reads.
    /// Script faults as pages: a 503 or 429 before the page it delays, a repeated token, a
    /// malformed body.
    #[serde(default)]
    pub source_pages: Option<Vec<SourcePage>>,
    /// Faults the sink injects, in order, before it accepts writes.
    #[serde(default)]
    pub faults: Vec<SinkFault>,
    /// Cross-references stored before the case runs, as earlier flows would have.
    #[serde(default)]
    pub cross_references: Vec<CrossReference>,
    /// Outcomes earlier flows reached before the case runs, for `requires:` guards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<PriorOutcome>,
    /// The runtime's clock when the case starts, as an RFC 3339 time
    /// (`2026-11-27T12:00:00Z`); the wall clock when not given. Cases of time conditions
    /// (`older_than`) set it so their outcome does not depend on the day they run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<String>,
    /// Answers to the flow's `enrich:` calls, by enrichment then request path (with `?query`
    /// when the request has one); a request not listed is answered 404.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub enrich: IndexMap<String, IndexMap<String, crate::spec::enrich::EnrichResponse>>,
    /// For a reconcile flow: the ledger's lines (`input` is then the statement's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ledger: Vec<serde_json::Value>,
    /// What must come out.
    pub expect: TestExpectation,
}

/// A variance a reconcile flow's test expects.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedVariance {
    /// `missing_in_ledger`, `duplicate_in_ledger`, `currency_mismatch`, `amount_mismatch`,
    /// `date_outside_window`, `wrong_party`, `rate_mismatch`, `missing_in_statement` or
    /// `unreadable`.
    pub kind: String,
    /// The statement key (the ledger line's ID for `missing_in_statement`).
    pub reference: String,
    /// Ledger minus statement, as an exact decimal (`"-12.30"`); `null` when the currencies
    /// differ. Compared as decimals: `"6.0"` equals `"6.00"`.
    #[serde(default, deserialize_with = "present_value")]
    pub difference: Option<serde_json::Value>,
    /// The currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// The billing cycle.
    #[serde(default)]
    pub cycle: Option<String>,
    /// The owner it is routed to.
    #[serde(default)]
    pub owner: Option<String>,
    /// Text the runbook of its failure mode contains.
    #[serde(default)]
    pub runbook_contains: Option<String>,
    /// The rule breached (`wrong_party`) or the contracted rate (`rate_mismatch`).
    #[serde(default)]
    pub rule: Option<String>,
    /// The amount the contracted rate gives (`rate_mismatch`), as an exact decimal; `null`
    /// when the rate could not be checked.
    #[serde(default, deserialize_with = "present_value")]
    pub expected_amount: Option<serde_json::Value>,
}

/// `difference: null` expects no difference, which is not the same as leaving it out.
fn present_value<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// An outcome another flow reached for a record, seeded by a flow test.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorOutcome {
    /// The flow (for example `orders-to-oms`).
    pub flow: String,
    /// The outcome it reached.
    pub outcome: crate::spec::guard::RequiredOutcome,
    /// The record's identity key in that flow (for example `MKP-000123-A`).
    pub key: String,
}

/// One scripted response of a flow test's source server.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePage {
    /// HTTP status (default 200).
    #[serde(default)]
    pub status: Option<u16>,
    /// The JSON body (for example `{ offers: [...], next_page_token: t2 }`).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// A raw body instead of `body`, to script a malformed page.
    #[serde(default)]
    pub raw: Option<String>,
    /// `Retry-After` seconds sent with the response.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

/// A cross-reference between a system's ID and an object's identity key.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossReference {
    /// The object (for example `order`).
    pub object: String,
    /// The system (for example `oms`).
    pub system: String,
    /// That system's ID (for example `OMS-12`).
    pub id: String,
    /// The object's identity key (for example `MKP-000123-A`).
    pub key: String,
}

/// A fault injected by the test sink.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkFault {
    /// HTTP status the sink answers with (for example 503, 429 or 400).
    pub status: u16,
    /// How many consecutive writes fail this way (default 1).
    #[serde(default)]
    pub times: Option<u32>,
    /// `Retry-After` seconds sent with the failure.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Fail every write for this long (virtual time), as a duration; overrides `times`.
    #[serde(default, rename = "for")]
    pub for_duration: Option<String>,
}

/// Expected outcomes of a test case.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestExpectation {
    /// Mapped records the sink must have accepted, in order, each exactly once.
    #[serde(default)]
    pub delivered: Vec<serde_json::Value>,
    /// Dead letters that must exist, in order.
    #[serde(default)]
    pub dead_letters: Vec<ExpectedDeadLetter>,
    /// Alerts that must have been sent, in order.
    #[serde(default)]
    pub alerts: Vec<ExpectedAlert>,
    /// Number of records dropped as duplicates.
    #[serde(default)]
    pub duplicates: Option<u64>,
    /// Number of records the flow's `where:` conditions filtered out.
    #[serde(default)]
    pub filtered: Option<u64>,
    /// Idempotency keys of the records acknowledged at their source (`acknowledge`), in order.
    #[serde(default)]
    pub acknowledged: Option<Vec<String>>,
    /// With `source_pages`: how many requests the source sent.
    #[serde(default)]
    pub source_requests: Option<u64>,
    /// Text the run's early stop (or its error) must contain, such as `source-unavailable`;
    /// give `""` to require that the run did not stop early.
    #[serde(default)]
    pub stopped: Option<String>,
    /// The acknowledgement calls sent (`acknowledge`), in order: each one's body and, for an
    /// HTTP acknowledgement, its path. Only the keys given are compared.
    #[serde(default)]
    pub acknowledgements: Option<Vec<ExpectedAcknowledgement>>,
    /// The enrichment requests sent (`enrich:`), in order, each as its path (with `?query`),
    /// retries included and cache hits not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrichment_calls: Option<Vec<String>>,
    /// For a reconcile flow: every variance the reconciliation must find, exactly (order
    /// free); each with its owner and runbook, read from the failure mode it is routed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variances: Option<Vec<ExpectedVariance>>,
}

/// An expected acknowledgement call.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAcknowledgement {
    /// The idempotency key of the record acknowledged.
    #[serde(default)]
    pub key: Option<String>,
    /// The request path (HTTP acknowledgements), as rendered, for example
    /// `/api/orders/MKP-1/accept`.
    #[serde(default)]
    pub path: Option<String>,
    /// The JSON body sent, exactly.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

/// An expected dead letter.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDeadLetter {
    /// The failure mode, such as `contract-violation`.
    pub failure: String,
    /// The owner it is routed to.
    #[serde(default)]
    pub owner: Option<String>,
    /// The owner's action.
    #[serde(default)]
    pub action: Option<Action>,
    /// Text the error message must contain.
    #[serde(default)]
    pub error_contains: Option<String>,
}

/// An expected alert.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAlert {
    /// The owner alerted.
    pub owner: String,
    /// The failure mode alerted on.
    pub failure: String,
}

impl SystemConfig {
    /// The one connector key under this system and its settings, when there is exactly one.
    pub fn connector(&self) -> Option<(&str, &Value)> {
        match self.connectors.len() {
            1 => self
                .connectors
                .first()
                .map(|(key, value)| (key.as_str(), value)),
            _ => None,
        }
    }
}

/// The generic keys of a connector-agnostic section; every other key goes to the connector.
trait Section: Sized {
    /// What the section is, for messages.
    const EXPECTING: &'static str;
    /// Its generic keys, in order (the first is required when `REQUIRED`).
    const GENERIC: &'static [&'static str];
    /// Whether the first generic key is required.
    const REQUIRED: bool;
    /// An empty section.
    fn empty() -> Self;
    /// Reads generic key `key` (one of [`Section::GENERIC`]).
    fn read<'de, A: serde::de::MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error>;
    /// Keeps a connector key.
    fn insert_connector_key(&mut self, key: String, value: Value);
}

struct SectionVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Section> serde::de::Visitor<'de> for SectionVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut section = T::empty();
        let mut required_seen = !T::REQUIRED;
        while let Some(key) = map.next_key::<String>()? {
            required_seen |= T::GENERIC.first() == Some(&key.as_str());
            if T::GENERIC.contains(&key.as_str()) {
                section.read(&key, &mut map)?;
            } else {
                // Kept as written: the connector's typed settings read it at validation,
                // reporting an unknown key at its line and column.
                let value = map.next_value::<Value>()?;
                section.insert_connector_key(key, value);
            }
        }
        if !required_seen {
            return Err(serde::de::Error::missing_field(T::GENERIC[0]));
        }
        Ok(section)
    }
}

fn section<'de, D: serde::Deserializer<'de>, T: Section>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_map(SectionVisitor(std::marker::PhantomData))
}

impl Section for SystemConfig {
    const EXPECTING: &'static str = "a system: `description`, `acts_for` and one connector key";
    const GENERIC: &'static [&'static str] = &["description", "acts_for"];
    const REQUIRED: bool = false;

    fn empty() -> Self {
        Self::default()
    }

    fn read<'de, A: serde::de::MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key {
            "description" => self.description = map.next_value()?,
            _ => self.acts_for = map.next_value()?,
        }
        Ok(())
    }

    fn insert_connector_key(&mut self, key: String, value: Value) {
        self.connectors.insert(key, value);
    }
}

impl Section for SourceConfig {
    const EXPECTING: &'static str = "a source: `system`, `author` and its connector's keys";
    const GENERIC: &'static [&'static str] = &["system", "author"];
    const REQUIRED: bool = true;

    fn empty() -> Self {
        Self {
            system: String::new(),
            author: None,
            settings: Map::new(),
        }
    }

    fn read<'de, A: serde::de::MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key {
            "system" => self.system = map.next_value()?,
            _ => self.author = map.next_value()?,
        }
        Ok(())
    }

    fn insert_connector_key(&mut self, key: String, value: Value) {
        self.settings.insert(key, value);
    }
}

impl Section for SinkConfig {
    const EXPECTING: &'static str = "a sink: `system`, `capture` and its connector's keys";
    const GENERIC: &'static [&'static str] = &["system", "capture"];
    const REQUIRED: bool = true;

    fn empty() -> Self {
        Self {
            system: String::new(),
            capture: None,
            settings: Map::new(),
        }
    }

    fn read<'de, A: serde::de::MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key {
            "system" => self.system = map.next_value()?,
            _ => self.capture = map.next_value()?,
        }
        Ok(())
    }

    fn insert_connector_key(&mut self, key: String, value: Value) {
        self.settings.insert(key, value);
    }
}

impl Section for AcknowledgeConfig {
    const EXPECTING: &'static str =
        "an acknowledgement: `system`, `map` or `body`, and its connector's keys";
    const GENERIC: &'static [&'static str] = &["system", "body", "map"];
    const REQUIRED: bool = true;

    fn empty() -> Self {
        Self {
            system: String::new(),
            body: None,
            map: None,
            settings: Map::new(),
        }
    }

    fn read<'de, A: serde::de::MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key {
            "system" => self.system = map.next_value()?,
            "map" => self.map = map.next_value()?,
            _ => self.body = map.next_value()?,
        }
        Ok(())
    }

    fn insert_connector_key(&mut self, key: String, value: Value) {
        self.settings.insert(key, value);
    }
}

macro_rules! section_impls {
    ($($name:ident => $role:expr),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                section(deserializer)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                super::schema::section_schema(generator, $role)
            }
        }
    )*};
}

section_impls! {
    SystemConfig => super::schema::Role::System,
    SourceConfig => super::schema::Role::From,
    SinkConfig => super::schema::Role::To,
    AcknowledgeConfig => super::schema::Role::Acknowledge,
}
