//! Delivery with retries: exponential backoff with jitter, `Retry-After` honoured, and a
//! retry window measured from the record's first failure. The first failure's time lives in
//! the state store, so the window keeps running across restarts instead of starting over.
//!
//! Whether a record has failed before is loaded for the whole batch in one query before its
//! deliveries ([`Store::retry_states`]) and passed in: the common case, a first attempt that
//! succeeds, costs no store access. Failures are persisted as they happen (they are rare).

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::clock::Clock;
use super::events::{FlowEvents, RecordRetried};
use crate::connectors::ConnectorError;
use crate::spec::model::RetryPolicy;
use crate::store::{Store, StoreError};

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Acknowledged by the sink.
    Delivered {
        /// Attempts made, including the successful one.
        attempts: u32,
    },
    /// Refused for good (a 4xx): retrying cannot help.
    Rejected {
        /// Attempts made.
        attempts: u32,
        /// The sink's answer.
        error: String,
    },
    /// Still failing when the retry window closed.
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        error: String,
    },
    /// Given up early, the window still open, because the sink was declared down (another
    /// record of the batch outlived its window): the record goes back to its source and its
    /// retry clock keeps running in the store.
    Abandoned {
        /// Attempts made.
        attempts: u32,
    },
}

/// Declared when the sink stayed unavailable past a record's retry window: the other
/// deliveries of the batch stop waiting on it, so the dead letter and its alert are committed
/// within moments of the window's end instead of after every queued record has had a window
/// of its own.
#[derive(Debug, Clone)]
pub struct Outage(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Outage {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Outage {
    /// Declares the sink down; `true` the first time (the outage is reported once).
    pub fn declare(&self) -> bool {
        !self.0.send_replace(true)
    }

    /// Whether the sink was declared down.
    pub fn declared(&self) -> bool {
        *self.0.borrow()
    }

    async fn wait(&self) {
        let mut declared = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close under us.
        let _ = declared.wait_for(|down| *down).await;
    }
}

/// Where a delivery keeps its retry clock: the flow and record, and whether the record has
/// failed before (its clock is running in the store); and where its retries are reported.
#[derive(Debug, Clone, Copy)]
pub struct RetryClock<'a> {
    /// The flow.
    pub flow: &'a str,
    /// The record's idempotency key.
    pub key: &'a str,
    /// Whether the store holds a retry clock for it (loaded for the batch beforehand).
    pub failed_before: bool,
    /// Where each retry is reported, if anywhere.
    pub events: Option<&'a FlowEvents>,
}

/// Sends one record until it is acknowledged, refused, or its retry window closes — or, with
/// an `outage` given, until that is declared while the record waits for its next attempt.
pub async fn deliver<F, Fut>(
    policy: &RetryPolicy,
    clock: &Clock,
    store: &Store,
    retry: RetryClock<'_>,
    outage: Option<&Outage>,
    mut send: F,
) -> Result<Delivery, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ConnectorError>>,
{
    let RetryClock {
        flow,
        key,
        mut failed_before,
        events,
    } = retry;
    let mut attempts = 0;
    loop {
        if outage.is_some_and(Outage::declared) {
            return Ok(Delivery::Abandoned { attempts });
        }
        attempts += 1;
        let failure = match send().await {
            Ok(()) => {
                if failed_before {
                    store.clear_retry(flow, key).await?;
                }
                return Ok(Delivery::Delivered { attempts });
            }
            Err(failure) => failure,
        };
        // Only retryability decides: a failure no retry can cure is the record's to carry.
        if !failure.retryable {
            return Ok(Delivery::Rejected {
                attempts,
                error: failure.message,
            });
        }
        let now = clock.now_ms();
        let state = store
            .record_failure(flow, key, now, &failure.message)
            .await?;
        failed_before = true;
        let elapsed = Duration::from_millis((now - state.first_failure_ms).max(0) as u64);
        let Some(delay) = next_attempt(policy, state.attempts, elapsed, failure.retry_after) else {
            return Ok(Delivery::Unavailable {
                attempts,
                error: format!(
                    "{} (still failing {} after the first failure, {} attempts)",
                    failure.message,
                    humanize(elapsed),
                    state.attempts
                ),
            });
        };
        if let Some(events) = events {
            events.emit(RecordRetried {
                key,
                attempt: state.attempts,
                delay,
                error: &failure.message,
            });
        }
        match outage {
            Some(outage) => {
                tokio::select! {
                    () = clock.sleep(delay) => {}
                    () = outage.wait() => return Ok(Delivery::Abandoned { attempts }),
                }
            }
            None => clock.sleep(delay).await,
        }
    }
}

/// The wait before the next attempt after `failures` failures (1-based), `elapsed` after the
/// first: the backoff, at least what the failure asked (`Retry-After`), and at most what is
/// left of the window, so the last attempt happens as the window closes, not after it.
/// `None` once the window has closed.
pub(crate) fn next_attempt(
    policy: &RetryPolicy,
    failures: u32,
    elapsed: Duration,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let remaining = policy
        .window
        .checked_sub(elapsed)
        .filter(|r| !r.is_zero())?;
    let delay = backoff(policy, failures).max(retry_after.unwrap_or_default());
    Some(delay.min(remaining))
}

/// The delay before retry number `failures` (1-based), with jitter in [delay/2, delay].
pub fn backoff(policy: &RetryPolicy, failures: u32) -> Duration {
    let base = if policy.exponential {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
        policy.initial.saturating_mul(factor)
    } else {
        policy.initial
    };
    let capped = base.min(policy.max_delay);
    let half = capped / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        _ => format!("{}h{}m", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            exponential: true,
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            window: Duration::from_secs(600),
        }
    }

    fn fresh(key: &str) -> RetryClock<'_> {
        RetryClock {
            flow: "f",
            key,
            failed_before: false,
            events: None,
        }
    }

    fn transient(retry_after: Option<u64>) -> ConnectorError {
        ConnectorError::from_status(503, retry_after.map(Duration::from_secs), "")
    }

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let p = policy();
        for (failures, max) in [(1, 1_000), (2, 2_000), (3, 4_000), (10, 60_000)] {
            let d = backoff(&p, failures).as_millis() as u64;
            assert!(d >= max / 2 && d <= max, "failure {failures}: {d}ms");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delivers_after_transient_failures() {
        let store = Store::in_memory().unwrap();
        let clock = Clock::virtual_now();
        let calls = AtomicU32::new(0);
        let result = deliver(&policy(), &clock, &store, fresh("k"), None, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(transient(None))
            } else {
                Ok(())
            }
        })
        .await
        .unwrap();
        assert_eq!(result, Delivery::Delivered { attempts: 4 });
        assert_eq!(
            store.retry_state("f", "k").await.unwrap(),
            None,
            "clock cleared on success"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_the_window_closes() {
        let store = Store::in_memory().unwrap();
        let clock = Clock::virtual_now();
        let start = clock.now_ms();
        let result = deliver(&policy(), &clock, &store, fresh("k"), None, || async {
            Err(transient(None))
        })
        .await
        .unwrap();
        assert!(matches!(result, Delivery::Unavailable { .. }), "{result:?}");
        let waited = clock.now_ms() - start;
        assert!((600_000..610_000).contains(&waited), "waited {waited}ms");
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_and_refuses_permanent_errors() {
        let store = Store::in_memory().unwrap();
        let clock = Clock::virtual_now();
        let start = clock.now_ms();
        let calls = AtomicU32::new(0);
        deliver(&policy(), &clock, &store, fresh("a"), None, || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(transient(Some(30)))
            } else {
                Ok(())
            }
        })
        .await
        .unwrap();
        assert!(clock.now_ms() - start >= 30_000);
        let result = deliver(&policy(), &clock, &store, fresh("b"), None, || async {
            Err(ConnectorError::from_status(422, None, "bad sku"))
        })
        .await
        .unwrap();
        assert!(
            matches!(result, Delivery::Rejected { attempts: 1, .. }),
            "{result:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_survives_a_restart() {
        let store = Store::in_memory().unwrap();
        let clock = Clock::virtual_now();
        // A previous process failed this record 590 s ago.
        store
            .record_failure("f", "k", clock.now_ms() - 590_000, "503")
            .await
            .unwrap();
        let start = clock.now_ms();
        let running = store.retry_states("f", &["k".into()]).await.unwrap();
        let retry = RetryClock {
            failed_before: running.contains_key("k"),
            ..fresh("k")
        };
        assert!(
            retry.failed_before,
            "the batch load finds the running clock"
        );
        let result = deliver(&policy(), &clock, &store, retry, None, || async {
            Err(transient(None))
        })
        .await
        .unwrap();
        assert!(matches!(result, Delivery::Unavailable { .. }));
        assert!(
            clock.now_ms() - start <= 10_000,
            "window restarted instead of continuing"
        );
    }
}
