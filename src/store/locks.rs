//! Flow locks: a flow runs in at most one process at a time, whatever the processes are (two
//! `run`s, a `run` beside the daemon, two daemons on one state file).
//!
//! A lock is a row naming its holder (a random ID per run, with the pid, host and start time
//! an operator needs to find it) and a heartbeat the holder refreshes while it runs. A holder
//! that crashed is recognised in two ways: in the same boot of the same host and the same PID
//! namespace its process is gone (a container sharing the host name is not fooled), and from
//! anywhere its heartbeat is older than [`STALE_AFTER`]; its lock is then taken over, with an
//! audit entry. Every batch commit checks, in its own transaction, that the committing run
//! still holds the lock ([`super::Store::commit`]): a run that stalled past the stale limit
//! and lost its lock cannot commit over its successor. This module holds the rules and types
//! every backend shares; each backend keeps the row its own way (`sqlite/locks.rs`,
//! `postgres/`).

use std::time::Duration;

use super::{StoreError, now_rfc3339};

/// A heartbeat older than this marks the lock's holder as gone (the default of
/// [`stale_after`]).
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// How often a holder refreshes its heartbeat; well inside [`STALE_AFTER`].
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// The variable that shortens [`STALE_AFTER`] (a duration such as `3s`), so tests of a stalled
/// holder with real processes need not wait half a minute. Undocumented for operators: every
/// process sharing a state must agree on it.
const STALE_AFTER_VARIABLE: &str = "SWITCHYARD_LOCK_STALE_AFTER";

/// How long a holder's heartbeat (SQLite) or lease (PostgreSQL) stays good:
/// [`STALE_AFTER`], unless `SWITCHYARD_LOCK_STALE_AFTER` says otherwise.
pub fn stale_after() -> Duration {
    static STALE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *STALE.get_or_init(|| {
        let Ok(text) = std::env::var(STALE_AFTER_VARIABLE) else {
            return STALE_AFTER;
        };
        match crate::spec::parse_duration(&text) {
            Ok(stale) if stale >= Duration::from_secs(1) => stale,
            _ => {
                tracing::warn!(value = %text, "{STALE_AFTER_VARIABLE} is not a duration of 1s or more; using 30s.");
                STALE_AFTER
            }
        }
    })
}

/// How often a holder refreshes its heartbeat: [`HEARTBEAT_EVERY`], or a third of
/// [`stale_after`] when that is shorter, so two missed beats never lose a live lock.
pub fn heartbeat_every() -> Duration {
    HEARTBEAT_EVERY.min(stale_after() / 3)
}

/// Who holds (or wants) a flow's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// Random ID of this run: two runs in one process are different holders.
    pub id: String,
    /// The holder's process ID.
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// Where its process ID means something: the host's boot and the PID namespace. Two
    /// containers can share a host name but not this, and a pid is only checked against
    /// `/proc` when this matches.
    pub machine: String,
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
            machine: machine_id(),
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

/// This boot of this host and this PID namespace, where they can be read (Linux); empty
/// elsewhere, and then only heartbeats tell a holder is gone.
fn machine_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id");
    let namespace = std::fs::read_link("/proc/self/ns/pid");
    match (boot, namespace) {
        (Ok(boot), Ok(namespace)) => format!("{}/{}", boot.trim(), namespace.display()),
        _ => String::new(),
    }
}

/// The rule both stores apply when `holder` asks for a lock `other` holds: refused while
/// `other` may be alive (its heartbeat or lease has not `lapsed` and its process is not known
/// to be gone); otherwise the audit detail of the takeover, `lapse` saying how it lapsed.
pub(crate) fn takeover(
    flow: &str,
    other: &LockHolder,
    holder: &LockHolder,
    lapsed: bool,
    lapse: &str,
) -> Result<serde_json::Value, StoreError> {
    let gone = holder_gone(other, holder);
    if !lapsed && !gone {
        return Err(StoreError::FlowLocked {
            flow: flow.to_owned(),
            holder: Box::new(other.clone()),
        });
    }
    let why = if gone { "its process is gone" } else { lapse };
    tracing::warn!(flow, previous = %other, why, "Taking over the lock of a crashed run.");
    Ok(serde_json::json!({
        "previous": other.to_string(), "why": why, "new": holder.to_string(),
    }))
}

/// Whether `other`'s process is known to be gone, as seen by `me`: only in the same boot of
/// the same host and the same PID namespace does its pid mean anything here.
fn holder_gone(other: &LockHolder, me: &LockHolder) -> bool {
    !other.machine.is_empty() && other.machine == me.machine && !process_alive(other.pid)
}

/// Whether a process with this ID runs on this host. Where `/proc` does not exist the answer
/// is "yes", and only the heartbeat can show the holder is gone.
fn process_alive(pid: u32) -> bool {
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
