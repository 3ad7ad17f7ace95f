//! One conformance suite for every state backend: each case is an async function taking a
//! [`Store`], run once on SQLite (a temporary file) and once on PostgreSQL (a fresh schema of
//! `$SWITCHYARD_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1/test`; see
//! `store/testing.rs`).
//!
//! Without PostgreSQL the PostgreSQL half of each case is skipped, and says so on stderr
//! (written past the test harness's capture, so a plain `cargo test` shows it). With
//! `SWITCHYARD_REQUIRE_POSTGRES=1` (CI) a PostgreSQL that does not answer fails the test.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::testing::{self, drop_schema, raw_postgres};
use super::*;

/// Where a case runs, kept so a case can reach behind the interface where only the backend
/// can (ageing a lease without waiting for it).
enum Backend {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

struct Fixture {
    store: Store,
    backend: Backend,
}

impl Fixture {
    async fn sqlite(case: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-conformance-{case}-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let store = Store::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        Self {
            store,
            backend: Backend::Sqlite(path),
        }
    }

    /// A store on a fresh schema, or `None` (after saying so) when PostgreSQL does not answer
    /// and is not required.
    async fn postgres(case: &str) -> Option<Self> {
        let url = testing::postgres_url();
        let schema = format!("sy_conformance_{case}_{}", std::process::id());
        let test = format!("store::conformance::{case}::postgres");
        if !testing::fresh_schema(&test, &url, &schema).await {
            return None;
        }
        let store = Store::connect(&testing::with_schema(&url, &schema))
            .await
            .unwrap_or_else(|err| panic!("{test}: {}", crate::error_text::with_causes(&err)));
        Some(Self {
            store,
            backend: Backend::Postgres { url, schema },
        })
    }

    /// Makes the flow lock's holder look crashed long ago (heartbeat stale, lease expired).
    async fn age_lock(&self, flow: &str) {
        match &self.backend {
            Backend::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute(
                    "UPDATE flow_locks SET heartbeat_ms = heartbeat_ms - ?2 WHERE flow = ?1",
                    rusqlite::params![flow, (STALE_AFTER * 2).as_millis() as i64],
                )
                .unwrap();
            }
            Backend::Postgres { url, schema } => {
                let client = raw_postgres(url).await.unwrap();
                client
                    .execute(
                        &format!(
                            "UPDATE \"{schema}\".flow_locks \
                             SET expires_at = now() - interval '1 minute' WHERE flow = $1"
                        ),
                        &[&flow],
                    )
                    .await
                    .unwrap();
            }
        }
    }

    /// Removes what the case left behind (kept when it failed, to look at).
    async fn finish(self) {
        match self.backend {
            Backend::Sqlite(path) => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Backend::Postgres { url, schema } => {
                let _ = drop_schema(&url, &schema).await;
            }
        }
    }
}

/// Declares a case: a module with a `sqlite` and a `postgres` test running it.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let fixture = super::Fixture::sqlite(stringify!($case)).await;
                super::cases::$case(&fixture).await;
                fixture.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(fixture) = super::Fixture::postgres(stringify!($case)).await {
                    super::cases::$case(&fixture).await;
                    fixture.finish().await;
                }
            }
        }
    )*};
}

conformance!(
    checkpoints_and_processed_keys,
    dead_letters,
    resolving_commits,
    retry_clocks,
    inbox,
    outbox,
    cross_references,
    audit,
    flow_locks,
);

