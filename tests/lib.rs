//! The single integration-test binary: one `mod` per area, shared helpers in `util`. One
//! binary links once, which matters on small machines.

mod auth;
mod daemon;
mod diff;
mod enrich;
mod evidence;
mod explain;
mod file_drop;
mod files;
mod flowtests;
mod github_actions;
mod guards;
mod hardening;
mod ledger_postgres;
mod ledger_sqlite;
mod limits;
mod mapping;
mod metrics;
mod money;
mod orders;
mod paging;
mod paging_ends;
mod postgres_state;
mod reconcile;
mod reconcile_metrics;
mod requests;
mod runtime;
mod schema;
mod security;
mod settlement;
mod settlement_kill;
mod state;
mod statement_paging;
mod util;
mod validate;
