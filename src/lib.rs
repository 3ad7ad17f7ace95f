//! Switchyard: a declarative integration flow engine for marketplaces.
//!
//! The crate is split in phases that mirror a spec's life: `spec` reads and validates YAML
//! (no I/O beyond reading the workspace files), `mapping` and `contract` compile what a flow
//! declares, `runtime` executes compiled flows through `connectors`, keeping its state in
//! `store`. `sandbox` simulates the marketplace systems for local runs and tests.

pub mod cli;
pub mod connectors;
pub mod contract;
pub mod daemon;
pub mod error_text;
pub mod flowtest;
pub mod mapping;
pub mod metrics;
pub mod money;
pub mod reconcile;
pub mod redact;
pub mod runtime;
pub mod sandbox;
pub mod spec;
pub mod store;
