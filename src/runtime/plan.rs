//! The compiled phase of a flow: contract, templates and routes built once from the validated
//! workspace, so that per-record work is lookups and evaluation only.

use std::collections::HashSet;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::contract::Contract;
use crate::mapping::{CompiledTemplate, FieldPath, Mapping};
use crate::spec::model::{FailureMode, FailureRoute, Flow, RetryPolicy, Workspace};
use crate::spec::raw::Party;

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
    /// JSON Pointer to the field naming the system that authored a change.
    pub author: Option<String>,
    /// The source system.
    pub source_system: String,
    /// Systems allowed to create or update the object.
    pub writers: HashSet<String>,
    /// Fields controlled by the seller that the operator may not override, when the author
    /// acts for the operator; and the reverse.
    pub field_control: IndexMap<String, (Party, bool)>,
    /// The party each system acts for.
    pub parties: IndexMap<String, Party>,
    /// The retry policy.
    pub retry: RetryPolicy,
    /// Failure routes.
    pub failures: IndexMap<FailureMode, FailureRoute>,
    /// Alert webhook per owner.
    pub alert_urls: IndexMap<String, String>,
}

/// A flow that cannot be compiled. Validation catches these first; this is the runtime's
/// own guard for workspaces built without it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("flow `{flow}`: {message}")]
pub struct PlanError {
    /// The flow.
    pub flow: String,
    /// What is wrong.
    pub message: String,
}

impl FlowPlan {
    /// Compiles one flow of a workspace.
    pub fn compile(workspace: &Workspace, flow: &Flow) -> Result<Self, PlanError> {
        let spec = &flow.spec;
        let fail = |message: String| PlanError {
            flow: spec.flow.clone(),
            message,
        };
        let object = workspace
            .spec
            .objects
            .get(&spec.object)
            .ok_or_else(|| fail(format!("object `{}` is not declared", spec.object)))?;
        let schema = workspace
            .contracts
            .get(&spec.object)
            .ok_or_else(|| fail(format!("object `{}` has no contract loaded", spec.object)))?;
        let contract = Contract::compile(schema).map_err(|e| fail(e.to_string()))?;
        let mapping = Mapping::compile(&spec.map).map_err(|e| fail(e.to_string()))?;
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
        let parties = workspace
            .spec
            .systems
            .iter()
            .filter_map(|(name, system)| system.acts_for.map(|party| (name.clone(), party)))
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
        let alert_urls = workspace
            .spec
            .owners
            .iter()
            .filter_map(|(name, owner)| {
                let url = owner.alert.as_ref()?.webhook.clone();
                (!url.is_empty()).then(|| (name.clone(), url))
            })
            .collect();
        Ok(Self {
            name: spec.flow.clone(),
            object: spec.object.clone(),
            contract: Arc::new(contract),
            key_fields: object.key.iter().map(|k| FieldPath::parse(k)).collect(),
            idempotency_key,
            mapping,
            author: spec.from.author.clone(),
            source_system: spec.from.system.clone(),
            writers,
            field_control,
            parties,
            retry: flow.retry,
            failures: flow.failures.clone(),
            alert_urls,
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
