//! Delivering one unit (a record, or one leg of a split record) to a per-record sink: the
//! write with retries, the cross-reference captured from the sink's answer, and the
//! acknowledgement at the source — all before the unit's deadline when it has one.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::clock::Clock;
use super::events::FlowEvents;
use super::guard::{self, Verdict};
use super::plan::FlowPlan;
use super::record::{Deadline, Output, Ready, Rejected, Rejection};
use super::retry::{self, Delivery, Outage, RetryClock};
use crate::connectors::{ConnectorError, Outgoing, Sink};
use crate::spec::guard::{GuardPlan, Otherwise, RequiredOutcome};
use crate::spec::model::FailureMode;
use crate::store::{Store, StoreError};

/// Where acknowledgements go, with the body they carry.
#[derive(Clone)]
pub(super) struct AckTarget {
    pub(super) sink: Arc<dyn Sink>,
    pub(super) body: Value,
}

/// One deliverable record (or leg of a split record).
#[derive(Debug, Clone)]
pub(super) struct Unit {
    pub(super) record_key: String,
    pub(super) idempotency_key: String,
    pub(super) body: Value,
    pub(super) deadline: Option<Deadline>,
    /// The acknowledgement body from `acknowledge.map`; `None`: the static `body` is sent.
    pub(super) ack: Option<Value>,
}

impl Unit {
    /// This unit as a dead letter of failure `mode`.
    pub(super) fn rejected(&self, mode: FailureMode, reason: &str, error: String) -> Rejected {
        Rejected {
            record_key: Some(self.record_key.clone()),
            idempotency_key: Some(self.idempotency_key.clone()),
            rejection: Rejection {
                mode,
                reason: reason.into(),
                error,
            },
        }
    }
}

/// How one unit's delivery ended.
pub(super) enum Outcome {
    Delivered,
    /// Not settled: the sink was declared down before this unit's window closed. The unit's
    /// record goes back to the source (the checkpoint stays before it).
    Abandoned,
    Failed {
        mode: FailureMode,
        attempts: u32,
        error: String,
    },
    /// Not sent: its `requires:` guard is unmet and the rule says skip. Counted as filtered.
    Skipped(String),
}

/// The deliverable units of a ready record: itself, or each of its legs (a leg that failed
/// mapping comes back as a rejection, the others proceed).
pub(super) fn units(ready: Ready) -> Vec<Result<Unit, Rejected>> {
    match ready.body {
        Output::One(body) => vec![Ok(Unit {
            record_key: ready.record_key,
            idempotency_key: ready.idempotency_key,
            body,
            deadline: ready.deadline,
            ack: ready.ack,
        })],
        Output::Legs(legs) => legs
            .into_iter()
            .map(|leg| {
                let record_key = format!("{}:{}", ready.record_key, leg.key);
                let idempotency_key = format!("{}:{}", ready.idempotency_key, leg.key);
                match leg.result {
                    Ok(body) => Ok(Unit {
                        record_key,
                        idempotency_key,
                        body,
                        deadline: ready.deadline,
                        ack: leg.ack,
                    }),
                    Err(rejection) => Err(Rejected {
                        record_key: Some(record_key),
                        idempotency_key: Some(idempotency_key),
                        rejection,
                    }),
                }
            })
            .collect(),
    }
}

/// What one delivery task needs.
pub(super) struct Delivering {
    pub(super) sink: Arc<dyn Sink>,
    pub(super) ack: Option<AckTarget>,
    pub(super) store: Store,
    pub(super) plan: Arc<FlowPlan>,
    pub(super) clock: Clock,
    /// Shared by the batch's deliveries; `None` delivers each unit on its own (replay).
    pub(super) outage: Option<Outage>,
    /// The idempotency keys (and acknowledgement keys) of the batch whose retry clock runs in
    /// the store, loaded in one query before the batch is delivered.
    pub(super) failed_before: Arc<HashSet<String>>,
    /// Where retries are reported; `None` for a replay (its attempts are not the flow's).
    pub(super) events: Option<FlowEvents>,
}

