//! The single integration-test binary: one `mod` per area, shared helpers in `util`. One
//! binary links once, which matters on small machines.

mod daemon;
mod explain;
mod files;
mod hardening;
mod ledger_postgres;
mod limits;
mod metrics;
mod orders;
mod paging;
mod paging_ends;
mod postgres_state;
mod runtime;
mod schema;
mod security;
mod state;
mod util;
mod validate;
