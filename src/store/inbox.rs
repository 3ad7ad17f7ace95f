//! The webhook inbox: each authenticated event is stored here, keyed by flow and the sender's
//! event ID, before the sender gets its 2xx; the flow's runner claims pending events in
//! arrival order and marks them processed only after the run that consumed them committed.
//! A redelivered event ID is recognised here and never stored twice. An event the flow cannot
//! read is dead-lettered in the transaction that marks it processed.

/// What storing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxInsert {
    /// Stored under this inbox ID.
    Stored(i64),
    /// An event with this ID was already received for this flow; nothing was stored.
    Duplicate,
}

/// A pending inbox event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEvent {
    /// Inbox ID (arrival order).
    pub id: i64,
    /// The sender's event ID.
    pub event_id: String,
    /// The raw body, byte for byte: intake stores UTF-8 JSON, but a body stored otherwise
    /// (an older version, a repair by hand) must still be read, to be dead-lettered.
    pub body: Vec<u8>,
    /// Processing attempts so far.
    pub attempts: u32,
}
