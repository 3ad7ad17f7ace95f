//! The webhook intake as a source: the daemon's HTTP intake stores each signed event in the
//! state store's inbox before answering 2xx (`crate::daemon::webhook`); this connector reads a
//! flow's pending events as batches inside the flow's run, so under its lease (two daemons
//! never take the same event), and marks them processed once their batch is committed.
//!
//! It is not a system's connector (no system names it, so it is not in the registry): every
//! flow's resolved model carries it as its intake ([`crate::spec::model::Flow::intake`]),
//! reading the `records` key of the flow's `from:` to pick a record out of an event that
//! wraps it. The other keys of `from:` belong to the system's own connector, which checked
//! them.

mod source;

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

pub use self::source::{UnreadableEvent, event_records};
use super::{Connector, ConnectorError, DynConnector, Roles, Setup, Sink, Source};

/// The webhook intake.
#[derive(Debug, Clone, Copy)]
pub struct Webhook;

/// The intake, as the runtime opens connectors.
pub fn intake() -> &'static dyn DynConnector {
    &Webhook
}

/// The intake has no system settings: events arrive at the daemon.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct WebhookSystemConfig {}

/// What the intake reads of a flow's `from:`; other keys are the system connector's.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct WebhookFromConfig {
    /// JSON Pointer to the record (or array of records) inside each event (for example
    /// `/order`); an event without it is the record itself.
    #[serde(default)]
    pub records: Option<String>,
}

#[async_trait]
impl Connector for Webhook {
    const NAME: &'static str = "webhook";
    const ROLES: Roles = Roles {
        source: true,
        sink: false,
    };
    type System = WebhookSystemConfig;
    type From = WebhookFromConfig;
    type To = WebhookFromConfig;

    async fn source(
        &self,
        setup: &Setup<'_>,
        _system: &WebhookSystemConfig,
        from: &WebhookFromConfig,
        _position: &Value,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        Ok(Box::new(source::WebhookSource::new(
            setup.store.clone(),
            setup.flow,
            from.records.clone().unwrap_or_default(),
        )))
    }

    async fn sink(
        &self,
        _setup: &Setup<'_>,
        _system: &WebhookSystemConfig,
        _to: &WebhookFromConfig,
        _sink_state: &Value,
    ) -> Result<Arc<dyn Sink>, ConnectorError> {
        Err(ConnectorError::spec(
            "the webhook intake cannot be written to",
        ))
    }
}

#[cfg(test)]
mod tests;
