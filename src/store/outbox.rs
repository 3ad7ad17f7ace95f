//! The alert outbox: alerts are written in the same transaction as the dead letter they
//! announce, then delivered by a background task with retries. A slow or broken alert
//! webhook therefore never blocks a flow, and an alert is never lost to a crash.

use serde_json::Value;

/// An alert to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxAlert {
    /// The owner alerted.
    pub owner: String,
    /// The owner's alert webhook.
    pub url: String,
    /// The JSON body.
    pub payload: Value,
}

/// An alert waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingAlert {
    /// Outbox ID.
    pub id: i64,
    /// The alert.
    pub alert: OutboxAlert,
    /// Attempts made so far.
    pub attempts: u32,
}

/// How long a claimed alert is left to its sender before it is due again for anyone.
pub const ALERT_CLAIM: std::time::Duration = std::time::Duration::from_secs(60);

impl OutboxAlert {
    /// The payload as stored, naming the dead letter it announces (both stores write this).
    pub(crate) fn payload_text(&self, dead_letter_id: Option<i64>) -> String {
        let Some(id) = dead_letter_id else {
            return self.payload.to_string();
        };
        let mut payload = self.payload.clone();
        if let Some(object) = payload.as_object_mut() {
            object.insert("dead_letter_id".into(), Value::from(id));
        }
        payload.to_string()
    }
}
