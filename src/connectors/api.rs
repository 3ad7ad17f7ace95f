//! The connector interface: what the runtime asks of a connector, and nothing more.
//!
//! A connector is a typed [`Connector`]: its settings are plain structs deriving
//! `Deserialize + JsonSchema` in the connector's own folder, one for the system (what sits
//! under `systems.NAME.<connector>:`), one for a flow reading from it (`from:`) and one for a
//! flow writing to it (`to:`). The runtime, validation and the schema generator see connectors
//! only through the object-safe twin [`DynConnector`], which every `Connector` gets from a
//! blanket impl, and find them in the one literal list, [`super::registry`].
//!
//! Sources hand out [`Batch`]es, each with the position just after it; once that position is
//! durably committed in the state store the source is told ([`Source::committed`]), which is
//! when a queue source acknowledges its messages. Sinks come in two styles ([`SinkStyle`]):
//! per-record sinks answer each record (HTTP), batch sinks take a batch's records and write
//! them as part of its commit (files, PostgreSQL). Either way, [`Sink::prepare_commit`] is
//! the sink's part of the commit: what to make durable before the checkpoint is written, and
//! the state the checkpoint keeps for the sink.
//!
//! Every failure is a [`ConnectorError`] saying who is at fault and whether retrying can
//! help; the runtime's retry and dead-letter decisions read only that.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Batch;
use crate::spec::diagnostic::Code;
use crate::store::Store;

/// Who caused a failure: the runtime routes and reports by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The record itself: its data breaks what the system accepts (a 4xx on its body, a
    /// constraint it violates). Retrying the same record cannot help; it is dead-lettered.
    Record,
    /// The external system: down, overloaded, timing out, answering 5xx or 429.
    External,
    /// The workspace: a setting the system refuses (wrong credentials, a table or path that
    /// does not exist). The spec's owner fixes it; retrying without a change rarely helps.
    Spec,
    /// Switchyard itself (a bug, a local I/O failure).
    Internal,
}

/// A connector failure, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    /// Who is at fault.
    pub fault: Fault,
    /// Whether trying the same thing again later can succeed.
    pub retryable: bool,
    /// How long the system asked to wait (`Retry-After`), if it did.
    pub retry_after: Option<Duration>,
    /// The system's status code, when it has one (HTTP status).
    pub status: Option<u16>,
    /// What happened, for people: names the system, the record or the setting.
    pub message: String,
}

impl ConnectorError {
    /// A failure of the external system that retrying can cure.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            fault: Fault::External,
            retryable: true,
            retry_after: None,
            status: None,
            message: message.into(),
        }
    }

    /// A record the system refuses for good.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self {
            fault: Fault::Record,
            retryable: false,
            retry_after: None,
            status: None,
            message: message.into(),
        }
    }

    /// A setting of the workspace that cannot work.
    pub fn spec(message: impl Into<String>) -> Self {
        Self {
            fault: Fault::Spec,
            retryable: false,
            retry_after: None,
            status: None,
            message: message.into(),
        }
    }

    /// The answer to a request that got an HTTP status other than 2xx: 408, 429 and 5xx are
    /// the system's trouble and retryable, any other 4xx refuses the record for good. The
    /// message quotes the start of the body.
    pub fn from_status(status: u16, retry_after: Option<Duration>, body: &str) -> Self {
        let retryable = status == 408 || status == 429 || status >= 500;
        let mut snippet: String = body.chars().take(200).collect();
        if snippet.len() < body.len() {
            snippet.push_str("...");
        }
        Self {
            fault: if retryable {
                Fault::External
            } else {
                Fault::Record
            },
            retryable,
            retry_after,
            status: Some(status),
            message: if snippet.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {snippet}")
            },
        }
    }

    /// A failure of Switchyard itself.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            fault: Fault::Internal,
            retryable: false,
            retry_after: None,
            status: None,
            message: message.into(),
        }
    }
}

/// Which roles a connector plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// It can be a flow's `from:`.
    pub source: bool,
    /// It can be a flow's `to:` (and an `acknowledge:` target when per-record).
    pub sink: bool,
}

