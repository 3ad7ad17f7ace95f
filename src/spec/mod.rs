//! Spec files: raw types (`raw`), loading with source positions, validation with diagnostics,
//! and the resolved model (`model`). Nothing here touches the network, tokio or the state
//! store, so the spec core stays fast to build, test and fuzz.

pub mod model;
pub mod raw;
