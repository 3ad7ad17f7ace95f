//! State guards: a flow's `requires:` — a record is sent only once another flow reached an
//! outcome for the same business key (ship an order only after it was accepted).
//!
//! ```yaml
//! requires:
//!   flow: orders-to-oms          # the flow whose outcome is required
//!   outcome: acknowledged        # delivered (its sink took the record) or acknowledged
//!                                # (and its source was told, e.g. the order accepted)
//!   key: "{{order_id}}"          # rendered from the mapped record: the required flow's
//!                                # identity key of that record
//!   otherwise: wait              # wait (default) | skip | dead-letter
//! ```
//!
//! The guard reads committed state: a flow that requires outcomes of another makes that flow
//! record them in the state store as they happen (after the sink's write, after the
//! acknowledgement), so under `serve`, where flows run concurrently, a guarded call is never
//! sent before the outcome it requires is durable.
//!
//! When the outcome is not there yet: `wait` retries the check on the flow's retry policy
//! (its window, on the runtime's clock) and dead-letters the record as `guard-unmet` when the
//! window closes; `skip` counts the record as filtered; `dead-letter` dead-letters it as
//! `guard-unmet` at once.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mapping::CompiledTemplate;

/// A flow's `requires:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// The flow whose outcome is required.
    pub flow: String,
    /// The outcome required of it.
    pub outcome: RequiredOutcome,
    /// Template rendered from the mapped record: the required flow's identity key of the
    /// record (for example `{{order_id}}`).
    pub key: String,
    /// What happens to a record whose required outcome is not there yet (default `wait`).
    #[serde(default)]
    pub otherwise: Otherwise,
}

/// An outcome a flow records for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RequiredOutcome {
    /// The flow's sink took the record.
    Delivered,
    /// The flow's sink took the record and its `acknowledge:` call succeeded.
    Acknowledged,
}

impl RequiredOutcome {
    /// The name used in specs and in the state store.
    pub fn as_str(self) -> &'static str {
        match self {
            RequiredOutcome::Delivered => "delivered",
            RequiredOutcome::Acknowledged => "acknowledged",
        }
    }
}

/// What happens to a record whose guard is unmet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Otherwise {
    /// Check again on the flow's retry policy; dead-letter as `guard-unmet` once its window
    /// closes.
    #[default]
    Wait,
    /// Count the record as filtered; it is not sent.
    Skip,
    /// Dead-letter the record as `guard-unmet` at once.
    DeadLetter,
}

/// A compiled guard.
#[derive(Debug, Clone)]
pub struct GuardPlan {
    /// The required flow.
    pub flow: String,
    /// The outcome required.
    pub outcome: RequiredOutcome,
    /// Renders the required flow's identity key from the mapped record.
    pub key: CompiledTemplate,
    /// What to do while it is unmet.
    pub otherwise: Otherwise,
}

impl GuardPlan {
    /// Compiles a `requires:` section.
    pub fn compile(config: &GuardConfig) -> Result<Self, String> {
        Ok(Self {
            flow: config.flow.clone(),
            outcome: config.outcome,
            key: CompiledTemplate::compile(&config.key)
                .map_err(|e| format!("requires.key: {e}"))?,
            otherwise: config.otherwise,
        })
    }

    /// Describes the guard for `explain` and error messages.
    pub fn describe(&self) -> String {
        format!(
            "flow {} {} the record",
            self.flow,
            match self.outcome {
                RequiredOutcome::Delivered => "delivered",
                RequiredOutcome::Acknowledged => "delivered and acknowledged",
            }
        )
    }
}
