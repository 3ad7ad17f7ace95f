//! The runtime: compiled flows executed through connectors, with state in the store.
//!
//! One record's way: source read (batch, position) -> decode -> contract -> identity and
//! duplicate detection -> ownership -> mapping -> sink write with retry -> commit
//! (checkpoint, processed keys, audit) — or a dead letter routed to its failure mode's owner,
//! with an alert in the outbox. The checkpoint advances only after the sink acknowledged
//! every record of the batch, so a crash replays at most one batch, and the processed keys
//! and idempotency keys make that replay harmless.

pub mod alerts;
pub mod clock;
mod commit;
pub mod deadlines;
mod delivery;
pub mod engine;
pub mod enrich;
pub mod events;
pub mod guard;
mod lease;
mod original;
pub mod plan;
pub mod record;
pub mod replay;
pub mod retry;
mod source_read;

pub use self::clock::Clock;
pub use self::deadlines::DeadlineBoard;
pub use self::engine::{FlowRun, RunError, RunOptions, RunReport, SinkOverride, SourceOverride};
pub use self::events::{FlowEvents, Observer};
pub use self::original::DEFAULT_MAX_DEAD_LETTER_RECORD_BYTES;
pub use self::plan::FlowPlan;

#[cfg(test)]
mod tests;