/// What a connector gets to build a source or a sink.
#[derive(Clone)]
pub struct Setup<'a> {
    /// The flow being run.
    pub flow: &'a str,
    /// The workspace folder; relative paths in settings are relative to it.
    pub root: &'a Path,
    /// The state store (the webhook source reads its inbox there).
    pub store: &'a Store,
    /// Records per batch the runtime asks for when the source does not page by itself.
    pub batch_size: usize,
}

/// A typed connector. Implement this; the runtime uses it through [`DynConnector`].
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The key naming this connector under a system (`http`, `file`, `postgres`).
    const NAME: &'static str;
    /// The roles it plays.
    const ROLES: Roles;
    /// Settings of a system reached through this connector.
    type System: DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// Settings of a flow's `from:` on such a system (besides `system` and `author`).
    type From: DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// Settings of a flow's `to:` on such a system (besides `system`).
    type To: DeserializeOwned + JsonSchema + Send + Sync + 'static;

    /// Checks what types alone cannot (a duration or a size that does not parse): one
    /// problem per mistake, each at the setting and naming the fix.
    fn check_system(_system: &Self::System) -> Vec<Problem> {
        Vec::new()
    }

    /// The environment variables a system's settings name as secrets (pointer relative to
    /// the settings, variable name). Validation refuses an unset or empty one: a request sent
    /// without its credential is refused by the API and would read as an outage.
    fn secret_vars(_system: &Self::System) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Settings (pointers relative to the system's settings) that may name an unset
    /// variable because the system declares a fallback for them: validation reports no
    /// unset variable there and leaves the text unexpanded, so the connector can tell the
    /// fallback applies and name the variable when it says so.
    fn optional_settings(_system: &Self::System) -> Vec<String> {
        Vec::new()
    }

    /// What an operator must know before flows on this system run (a fallback taking over):
    /// `run` and `serve` say it once at start, on stderr and in the log. `name` is the
    /// system's, `root` the workspace folder.
    fn start_notice(_name: &str, _system: &Self::System, _root: &Path) -> Option<String> {
        None
    }

    /// As [`Connector::check_system`], for a flow's `from:`.
    fn check_from(_system: &Self::System, _from: &Self::From) -> Vec<Problem> {
        Vec::new()
    }

    /// As [`Connector::check_system`], for a flow's `to:`.
    fn check_to(_system: &Self::System, _to: &Self::To) -> Vec<Problem> {
        Vec::new()
    }

    /// The templates of a `from:` (pointer relative to it, text), rendered once per read
    /// with the source variables (`cursor`); validation checks them like every template.
    fn source_templates(_from: &Self::From) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The templates of a `to:` or `acknowledge:` (pointer relative to it, text), rendered
    /// over the mapped record; validation checks them like every template.
    fn sink_templates(_to: &Self::To) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Opens a source resuming after `position` (`null`: from the start).
    async fn source(
        &self,
        setup: &Setup<'_>,
        system: &Self::System,
        from: &Self::From,
        position: &Value,
    ) -> Result<Box<dyn Source>, ConnectorError>;

    /// Opens a sink; `sink_state` is what its last [`Sink::prepare_commit`] returned and the
    /// store committed (`null` the first time).
    async fn sink(
        &self,
        setup: &Setup<'_>,
        system: &Self::System,
        to: &Self::To,
        sink_state: &Value,
    ) -> Result<Arc<dyn Sink>, ConnectorError>;
}

/// Reads records in batches, resumable from a position.
#[async_trait]
pub trait Source: Send {
    /// The next batch, at most `max_records` when the source chooses its batch size itself
    /// (a page-based source returns its pages as they come); `None` once exhausted.
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Batch>, ConnectorError>;

    /// Told that every batch up to and including the one ending at `position` is settled
    /// and durably committed: a queue source acknowledges its messages here. Called in
    /// order, at most once per position; never for a batch left unsettled.
    async fn committed(&mut self, _position: &Value) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// What the source noticed since last asked and the runtime should report (a listing
    /// cut short so that it ends); drained after each `next_batch`.
    fn take_notices(&mut self) -> Vec<SourceNotice> {
        Vec::new()
    }

