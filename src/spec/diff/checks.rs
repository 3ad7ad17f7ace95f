//! The catalog of semantic checks `switchyard diff` reports: each with a stable ID, its
//! default risk and why. `docs/diff-checks.md` is this table in prose; a test keeps the two
//! equal, and another proves every check with a before/after fixture pair.

use std::fmt;

use serde::Serialize;

/// How much a change can hurt once deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Worth a glance: nothing already flowing changes meaning.
    Low,
    /// Changes what records look like or who hears about failures; review it.
    Medium,
    /// Can lose, double or misroute records or money, or leave a failure without an owner.
    High,
}

impl Risk {
    /// The lowercase name (`high`).
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }

    /// Parses `high`, `medium` or `low`.
    pub fn parse(text: &str) -> Option<Risk> {
        match text {
            "high" => Some(Risk::High),
            "medium" => Some(Risk::Medium),
            "low" => Some(Risk::Low),
            _ => None,
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check: a kind of change with its default risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// Stable ID, kebab-case; never reused for another meaning.
    pub id: &'static str,
    /// Its risk unless the repository's config overrides it.
    pub risk: Risk,
    /// Why it carries that risk, for `docs/diff-checks.md` and `--explain`.
    pub why: &'static str,
}

macro_rules! checks {
    ($($name:ident = $id:literal, $risk:ident, $why:literal;)*) => {
        $(
            #[doc = $why]
            pub const $name: Check = Check { id: $id, risk: Risk::$risk, why: $why };
        )*
        /// Every check, in documentation order.
        pub const ALL: &[Check] = &[$($name),*];
    };
}

checks! {
    // Ownership
    OBJECT_ADDED = "object-added", Low,
        "A new business object: nothing existing changes until a flow moves it.";
    OBJECT_REMOVED = "object-removed", High,
        "Flows and tests of the object go with it; whoever consumed it stops hearing of it.";
    SOURCE_OF_TRUTH_CHANGED = "source-of-truth-changed", High,
        "Another system becomes authoritative: conflicting copies now resolve the other way.";
    OBJECT_KEY_CHANGED = "object-key-changed", High,
        "The identity of the object changes: records dedupe and cross-reference differently.";
    CREATOR_ADDED = "creator-added", Medium,
        "Another system may create the object: more writers, more conflicts to own.";
    CREATOR_REMOVED = "creator-removed", Medium,
        "A system loses the right to create the object; its flows now fail the ownership check.";
    UPDATER_ADDED = "updater-added", Medium,
        "Another system may update the object: more writers, more conflicts to own.";
    UPDATER_REMOVED = "updater-removed", Medium,
        "A system loses the right to update the object; its updates become ownership violations.";
    CONSUMER_ADDED = "consumer-added", Low,
        "One more system reads the object; nothing already flowing changes.";
    CONSUMER_REMOVED = "consumer-removed", Medium,
        "A system stops receiving the object; check nobody downstream still relies on it.";
    FIELD_CONTROL_CHANGED = "field-control-changed", High,
        "Who controls a field (seller or operator) changes: edits now win or lose the other way.";
    FIELD_OVERRIDE_CHANGED = "field-override-changed", Medium,
        "Whether the operator may override the seller's value of a field changes.";
    FIELD_CONTROL_ADDED = "field-control-added", Low,
        "A field's control is declared where it was implicit.";
    FIELD_CONTROL_REMOVED = "field-control-removed", Medium,
        "A field's declared control is dropped: nobody is named as its owner any more.";
    // Systems and owners
    SYSTEM_ADDED = "system-added", Low,
        "A new participating system; nothing moves to it until a flow names it.";
    SYSTEM_REMOVED = "system-removed", High,
        "Every flow, lookup and acknowledgement through the system stops.";
    SYSTEM_CONNECTOR_CHANGED = "system-connector-changed", High,
        "The system is reached through another connector: delivery and retry semantics change.";
    SYSTEM_REPOINTED = "system-repointed", High,
        "The system's address (URL, database, folder) changes: records go somewhere else.";
    SYSTEM_SETTINGS_CHANGED = "system-settings-changed", Low,
        "A connector setting other than the address (timeout, rate limit, auth) changes.";
    SYSTEM_PARTY_CHANGED = "system-party-changed", Medium,
        "The party a system acts for (seller or operator) changes, and with it ownership rules.";
    OWNER_ADDED = "owner-added", Low,
        "A new owner who can be routed failures.";
    OWNER_REMOVED = "owner-removed", Medium,
        "An owner is gone; failures routed to them must go to someone else.";
    OWNER_CONTACT_CHANGED = "owner-contact-changed", Low,
        "Where an owner is reached (contact, alert webhook) changes.";
    DEFAULT_FAILURE_OWNER_CHANGED = "default-failure-owner-changed", Medium,
        "Every failure mode without its own owner goes to someone else.";
    // Flows
    FLOW_ADDED = "flow-added", Medium,
        "A new flow moves records between systems; review its owner, retry and failures.";
    FLOW_REMOVED = "flow-removed", High,
        "Records the flow moved stop moving; its state and dead letters stay behind.";
    FLOW_OBJECT_CHANGED = "flow-object-changed", High,
        "The flow moves another object: contract, key and ownership all change.";
    FLOW_SOURCE_CHANGED = "flow-source-changed", High,
        "The flow reads from another system or place: its cursor no longer means anything.";
    FLOW_SINK_CHANGED = "flow-sink-changed", High,
        "The flow writes to another system or place: records go somewhere else.";
    TRIGGER_CHANGED = "trigger-changed", Medium,
        "What starts a run (schedule, poll interval, webhook path) changes.";
    PATTERN_CHANGED = "pattern-changed", Medium,
        "The sync pattern (event, near-real-time, batch) changes.";
    LATENCY_CLASS_CHANGED = "latency-class-changed", Medium,
        "The business latency class the flow promises changes.";
    // Mappings
    MAPPED_FIELD_ADDED = "mapped-field-added", Low,
        "The sink receives one more field.";
    MAPPED_FIELD_REMOVED = "mapped-field-removed", High,
        "The sink stops receiving a field it may require or store.";
    MAPPED_FIELD_RETYPED = "mapped-field-retyped", Medium,
        "A field is written with another type (text, integer, decimal, ...).";
    MAPPED_FIELD_CHANGED = "mapped-field-changed", Medium,
        "A field is computed differently (template, source path or constant).";
    // Identity
    IDEMPOTENCY_KEY_CHANGED = "idempotency-key-changed", High,
        "What counts as a duplicate changes: records already delivered can be delivered again, or new ones dropped.";
    // Contracts
    CONTRACT_CHANGED = "contract-changed", Low,
        "The object's contract points at another file or schema.";
    CONTRACT_REQUIRED_ADDED = "contract-required-added", High,
        "Records without the field, valid until now, become contract-violation dead letters.";
    CONTRACT_REQUIRED_REMOVED = "contract-required-removed", Medium,
        "Records without the field now pass: sinks and mappings must cope with its absence.";
    CONTRACT_PROPERTY_ADDED = "contract-property-added", Low,
        "The contract describes one more field.";
    CONTRACT_PROPERTY_REMOVED = "contract-property-removed", Medium,
        "The contract stops describing a field; mappings reading it lose their check.";
    CONTRACT_TYPE_NARROWED = "contract-type-narrowed", High,
        "A field accepts fewer types: records valid until now are dead-lettered.";
    CONTRACT_TYPE_WIDENED = "contract-type-widened", Medium,
        "A field accepts more types: sinks see values they never saw.";
    CONTRACT_ENUM_VALUE_REMOVED = "contract-enum-value-removed", High,
        "A value valid until now is refused: records carrying it are dead-lettered.";
    CONTRACT_ENUM_VALUE_ADDED = "contract-enum-value-added", Medium,
        "A new value passes: sinks and filters see a value they never saw.";
    // Retry
    RETRY_WINDOW_CHANGED = "retry-window-changed", Low,
        "How long a failing delivery is retried before it is dead-lettered.";
    RETRY_PAST_FRESHNESS = "retry-window-past-freshness", High,
        "The retry window now outlasts the freshness SLA: a record can be stale while still retried, and nobody is told.";
    RETRY_PAST_DEADLINE = "retry-window-past-deadline", High,
        "The retry window now outlasts the flow's deadline: records are still retried after the business gave up on them.";
    RETRY_BACKOFF_CHANGED = "retry-backoff-changed", Low,
        "The spacing of retries (backoff, initial delay, largest delay) changes.";
    // Failure modes
    FAILURE_MODE_ADDED = "failure-mode-added", Low,
        "A failure mode gets its own route.";
    FAILURE_MODE_REMOVED = "failure-mode-removed", High,
        "A failure mode loses its declared owner, action and runbook; it falls to the default owner with no runbook.";
    FAILURE_OWNER_CHANGED = "failure-owner-changed", Medium,
        "A failure mode is routed to someone else.";
    FAILURE_ACTION_CHANGED = "failure-action-changed", Medium,
        "What the owner is expected to do (retry, repair, suppress, escalate) changes.";
    FAILURE_RUNBOOK_REMOVED = "failure-runbook-removed", High,
        "The owner is paged with no runbook.";
    FAILURE_RUNBOOK_CHANGED = "failure-runbook-changed", Low,
        "The runbook text changes.";
    FAILURE_ESCALATION_REMOVED = "failure-escalation-removed", High,
        "An unresolved failure is no longer escalated.";
    FAILURE_ESCALATION_CHANGED = "failure-escalation-changed", Medium,
        "Who an unresolved failure escalates to, or when, changes.";
    // SLAs and deadlines
    SLA_ADDED = "sla-added", Low,
        "The flow gains a business SLA.";
    SLA_REMOVED = "sla-removed", High,
        "The flow's freshness or reject-rate promise is dropped: breaches are no longer seen.";
    SLA_LOOSENED = "sla-loosened", Medium,
        "The flow promises less (a longer freshness, a higher reject rate).";
    SLA_TIGHTENED = "sla-tightened", Low,
        "The flow promises more; check retry windows still fit.";
    DEADLINE_ADDED = "deadline-added", Low,
        "Records gain a business deadline.";
    DEADLINE_REMOVED = "deadline-removed", High,
        "Missed deadlines are no longer detected or escalated.";
    DEADLINE_CHANGED = "deadline-changed", Medium,
        "When a record's deadline falls, or when it warns, changes.";
    // Acknowledgement, reconciliation, filters, guards, enrichment, split
    ACK_ADDED = "acknowledgement-added", Medium,
        "The flow now acknowledges records back to their source.";
    ACK_REMOVED = "acknowledgement-removed", High,
        "Records are no longer acknowledged: the source may cancel or resend them.";
    ACK_CHANGED = "acknowledgement-changed", Medium,
        "The acknowledgement is sent elsewhere or with another body.";
    RECONCILIATION_CHANGED = "reconciliation-changed", High,
        "How the statement is matched to the ledger changes (keys, tolerance, strategy, rules): variances appear or disappear.";
    CONTRACTED_RATE_CHANGED = "contracted-rate-changed", High,
        "The contracted rates the statement's charges are checked against change (a rate, the lines it applies to, its rounding or tolerance): charges at the old rate become variances, or stop being ones.";
    FILTER_CHANGED = "filter-changed", Medium,
        "Which records the flow acts on changes; filtered records are never delivered.";
    GUARD_CHANGED = "guard-changed", Medium,
        "What a record waits for before it is delivered changes.";
    ENRICHMENT_CHANGED = "enrichment-changed", Medium,
        "The lookups that complete a record change.";
    SPLIT_CHANGED = "split-changed", High,
        "How one record splits into several changes: keys and counts of delivered records change.";
    OTHER_CHANGED = "spec-changed", Low,
        "A setting no other check covers.";
}

/// The check with this ID.
pub fn by_id(id: &str) -> Option<&'static Check> {
    ALL.iter().find(|check| check.id == id)
}
