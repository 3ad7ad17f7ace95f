//! How much of a rejected record's original a dead letter keeps: at most the workspace's
//! `max_dead_letter_record_size`, so one huge record cannot bloat the state file, and never
//! silently — a cut original carries its full length and SHA-256.
//!
//! This is the only place that decides what part of an original is stored.

use sha2::{Digest, Sha256};

use crate::store::{Original, RecordTruncation};

pub use crate::spec::compiled::DEFAULT_MAX_DEAD_LETTER_RECORD_BYTES;

/// The part of `original` a dead letter keeps, and what it knows of the rest: the whole
/// original when it fits in `limit` bytes, else its start (cut on a character boundary when
/// the original is UTF-8, on the byte otherwise).
pub(crate) fn keep_original(
    original: Original,
    limit: u64,
) -> (Original, Option<RecordTruncation>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if original.len() <= limit {
        return (original, None);
    }
    let truncation = RecordTruncation {
        original_bytes: original.len() as u64,
        sha256: hex::encode(Sha256::digest(original.as_bytes())),
    };
    let cut = match original.as_str() {
        Some(text) => text.floor_char_boundary(limit),
        None => limit,
    };
    let mut kept = original.as_bytes().to_vec();
    kept.truncate(cut);
    (Original::new(kept), Some(truncation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_original_is_kept_whole() {
        assert_eq!(
            keep_original(Original::from("abc"), 3),
            (Original::from("abc"), None)
        );
    }

    #[test]
    fn a_long_original_is_cut_on_a_character_boundary_and_says_so() {
        let original = "ééé".to_owned(); // 6 bytes
        let (kept, truncation) = keep_original(Original::from(original.as_str()), 3);
        assert_eq!(kept, Original::from("é"));
        let truncation = truncation.expect("cut");
        assert_eq!(truncation.original_bytes, 6);
        assert_eq!(
            truncation.sha256,
            hex::encode(Sha256::digest(original.as_bytes()))
        );
    }

    #[test]
    fn an_original_that_is_not_utf8_is_cut_on_the_byte() {
        let (kept, truncation) = keep_original(Original::new(vec![0xff; 10]), 4);
        assert_eq!(kept.as_bytes(), &[0xff; 4]);
        assert_eq!(truncation.map(|t| t.original_bytes), Some(10));
    }
}