    /// `true` when the next batch may be read while the one before it is still being
    /// settled (the runtime then parses on one thread while it maps and writes on others):
    /// what is read next must not depend on the settling, nor on [`Source::committed`]. A
    /// file read by offset qualifies; a listing a write can change (orders awaiting
    /// acceptance), a queue acknowledged at commit or a drop folder archived at commit does
    /// not, and keeps the default.
    fn reads_ahead(&self) -> bool {
        false
    }
}

/// Something a source did that its operator should know of: a listing it ended early so that
/// it ends at all (a next-token repeated, a page identical to the one before, the page cap).
/// The run still ends cleanly; the next run continues from the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceNotice {
    /// A stable, bounded name (a metric label): `repeated-token`, `identical-page`,
    /// `page-cap` or `stale-pages`.
    pub reason: &'static str,
    /// What happened, for people.
    pub message: String,
}

/// How a sink takes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkStyle {
    /// One call per record, with an answer (HTTP): [`Sink::send`].
    PerRecord,
    /// A batch's records at once, written as part of the batch's commit:
    /// [`Sink::write_batch`].
    Batch,
}

/// One record for a batch sink: its idempotency key and its mapped body as JSON text.
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a> {
    /// The record's idempotency key.
    pub idempotency_key: &'a str,
    /// The mapped record, encoded as one line of JSON.
    pub json: &'a [u8],
}

/// What a batch write refused record by record (the rest was written).
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Index into the batch given to [`Sink::write_batch`], and why, for each record refused.
    pub rejected: Vec<(usize, ConnectorError)>,
}

/// The sink's part of a commit.
#[derive(Default)]
pub struct SinkCommit {
    /// Kept in the checkpoint and given back to [`Connector::sink`] on the next run.
    pub state: Value,
    /// Made durable before the checkpoint is written (an fsync); run off the async workers.
    pub durable: Option<Box<dyn FnOnce() -> std::io::Result<()> + Send>>,
}

/// Writes records.
#[async_trait]
pub trait Sink: Send + Sync {
    /// How it takes records.
    fn style(&self) -> SinkStyle;

    /// Per-record sinks: sends one request for `record`; `body` is what is sent (the mapped
    /// record, or an acknowledgement's body), `record.body` is what templates such as the
    /// request path render over. Returns the system's answer (`null` when it has none).
    async fn send(
        &self,
        _record: &super::Outgoing,
        _body: &Value,
    ) -> Result<Value, ConnectorError> {
        Err(ConnectorError::internal(
            "this sink takes records in batches",
        ))
    }

    /// Batch sinks: writes the records of one batch. `Err` means nothing is known to be
    /// written and the whole batch may be tried again; record-level refusals come back in
    /// the outcome. A write may be repeated after a crash: the sink must make a repeat
    /// harmless (by idempotency key, or by cutting a file back to its committed length).
    async fn write_batch(&self, _records: &[Encoded<'_>]) -> Result<BatchOutcome, ConnectorError> {
        Err(ConnectorError::internal(
            "this sink takes records one by one",
        ))
    }

    /// Prepares the sink's part of the commit of everything written so far.
    async fn prepare_commit(&self) -> Result<SinkCommit, ConnectorError> {
        Ok(SinkCommit::default())
    }
}

/// A mistake in connector settings, found at validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON Pointer of the setting, relative to the settings checked (`/timeout`; empty for
    /// the settings as a whole).
    pub pointer: String,
    /// Whether the problem is the key itself (an unknown field) rather than its value.
    pub at_key: bool,
    /// The diagnostic code.
    pub code: Code,
    /// What is wrong, naming the setting.
    pub message: String,
    /// How to fix it, when there is more to say.
    pub hint: Option<String>,
}

