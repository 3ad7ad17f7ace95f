//! Fault injection shared by the simulated systems: the `Fault` a test asks for, and the
//! per-system queue that decides, for each incoming request, whether to delay it and whether
//! to fail it. This module owns no HTTP routing and no system state beyond its queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// A fault to inject into a simulated system, in the shape the control endpoints accept:
/// `{"status": 503, "times": 3}`, `{"status": 429, "times": 2, "retry_after": 1}`,
/// `{"status": 500, "for_secs": 3600}` or `{"latency_ms": 200}`.
///
/// Failing faults (those with a `status`) queue in order: the first active one fails the
/// request and is used up by it. Latency faults (no `status`) delay every request while they
/// are active, whatever else is queued. A fault with neither `times` nor `for_secs` lasts one
/// request when it has a status, and forever when it is a pure latency fault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The HTTP status to answer with (400 to 599); `None` for a pure latency fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How many requests the fault applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// How long, in wall-clock seconds from injection, the fault applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_secs: Option<u64>,
    /// The `Retry-After` header value, in seconds, sent with a failing answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// A delay, in milliseconds, added before the request is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

impl Fault {
    /// Fails the next `times` requests with `status`.
    pub fn fail(status: u16, times: u32) -> Self {
        Self {
            status: Some(status),
            times: Some(times),
            ..Self::default()
        }
    }

    /// Fails every request with `status` for `secs` seconds of wall-clock time.
    pub fn fail_for(status: u16, secs: u64) -> Self {
        Self {
            status: Some(status),
            for_secs: Some(secs),
            ..Self::default()
        }
    }

    /// Delays every request by `ms` milliseconds.
    pub fn latency(ms: u64) -> Self {
        Self {
            latency_ms: Some(ms),
            ..Self::default()
        }
    }

    /// Adds a `Retry-After: secs` header to the failing answers.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Checks that the fault means something: a status in 400..=599, or a latency.
    pub fn validate(&self) -> Result<(), String> {
        match self.status {
            Some(status) if !(400..=599).contains(&status) => Err(format!(
                "fault status {status} is not an HTTP error status (400-599)"
            )),
            None if self.latency_ms.is_none() => {
                Err("a fault needs a `status`, a `latency_ms`, or both".to_owned())
            }
            _ => Ok(()),
        }
    }
}

/// What the fault queue decided for one request.
#[derive(Debug, Default)]
pub(crate) struct FaultDecision {
    /// How long to wait before answering.
    pub(crate) delay: Duration,
    /// The injected failure to answer with, if any.
    pub(crate) failure: Option<InjectedFailure>,
}

/// An injected failing answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InjectedFailure {
    status: StatusCode,
    retry_after: Option<u64>,
}

impl InjectedFailure {
    /// The status this failure answers with.
    #[cfg(test)]
    pub(crate) fn status_code(self) -> u16 {
        self.status.as_u16()
    }
}

impl IntoResponse for InjectedFailure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": "injected fault",
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The faults queued against one simulated system.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    active: VecDeque<ActiveFault>,
}

#[derive(Debug)]
struct ActiveFault {
    fault: Fault,
    remaining: Option<u32>,
    until: Option<Instant>,
}

impl ActiveFault {
    fn is_live(&self, now: Instant) -> bool {
        self.remaining != Some(0) && self.until.is_none_or(|until| now < until)
    }

    fn use_once(&mut self) {
        if let Some(remaining) = self.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
        }
    }
}

impl FaultQueue {
    /// Queues a fault; its `for_secs` clock starts now. An invalid fault is ignored with a
    /// warning, because the Rust handle methods that reach here have no error to return.
    pub(crate) fn push(&mut self, fault: Fault, now: Instant) {
        if let Err(reason) = fault.validate() {
            tracing::warn!(reason = %reason, "Ignoring an invalid sandbox fault.");
            return;
        }
        // A failing fault without a bound would fail forever by accident; one request is the
        // least surprising reading of `{"status": 503}`.
        let remaining = match (fault.times, fault.for_secs, fault.status) {
            (Some(times), _, _) => Some(times),
            (None, None, Some(_)) => Some(1),
            _ => None,
        };
        let until = fault.for_secs.map(|secs| now + Duration::from_secs(secs));
        self.active.push_back(ActiveFault {
            fault,
            remaining,
            until,
        });
    }

    /// Drops every queued fault.
    pub(crate) fn clear(&mut self) {
        self.active.clear();
    }

    /// The number of faults still active.
    pub(crate) fn len(&self, now: Instant) -> usize {
        self.active.iter().filter(|f| f.is_live(now)).count()
    }

    /// Decides the fate of one request and uses up the faults it consumed.
    pub(crate) fn decide(&mut self, now: Instant) -> FaultDecision {
        self.active.retain(|f| f.is_live(now));
        let mut decision = FaultDecision::default();
        for active in self.active.iter_mut() {
            match active.fault.status {
                None => {
                    decision.delay += Duration::from_millis(active.fault.latency_ms.unwrap_or(0));
                    active.use_once();
                }
                Some(status) if decision.failure.is_none() => {
                    decision.delay += Duration::from_millis(active.fault.latency_ms.unwrap_or(0));
                    // `push` validated the status, so the fallback is unreachable in practice.
                    let status =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    decision.failure = Some(InjectedFailure {
                        status,
                        retry_after: active.fault.retry_after,
                    });
                    active.use_once();
                }
                Some(_) => {}
            }
        }
        self.active.retain(|f| f.is_live(now));
        decision
    }
}

/// The simulated systems that take injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Faulty {
    /// The marketplace's offer listings.
    Marketplace,
    /// The marketplace's order routes.
    Orders,
    /// The storefront's writes.
    Storefront,
    /// The OMS's order receipts.
    Oms,
    /// The alert receiver.
    Alerts,
    /// The marketplace's settlement routes (transactions, invoices).
    Settlement,
    /// The marketplace's stock feed.
    Stock,
}

/// `POST` (queue a fault) and `DELETE` (clear them) for one system's fault queue.
pub(crate) fn endpoints(
    target: Faulty,
) -> axum::routing::MethodRouter<std::sync::Arc<super::SandboxState>> {
    use axum::extract::State;
    use axum::http::StatusCode;
    axum::routing::post(
        move |State(state): State<std::sync::Arc<super::SandboxState>>, body: axum::body::Bytes| async move {
            let fault = super::parse_fault(&body)?;
            super::with_faults(&state, target, |queue| queue.push(fault, Instant::now()));
            Ok::<_, super::ApiError>(StatusCode::NO_CONTENT)
        },
    )
    .delete(move |State(state): State<std::sync::Arc<super::SandboxState>>| async move {
        super::with_faults(&state, target, FaultQueue::clear);
        StatusCode::NO_CONTENT
    })
}

/// Applies a system's next fault: sleeps its latency (outside the lock) and returns the
/// failure response, if any.
pub(crate) async fn apply(
    state: &super::SandboxState,
    target: Faulty,
) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let decision = super::with_faults(state, target, |queue| queue.decide(Instant::now()));
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    decision.failure.map(IntoResponse::into_response)
}
