//! The recorder: an in-memory sink for flow tests. It behaves like an idempotent HTTP API
//! (a replayed idempotency key is acknowledged and not recorded again) and fails on request
//! with the statuses a test injects, so `switchyard test` exercises the runtime's real
//! retry, dead-letter and commit paths without a network.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{ConnectorError, Outgoing, Sink, SinkStyle};

/// A fault the recorder injects.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    /// HTTP status answered.
    pub status: u16,
    /// Failures left (ignored when `lasts_ms` is set).
    pub times: u32,
    /// `Retry-After` seconds sent.
    pub retry_after: Option<u64>,
    /// Fail every write for this long after the first failure (clock milliseconds).
    pub lasts_ms: Option<i64>,
}

/// A write the recorder accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The idempotency key.
    pub idempotency_key: String,
    /// The body.
    pub body: Value,
    /// What the request's templates (an HTTP path) render over: the mapped record; `null`
    /// when the write was handed to [`RecorderSink::send`] directly.
    pub context: Value,
}

/// An in-memory sink; clones share state.
#[derive(Debug, Clone, Default)]
pub struct RecorderSink {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    faults: VecDeque<(PlannedFault, Option<i64>)>,
    received: Vec<Recorded>,
    keys: HashSet<String>,
    attempts: u64,
    replays: u64,
}

impl RecorderSink {
    /// A recorder that fails with `faults`, in order, before it accepts writes.
    pub fn new(faults: Vec<PlannedFault>) -> Self {
        let state = State {
            faults: faults.into_iter().map(|f| (f, None)).collect(),
            ..State::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Handles one write at clock time `now_ms`.
    pub fn send(&self, outgoing: &Outgoing, now_ms: i64) -> Result<(), ConnectorError> {
        self.send_in(outgoing, &Value::Null, now_ms)
    }

    /// [`RecorderSink::send`], remembering what the request's templates render over.
    fn send_in(
        &self,
        outgoing: &Outgoing,
        context: &Value,
        now_ms: i64,
    ) -> Result<(), ConnectorError> {
        let mut state = self.lock();
        state.attempts += 1;
        while let Some((fault, started)) = state.faults.front_mut() {
            let started = *started.get_or_insert(now_ms);
            let active = match fault.lasts_ms {
                Some(lasts) => now_ms < started + lasts,
                None => fault.times > 0,
            };
            if !active {
                state.faults.pop_front();
                continue;
            }
            if fault.lasts_ms.is_none() {
                fault.times -= 1;
            }
            return Err(ConnectorError::from_status(
                fault.status,
                fault.retry_after.map(std::time::Duration::from_secs),
                "injected fault",
            ));
        }
        if state.keys.insert(outgoing.idempotency_key.clone()) {
            state.received.push(Recorded {
                idempotency_key: outgoing.idempotency_key.clone(),
                body: outgoing.body.clone(),
                context: context.clone(),
            });
        } else {
            state.replays += 1;
        }
        Ok(())
    }

    /// Accepted writes, in order, each once.
    pub fn received(&self) -> Vec<Recorded> {
        self.lock().received.clone()
    }

    /// Writes attempted, including failed ones and replays.
    pub fn attempts(&self) -> u64 {
        self.lock().attempts
    }

    /// Writes acknowledged as replays of an earlier key.
    pub fn replays(&self) -> u64 {
        self.lock().replays
    }

    /// This recorder as a per-record [`Sink`], reading fault times from `now_ms`.
    pub fn sink(&self, now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> Arc<dyn Sink> {
        Arc::new(RecordingSink {
            recorder: self.clone(),
            now_ms: Box::new(now_ms),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A [`RecorderSink`] as a per-record sink: records what it is sent, at the flow's clock.
struct RecordingSink {
    recorder: RecorderSink,
    now_ms: Box<dyn Fn() -> i64 + Send + Sync>,
}

#[async_trait::async_trait]
impl Sink for RecordingSink {
    fn style(&self) -> SinkStyle {
        SinkStyle::PerRecord
    }

    async fn send(&self, record: &Outgoing, body: &Value) -> Result<Value, ConnectorError> {
        let write = Outgoing {
            idempotency_key: record.idempotency_key.clone(),
            body: body.clone(),
        };
        self.recorder
            .send_in(&write, &record.body, (self.now_ms)())
            .map(|()| Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn write(key: &str) -> Outgoing {
        Outgoing {
            idempotency_key: key.into(),
            body: json!({"k": key}),
        }
    }

    #[test]
    fn fails_as_planned_then_records_each_key_once() {
        let sink = RecorderSink::new(vec![PlannedFault {
            status: 503,
            times: 2,
            retry_after: Some(3),
            lasts_ms: None,
        }]);
        let first = sink.send(&write("a"), 0).unwrap_err();
        assert!(first.retryable);
        assert_eq!(first.retry_after, Some(std::time::Duration::from_secs(3)));
        assert!(sink.send(&write("a"), 1).is_err());
        assert!(sink.send(&write("a"), 2).is_ok());
        assert!(sink.send(&write("a"), 3).is_ok());
        assert_eq!(sink.received().len(), 1);
        assert_eq!(sink.replays(), 1);
        assert_eq!(sink.attempts(), 4);
    }

    #[test]
    fn timed_faults_last_from_their_first_failure() {
        let sink = RecorderSink::new(vec![PlannedFault {
            status: 500,
            times: 0,
            retry_after: None,
            lasts_ms: Some(1_000),
        }]);
        assert!(sink.send(&write("a"), 10).is_err());
        assert!(sink.send(&write("a"), 1_009).is_err());
        assert!(sink.send(&write("a"), 1_010).is_ok());
    }
}
