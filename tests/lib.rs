//! The single integration-test binary: one `mod` per area, shared helpers in `util`. One
//! binary links once, which matters on small machines.

mod daemon;
mod explain;
mod files;
mod hardening;
mod limits;
mod metrics;
mod orders;
mod paging;
mod runtime;
mod schema;
mod security;
mod util;
mod validate;
