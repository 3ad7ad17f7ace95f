//! Flow locks: a flow runs in at most one process at a time, whatever the processes are (two
//! `run`s, a `run` beside the daemon, two daemons on one state file).
//!
//! A lock is a row naming its holder (a random ID per run, with the pid, host and start time
//! an operator needs to find it) and a heartbeat the holder refreshes while it runs. A holder
//! that crashed is recognised in two ways: on the same host its process is gone, and from
//! anywhere its heartbeat is older than [`STALE_AFTER`]; its lock is then taken over, with an
//! audit entry. Every batch commit checks, in its own transaction, that the committing run
//! still holds the lock ([`super::Store::commit`]): a run that stalled past the stale limit
//! and lost its lock cannot commit over its successor. This module holds the rules and types
//! every backend shares; each backend keeps the row its own way (`sqlite/locks.rs`,
//! `postgres/`).

use std::time::Duration;

use super::now_rfc3339;

/// A heartbeat older than this marks the lock's holder as gone.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// How often a holder refreshes its heartbeat; well inside [`STALE_AFTER`].
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Who holds (or wants) a flow's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// Random ID of this run: two runs in one process are different holders.
    pub id: String,
    /// The holder's process ID.
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// When the holder took the lock (RFC 3339).
    pub since: String,
}

impl LockHolder {
    /// A new holder for this process.
    pub fn this_process() -> Self {
        Self {
            id: format!("{:016x}", rand::random::<u64>()),
            pid: std::process::id(),
            host: host_name(),
            since: now_rfc3339(),
        }
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} since {}", self.pid, self.host, self.since)
    }
}

/// Wall-clock Unix milliseconds: locks are shared between processes, so they never use a
/// run's (possibly virtual) clock.
pub(crate) fn wall_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Whether a process with this ID runs on this host. Where `/proc` does not exist the answer
/// is "yes", and only the heartbeat can show the holder is gone.
pub(crate) fn process_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    // A zombie (exited, not yet reaped by its parent) holds nothing any more.
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
