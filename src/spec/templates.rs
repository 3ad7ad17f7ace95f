//! The template facts validation needs, taken from `mapping::syntax` so the spec core and the
//! runtime agree on what a template references and which helpers exist.

pub(crate) use crate::mapping::syntax::{inspect, is_known_helper};

/// Every helper a template may call, for "did you mean" hints.
pub(crate) fn known_helpers() -> impl Iterator<Item = &'static str> {
    crate::mapping::helpers::HELPERS
        .iter()
        .chain(crate::mapping::syntax::BLOCK_HELPERS)
        .copied()
}
