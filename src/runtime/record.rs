//! One record's way through a flow, up to the sink: decode, contract, identity, duplicate
//! detection, ownership, mapping.
//!
//! The work is split in two so it can run in parallel: [`prepare`] is pure (it reads the plan
//! and the record only) and may run on any thread; [`admit`] runs in record order and owns the
//! set of processed keys, so the first of two duplicates always wins.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use serde_json::Value;

use super::plan::FlowPlan;
use crate::connectors::RawRecord;
use crate::mapping::kind_of as kind;
use crate::mapping::{MappingError, helpers};
use crate::spec::model::{FailureMode, SplitConfig};
use crate::store::key_hash;

/// The set of processed idempotency key hashes. The keys are already hashes, so the set
/// only mixes their bits instead of hashing them again with SipHash.
///
/// It is split into shards so that growing never holds two copies of the whole table: a
/// single table of a million keys briefly needs half as much again while it rehashes.
#[derive(Debug, Clone)]
pub struct KeySet {
    shards: Vec<HashSet<u64, BuildHasherDefault<MixHasher>>>,
}

const KEY_SET_SHARDS: usize = 64;

impl Default for KeySet {
    fn default() -> Self {
        Self {
            shards: vec![HashSet::default(); KEY_SET_SHARDS],
        }
    }
}

impl KeySet {
    /// Adds a key hash; `false` if it was there already.
    pub fn insert(&mut self, hash: u64) -> bool {
        let shard = Self::shard(hash);
        self.shards[shard].insert(hash)
    }

    /// Whether the key hash is in the set.
    pub fn contains(&self, hash: u64) -> bool {
        self.shards[Self::shard(hash)].contains(&hash)
    }

    /// Number of key hashes.
    pub fn len(&self) -> usize {
        self.shards.iter().map(HashSet::len).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(HashSet::is_empty)
    }

    /// Middle bits of the mixed hash: the shard's own table takes its slots from the low
    /// bits and its tags from the high ones, which still vary within a shard.
    fn shard(hash: u64) -> usize {
        ((hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize) % KEY_SET_SHARDS
    }
}

impl Extend<u64> for KeySet {
    fn extend<I: IntoIterator<Item = u64>>(&mut self, hashes: I) {
        for hash in hashes {
            self.insert(hash);
        }
    }
}

/// A hasher for values that are already 64-bit hashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        // A multiply and a fold spread the bits hashbrown reads (high for tags, low for slots).
        let x = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A record after the pure stage. The body is the mapped record as a value, or, for sinks
/// that take JSON lines, where [`prepare_encoded`] wrote it.
#[derive(Debug, Clone)]
pub struct Prepared<B = Output> {
    /// The identity key, when it could be read.
    pub record_key: Option<String>,
    /// The idempotency key, when it could be rendered, and its hash.
    pub idempotency: Option<(String, u64)>,
    /// The mapped record (or legs), or why not.
    pub result: Result<B, Rejection>,
    /// When the record must be delivered and acknowledged by, if the flow has a deadline.
    pub deadline: Option<Deadline>,
    /// The acknowledgement's body built by `acknowledge.map` (a split record's legs carry
    /// their own); `None` when the flow has no such map.
    pub ack: Option<Value>,
    /// `null`s in typed fields a lenient contract accepted (reported as warnings).
    pub contract_nulls: usize,
    /// The `where:` condition the record fails, if it fails one: it is filtered out.
    pub filtered: Option<String>,
}

/// What mapping produced.
#[derive(Debug, Clone)]
pub enum Output {
    /// One mapped record.
    One(Value),
    /// One mapped record per leg of a split record, each delivered on its own.
    Legs(Vec<Leg>),
}

/// One leg of a split record.
#[derive(Debug, Clone)]
pub struct Leg {
    /// The leg's key (the value of the split's `by` field), appended to the record's keys.
    pub key: String,
    /// The mapped leg, or why not.
    pub result: Result<Value, Rejection>,
    /// The leg's acknowledgement body (`acknowledge.map` over the leg), when the flow has one.
    pub ack: Option<Value>,
}

/// A record's deadline window, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// When the window opened (for the warning share); `None` means when the record was read.
    pub start_ms: Option<i64>,
    /// When it closes.
    pub due_ms: i64,
}

/// Why a record will not be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The failure mode.
    pub mode: FailureMode,
    /// A short machine reason.
    pub reason: String,
    /// The error, for people.
    pub error: String,
}

