//! The compiled part of the validated model: each flow's contract, templates, routes, deadline
//! and lookups built once per load, so that per-record work is lookups and evaluation only.
//!
//! A [`FlowPlan`] is built from the validated raw flow (this is the last place that reads the
//! flow's YAML types) and the workspace-wide [`Shared`] values; the resolved
//! [`Flow`](super::model::Flow) owns it behind an `Arc` that every run of that load shares.
//! Nothing here does I/O.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use super::filter::RecordFilter;
use super::guard::{GuardPlan, RequiredOutcome};
use super::model::{FailureMode, FailureRoute, Object, Party, RetryPolicy, SplitConfig};
use super::raw::FlowFile;
use crate::contract::Contract;
use crate::mapping::{CompiledTemplate, FieldPath, Mapping};

/// `state.max_dead_letter_record_size` when the workspace does not set it.
pub const DEFAULT_MAX_DEAD_LETTER_RECORD_BYTES: u64 = 1024 * 1024;

/// A flow ready to run.
#[derive(Debug, Clone)]
pub struct FlowPlan {
    /// The flow's name.
    pub name: String,
    /// The business object.
    pub object: String,
    /// The object's contract.
    pub contract: Arc<Contract>,
    /// Paths of the identity key fields.
    pub key_fields: Vec<FieldPath>,
    /// The idempotency key template (defaults to the identity key).
    pub idempotency_key: Option<CompiledTemplate>,
    /// The mapping.
    pub mapping: Mapping,
    /// `acknowledge.map`: the acknowledgement's body, built over the record as read.
    pub ack_mapping: Option<Mapping>,
    /// JSON Pointer to the field naming the system that authored a change.
    pub author: Option<String>,
    /// The source system.
    pub source_system: String,
    /// Systems allowed to create or update the object.
    pub writers: HashSet<String>,
    /// Fields controlled by the seller that the operator may not override, when the author
    /// acts for the operator; and the reverse.
    pub field_control: IndexMap<String, (Party, bool)>,
    /// The party each system acts for (shared by every flow of the workspace).
    pub parties: Arc<IndexMap<String, Party>>,
    /// The retry policy.
    pub retry: RetryPolicy,
    /// Failure routes.
    pub failures: IndexMap<FailureMode, FailureRoute>,
    /// Alert webhook per owner (shared by every flow of the workspace).
    pub alert_urls: Arc<IndexMap<String, String>>,
    /// The deadline of each record, if any.
    pub deadline: Option<DeadlinePlan>,
    /// How records split into legs, if they do.
    pub split: Option<SplitConfig>,
    /// Fields looked up in the cross-references before mapping.
    pub lookups: Vec<LookupPlan>,
    /// HTTP calls per record merged into it after `lookups` (see [`super::enrich`]).
    pub enrichments: Vec<super::enrich::EnrichPlan>,
    /// Pointer to the sink's ID in its response, stored as a cross-reference.
    pub capture: Option<String>,
    /// The sink system's name (cross-references are stored under it).
    pub sink_system: String,
    /// The most of a rejected record's original a dead letter keeps, in bytes.
    pub max_dead_letter_record: u64,
    /// The flow's `where:` conditions; a record failing one is filtered out.
    pub filter: RecordFilter,
    /// The flow's `checks:`; a record breaching one is a `check-failed` dead letter.
    pub checks: super::checks::RecordChecks,
    /// The outcome of another flow each record needs before it is sent, if any.
    pub guard: Option<GuardPlan>,
    /// The outcomes of this flow that other flows' guards require: recorded in the store as
    /// they happen (none when no flow requires any, so nothing is written for nothing).
    pub outcomes_required: HashSet<RequiredOutcome>,
}

/// A compiled deadline.
#[derive(Debug, Clone)]
pub struct DeadlinePlan {
    /// Pointer to the deadline itself.
    pub at: Option<String>,
    /// Pointer to the time the deadline counts from.
    pub from: Option<String>,
    /// Delay after `from`.
    pub plus: Duration,
    /// Share of the window after which the owner is warned.
    pub warn_at: f64,
    /// Pointer to the start of the window.
    pub window_start: Option<String>,
}

/// A compiled cross-reference lookup.
#[derive(Debug, Clone)]
pub struct LookupPlan {
    /// The field added to the record.
    pub field: String,
    /// The object looked up.
    pub object: String,
    /// The system whose ID is known.
    pub system: String,
    /// Renders that ID from the record.
    pub id: CompiledTemplate,
}

/// A flow that cannot be compiled. Validation reports these first with a position; this is
/// the guard for what it let through.
#[derive(Debug, Clone, thiserror::Error)]
#[error("flow `{flow}`: {message}")]
pub struct PlanError {
    /// The flow.
    pub flow: String,
    /// What is wrong.
    pub message: String,
}

/// What every flow of one workspace shares, built once per load.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// The compiled contracts, by object name.
    pub(crate) contracts: IndexMap<String, Arc<Contract>>,
    /// The party each system acts for.
    pub(crate) parties: Arc<IndexMap<String, Party>>,
    /// Alert webhook per owner.
    pub(crate) alert_urls: Arc<IndexMap<String, String>>,
    /// The dead-letter size limit.
    pub(crate) max_dead_letter_record: u64,
    /// The outcomes each flow must record because another flow's `requires:` names them.
    pub(crate) outcomes_required: IndexMap<String, HashSet<RequiredOutcome>>,
    /// The workspace's exchange rates, for `convert:` fields.
    pub(crate) rates: Option<Arc<crate::money::rates::RateTable>>,
}