/// The retry keys of `units` (each unit's idempotency key, and its acknowledgement's when
/// the flow acknowledges) whose retry clock runs in the store: one query for a batch.
pub(super) async fn running_retry_clocks<'a>(
    store: &Store,
    flow: &str,
    units: impl Iterator<Item = &'a Unit>,
    acknowledged: bool,
) -> Result<Arc<HashSet<String>>, StoreError> {
    let mut keys = Vec::new();
    for unit in units {
        if acknowledged {
            keys.push(ack_key(&unit.idempotency_key));
        }
        keys.push(unit.idempotency_key.clone());
    }
    let running = store.retry_states(flow, &keys).await?;
    Ok(Arc::new(running.into_keys().collect()))
}

/// The retry key of a unit's acknowledgement.
fn ack_key(idempotency_key: &str) -> String {
    format!("ack:{idempotency_key}")
}

impl Delivering {
    /// Writes a unit (with retries), remembers the sink's ID for it, then acknowledges it at
    /// the source — all before its deadline, if it has one.
    pub(super) async fn deliver(&self, unit: &Unit) -> Result<Outcome, StoreError> {
        let plan = &self.plan;
        let due = unit.deadline.map(|d| d.due_ms);
        let passed = |clock: &Clock| due.is_some_and(|due| clock.now_ms() >= due);
        let outgoing = Outgoing {
            idempotency_key: unit.idempotency_key.clone(),
            body: unit.body.clone(),
        };
        if let Some(guard) = &plan.guard
            && let Some(outcome) = self.await_guard(guard, unit).await?
        {
            return Ok(outcome);
        }
        let response = std::sync::Mutex::new(Value::Null);
        let delivery = retry::deliver(
            &plan.retry,
            &self.clock,
            &self.store,
            RetryClock {
                flow: &plan.name,
                key: &unit.idempotency_key,
                failed_before: self.failed_before.contains(&unit.idempotency_key),
                events: self.events.as_ref(),
            },
            self.outage.as_ref(),
            || async {
                if passed(&self.clock) {
                    return Err(deadline_failure());
                }
                let answer = self.sink.send(&outgoing, &outgoing.body).await?;
                *lock(&response) = answer;
                Ok(())
            },
        )
        .await?;
        let response = lock(&response).clone();
        if let Some(outcome) = failed(delivery, passed(&self.clock)) {
            return Ok(outcome);
        }
        if let Some(pointer) = &plan.capture
            && let Some(id) = response.pointer(pointer).filter(|v| !v.is_null())
        {
            let xref = crate::store::CrossReference {
                object: plan.object.clone(),
                system: plan.sink_system.clone(),
                external_id: crate::mapping::helpers::render(id),
                record_key: unit.record_key.clone(),
            };
            self.store.put_xref(&xref, &plan.name).await?;
        }
        guard::record_outcome(
            &self.store,
            plan,
            RequiredOutcome::Delivered,
            &unit.record_key,
        )
        .await?;
        self.acknowledge(unit).await
    }

