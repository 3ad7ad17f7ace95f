//! The single integration-test binary: one `mod` per area, shared helpers in `util`. One
//! binary links once, which matters on small machines.

mod auth;
mod daemon;
mod enrich;
mod explain;
mod files;
mod flowtests;
mod guards;
mod hardening;
mod ledger_postgres;
mod limits;
mod mapping;
mod metrics;
mod money;
mod orders;
mod paging;
mod paging_ends;
mod postgres_state;
mod requests;
mod runtime;
mod schema;
mod security;
mod state;
mod util;
mod validate;