impl Problem {
    /// A problem with the value at `pointer`.
    pub fn new(pointer: impl Into<String>, code: Code, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            at_key: false,
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// The same problem with a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A schema of one of a connector's settings types.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// The object-safe twin of [`Connector`], with settings as JSON values; every `Connector`
/// has one through the blanket impl. Settings are checked by [`DynConnector::check`] at
/// validation and deserialized again when a run opens the connector.
#[async_trait]
pub trait DynConnector: Send + Sync + 'static {
    /// [`Connector::NAME`].
    fn name(&self) -> &'static str;
    /// [`Connector::ROLES`].
    fn roles(&self) -> Roles;
    /// The schemas of its system, `from:` and `to:` settings.
    fn schemas(&self) -> [SchemaFn; 3];
    /// Checks a system's settings (types, then [`Connector::check_system`]).
    fn check_system(&self, system: &Value) -> Vec<Problem>;
    /// [`Connector::secret_vars`] over JSON settings (none when they do not deserialize).
    fn secret_vars(&self, system: &Value) -> Vec<(String, String)>;
    /// [`Connector::optional_settings`] over JSON settings (none when they do not
    /// deserialize).
    fn optional_settings(&self, system: &Value) -> Vec<String>;
    /// [`Connector::start_notice`] over JSON settings (none when they do not deserialize).
    fn start_notice(&self, name: &str, system: &Value, root: &Path) -> Option<String>;
    /// Checks a flow's `from:` settings on `system` (nothing when the system's own settings
    /// are wrong: those are reported on the system).
    fn check_from(&self, system: &Value, from: &Value) -> Vec<Problem>;
    /// Checks a flow's `to:` (or `acknowledge:`) settings on `system`, as
    /// [`DynConnector::check_from`].
    fn check_to(&self, system: &Value, to: &Value) -> Vec<Problem>;
    /// [`Connector::source_templates`] over JSON settings (none when they do not deserialize).
    fn source_templates(&self, from: &Value) -> Vec<(String, String)>;
    /// [`Connector::sink_templates`] over JSON settings (none when they do not deserialize).
    fn sink_templates(&self, to: &Value) -> Vec<(String, String)>;
    /// [`Connector::source`] over JSON settings.
    async fn source(
        &self,
        setup: &Setup<'_>,
        system: &Value,
        from: &Value,
        position: &Value,
    ) -> Result<Box<dyn Source>, ConnectorError>;
    /// [`Connector::sink`] over JSON settings.
    async fn sink(
        &self,
        setup: &Setup<'_>,
        system: &Value,
        to: &Value,
        sink_state: &Value,
    ) -> Result<Arc<dyn Sink>, ConnectorError>;
}

fn settings<T: DeserializeOwned>(what: &str, value: &Value) -> Result<T, String> {
    T::deserialize(Lenient(value)).map_err(|err| format!("{what}: {err}"))
}

/// Deserializes settings, turning a failure into a [`Problem`] at the offending key (an
/// unknown field) or value.
fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(Lenient(value)).map_err(|err| {
        let mut pointer = String::new();
        for segment in err.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    pointer.push_str(&format!("/{index}"));
                }
                serde_path_to_error::Segment::Map { key } => {
                    pointer.push('/');
                    pointer.push_str(&crate::spec::source_map::escape(key));
                }
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {}
            }
        }
        let message = err.into_inner().to_string();
        let unknown = message.starts_with("unknown field");
        Problem {
            pointer,
            at_key: unknown,
            code: if unknown {
                Code::UnknownField
            } else {
                Code::InvalidValue
            },
            message,
            hint: None,
        }
    })
}

/// Checks a flow's `from:` or `to:` settings: their types, then `check` against the system's
/// settings (nothing more when those are wrong: they are reported on the system).
fn check_endpoint<C: Connector, T: DeserializeOwned>(
    system: &Value,
    endpoint: &Value,
    check: fn(&C::System, &T) -> Vec<Problem>,
) -> Vec<Problem> {
    let endpoint = match typed::<T>(endpoint) {
        Ok(endpoint) => endpoint,
        Err(problem) => return vec![problem],
    };
    match typed::<C::System>(system) {
        Ok(system) => check(&system, &endpoint),
        Err(_) => Vec::new(),
    }
}

