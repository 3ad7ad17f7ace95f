//! How much of a rejected record's original a dead letter keeps: at most the workspace's
//! `max_dead_letter_record_size`, so one huge record cannot bloat the state file, and never
//! silently — a cut original carries its full length and SHA-256.
//!
//! This is the only place that decides what part of an original is stored.

use sha2::{Digest, Sha256};

use crate::store::RecordTruncation;

/// `state.max_dead_letter_record_size` when the workspace does not set it.
pub const DEFAULT_MAX_DEAD_LETTER_RECORD_BYTES: u64 = 1024 * 1024;

/// The part of `original` a dead letter keeps, and what it knows of the rest: the whole
/// original when it fits in `limit` bytes, else its start (cut on a character boundary).
pub(crate) fn keep_original(original: String, limit: u64) -> (String, Option<RecordTruncation>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if original.len() <= limit {
        return (original, None);
    }
    let truncation = RecordTruncation {
        original_bytes: original.len() as u64,
        sha256: hex::encode(Sha256::digest(original.as_bytes())),
    };
    let mut kept = original;
    kept.truncate(kept.floor_char_boundary(limit));
    (kept, Some(truncation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_original_is_kept_whole() {
        assert_eq!(keep_original("abc".into(), 3), ("abc".into(), None));
    }

    #[test]
    fn a_long_original_is_cut_on_a_character_boundary_and_says_so() {
        let original = "ééé".to_owned(); // 6 bytes
        let (kept, truncation) = keep_original(original.clone(), 3);
        assert_eq!(kept, "é");
        let truncation = truncation.expect("cut");
        assert_eq!(truncation.original_bytes, 6);
        assert_eq!(
            truncation.sha256,
            hex::encode(Sha256::digest(original.as_bytes()))
        );
    }
}