impl FlowPlan {
    /// Compiles one validated flow against its object and the workspace's shared values.
    pub(crate) fn compile(
        spec: &FlowFile,
        object: &Object,
        shared: &Shared,
        retry: RetryPolicy,
        failures: &IndexMap<FailureMode, FailureRoute>,
    ) -> Result<Self, PlanError> {
        let fail = |message: String| PlanError {
            flow: spec.flow.clone(),
            message,
        };
        let contract = shared
            .contracts
            .get(&spec.object)
            .cloned()
            .ok_or_else(|| fail(format!("object `{}` has no contract loaded", spec.object)))?;
        let rates = shared.rates.as_ref();
        let mapping =
            Mapping::compile_with_rates(&spec.map, rates).map_err(|e| fail(e.to_string()))?;
        let ack_mapping = match spec.acknowledge.as_ref().and_then(|ack| ack.map.as_ref()) {
            Some(map) => Some(
                Mapping::compile_with_rates(map, rates)
                    .map_err(|e| fail(format!("acknowledge.map: {e}")))?,
            ),
            None => None,
        };
        let idempotency_key = spec
            .idempotency_key
            .as_deref()
            .map(CompiledTemplate::compile)
            .transpose()
            .map_err(|e| fail(format!("idempotency_key: {e}")))?;
        let writers = object
            .create
            .iter()
            .chain(&object.update)
            .cloned()
            .collect();
        let field_control = object
            .fields
            .iter()
            .map(|(name, control)| {
                (
                    name.clone(),
                    (control.controlled_by, control.operator_override),
                )
            })
            .collect();
        let deadline = match &spec.deadline {
            Some(d) => Some(DeadlinePlan {
                at: d.at.clone(),
                from: d.from.clone(),
                plus: d
                    .plus
                    .as_deref()
                    .map(super::parse_duration)
                    .transpose()
                    .map_err(|e| fail(format!("deadline.plus: {e}")))?
                    .unwrap_or_default(),
                warn_at: d.warn_at.unwrap_or(0.5).clamp(0.0, 1.0),
                window_start: d.window_start.clone(),
            }),
            None => None,
        };
        let lookups = spec
            .lookup
            .iter()
            .map(|(field, l)| {
                Ok(LookupPlan {
                    field: field.clone(),
                    object: l.object.clone(),
                    system: l.system.clone(),
                    id: CompiledTemplate::compile(&l.id)
                        .map_err(|e| fail(format!("lookup.{field}.id: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>, PlanError>>()?;
        let enrichments = super::enrich::EnrichPlan::compile_all(&spec.enrich, &retry)
            .map_err(|e| fail(e.to_string()))?;
        let freshness = match spec.sla.as_ref().and_then(|sla| sla.freshness.as_deref()) {
            Some(text) => Some((
                super::parse_duration(text).map_err(|e| fail(format!("sla.freshness: {e}")))?,
                text,
            )),
            None => None,
        };
        let filter =
            RecordFilter::compile(&spec.filter, freshness).map_err(|e| fail(e.to_string()))?;
        let checks = super::checks::RecordChecks::compile(&spec.checks, freshness)
            .map_err(|e| fail(e.to_string()))?;
        let guard = spec
            .requires
            .as_ref()
            .map(GuardPlan::compile)
            .transpose()
            .map_err(fail)?;
        Ok(Self {
            filter,
            checks,
            guard,
            outcomes_required: shared
                .outcomes_required
                .get(&spec.flow)
                .cloned()
                .unwrap_or_default(),
            max_dead_letter_record: shared.max_dead_letter_record,
            deadline,
            split: spec.split.clone(),
            lookups,
            enrichments,
            capture: spec
                .to
                .as_ref()
                .and_then(|to| to.capture.as_ref())
                .map(|c| c.id.clone()),
            sink_system: spec
                .to
                .as_ref()
                .map(|to| to.system.clone())
                .unwrap_or_default(),
            name: spec.flow.clone(),
            object: spec.object.clone(),
            contract,
            key_fields: object.key.iter().map(|k| FieldPath::parse(k)).collect(),
            idempotency_key,
            mapping,
            ack_mapping,
            author: spec.from.author.clone(),
            source_system: spec.from.system.clone(),
            writers,
            field_control,
            parties: Arc::clone(&shared.parties),
            retry,
            failures: failures.clone(),
            alert_urls: Arc::clone(&shared.alert_urls),
        })
    }

    /// The route of a failure mode; a flow without one falls back to an `unowned` route so a
    /// record is never dropped for lack of an owner (validation reports the gap).
    pub fn route(&self, mode: FailureMode) -> FailureRoute {
        self.failures.get(&mode).cloned().unwrap_or(FailureRoute {
            owner: "unowned".into(),
            action: None,
            runbook: None,
            escalate: None,
        })
    }
}
