//! The board of open deadlines: records being delivered against a deadline, shared with the
//! daemon for `/admin/deadlines` and the metrics (orders awaiting acknowledgement and the
//! time left). The durable truth stays in the records and the inbox; the board is a view.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::json;

use super::events::{DeadlineWarned, FlowEvents};
use super::plan::FlowPlan;
use crate::spec::model::FailureMode;
use crate::store::{OutboxAlert, Store};

/// Open deadlines, by flow and record key; cheap to clone, shared.
#[derive(Debug, Clone, Default)]
pub struct DeadlineBoard {
    inner: Arc<Mutex<BTreeMap<(String, String), OpenDeadline>>>,
}

/// One record waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenDeadline {
    /// The flow.
    pub flow: String,
    /// The record's identity key.
    pub record_key: String,
    /// The deadline, Unix milliseconds.
    pub due_ms: i64,
    /// Whether its owner has been warned.
    pub warned: bool,
}

impl DeadlineBoard {
    /// Registers a record as open.
    pub fn open(&self, flow: &str, record_key: &str, due_ms: i64) {
        self.lock().insert(
            (flow.to_owned(), record_key.to_owned()),
            OpenDeadline {
                flow: flow.to_owned(),
                record_key: record_key.to_owned(),
                due_ms,
                warned: false,
            },
        );
    }

    /// Marks a record's owner warned.
    pub fn warned(&self, flow: &str, record_key: &str) {
        if let Some(open) = self
            .lock()
            .get_mut(&(flow.to_owned(), record_key.to_owned()))
        {
            open.warned = true;
        }
    }

    /// Closes every open deadline of a flow (its batch is settled).
    pub fn close_flow(&self, flow: &str) {
        self.lock().retain(|(f, _), _| f != flow);
    }

    /// The open deadlines, soonest first.
    pub fn snapshot(&self) -> Vec<OpenDeadline> {
        let mut all: Vec<OpenDeadline> = self.lock().values().cloned().collect();
        all.sort_by_key(|d| d.due_ms);
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), OpenDeadline>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Queues the warning that a record is still open with its deadline approaching.
pub(super) async fn warn_deadline(
    plan: &FlowPlan,
    store: &Store,
    events: &FlowEvents,
    record_key: &str,
    due_ms: i64,
    now_ms: i64,
) {
    let route = plan.route(FailureMode::DeadlineMissed);
    let left = (due_ms - now_ms).max(0) / 1000;
    events.emit(DeadlineWarned {
        record_key,
        owner: &route.owner,
        seconds_left: left,
    });
    let Some(url) = plan.alert_urls.get(&route.owner) else {
        return;
    };
    let deadline = jiff::Timestamp::from_millisecond(due_ms)
        .map(|t| t.to_string())
        .ok();
    let alert = OutboxAlert {
        owner: route.owner.clone(),
        url: url.clone(),
        payload: json!({
            "flow": plan.name, "object": plan.object, "record_key": record_key,
            "failure": FailureMode::DeadlineMissed.as_str(), "stage": "warning",
            "deadline": deadline, "seconds_left": left, "owner": route.owner,
            "action": route.action, "runbook": route.runbook, "escalation": route.escalate,
            "at": crate::store::now_rfc3339(),
        }),
    };
    if let Err(err) = store.enqueue_alert(&alert).await {
        tracing::error!(error = %err, "Could not queue the deadline warning.");
    }
}