/// What to do with a prepared record.
#[derive(Debug)]
pub enum Admission<B = Output> {
    /// Deliver it.
    Deliver(Ready<B>),
    /// Drop it: the same change was processed before.
    Duplicate,
    /// Drop it and count it: it fails the flow's `where:` condition given.
    Filtered(String),
    /// Dead-letter it.
    Reject(Rejected),
}

/// A record ready for the sink.
#[derive(Debug, Clone)]
pub struct Ready<B = Output> {
    /// The identity key.
    pub record_key: String,
    /// The idempotency key.
    pub idempotency_key: String,
    /// Its hash.
    pub key_hash: u64,
    /// The mapped record (or legs), or where it was encoded.
    pub body: B,
    /// The deadline, if the flow has one.
    pub deadline: Option<Deadline>,
    /// The acknowledgement body built by `acknowledge.map`, if the flow has one.
    pub ack: Option<Value>,
}

/// A record headed for the dead-letter queue.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The identity key, when known.
    pub record_key: Option<String>,
    /// The idempotency key, when known.
    pub idempotency_key: Option<String>,
    /// Why.
    pub rejection: Rejection,
}

/// The pure stage: everything that depends on the record alone.
/// `now_ms` is the runtime's clock, for the flow's time conditions (`older_than`).
pub fn prepare(plan: &FlowPlan, raw: &RawRecord<'_>, now_ms: i64) -> Prepared {
    prepare_with(plan, raw, now_ms, |record| match &plan.split {
        None => map(plan, record).map(Output::One),
        Some(split) => split_legs(plan, split, record).map(Output::Legs),
    })
}

/// The pure stage for sinks that take JSON lines: the mapped record is encoded into `out` and
/// its body is the byte range it took there. Encoding here, on the parallel stage, leaves the
/// ordered stage a copy per record.
pub fn prepare_encoded(
    plan: &FlowPlan,
    raw: &RawRecord<'_>,
    now_ms: i64,
    out: &mut Vec<u8>,
) -> Prepared<Range<usize>> {
    prepare_with(plan, raw, now_ms, |record| {
        let start = out.len();
        plan.mapping
            .encode(record, out)
            .map(|()| start..out.len())
            .map_err(mapping_rejection)
    })
}

