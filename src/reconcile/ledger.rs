//! The ledger side held compactly: one byte arena for keys and line IDs, interned cycles,
//! currencies and rule values, amounts as integer units with their scale, and a hash index
//! from key to entries. A million journal lines fit in well under 100 MiB this way, where
//! one `serde_json::Value` per line would take several times that.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::amount::Amount;

/// No value (an absent optional field).
pub(crate) const NONE: u32 = u32::MAX;

/// Strings seen often (cycles, currencies, accounts), stored once and named by number.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// The number of `name`, adding it when new.
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(NONE - 1);
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    /// The number of `name`, if it was ever interned.
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The name of number `id` (empty for [`NONE`]).
    pub(crate) fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map(|s| &**s).unwrap_or("")
    }
}

/// FxHash over bytes: keys are short references (`T0000123456`) read once each; SipHash's
/// flooding resistance buys nothing for a local batch and costs a third of the matching time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut hash = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            hash = (hash.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
        self.0 = hash;
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The hash of a key.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(key);
    // Mixes in the length so that keys differing only by trailing zero bytes differ.
    hasher.write_u64(key.len() as u64);
    hasher.finish()
}

type Index = HashMap<u64, u32, BuildHasherDefault<FxHasher>>;

/// One ledger line as the matcher sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) cycle: u32,
    pub(crate) currency: u32,
    pub(crate) amount: Amount,
}

/// Every ledger line, compact.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    arena: Vec<u8>,
    key: Vec<(u32, u32)>,
    line: Vec<(u32, u32)>,
    line_no: Vec<u32>,
    cycle: Vec<u32>,
    currency: Vec<u32>,
    units: Vec<i64>,
    scale: Vec<u8>,
    date: Vec<i64>,
    /// Line dates (`line_date`), `i64::MIN` when unknown; empty when not declared.
    dated: Vec<i64>,
    /// `extras` values per entry (rule fields), interned; [`NONE`] when absent.
    extra: Vec<u32>,
    extras: usize,
    index: Index,
    next: Vec<u32>,
}

/// A ledger too large for the compact form (over 4 GiB of keys or 4 billion lines).
#[derive(Debug, thiserror::Error)]
#[error("the ledger is too large to reconcile in one run ({0})")]
pub struct LedgerTooLarge(pub &'static str);

impl Ledger {
    pub(crate) fn new(extras: usize) -> Self {
        Self {
            extras,
            ..Self::default()
        }
    }

    /// Number of lines.
    pub(crate) fn len(&self) -> usize {
        self.key.len()
    }

    fn store(&mut self, bytes: &[u8]) -> Result<(u32, u32), LedgerTooLarge> {
        let start = u32::try_from(self.arena.len()).map_err(|_| LedgerTooLarge("keys"))?;
        let len = u32::try_from(bytes.len()).map_err(|_| LedgerTooLarge("a key"))?;
        self.arena.extend_from_slice(bytes);
        if self.arena.len() > u32::MAX as usize {
            return Err(LedgerTooLarge("keys"));
        }
        Ok((start, len))
    }

    /// Adds a line; `dates` are its date for the window and its line date (each kept only
    /// when the flow declares it); `extra` holds its interned rule values.
    pub(crate) fn push(
        &mut self,
        key: &[u8],
        line: Option<&[u8]>,
        line_no: u64,
        entry: Entry,
        dates: (Option<i64>, Option<Option<i64>>),
        extra: &[u32],
    ) -> Result<(), LedgerTooLarge> {
        let (date, dated) = dates;
        let id = u32::try_from(self.key.len())
            .ok()
            .filter(|id| *id < NONE)
            .ok_or(LedgerTooLarge("lines"))?;
        let key_span = self.store(key)?;
        let line_span = match line {
            Some(line) => self.store(line)?,
            None => (0, NONE),
        };
        let units = i64::try_from(entry.amount.units()).map_err(|_| LedgerTooLarge("an amount"))?;
        self.key.push(key_span);
        self.line.push(line_span);
        self.line_no.push(u32::try_from(line_no).unwrap_or(NONE));
        self.cycle.push(entry.cycle);
        self.currency.push(entry.currency);
        self.units.push(units);
        self.scale.push(entry.amount.scale());
        if let Some(date) = date {
            self.date.push(date);
        }
        if let Some(dated) = dated {
            self.dated.push(dated.unwrap_or(i64::MIN));
        }
        self.extra.extend_from_slice(&extra[..self.extras]);
        // Chains lines with the same key hash, newest first; `lookup` compares the bytes.
        let previous = self.index.insert(key_hash(key), id).unwrap_or(NONE);
        self.next.push(previous);
        Ok(())
    }

    /// The lines whose key is `key`, in file order, into `out`.
    pub(crate) fn lookup(&self, key: &[u8], out: &mut Vec<u32>) {
        out.clear();
        let mut at = self.index.get(&key_hash(key)).copied().unwrap_or(NONE);
        while at != NONE {
            if self.key_of(at) == key {
                out.push(at);
            }
            at = self.next[at as usize];
        }
        out.reverse();
    }

    pub(crate) fn key_of(&self, id: u32) -> &[u8] {
        let (start, len) = self.key[id as usize];
        &self.arena[start as usize..(start + len) as usize]
    }

    /// The line's own ID, or `line N` when the ledger declares none.
    pub(crate) fn line_id(&self, id: u32) -> String {
        let (start, len) = self.line[id as usize];
        if len == NONE {
            return format!("line {}", self.line_no[id as usize]);
        }
        String::from_utf8_lossy(&self.arena[start as usize..(start + len) as usize]).into_owned()
    }

    pub(crate) fn entry(&self, id: u32) -> Entry {
        let i = id as usize;
        Entry {
            cycle: self.cycle[i],
            currency: self.currency[i],
            amount: Amount::new(i128::from(self.units[i]), self.scale[i]),
        }
    }

    pub(crate) fn date(&self, id: u32) -> Option<i64> {
        self.date.get(id as usize).copied()
    }

    /// The line date, when declared and known.
    pub(crate) fn dated(&self, id: u32) -> Option<i64> {
        self.dated
            .get(id as usize)
            .copied()
            .filter(|&at| at != i64::MIN)
    }

    pub(crate) fn extra(&self, id: u32, which: usize) -> u32 {
        self.extra
            .get(id as usize * self.extras + which)
            .copied()
            .unwrap_or(NONE)
    }

    pub(crate) fn line_no(&self, id: u32) -> u64 {
        u64::from(self.line_no[id as usize])
    }
}
