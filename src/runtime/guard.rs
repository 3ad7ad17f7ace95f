//! State guards at delivery (see [`crate::spec::guard`]): recording the outcomes other flows
//! require, and checking a unit's guard against them before it is sent.

use serde_json::Value;

use super::plan::FlowPlan;
use crate::mapping::Escape;
use crate::spec::guard::{GuardPlan, RequiredOutcome};
use crate::store::{CrossReference, Store, StoreError};

/// How an outcome is kept in the state store: a cross-reference of the pseudo-object
/// `outcome:<flow>` under the pseudo-system named by the outcome, from the record's identity
/// key to itself. It reuses the cross-reference table (both backends, written and committed
/// at once, before the run goes on) rather than adding a table.
fn marker(flow: &str, outcome: RequiredOutcome, key: &str) -> CrossReference {
    CrossReference {
        object: format!("outcome:{flow}"),
        system: outcome.as_str().to_owned(),
        external_id: key.to_owned(),
        record_key: key.to_owned(),
    }
}

/// Records that this flow reached `outcome` for `record_key`, when another flow requires it.
pub(super) async fn record_outcome(
    store: &Store,
    plan: &FlowPlan,
    outcome: RequiredOutcome,
    record_key: &str,
) -> Result<(), StoreError> {
    if !plan.outcomes_required.contains(&outcome) {
        return Ok(());
    }
    store
        .put_xref(&marker(&plan.name, outcome, record_key), &plan.name)
        .await
}

/// Whether a flow reached `outcome` for `key`, as committed in the store.
pub async fn outcome_reached(
    store: &Store,
    flow: &str,
    outcome: RequiredOutcome,
    key: &str,
) -> Result<bool, StoreError> {
    let marker = marker(flow, outcome, key);
    Ok(store
        .xref_key(&marker.object, &marker.system, &marker.external_id)
        .await?
        .is_some())
}

/// Records an outcome as a flow would have (flow tests seed earlier flows' outcomes so).
pub async fn seed_outcome(
    store: &Store,
    flow: &str,
    outcome: RequiredOutcome,
    key: &str,
) -> Result<(), StoreError> {
    store.put_xref(&marker(flow, outcome, key), flow).await
}

/// A guard's verdict on one unit.
pub(super) enum Verdict {
    /// The required outcome is committed: send.
    Met,
    /// Not yet; the message says which.
    Unmet(String),
}

/// Checks a unit's guard; a key that does not render is unmet (the message says why).
pub(super) async fn check(
    store: &Store,
    guard: &GuardPlan,
    body: &Value,
) -> Result<Verdict, StoreError> {
    let key = match guard.key.render(body, Escape::None) {
        Ok(key) => key,
        Err(err) => {
            return Ok(Verdict::Unmet(format!("guard key does not render: {err}")));
        }
    };
    Ok(
        if outcome_reached(store, &guard.flow, guard.outcome, &key).await? {
            Verdict::Met
        } else {
            Verdict::Unmet(format!(
                "guard unmet: {} `{key}` yet",
                match guard.outcome {
                    RequiredOutcome::Delivered => format!("flow {} has not delivered", guard.flow),
                    RequiredOutcome::Acknowledged =>
                        format!("flow {} has not acknowledged", guard.flow),
                }
            ))
        },
    )
}