fn prepare_with<B>(
    plan: &FlowPlan,
    raw: &RawRecord<'_>,
    now_ms: i64,
    map: impl FnOnce(&Value) -> Result<B, Rejection>,
) -> Prepared<B> {
    let decoded;
    let record = match raw {
        RawRecord::Value(value) => *value,
        RawRecord::Line(line) => match serde_json::from_slice::<Value>(line) {
            Ok(value) => {
                decoded = value;
                &decoded
            }
            Err(err) => {
                return rejected_early(
                    None,
                    None,
                    Rejection {
                        mode: FailureMode::ContractViolation,
                        reason: "malformed_json".into(),
                        error: format!("record is not valid JSON: {err}"),
                    },
                );
            }
        },
        RawRecord::Malformed { error, reason, .. } => {
            return rejected_early(
                None,
                None,
                Rejection {
                    mode: FailureMode::ContractViolation,
                    reason: (*reason).into(),
                    error: (*error).to_owned(),
                },
            );
        }
    };
    let record_key = identity_key(plan, record);
    let idempotency = idempotency_key(plan, record, record_key.as_deref());
    if !record.is_object() {
        return rejected_early(
            record_key,
            idempotency,
            Rejection {
                mode: FailureMode::ContractViolation,
                reason: "malformed_json".into(),
                error: format!("record is not a JSON object but {}", kind(record)),
            },
        );
    }
    // Before the contract: a record the flow does not act on is none of its business, even
    // when it lacks fields only the records it acts on carry.
    if let Some(condition) = plan.filter.rejects(record, now_ms) {
        return Prepared {
            record_key,
            idempotency,
            result: Err(Rejection {
                mode: FailureMode::ContractViolation,
                reason: "filtered".into(),
                error: format!("filtered out: the `where:` condition {condition} does not hold"),
            }),
            deadline: None,
            filtered: Some(condition),
            ack: None,
            contract_nulls: 0,
        };
    }
    let contract_nulls = match plan.contract.check_counting_nulls(record) {
        Ok(tolerated) => tolerated,
        Err(violation) => {
            return rejected_early(
                record_key,
                idempotency,
                Rejection {
                    mode: FailureMode::ContractViolation,
                    reason: violation.reason.clone(),
                    error: violation.messages.join("; "),
                },
            );
        }
    };
    // After the contract, so a check compares fields of the types the contract promises.
    if let Some(breach) = plan.checks.breach(record, now_ms) {
        return rejected_early(
            record_key,
            idempotency,
            Rejection {
                mode: FailureMode::CheckFailed,
                reason: breach.name,
                error: breach.message,
            },
        );
    }
    let deadline = match deadline_of(plan, record) {
        Ok(deadline) => deadline,
        Err(rejection) => return rejected_early(record_key, idempotency, rejection),
    };
    let result = check_ownership(plan, record).and_then(|()| map(record));
    // The acknowledgement body is built here, before anything is written: a record whose
    // acknowledgement cannot be built is a mapping error, not a write left unacknowledged.
    let (result, ack) = match (result, plan.split.is_none()) {
        (Ok(body), true) => match ack_body(plan, record) {
            Ok(ack) => (Ok(body), ack),
            Err(rejection) => (Err(rejection), None),
        },
        (result, _) => (result, None),
    };
    let result = match (&record_key, &idempotency, result) {
        (None, _, Ok(_)) | (_, None, Ok(_)) => Err(Rejection {
            mode: FailureMode::ContractViolation,
            reason: "missing_key".into(),
            error: format!(
                "identity key fields {} are not all present",
                plan.key_fields
                    .iter()
                    .map(|k| format!("`{k:?}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
        (_, _, result) => result,
    };
    Prepared {
        record_key,
        idempotency,
        result,
        deadline,
        ack,
        contract_nulls,
        filtered: None,
    }
}

/// `acknowledge.map` applied to the record as read (with its lookups, and `_leg` for a leg).
fn ack_body(plan: &FlowPlan, record: &Value) -> Result<Option<Value>, Rejection> {
    let Some(mapping) = &plan.ack_mapping else {
        return Ok(None);
    };
    mapping.apply(record).map(Some).map_err(|err| Rejection {
        mode: FailureMode::MappingError,
        reason: "ack_mapping_failed".into(),
        error: format!("acknowledge.map: {err}"),
    })
}

/// The ordered stage: duplicate detection against every key processed so far.
pub fn admit<B>(prepared: Prepared<B>, processed: &mut KeySet) -> Admission<B> {
    // Not marked processed: should the record change so that it passes, the flow acts on it.
    if let Some(condition) = prepared.filtered {
        return Admission::Filtered(condition);
    }
    if let Some((_, hash)) = &prepared.idempotency
        && !processed.insert(*hash)
    {
        return Admission::Duplicate;
    }
    match prepared.result {
        Ok(body) => match (prepared.record_key, prepared.idempotency) {
            (Some(record_key), Some((idempotency_key, key_hash))) => Admission::Deliver(Ready {
                record_key,
                idempotency_key,
                key_hash,
                body,
                deadline: prepared.deadline,
                ack: prepared.ack,
            }),
            // `prepare` never returns a body without both keys.
            (record_key, idempotency) => Admission::Reject(Rejected {
                record_key,
                idempotency_key: idempotency.map(|(key, _)| key),
                rejection: Rejection {
                    mode: FailureMode::ContractViolation,
                    reason: "missing_key".into(),
                    error: "record has no identity key".into(),
                },
            }),
        },
        Err(rejection) => Admission::Reject(Rejected {
            record_key: prepared.record_key,
            idempotency_key: prepared.idempotency.map(|(key, _)| key),
            rejection,
        }),
    }
}

/// The identity key: the key fields' values joined by `:`.
pub fn identity_key(plan: &FlowPlan, record: &Value) -> Option<String> {
    let mut key = String::new();
    for (index, field) in plan.key_fields.iter().enumerate() {
        let value = field.lookup(record).filter(|v| !v.is_null())?;
        if index > 0 {
            key.push(':');
        }
        key.push_str(&helpers::render(value));
    }
    Some(key)
}

fn idempotency_key(
    plan: &FlowPlan,
    record: &Value,
    record_key: Option<&str>,
) -> Option<(String, u64)> {
    let key = match &plan.idempotency_key {
        Some(template) => template
            .evaluate(record)
            .ok()
            .map(|v| helpers::render(&v))?,
        None => record_key?.to_owned(),
    };
    let hash = key_hash(&key);
    Some((key, hash))
}

fn check_ownership(plan: &FlowPlan, record: &Value) -> Result<(), Rejection> {
    let author = match &plan.author {
        Some(pointer) => match record.pointer(pointer) {
            Some(Value::String(system)) => system.as_str(),
            _ => plan.source_system.as_str(),
        },
        None => plan.source_system.as_str(),
    };
    if plan.writers.contains(author) {
        return Ok(());
    }
    let mut allowed: Vec<&str> = plan.writers.iter().map(String::as_str).collect();
    allowed.sort_unstable();
    Err(Rejection {
        mode: FailureMode::OwnershipViolation,
        reason: "unauthorised_writer".into(),
        error: format!(
            "system `{author}` may not create or update {} (allowed: {}); the change is refused",
            plan.object,
            allowed.join(", ")
        ),
    })
}

fn map(plan: &FlowPlan, record: &Value) -> Result<Value, Rejection> {
    plan.mapping.apply(record).map_err(mapping_rejection)
}

fn mapping_rejection(err: MappingError) -> Rejection {
    Rejection {
        mode: FailureMode::MappingError,
        reason: "mapping_failed".into(),
        error: err.to_string(),
    }
}

/// Splits a record into legs by the `by` field of its items, in order of first appearance,
/// and maps each leg: a leg is the record with only its own items, plus `_leg` (`key`,
/// `index`, `count`) for the templates.
fn split_legs(plan: &FlowPlan, split: &SplitConfig, record: &Value) -> Result<Vec<Leg>, Rejection> {
    let Some(Value::Array(items)) = record.pointer(&split.items) else {
        return Err(Rejection {
            mode: FailureMode::ContractViolation,
            reason: "missing_items".into(),
            error: format!("no array of items at `{}` to split", split.items),
        });
    };
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for item in items {
        let key = item
            .get(&split.by)
            .filter(|v| !v.is_null())
            .map(helpers::render);
        let Some(key) = key else {
            return Err(Rejection {
                mode: FailureMode::ContractViolation,
                reason: format!("missing_{}", split.by),
                error: format!(
                    "an item at `{}` has no `{}` to split by",
                    split.items, split.by
                ),
            });
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(item.clone()),
            None => groups.push((key, vec![item.clone()])),
        }
    }
    let count = groups.len();
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(index, (key, group))| {
            let mut leg = record.clone();
            if let Some(slot) = leg.pointer_mut(&split.items) {
                *slot = Value::Array(group);
            }
            if let Value::Object(fields) = &mut leg {
                fields.insert(
                    "_leg".into(),
                    serde_json::json!({"key": key, "index": index, "count": count}),
                );
            }
            let (result, ack) =
                match map(plan, &leg).and_then(|body| Ok((body, ack_body(plan, &leg)?))) {
                    Ok((body, ack)) => (Ok(body), ack),
                    Err(rejection) => (Err(rejection), None),
                };
            Leg { result, key, ack }
        })
        .collect())
}

/// The record's deadline, when the flow declares one.
fn deadline_of(plan: &FlowPlan, record: &Value) -> Result<Option<Deadline>, Rejection> {
    let Some(spec) = &plan.deadline else {
        return Ok(None);
    };
    let time_at = |pointer: &str| -> Result<i64, Rejection> {
        let text = record
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default();
        text.parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|_| Rejection {
                mode: FailureMode::ContractViolation,
                reason: "invalid_deadline".into(),
                error: format!(
                    "`{pointer}` must be an RFC 3339 time to compute the deadline, not {text:?}"
                ),
            })
    };
    let due_ms = match (&spec.at, &spec.from) {
        (Some(at), _) => time_at(at)?,
        (None, Some(from)) => time_at(from)? + spec.plus.as_millis() as i64,
        (None, None) => return Ok(None),
    };
    let start_ms = match spec.window_start.as_deref().or(spec.from.as_deref()) {
        Some(pointer) => Some(time_at(pointer)?),
        None => None,
    };
    Ok(Some(Deadline { start_ms, due_ms }))
}

fn rejected_early<B>(
    record_key: Option<String>,
    idempotency: Option<(String, u64)>,
    rejection: Rejection,
) -> Prepared<B> {
    Prepared {
        record_key,
        idempotency,
        result: Err(rejection),
        deadline: None,
        ack: None,
        contract_nulls: 0,
        filtered: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_set_keeps_the_first_of_each_hash() {
        let mut set = KeySet::default();
        assert!(set.is_empty());
        for hash in 0..10_000_u64 {
            assert!(set.insert(key_hash(&hash.to_string())));
        }
        assert!(!set.insert(key_hash("42")));
        assert!(set.contains(key_hash("9999")));
        assert!(!set.contains(key_hash("10000")));
        set.extend([key_hash("1"), key_hash("10000")]);
        assert_eq!(set.len(), 10_001);
    }
}
