//! Time as the runtime sees it. Real runs use the system clock; flow tests use a virtual
//! clock on a paused tokio runtime, so a 30-minute retry window passes in milliseconds
//! while every delay is still taken in order.

use std::time::Duration;

/// The runtime's clock.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// Wall-clock time.
    System,
    /// Virtual time: `base_ms` plus the tokio time elapsed since `start` (tokio time is
    /// paused in flow tests and jumps over sleeps).
    Virtual {
        /// Unix milliseconds at `start`.
        base_ms: i64,
        /// The tokio instant the clock started at.
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A virtual clock starting now (call inside a paused tokio runtime).
    pub fn virtual_now() -> Self {
        Clock::Virtual {
            base_ms: jiff::Timestamp::now().as_millisecond(),
            start: tokio::time::Instant::now(),
        }
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => jiff::Timestamp::now().as_millisecond(),
            Clock::Virtual { base_ms, start } => base_ms + start.elapsed().as_millis() as i64,
        }
    }

    /// Waits `duration` (virtual time passes instantly on a paused runtime).
    pub async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}
