//! Flow locks in SQLite: a row per flow naming its holder, with a heartbeat (the rules are
//! in `store/locks.rs`). Every batch commit refreshes the row in its own transaction and is
//! refused when the run no longer holds it.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Db, audit};
use crate::store::locks::{takeover, wall_ms};
use crate::store::{LockHolder, StoreError, now_rfc3339, stale_after};

impl Db {
    /// Takes the lock of `flow` for `holder`, taking over a lock whose holder is gone.
    /// Fails with [`StoreError::FlowLocked`] while another live holder has it.
    pub(super) fn acquire_flow_lock(
        &self,
        flow: &str,
        holder: &LockHolder,
    ) -> Result<(), StoreError> {
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
            let stale = now_ms - heartbeat_ms > stale_after().as_millis() as i64;
            let detail = takeover(flow, other, holder, stale, "its heartbeat stopped")?;
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
    pub(super) fn refresh_flow_lock(
        &self,
        flow: &str,
        holder_id: &str,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        refresh(&conn, flow, holder_id).map_err(|e| self.sqlite(e))
    }

    /// Releases the lock if `holder` still has it.
    pub(super) fn release_flow_lock(&self, flow: &str, holder_id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM flow_locks WHERE flow = ?1 AND holder = ?2",
                params![flow, holder_id],
            )
            .map(drop)
            .map_err(|e| self.sqlite(e))
    }

    /// The holder of a flow's lock, if any (live or not).
    pub(super) fn flow_lock_holder(&self, flow: &str) -> Result<Option<LockHolder>, StoreError> {
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
