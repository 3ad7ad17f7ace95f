//! Flow locks: a flow runs in at most one process at a time, whatever the processes are (two
//! `run`s, a `run` beside the daemon, two daemons on one state file).
//!
//! A lock is a row naming its holder (a random ID per run, with the pid, host and start time
//! an operator needs to find it) and a heartbeat the holder refreshes while it runs. A holder
//! that crashed is recognised in two ways: in the same boot of the same host and the same PID
//! namespace its process is gone (a container sharing the host name is not fooled), and from
//! anywhere its heartbeat is older than [`STALE_AFTER`]; its lock is then taken over, with an
//! audit entry. Every batch commit checks, in its own transaction, that the committing run
//! still holds the lock ([`Store::commit`]): a run that stalled past the stale limit and lost
//! its lock cannot commit over its successor.

use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Store, StoreError, audit, now_rfc3339};

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

impl Store {
    /// Takes the lock of `flow` for `holder`, taking over a lock whose holder is gone.
    /// Fails with [`StoreError::FlowLocked`] while another live holder has it.
    pub fn acquire_flow_lock(&self, flow: &str, holder: &LockHolder) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let now_ms = wall_ms();
        let sqlite = |e| self.sqlite(e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let current = tx
            .query_row(
                "SELECT holder, pid, host, since, heartbeat_ms, machine FROM flow_locks
                 WHERE flow = ?1",
                params![flow],
                |row| {
                    Ok((
                        LockHolder {
                            id: row.get(0)?,
                            pid: row.get(1)?,
                            host: row.get(2)?,
                            since: row.get(3)?,
                            machine: row.get(5)?,
                        },
                        row.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(sqlite)?;
        if let Some((other, heartbeat_ms)) = &current
            && other.id != holder.id
        {
            let stale = now_ms - heartbeat_ms > STALE_AFTER.as_millis() as i64;
            let gone = !other.machine.is_empty()
                && other.machine == holder.machine
                && !process_alive(other.pid);
            if !stale && !gone {
                return Err(StoreError::FlowLocked {
                    flow: flow.to_owned(),
                    holder: Box::new(other.clone()),
                });
            }
            let why = if gone {
                "its process is gone"
            } else {
                "its heartbeat stopped"
            };
            tracing::warn!(flow, previous = %other, why, "Taking over the lock of a crashed run.");
            let detail = serde_json::json!({
                "previous": other.to_string(), "why": why, "new": holder.to_string(),
            });
            audit(
                &tx,
                Some(flow),
                "flow-lock-taken-over",
                "runtime",
                &detail,
                &now_rfc3339(),
            )
            .map_err(sqlite)?;
        }
        tx.execute(
            "INSERT INTO flow_locks (flow, holder, pid, host, since, heartbeat_ms, machine)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (flow) DO UPDATE SET holder = excluded.holder, pid = excluded.pid,
               host = excluded.host, since = excluded.since,
               heartbeat_ms = excluded.heartbeat_ms, machine = excluded.machine",
            params![
                flow,
                holder.id,
                holder.pid,
                holder.host,
                holder.since,
                now_ms,
                holder.machine
            ],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)
    }

    /// Refreshes the heartbeat; `false` when `holder` no longer has the lock.
    pub fn refresh_flow_lock(&self, flow: &str, holder_id: &str) -> Result<bool, StoreError> {
        let conn = self.conn();
        refresh(&conn, flow, holder_id).map_err(|e| self.sqlite(e))
    }

    /// Releases the lock if `holder` still has it.
    pub fn release_flow_lock(&self, flow: &str, holder_id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM flow_locks WHERE flow = ?1 AND holder = ?2",
                params![flow, holder_id],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// The holder of a flow's lock, if any (live or not).
    pub fn flow_lock_holder(&self, flow: &str) -> Result<Option<LockHolder>, StoreError> {
        self.conn()
            .query_row(
                "SELECT holder, pid, host, since, machine FROM flow_locks WHERE flow = ?1",
                params![flow],
                |row| {
                    Ok(LockHolder {
                        id: row.get(0)?,
                        pid: row.get(1)?,
                        host: row.get(2)?,
                        since: row.get(3)?,
                        machine: row.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }
}

/// Refreshes a holder's heartbeat inside `conn`'s current transaction, if any; `false` when
/// the holder no longer has the lock.
pub(super) fn refresh(
    conn: &rusqlite::Connection,
    flow: &str,
    holder_id: &str,
) -> rusqlite::Result<bool> {
    let updated = conn
        .prepare_cached("UPDATE flow_locks SET heartbeat_ms = ?3 WHERE flow = ?1 AND holder = ?2")?
        .execute(params![flow, holder_id, wall_ms()])?;
    Ok(updated == 1)
}

/// Wall-clock Unix milliseconds: locks are shared between processes, so they never use a
/// run's (possibly virtual) clock.
fn wall_ms() -> i64 {
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