/// PostgreSQL only (SQLite's concurrent first open is `tests/hardening.rs`'s): processes
/// starting together on a new schema all connect, and each migration is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_starts_migrate_once() {
    let Some(fixture) = Fixture::postgres("concurrent_starts").await else {
        return;
    };
    let Backend::Postgres { url, schema } = &fixture.backend else {
        unreachable!("a PostgreSQL fixture");
    };
    // Start again from nothing, six at once.
    drop_schema(url, schema).await.unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let target = format!("{url}{separator}schema={schema}");
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move { Store::connect(&target).await.map(drop) })
        })
        .collect();
    for start in starts {
        start.await.unwrap().expect("every start connects");
    }
    let client = raw_postgres(url).await.unwrap();
    let rows = client
        .query(
            &format!("SELECT version FROM \"{schema}\".schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert!(!versions.is_empty());
    assert_eq!(versions, expected, "each migration applied once");
    fixture.finish().await;
}

fn letter(flow: &str, failure: &str, key: &str) -> NewDeadLetter {
    NewDeadLetter {
        flow: flow.into(),
        object: "offer".into(),
        record_key: Some(key.into()),
        idempotency_key: Some(format!("{key}:2025")),
        failure: failure.into(),
        reason: "missing_price".into(),
        error: "price is required".into(),
        attempts: 0,
        owner: "seller-support".into(),
        action: Some("request-correction".into()),
        record: format!("{{\"offer_id\":{key}}}").into(),
        line: None,
        record_truncated: None,
    }
}

fn alert(flow: &str) -> OutboxAlert {
    OutboxAlert {
        owner: "seller-support".into(),
        url: "http://127.0.0.1:1/alerts".into(),
        payload: json!({"flow": flow}),
    }
}

fn holder(id: &str, pid: u32, host: &str) -> LockHolder {
    LockHolder {
        id: id.into(),
        pid,
        host: host.into(),
        machine: if host == LockHolder::this_process().host {
            LockHolder::this_process().machine
        } else {
            "another-boot/another-namespace".into()
        },
        since: now_rfc3339(),
    }
}

mod cases {
    use super::*;

    pub(super) async fn checkpoints_and_processed_keys(fixture: &Fixture) {
        let store = &fixture.store;
        assert_eq!(store.checkpoint("offers").await.unwrap(), None);
        let first = CommitBatch {
            flow: "offers".into(),
            checkpoint: Checkpoint {
                position: json!({"line": 10}),
                sink_state: json!({"len": 99}),
            },
            processed_keys: vec![key_hash("a"), key_hash("b")],
            delivered: 2,
            ..CommitBatch::default()
        };
        assert_eq!(store.commit(first).await.unwrap(), Vec::<i64>::new());
        let second = CommitBatch {
            flow: "offers".into(),
            checkpoint: Checkpoint {
                position: json!({"line": 20}),
                sink_state: Value::Null,
            },
            processed_keys: vec![key_hash("c")],
            ..CommitBatch::default()
        };
        store.commit(second).await.unwrap();
        let checkpoint = store.checkpoint("offers").await.unwrap().unwrap();
        assert_eq!(checkpoint.position, json!({"line": 20}));
        assert_eq!(checkpoint.sink_state, Value::Null);
        let mut keys = HashSet::new();
        store
            .load_processed_keys("offers", &mut keys)
            .await
            .unwrap();
        let expected = HashSet::from([key_hash("a"), key_hash("b"), key_hash("c")]);
        assert_eq!(keys, expected);
        let mut other = HashSet::new();
        store
            .load_processed_keys("other", &mut other)
            .await
            .unwrap();
        assert!(other.is_empty());
        assert_eq!(store.checkpoint("other").await.unwrap(), None);
        let trail = store.audit_trail(1).await.unwrap();
        assert_eq!(trail[0].action, "batch-committed");
        assert_eq!(trail[0].flow.as_deref(), Some("offers"));
        assert_eq!(trail[0].detail["position"], json!({"line": 20}));
    }

    pub(super) async fn dead_letters(fixture: &Fixture) {
        let store = &fixture.store;
        let mut odd = letter("offers", "contract-violation", "3");
        // Not UTF-8, with a NUL: kept byte for byte all the same.
        odd.record = Original::new(b"{\"name\":\"caf\xe9\"}\0".to_vec());
        odd.line = Some(42);
        let batch = CommitBatch {
            flow: "offers".into(),
            dead_letters: vec![
                (
                    letter("offers", "contract-violation", "1"),
                    Some(alert("offers")),
                ),
                (letter("offers", "sink-unavailable", "2"), None),
                (odd.clone(), Some(alert("offers"))),
            ],
            ..CommitBatch::default()
        };
        let ids = store.commit(batch).await.unwrap();
        assert_eq!(ids.len(), 3);
        assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
        store
            .commit(CommitBatch {
                flow: "orders".into(),
                dead_letters: vec![(letter("orders", "contract-violation", "9"), None)],
                ..CommitBatch::default()
            })
            .await
            .unwrap();

        let all = store
            .dead_letters(&DeadLetterFilter::default())
            .await
            .unwrap();
        assert_eq!(all.len(), 4);
        let by_failure = DeadLetterFilter {
            failure: Some("sink-unavailable".into()),
            ..DeadLetterFilter::default()
        };
        let listed = store.dead_letters(&by_failure).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, ids[1]);
        assert_eq!(listed[0].status, DeadLetterStatus::Open);
        let by_flow = DeadLetterFilter {
            flow: Some("offers".into()),
            limit: Some(2),
            ..DeadLetterFilter::default()
        };
        let listed: Vec<i64> = store
            .dead_letters(&by_flow)
            .await
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(listed, ids[..2]);

        let shown = store.dead_letter(ids[2]).await.unwrap();
        assert_eq!(shown.letter, odd, "stored exactly, original bytes included");
        assert_eq!(shown.letter.record.as_bytes(), b"{\"name\":\"caf\xe9\"}\0");
        let alerts = store.due_alerts(i64::MAX, 10).await.unwrap();
        let announced: Vec<&Value> = alerts
            .iter()
            .map(|a| &a.alert.payload["dead_letter_id"])
            .collect();
        assert_eq!(
            announced,
            [&json!(ids[0]), &json!(ids[2])],
            "each alert names its letter"
        );

        let counts = store.open_dead_letter_counts().await.unwrap();
        let row = |flow: &str, failure: &str, count: u64| {
            (
                flow.to_owned(),
                failure.to_owned(),
                "seller-support".to_owned(),
                count,
            )
        };
        assert_eq!(
            counts,
            [
                row("offers", "contract-violation", 2),
                row("offers", "sink-unavailable", 1),
                row("orders", "contract-violation", 1),
            ]
        );

        store
            .resolve_dead_letter(
                ids[0],
                DeadLetterStatus::Suppressed,
                "alice",
                "seller closed shop",
            )
            .await
            .unwrap();
        let resolved = store.dead_letter(ids[0]).await.unwrap();
        assert_eq!(resolved.status, DeadLetterStatus::Suppressed);
        assert_eq!(resolved.resolved_by.as_deref(), Some("alice"));
        assert_eq!(resolved.note.as_deref(), Some("seller closed shop"));
        let trail = store.audit_trail(1).await.unwrap();
        assert_eq!(trail[0].action, "dead-letter-suppressed");
        assert_eq!(trail[0].actor, "alice");
        let open = DeadLetterFilter {
            status: Some(DeadLetterStatus::Open),
            flow: Some("offers".into()),
            ..DeadLetterFilter::default()
        };
        assert_eq!(store.dead_letters(&open).await.unwrap().len(), 2);

        store
            .note_failed_replay(ids[1], "bob", "503 again")
            .await
            .unwrap();
        let noted = store.dead_letter(ids[1]).await.unwrap();
        assert_eq!(noted.status, DeadLetterStatus::Open);
        assert_eq!(noted.letter.attempts, 1);
        assert_eq!(noted.note.as_deref(), Some("replay failed: 503 again"));
        let trail = store.audit_trail(1).await.unwrap();
        assert_eq!(trail[0].action, "dead-letter-replay-failed");
        store
            .resolve_dead_letter(ids[1], DeadLetterStatus::Replayed, "bob", "delivered")
            .await
            .unwrap();
        assert_eq!(
            store.dead_letter(ids[1]).await.unwrap().status,
            DeadLetterStatus::Replayed
        );
        assert!(matches!(
            store.dead_letter(999_999).await,
            Err(StoreError::NoSuchDeadLetter(999_999))
        ));
    }

    /// A batch that resolves a dead letter (a replay to a batch sink) commits the letter's
    /// new status with its checkpoint, or nothing at all when the letter is no longer open.
    pub(super) async fn resolving_commits(fixture: &Fixture) {
        let store = &fixture.store;
        let ids = store
            .commit(CommitBatch {
                flow: "offers".into(),
                dead_letters: vec![(letter("offers", "contract-violation", "1"), None)],
                ..CommitBatch::default()
            })
            .await
            .unwrap();
        let replayed = |position: i64| CommitBatch {
            flow: "offers".into(),
            checkpoint: Checkpoint {
                position: json!({ "line": position }),
                sink_state: json!({ "len": position * 10 }),
            },
            delivered: 1,
            resolves: Some(Resolution {
                id: ids[0],
                status: DeadLetterStatus::Replayed,
                actor: "alice".into(),
                note: "delivered on replay".into(),
            }),
            ..CommitBatch::default()
        };
        store.commit(replayed(1)).await.unwrap();
        let resolved = store.dead_letter(ids[0]).await.unwrap();
        assert_eq!(resolved.status, DeadLetterStatus::Replayed);
        assert_eq!(resolved.resolved_by.as_deref(), Some("alice"));
        assert_eq!(resolved.note.as_deref(), Some("delivered on replay"));
        let actions: Vec<String> = store
            .audit_trail(2)
            .await
            .unwrap()
            .into_iter()
            .map(|entry| entry.action)
            .collect();
        assert_eq!(actions, ["batch-committed", "dead-letter-replayed"]);

        // A second replay's commit: refused whole, the checkpoint where the first left it.
        let refused = store.commit(replayed(2)).await.unwrap_err();
        assert!(
            matches!(refused, StoreError::DeadLetterResolved(id) if id == ids[0]),
            "{refused}"
        );
        let checkpoint = store.checkpoint("offers").await.unwrap().unwrap();
        assert_eq!(checkpoint.position, json!({ "line": 1 }));
        assert_eq!(checkpoint.sink_state, json!({ "len": 10 }));
        assert_eq!(
            store.audit_trail(1).await.unwrap()[0].action,
            "batch-committed"
        );

        // Another flow's batch cannot resolve this flow's letter.
        let open = store
            .commit(CommitBatch {
                flow: "offers".into(),
                dead_letters: vec![(letter("offers", "contract-violation", "2"), None)],
                ..CommitBatch::default()
            })
            .await
            .unwrap();
        let mut foreign = replayed(3);
        foreign.flow = "orders".into();
        foreign.resolves = foreign.resolves.map(|r| Resolution { id: open[0], ..r });
        assert!(matches!(
            store.commit(foreign).await,
            Err(StoreError::DeadLetterResolved(_))
        ));
        assert_eq!(
            store.dead_letter(open[0]).await.unwrap().status,
            DeadLetterStatus::Open
        );
    }

    pub(super) async fn retry_clocks(fixture: &Fixture) {
        let store = &fixture.store;
        let first = store
            .record_failure("offers", "k", 1_000, "503")
            .await
            .unwrap();
        assert_eq!(
            first,
            RetryState {
                first_failure_ms: 1_000,
                attempts: 1
            }
        );
        let second = store
            .record_failure("offers", "k", 5_000, "503")
            .await
            .unwrap();
        assert_eq!(
            second,
            RetryState {
                first_failure_ms: 1_000,
                attempts: 2
            }
        );
        store
            .record_failure("offers", "j", 7_000, "429")
            .await
            .unwrap();
        store
            .record_failure("other", "k", 9_000, "500")
            .await
            .unwrap();
        let keys: Vec<String> = ["k", "j", "never"].map(String::from).to_vec();
        let states = store.retry_states("offers", &keys).await.unwrap();
        assert_eq!(states.len(), 2, "{states:?}");
        assert_eq!(states["k"], second);
        assert_eq!(states["j"].first_failure_ms, 7_000);
        assert!(store.retry_states("offers", &[]).await.unwrap().is_empty());

        store.clear_retry("offers", "k").await.unwrap();
        assert_eq!(store.retry_state("offers", "k").await.unwrap(), None);
        assert!(store.retry_state("other", "k").await.unwrap().is_some());

        // A record dead-lettered in a batch forgets its clock in the same transaction.
        let mut dead = letter("offers", "sink-unavailable", "j");
        dead.idempotency_key = Some("j".into());
        store
            .commit(CommitBatch {
                flow: "offers".into(),
                dead_letters: vec![(dead, None)],
                ..CommitBatch::default()
            })
            .await
            .unwrap();
        assert_eq!(store.retry_state("offers", "j").await.unwrap(), None);
    }

    pub(super) async fn inbox(fixture: &Fixture) {
        let store = &fixture.store;
        let first = store.inbox_insert("orders", "evt-1", "{}").await.unwrap();
        assert!(matches!(first, InboxInsert::Stored(_)));
        let again = store
            .inbox_insert("orders", "evt-1", "{\"x\":1}")
            .await
            .unwrap();
        assert_eq!(again, InboxInsert::Duplicate);
        assert!(matches!(
            store.inbox_insert("refunds", "evt-1", "{}").await.unwrap(),
            InboxInsert::Stored(_)
        ));
        for id in ["a", "b", "c", "d"] {
            store
                .inbox_insert("orders", id, &format!("{{\"id\":\"{id}\"}}"))
                .await
                .unwrap();
        }
        let pending = store.inbox_pending("orders", 3).await.unwrap();
        let ids: Vec<_> = pending.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["evt-1", "a", "b"], "arrival order, limited");
        assert_eq!(pending[0].body, b"{}", "the first body is kept");
        assert_eq!(pending[1].body, br#"{"id":"a"}"#);

        store.inbox_processed(&[pending[0].id]).await.unwrap();
        store
            .inbox_failed(&[pending[1].id, pending[2].id], "boom")
            .await
            .unwrap();
        let pending = store.inbox_pending("orders", 10).await.unwrap();
        let state: Vec<_> = pending
            .iter()
            .map(|e| (e.event_id.as_str(), e.attempts))
            .collect();
        assert_eq!(state, [("a", 1), ("b", 1), ("c", 0), ("d", 0)]);
        assert_eq!(store.inbox_count("orders", "processed").await.unwrap(), 1);
        assert_eq!(store.inbox_count("orders", "pending").await.unwrap(), 4);

        // Unreadable events: dead-lettered once, with their alert, and no longer pending.
        let (c, d) = (pending[2].id, pending[3].id);
        store.inbox_processed(&[d]).await.unwrap();
        let letters = vec![
            (
                c,
                letter("orders", "contract-violation", "c"),
                Some(alert("orders")),
            ),
            (d, letter("orders", "contract-violation", "d"), None),
        ];
        let ids = store.inbox_dead_letter("orders", &letters).await.unwrap();
        assert!(ids[0].is_some());
        assert_eq!(ids[1], None, "an event no longer pending is left alone");
        let again = store
            .inbox_dead_letter("orders", &letters[..1])
            .await
            .unwrap();
        assert_eq!(again, [None], "never dead-lettered twice");
        assert_eq!(store.inbox_count("orders", "pending").await.unwrap(), 2);
        let stored = store
            .dead_letters(&DeadLetterFilter::default())
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(Some(stored[0].id), ids[0]);
        assert_eq!(store.undelivered_alerts().await.unwrap(), 1);
        let trail = store.audit_trail(1).await.unwrap();
        assert_eq!(trail[0].action, "inbox-event-dead-lettered");
    }

    pub(super) async fn outbox(fixture: &Fixture) {
        let store = &fixture.store;
        for n in 0..3 {
            store
                .enqueue_alert(&OutboxAlert {
                    payload: json!({"n": n}),
                    ..alert("offers")
                })
                .await
                .unwrap();
        }
        assert_eq!(store.undelivered_alerts().await.unwrap(), 3);
        let now = 1_000_000;
        let due = store.due_alerts(now, 10).await.unwrap();
        assert_eq!(due.len(), 3);
        assert_eq!(due[0].alert.payload, json!({"n": 0}));
        assert_eq!(due[0].attempts, 0);

        let claimed = store.claim_due_alerts(now, 2).await.unwrap();
        let claimed_ids: Vec<i64> = claimed.iter().map(|a| a.id).collect();
        assert_eq!(claimed_ids, [due[0].id, due[1].id], "oldest first");
        let rest = store.claim_due_alerts(now, 10).await.unwrap();
        assert_eq!(
            rest.len(),
            1,
            "a claimed alert is not due for another sender"
        );
        assert_eq!(rest[0].id, due[2].id);
        let claim = ALERT_CLAIM.as_millis() as i64;
        assert!(store.claim_due_alerts(now, 10).await.unwrap().is_empty());

        store.alert_delivered(due[0].id).await.unwrap();
        store
            .alert_failed(due[1].id, now + 5_000, "502 from webhook")
            .await
            .unwrap();
        assert_eq!(store.undelivered_alerts().await.unwrap(), 2);
        let later = store.due_alerts(now + claim, 10).await.unwrap();
        let later: Vec<(i64, u32)> = later.iter().map(|a| (a.id, a.attempts)).collect();
        assert_eq!(
            later,
            [(due[1].id, 1), (due[2].id, 0)],
            "delivered ones are gone, failed ones come back with their attempts"
        );
        assert!(
            store
                .due_alerts(now + 4_000, 10)
                .await
                .unwrap()
                .iter()
                .all(|a| a.id != due[1].id),
            "not due before its next attempt"
        );
    }

    pub(super) async fn cross_references(fixture: &Fixture) {
        let store = &fixture.store;
        let oms = CrossReference {
            object: "order".into(),
            system: "oms".into(),
            external_id: "OMS-1".into(),
            record_key: "MKP-1-A".into(),
        };
        store.put_xref(&oms, "orders").await.unwrap();
        let conflicting = CrossReference {
            record_key: "other".into(),
            ..oms.clone()
        };
        store.put_xref(&conflicting, "x").await.unwrap();
        let erp = CrossReference {
            system: "erp".into(),
            external_id: "E-7".into(),
            ..oms.clone()
        };
        store.put_xref(&erp, "orders").await.unwrap();
        assert_eq!(
            store
                .xref_key("order", "oms", "OMS-1")
                .await
                .unwrap()
                .as_deref(),
            Some("MKP-1-A"),
            "the first mapping wins"
        );
        assert_eq!(store.xref_key("order", "wms", "OMS-1").await.unwrap(), None);
        assert_eq!(
            store.xrefs_of("order", "MKP-1-A").await.unwrap(),
            vec![erp, oms],
            "by system"
        );
        assert!(store.xrefs_of("order", "none").await.unwrap().is_empty());
    }

    pub(super) async fn audit(fixture: &Fixture) {
        let store = &fixture.store;
        store
            .audit(Some("offers"), "flow-paused", "admin-api", &json!({}))
            .await
            .unwrap();
        store
            .audit(None, "note", "bob", &json!({"text": "hello", "n": [1, 2]}))
            .await
            .unwrap();
        let trail = store.audit_trail(10).await.unwrap();
        assert_eq!(trail.len(), 2);
        assert_eq!(trail[0].action, "note", "newest first");
        assert_eq!(trail[0].flow, None);
        assert_eq!(trail[0].detail, json!({"text": "hello", "n": [1, 2]}));
        assert_eq!(trail[1].flow.as_deref(), Some("offers"));
        assert!(trail[0].id > trail[1].id);
        assert!(
            trail[0].at.parse::<jiff::Timestamp>().is_ok(),
            "{}",
            trail[0].at
        );
        assert_eq!(store.audit_trail(1).await.unwrap().len(), 1);
    }

    pub(super) async fn flow_locks(fixture: &Fixture) {
        let store = &fixture.store;
        let here = LockHolder::this_process().host;
        let first = holder("first", std::process::id(), &here);
        store.acquire_flow_lock("f", &first).await.unwrap();
        store
            .acquire_flow_lock("f", &first)
            .await
            .expect("the holder may take its own lock again");
        assert_eq!(
            store.flow_lock_holder("f").await.unwrap(),
            Some(first.clone())
        );

        // A live holder (this very process) is never taken over.
        let refused = store
            .acquire_flow_lock("f", &holder("second", std::process::id(), &here))
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, StoreError::FlowLocked { holder, .. } if holder.id == "first"),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("is already running (pid "),
            "{refused}"
        );
        assert!(store.refresh_flow_lock("f", "first").await.unwrap());
        assert!(!store.refresh_flow_lock("f", "second").await.unwrap());

        // Released: free for anyone, and the holder is gone.
        store.release_flow_lock("f", "first").await.unwrap();
        assert_eq!(store.flow_lock_holder("f").await.unwrap(), None);
        store
            .acquire_flow_lock("f", &holder("stalled", 1, "host-a"))
            .await
            .unwrap();

        // A holder on another host is taken over only once its heartbeat or lease ran out.
        let successor = holder("successor", 2, "host-b");
        assert!(matches!(
            store.acquire_flow_lock("f", &successor).await,
            Err(StoreError::FlowLocked { .. })
        ));
        fixture.age_lock("f").await;
        store.acquire_flow_lock("f", &successor).await.unwrap();
        let trail = store.audit_trail(1).await.unwrap();
        assert_eq!(trail[0].action, "flow-lock-taken-over");
        assert_eq!(
            store.flow_lock_holder("f").await.unwrap().map(|h| h.id),
            Some("successor".into())
        );

        // The stalled holder can neither refresh nor commit; its successor can.
        assert!(!store.refresh_flow_lock("f", "stalled").await.unwrap());
        let batch = |lock: &str, cursor: &str| CommitBatch {
            flow: "f".into(),
            checkpoint: Checkpoint {
                position: json!({ "cursor": cursor }),
                sink_state: Value::Null,
            },
            processed_keys: vec![key_hash(cursor)],
            lock: Some(lock.into()),
            ..CommitBatch::default()
        };
        let err = store.commit(batch("stalled", "late")).await.unwrap_err();
        assert!(matches!(err, StoreError::LockLost { .. }), "{err}");
        assert_eq!(
            store.checkpoint("f").await.unwrap(),
            None,
            "nothing committed"
        );
        let mut keys = HashSet::new();
        store.load_processed_keys("f", &mut keys).await.unwrap();
        assert!(keys.is_empty());
        store.commit(batch("successor", "next")).await.unwrap();
        assert_eq!(
            store.checkpoint("f").await.unwrap().unwrap().position,
            json!({"cursor": "next"})
        );
        // Releasing someone else's lock does nothing.
        store.release_flow_lock("f", "stalled").await.unwrap();
        assert!(store.flow_lock_holder("f").await.unwrap().is_some());

        // A holder on this host whose process is gone is taken over at once.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        store
            .acquire_flow_lock("g", &holder("crashed", dead_pid, &here))
            .await
            .unwrap();
        store
            .acquire_flow_lock("g", &holder("next", std::process::id(), &here))
            .await
            .expect("a crashed local holder is taken over");
    }
}
