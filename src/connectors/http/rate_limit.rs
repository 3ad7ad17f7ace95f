//! Client-side rate limits: a token bucket per system (`rate_limit:` and `burst:` in the
//! system's `http:` settings) and per operation (the same keys on a flow's `request:`).
//!
//! Buckets live in one process-wide registry, keyed by the system's base URL and, for an
//! operation, its method and path template: every flow of a `serve` process calling the same
//! system or operation draws from the same bucket, whichever flow and whichever role (source,
//! sink, acknowledgement) makes the call. A call takes a token from its operation's bucket,
//! then from its system's; without one it waits until the bucket refills. Waits use tokio's
//! clock (virtual in flow tests), are bounded by [`MAX_WAIT`] (past it the call fails as a
//! retryable error carrying the wait, which the runtime's retry policy then honours), and are
//! counted per bucket ([`waited`]) for `/metrics`.
//!
//! Rates read `COUNT/DURATION`: `10/1s`, `1/60s`, `100/1m`, `5/s`. The burst (default: the
//! count) is how many calls may go at once after a quiet spell.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// The longest one call waits for a token; a longer wait fails the call (retryably).
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// A parsed rate: `count` calls per `per`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Calls per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
    /// Calls allowed at once after a quiet spell.
    pub burst: u32,
}

/// A `rate_limit:` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a rate: {why}")]
pub struct RateError {
    text: String,
    why: String,
}

/// The hint shown with a malformed rate.
pub const RATE_HINT: &str = "rates look like 10/1s, 1/60s, 100/1m or 5/s (calls per duration); \
                             set `burst:` beside it for calls allowed at once";

impl Rate {
    /// Parses `COUNT/DURATION` with an optional burst (default: the count).
    pub fn parse(text: &str, burst: Option<u32>) -> Result<Self, RateError> {
        let error = |why: &str| RateError {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| error("it needs a `/` between the count and the duration"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| error("the count before `/` is not a whole number"))?;
        if count == 0 {
            return Err(error("the count must be at least 1"));
        }
        let per = per.trim();
        // `5/s` reads as `5/1s`.
        let per = if per.starts_with(|c: char| c.is_ascii_alphabetic()) {
            format!("1{per}")
        } else {
            per.to_owned()
        };
        let per = crate::spec::parse_duration(&per).map_err(|e| error(&e.to_string()))?;
        if per.is_zero() {
            return Err(error("the duration must be longer than zero"));
        }
        let burst = burst.unwrap_or(count);
        if burst == 0 {
            return Err(error("`burst` must be at least 1"));
        }
        Ok(Self { count, per, burst })
    }

    /// Seconds between two tokens.
    fn interval(&self) -> f64 {
        self.per.as_secs_f64() / f64::from(self.count)
    }
}

/// A shared token bucket.
#[derive(Debug)]
pub struct Bucket {
    /// What it limits, for messages and metrics (`base URL` or `base URL METHOD path`).
    name: String,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    rate: Rate,
    /// Tokens available at `at`; negative when waiters have reserved tokens ahead.
    tokens: f64,
    at: Instant,
    waited: Duration,
    waits: u64,
}

/// A call that would wait longer than [`MAX_WAIT`] for its token.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "client-side rate limit `{bucket}` would make this call wait {}s (more than {}s); the \
     limit is lower than the calls asked of it",
    wait.as_secs(), MAX_WAIT.as_secs()
)]
pub struct RateLimited {
    /// The bucket.
    pub bucket: String,
    /// How long the call would have waited.
    pub wait: Duration,
}

impl Bucket {
    fn new(name: String, rate: Rate) -> Self {
        Self {
            name,
            state: Mutex::new(BucketState {
                rate,
                tokens: f64::from(rate.burst),
                at: Instant::now(),
                waited: Duration::ZERO,
                waits: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BucketState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a token, waiting for it if the bucket is empty (callers are served in the order
    /// they asked: each reserves its token before it waits).
    pub async fn acquire(&self) -> Result<(), RateLimited> {
        let wait = {
            let mut state = self.lock();
            let now = Instant::now();
            let refill = now.duration_since(state.at).as_secs_f64() / state.rate.interval();
            state.tokens = (state.tokens + refill).min(f64::from(state.rate.burst));
            state.at = now;
            if state.tokens >= 1.0 {
                state.tokens -= 1.0;
                return Ok(());
            }
            let wait = Duration::from_secs_f64((1.0 - state.tokens) * state.rate.interval());
            if wait > MAX_WAIT {
                return Err(RateLimited {
                    bucket: self.name.clone(),
                    wait,
                });
            }
            state.tokens -= 1.0;
            state.waited += wait;
            state.waits += 1;
            wait
        };
        tracing::debug!(
            limit = %self.name, wait_ms = wait.as_millis() as u64,
            "Waiting for the client-side rate limit."
        );
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// The buckets of this process.
static REGISTRY: LazyLock<Mutex<HashMap<String, Arc<Bucket>>>> = LazyLock::new(Default::default);

/// The bucket named `name` with `rate`, shared with every earlier caller of the same name and
/// rate (a changed rate, as after a reload, starts a new bucket).
pub fn bucket(name: String, rate: Rate) -> Arc<Bucket> {
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(existing) = registry.get(&name)
        && existing.lock().rate == rate
    {
        return Arc::clone(existing);
    }
    let bucket = Arc::new(Bucket::new(name.clone(), rate));
    registry.insert(name, Arc::clone(&bucket));
    bucket
}

/// Time waited and waits per bucket, for `/metrics`.
pub fn waited() -> Vec<(String, Duration, u64)> {
    let registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<_> = registry
        .values()
        .map(|b| {
            let state = b.lock();
            (b.name.clone(), state.waited, state.waits)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The key of an operation's bucket.
pub fn operation_name(base_url: &str, method: &str, path: &str) -> String {
    format!("{base_url} {method} {path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_or_say_why_not() {
        let rate = Rate::parse("1/60s", Some(20)).unwrap();
        assert_eq!(
            (rate.count, rate.per, rate.burst),
            (1, Duration::from_secs(60), 20)
        );
        assert_eq!(
            Rate::parse("5/s", None).unwrap().per,
            Duration::from_secs(1)
        );
        assert_eq!(Rate::parse("100/1m", None).unwrap().burst, 100);
        for bad in ["10", "x/1s", "0/1s", "10/soon", "10/0s"] {
            assert!(Rate::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Rate::parse("1/1s", Some(0)).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_lets_a_burst_through_then_paces_calls() {
        let rate = Rate::parse("2/1s", Some(3)).unwrap();
        let bucket = bucket("test-paces".into(), rate);
        let started = Instant::now();
        for _ in 0..3 {
            bucket.acquire().await.unwrap();
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "the burst goes at once");
        for _ in 0..4 {
            bucket.acquire().await.unwrap();
        }
        // Four more at two a second.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(1990), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(2100), "{elapsed:?}");
        let (_, waited, waits) = waited()
            .into_iter()
            .find(|(name, ..)| name == "test-paces")
            .unwrap();
        assert_eq!(waits, 4);
        assert!(waited >= Duration::from_millis(1990), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_bound_fails_instead() {
        let bucket = bucket("test-bound".into(), Rate::parse("1/1h", None).unwrap());
        bucket.acquire().await.unwrap();
        let err = bucket.acquire().await.unwrap_err();
        assert!(err.wait > MAX_WAIT);
        assert!(err.to_string().contains("test-bound"), "{err}");
    }
}
