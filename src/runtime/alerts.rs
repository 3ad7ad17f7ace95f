//! Alert delivery: a background task drains the outbox, POSTing each alert as JSON to its
//! owner's webhook, retrying with backoff. It runs beside the flows and never blocks them.
//! A webhook URL's path is often its secret (Slack and the like), so logs and the outbox's
//! error column name the webhook by its origin only ([`crate::redact::secret_url`]).

use std::time::Duration;

use crate::store::{PendingAlert, Store};

/// Longest wait between two delivery attempts of one alert.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Delivers due alerts once; returns how many were delivered.
pub async fn deliver_due(store: &Store, client: &reqwest::Client) -> usize {
    let mut delivered = 0;
    // A few at a time: each post may take its whole timeout, and a claim must not expire
    // (and let another process post the same alert) while its alerts are still being posted.
    for _ in 0..MAX_CLAIMS_PER_ROUND {
        let now = jiff::Timestamp::now().as_millisecond();
        let due = match store.claim_due_alerts(now, CLAIM_CHUNK).await {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(error = %err, "Could not read the alert outbox.");
                return delivered;
            }
        };
        let claimed = due.len();
        delivered += post_claimed(store, client, due).await;
        if claimed < CLAIM_CHUNK {
            break;
        }
    }
    delivered
}

/// Alerts claimed at once: their posts (each within its timeout) end well inside the claim.
const CLAIM_CHUNK: usize = 8;

/// Claims per round of the outbox loop (so one round stays bounded).
const MAX_CLAIMS_PER_ROUND: usize = 25;

async fn post_claimed(
    store: &Store,
    client: &reqwest::Client,
    due: Vec<crate::store::PendingAlert>,
) -> usize {
    let mut delivered = 0;
    for alert in due {
        match post(client, &alert).await {
            Ok(()) => {
                delivered += 1;
                if let Err(err) = store.alert_delivered(alert.id).await {
                    tracing::error!(error = %err, "Could not mark an alert delivered.");
                }
            }
            Err(error) => {
                let wait = Duration::from_secs(1 << alert.attempts.min(9)).min(MAX_BACKOFF);
                let next = jiff::Timestamp::now().as_millisecond() + wait.as_millis() as i64;
                tracing::warn!(
                    owner = %alert.alert.owner, webhook = %crate::redact::secret_url(&alert.alert.url),
                    attempts = alert.attempts + 1, error = %error,
                    "Alert delivery failed; will retry."
                );
                if let Err(err) = store.alert_failed(alert.id, next, &error).await {
                    tracing::error!(error = %err, "Could not record an alert failure.");
                }
            }
        }
    }
    delivered
}

/// Runs [`deliver_due`] every `interval` until `shutdown` resolves.
pub async fn run(store: Store, interval: Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
    let client = alert_client();
    let mut shutdown = shutdown;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => { deliver_due(&store, &client).await; }
            _ = shutdown.changed() => break,
        }
    }
}

/// Delivers what is due until the outbox is empty or `grace` has passed (end of a one-off
/// run). Alerts still undelivered stay in the outbox for the next run or the daemon.
pub async fn drain(store: &Store, grace: Duration) -> u64 {
    let client = alert_client();
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        deliver_due(store, &client).await;
        let left = store.undelivered_alerts().await.unwrap_or(0);
        if left == 0 || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The HTTP client used for alerts: short timeout, so a hanging webhook cannot stall delivery.
pub fn alert_client() -> reqwest::Client {
    crate::connectors::http::client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// Posts one alert; the error says what failed without quoting the webhook's path.
async fn post(client: &reqwest::Client, alert: &PendingAlert) -> Result<(), String> {
    let webhook = || crate::redact::secret_url(&alert.alert.url);
    let response = client
        .post(&alert.alert.url)
        .json(&alert.alert.payload)
        .send()
        .await
        .map_err(|err| {
            // The error's own URL is the secret one: describe it without.
            let cause = crate::connectors::http::describe_error(err.without_url());
            format!("POST {}: {cause}", webhook())
        })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "POST {}: HTTP {}",
            webhook(),
            response.status().as_u16()
        ))
    }
}