    /// Acknowledges a written unit at its source (with retries, before its deadline); a unit
    /// of a flow without `acknowledge` is delivered as it is. Per-record sinks call it after
    /// the write, batch sinks once the batch is durable.
    pub(super) async fn acknowledge(&self, unit: &Unit) -> Result<Outcome, StoreError> {
        let plan = &self.plan;
        let due = unit.deadline.map(|d| d.due_ms);
        let passed = |clock: &Clock| due.is_some_and(|due| clock.now_ms() >= due);
        let Some(ack) = &self.ack else {
            return Ok(Outcome::Delivered);
        };
        let key = ack_key(&unit.idempotency_key);
        let ack_out = Outgoing {
            idempotency_key: key.clone(),
            body: unit.body.clone(),
        };
        let acknowledged = retry::deliver(
            &plan.retry,
            &self.clock,
            &self.store,
            RetryClock {
                flow: &plan.name,
                key: &key,
                failed_before: self.failed_before.contains(&key),
                events: self.events.as_ref(),
            },
            // Once the write succeeded the acknowledgement is finished whatever else happens:
            // abandoning it would make the next run write the record to the sink again.
            None,
            || async {
                if passed(&self.clock) {
                    return Err(deadline_failure());
                }
                let body = unit.ack.as_ref().unwrap_or(&ack.body);
                ack.sink.send(&ack_out, body).await.map(drop)
            },
        )
        .await?;
        if let Some(outcome) = failed(acknowledged, passed(&self.clock)) {
            return Ok(outcome);
        }
        guard::record_outcome(
            &self.store,
            plan,
            RequiredOutcome::Acknowledged,
            &unit.record_key,
        )
        .await?;
        Ok(Outcome::Delivered)
    }

    /// Holds a unit back until the outcome its guard requires is committed, by the guard's
    /// rule; `None` once it is (send), or how the unit ends without being sent.
    async fn await_guard(
        &self,
        guard: &GuardPlan,
        unit: &Unit,
    ) -> Result<Option<Outcome>, StoreError> {
        let error = match guard::check(&self.store, guard, &unit.body).await? {
            Verdict::Met => return Ok(None),
            Verdict::Unmet(error) => error,
        };
        match guard.otherwise {
            Otherwise::Skip => return Ok(Some(Outcome::Skipped(error))),
            Otherwise::DeadLetter => {
                return Ok(Some(Outcome::Failed {
                    mode: FailureMode::GuardUnmet,
                    attempts: 1,
                    error,
                }));
            }
            Otherwise::Wait => {}
        }
        // Waiting is a retry of the check on the flow's policy, with its own clock in the
        // store (it keeps running across restarts); the sink is never involved, so an
        // unmet guard can never declare the sink down.
        let key = format!("guard:{}", unit.idempotency_key);
        let waited = retry::deliver(
            &self.plan.retry,
            &self.clock,
            &self.store,
            RetryClock {
                flow: &self.plan.name,
                key: &key,
                failed_before: true,
                events: self.events.as_ref(),
            },
            None,
            || async {
                match guard::check(&self.store, guard, &unit.body).await {
                    Ok(Verdict::Met) => Ok(()),
                    Ok(Verdict::Unmet(error)) => Err(ConnectorError::unavailable(error)),
                    Err(err) => Err(ConnectorError::unavailable(format!(
                        "the state store could not be read for the guard: {err}"
                    ))),
                }
            },
        )
        .await?;
        Ok(match waited {
            Delivery::Delivered { .. } => None,
            Delivery::Abandoned { .. } => Some(Outcome::Abandoned),
            Delivery::Rejected { attempts, error } | Delivery::Unavailable { attempts, error } => {
                Some(Outcome::Failed {
                    mode: FailureMode::GuardUnmet,
                    attempts,
                    error,
                })
            }
        })
    }
}

/// The outcome of a failed delivery, or `None` when it succeeded.
pub(super) fn failed(delivery: Delivery, deadline_passed: bool) -> Option<Outcome> {
    let (mode, attempts, error) = match delivery {
        Delivery::Delivered { .. } => return None,
        Delivery::Abandoned { .. } => return Some(Outcome::Abandoned),
        Delivery::Rejected { attempts, error } if deadline_passed => {
            (FailureMode::DeadlineMissed, attempts, error)
        }
        Delivery::Rejected { attempts, error } => (FailureMode::SinkRejected, attempts, error),
        Delivery::Unavailable { attempts, error } => {
            (FailureMode::SinkUnavailable, attempts, error)
        }
    };
    Some(Outcome::Failed {
        mode,
        attempts,
        error,
    })
}

pub(super) fn deadline_failure() -> ConnectorError {
    ConnectorError::rejected("the deadline passed before the record was delivered and acknowledged")
}

pub(super) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