#[async_trait]
impl<C: Connector> DynConnector for C {
    fn name(&self) -> &'static str {
        C::NAME
    }

    fn roles(&self) -> Roles {
        C::ROLES
    }

    fn schemas(&self) -> [SchemaFn; 3] {
        [
            |g| g.subschema_for::<C::System>(),
            |g| g.subschema_for::<C::From>(),
            |g| g.subschema_for::<C::To>(),
        ]
    }

    fn check_system(&self, system: &Value) -> Vec<Problem> {
        match typed::<C::System>(system) {
            Ok(system) => C::check_system(&system),
            Err(problem) => vec![problem],
        }
    }

    fn secret_vars(&self, system: &Value) -> Vec<(String, String)> {
        typed::<C::System>(system)
            .map(|system| C::secret_vars(&system))
            .unwrap_or_default()
    }

    fn optional_settings(&self, system: &Value) -> Vec<String> {
        typed::<C::System>(system)
            .map(|system| C::optional_settings(&system))
            .unwrap_or_default()
    }

    fn start_notice(&self, name: &str, system: &Value, root: &Path) -> Option<String> {
        typed::<C::System>(system)
            .ok()
            .and_then(|system| C::start_notice(name, &system, root))
    }

    fn check_from(&self, system: &Value, from: &Value) -> Vec<Problem> {
        check_endpoint::<C, C::From>(system, from, C::check_from)
    }

    fn check_to(&self, system: &Value, to: &Value) -> Vec<Problem> {
        check_endpoint::<C, C::To>(system, to, C::check_to)
    }

    fn source_templates(&self, from: &Value) -> Vec<(String, String)> {
        settings::<C::From>("from", from)
            .map(|from| C::source_templates(&from))
            .unwrap_or_default()
    }

    fn sink_templates(&self, to: &Value) -> Vec<(String, String)> {
        settings::<C::To>("to", to)
            .map(|to| C::sink_templates(&to))
            .unwrap_or_default()
    }

    async fn source(
        &self,
        setup: &Setup<'_>,
        system: &Value,
        from: &Value,
        position: &Value,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        let system = settings::<C::System>(C::NAME, system).map_err(ConnectorError::spec)?;
        let from = settings::<C::From>("from", from).map_err(ConnectorError::spec)?;
        Connector::source(self, setup, &system, &from, position).await
    }

    async fn sink(
        &self,
        setup: &Setup<'_>,
        system: &Value,
        to: &Value,
        sink_state: &Value,
    ) -> Result<Arc<dyn Sink>, ConnectorError> {
        let system = settings::<C::System>(C::NAME, system).map_err(ConnectorError::spec)?;
        let to = settings::<C::To>("to", to).map_err(ConnectorError::spec)?;
        Connector::sink(self, setup, &system, &to, sink_state).await
    }
}

/// Settings as YAML reads them: a plain scalar asked for as a string is its text
/// (`X-Api-Version: 2` is the header value `"2"`), as it was when the spec's own types read
/// the YAML. The settings are kept as JSON, where that scalar became a number.
struct Lenient<'a>(&'a Value);

impl<'de> serde::de::IntoDeserializer<'de, serde_json::Error> for Lenient<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> serde::Deserializer<'de> for Lenient<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        use serde::de::value::{MapDeserializer, SeqDeserializer};
        match self.0 {
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(Lenient));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(map) => {
                let mut entries = MapDeserializer::new(
                    map.iter()
                        .map(|(key, value)| (key.as_str(), Lenient(value))),
                );
                let value = visitor.visit_map(&mut entries)?;
                entries.end()?;
                Ok(value)
            }
            other => serde::Deserializer::deserialize_any(other, visitor),
        }
    }

    fn deserialize_str<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Number(number) => visitor.visit_string(number.to_string()),
            Value::Bool(flag) => visitor.visit_string(flag.to_string()),
            other => serde::Deserializer::deserialize_str(other, visitor),
        }
    }

    fn deserialize_string<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        serde::Deserializer::deserialize_enum(self.0, name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}
