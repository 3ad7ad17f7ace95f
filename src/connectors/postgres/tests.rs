//! The PostgreSQL connector against a real server, called as the runtime calls it: found in
//! the registry and driven through [`DynConnector`] with settings as JSON.
//!
//! Each test works in a schema of its own (`sy_pgconn_<test>_<pid>`), so tests run in
//! parallel. Without a server they are skipped with a `SKIPPED` line saying how to run them,
//! unless `SWITCHYARD_REQUIRE_POSTGRES=1` makes that a failure.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::connectors::api::{
    BatchOutcome, ConnectorError, DynConnector, Encoded, Fault, Problem, Setup, Sink, SinkStyle,
    Source,
};
use crate::connectors::{Batch, RawRecord, connector};
use crate::spec::Code;
use crate::store::Store;
use crate::store::testing::{fresh_schema, postgres_url as test_postgres_url, raw_postgres};

/// One test's schema on the test server.
struct Db {
    client: tokio_postgres::Client,
    schema: String,
    store: Store,
}

impl Db {
    /// A fresh schema (named after `tag`) for `test`, or `None` when the server does not
    /// answer (and may not).
    async fn new(test: &str, tag: &str) -> Option<Self> {
        let url = test_postgres_url();
        let schema = format!("sy_pgconn_{tag}_{}", std::process::id());
        let test = format!("connectors::postgres::tests::{test}");
        if !fresh_schema(&test, &url, &schema).await {
            return None;
        }
        let client = raw_postgres(&url).await.unwrap();
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        Some(Self {
            client,
            schema,
            store: Store::in_memory().unwrap(),
        })
    }

    fn setup(&self) -> Setup<'_> {
        Setup {
            flow: "pg-test",
            root: Path::new("."),
            store: &self.store,
            batch_size: 100,
        }
    }

    /// Runs SQL with `{s}` standing for the test's schema.
    async fn sql(&self, sql: &str) {
        self.client
            .batch_execute(&sql.replace("{s}", &self.schema))
            .await
            .unwrap();
    }

    /// One column of every row of a query, as text.
    async fn texts(&self, sql: &str) -> Vec<Option<String>> {
        self.client
            .query(&sql.replace("{s}", &self.schema), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }

    async fn source(&self, from: Value, position: &Value) -> Box<dyn Source> {
        self.try_source(from, position).await.unwrap()
    }

    async fn try_source(
        &self,
        from: Value,
        position: &Value,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        postgres()
            .source(&self.setup(), &system(), &from, position)
            .await
    }

    async fn sink(&self, to: Value) -> Result<Arc<dyn Sink>, ConnectorError> {
        postgres()
            .sink(&self.setup(), &system(), &to, &Value::Null)
            .await
    }

    async fn finish(self) {
        let _ = self
            .client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await;
    }
}

fn postgres() -> &'static dyn DynConnector {
    connector("postgres").expect("the registry lists postgres")
}

fn system() -> Value {
    json!({ "url": test_postgres_url(), "pool": 2, "statement_timeout": "20s" })
}

/// The records of a batch, decoded.
fn values(batch: &Batch) -> Vec<Value> {
    (0..batch.len())
        .map(|index| match batch.get(index) {
            Some(RawRecord::Value(value)) => value.clone(),
            other => panic!("record {index} is {other:?}"),
        })
        .collect()
}

/// The `id`s of a batch's records.
fn ids(batch: &Batch) -> Vec<i64> {
    values(batch)
        .iter()
        .map(|record| record["id"].as_i64().unwrap())
        .collect()
}

/// Reads batches until the source is exhausted; the ids of each.
async fn drain(source: &mut dyn Source, max: usize) -> Vec<Vec<i64>> {
    let mut batches = Vec::new();
    while let Some(batch) = source.next_batch(max).await.unwrap() {
        batches.push(ids(&batch));
    }
    batches
}

/// A second session, to hold a transaction open while the source reads.
async fn slow_writer() -> tokio_postgres::Client {
    raw_postgres(&format!(
        "{}?application_name=slow-writer",
        test_postgres_url()
    ))
    .await
    .unwrap()
}

/// A table of orders whose `updated_at` the database assigns, as the source requires.
const ORDERS: &str = "CREATE TABLE {s}.orders (
    id bigint PRIMARY KEY,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    note text)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_reads_in_keyset_order_across_batches_and_resumes() {
    let Some(db) = Db::new(
        "source_reads_in_keyset_order_across_batches_and_resumes",
        "keyset",
    )
    .await
    else {
        return;
    };
    db.sql(ORDERS).await;
    db.sql(
        "INSERT INTO {s}.orders (id, updated_at) VALUES
            (5, '2026-01-01 10:00:05+00'), (1, '2026-01-01 10:00:01+00'),
            (3, '2026-01-01 10:00:03+00'), (2, '2026-01-01 10:00:02+00'),
            (4, '2026-01-01 10:00:04+00')",
    )
    .await;
    let from = json!({
        "table": db.table("orders"), "cursor": "updated_at", "key": "id", "batch_size": 2
    });
    let mut source = db.source(from.clone(), &Value::Null).await;
    let first = source.next_batch(100).await.unwrap().unwrap();
    assert_eq!(ids(&first), [1, 2]);
    assert_eq!(
        first.position,
        json!({ "cursor": "2026-01-01 10:00:02+00", "key": "2" })
    );
    let second = source.next_batch(100).await.unwrap().unwrap();
    assert_eq!(ids(&second), [3, 4]);
    // The runtime asking for fewer records than batch_size gets fewer.
    drop(source);

    // A new run resumes after the committed position: nothing again, nothing skipped.
    let mut source = db.source(from.clone(), &second.position).await;
    assert_eq!(drain(source.as_mut(), 1).await, [vec![5]]);
    let mut source = db.source(from, &Value::Null).await;
    assert_eq!(
        drain(source.as_mut(), 3).await,
        [vec![1, 2], vec![3, 4], vec![5]]
    );
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ties_on_the_cursor_are_ordered_by_the_key() {
    let Some(db) = Db::new("ties_on_the_cursor_are_ordered_by_the_key", "ties").await else {
        return;
    };
    db.sql(ORDERS).await;
    // Five rows written by one statement share its timestamp; inserted out of key order.
    db.sql(
        "INSERT INTO {s}.orders (id, updated_at)
         SELECT id, '2026-01-01 10:00:00+00' FROM unnest(ARRAY[4, 2, 5, 1, 3]) AS id;
         INSERT INTO {s}.orders (id, updated_at) VALUES (0, '2026-01-01 11:00:00+00')",
    )
    .await;
    let from = json!({
        "table": db.table("orders"), "cursor": "updated_at", "key": "id", "batch_size": 2
    });
    let mut source = db.source(from.clone(), &Value::Null).await;
    let first = source.next_batch(100).await.unwrap().unwrap();
    assert_eq!(ids(&first), [1, 2]);
    // Resuming in the middle of the tie: 3, 4, 5 and only then the later row.
    let mut source = db.source(from, &first.position).await;
    assert_eq!(drain(source.as_mut(), 100).await, [vec![3, 4], vec![5, 0]]);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_updated_during_a_read_are_read_again_later() {
    let Some(db) = Db::new("rows_updated_during_a_read_are_read_again_later", "updated").await
    else {
        return;
    };
    db.sql(ORDERS).await;
    db.sql(
        "INSERT INTO {s}.orders (id, updated_at)
         SELECT id, now() - interval '1 hour' + id * interval '1 second'
           FROM generate_series(1, 4) AS id",
    )
    .await;
    let from = json!({
        "table": db.table("orders"), "cursor": "updated_at", "key": "id", "batch_size": 2
    });
    let mut source = db.source(from, &Value::Null).await;
    assert_eq!(ids(&source.next_batch(100).await.unwrap().unwrap()), [1, 2]);
    // While the read is under way, a row already read and a row not read yet change.
    db.sql("UPDATE {s}.orders SET updated_at = now(), note = 'changed' WHERE id IN (1, 3)")
        .await;
    let rest = drain(source.as_mut(), 100).await;
    // Row 3 moved after row 4 and is read there; row 1 is read again, with its change.
    assert_eq!(rest, [vec![4, 1], vec![3]]);
    db.finish().await;
}

/// The keyset hole: a transaction takes its cursor value, a younger one commits first. A
/// reader that moved past the younger row would never see the older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_late_with_an_older_cursor_is_not_skipped() {
    let Some(db) = Db::new(
        "a_row_committed_late_with_an_older_cursor_is_not_skipped",
        "late_commit",
    )
    .await
    else {
        return;
    };
    db.sql(ORDERS).await;
    let slow = slow_writer().await;
    slow.batch_execute(&format!(
        "BEGIN; INSERT INTO {}.orders (id, updated_at) VALUES (1, now())",
        db.schema
    ))
    .await
    .unwrap();
    // A younger row commits first, with a later cursor value.
    db.sql("INSERT INTO {s}.orders (id) VALUES (2)").await;
    let committed = db.texts("SELECT id::text FROM {s}.orders").await;
    assert_eq!(
        committed,
        [Some("2".to_owned())],
        "row 1 is not committed yet"
    );

    let from = json!({
        "table": db.table("orders"), "cursor": "updated_at", "key": "id",
        "settle_timeout": "30s"
    });
    let mut source = db.source(from, &Value::Null).await;
    let commit_later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        slow.batch_execute("COMMIT").await.unwrap();
    });
    // The read waits for the open transaction, then reads both rows in cursor order.
    let batches = drain(source.as_mut(), 100).await;
    commit_later.await.unwrap();
    assert_eq!(batches, [vec![1, 2]]);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_past_the_settle_timeout_is_an_outage_and_nothing_is_skipped() {
    let Some(db) = Db::new(
        "a_transaction_open_past_the_settle_timeout_is_an_outage_and_nothing_is_skipped",
        "settle_timeout",
    )
    .await
    else {
        return;
    };
    db.sql(ORDERS).await;
    db.sql("INSERT INTO {s}.orders (id) VALUES (1)").await;
    let slow = slow_writer().await;
    slow.batch_execute(&format!(
        "BEGIN; INSERT INTO {}.orders (id, updated_at) VALUES (2, now())",
        db.schema
    ))
    .await
    .unwrap();
    db.sql("INSERT INTO {s}.orders (id) VALUES (3)").await;

    let from = json!({
        "table": db.table("orders"), "cursor": "updated_at", "key": "id",
        "settle_timeout": "200ms"
    });
    let mut source = db.source(from, &Value::Null).await;
    let err = source.next_batch(100).await.unwrap_err();
    assert_eq!((err.fault, err.retryable), (Fault::External, true), "{err}");
    assert!(
        err.message
            .contains("has not ended within from.settle_timeout"),
        "{err}"
    );

    slow.batch_execute("COMMIT").await.unwrap();
    // Waits for the transactions of the whole database, other tests' too (some hold one for
    // seconds): the drain gets room, only the first read had to run out of time.
    let from = json!({
        "table": db.table("orders"), "cursor": "updated_at", "key": "id",
        "settle_timeout": "30s"
    });
    let mut source = db.source(from, &Value::Null).await;
    assert_eq!(drain(source.as_mut(), 100).await, [vec![1, 2, 3]]);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_out_with_their_types() {
    let Some(db) = Db::new("values_come_out_with_their_types", "types").await else {
        return;
    };
    db.sql(
        "CREATE TABLE {s}.payouts (
            id bigint PRIMARY KEY,
            updated_at timestamptz NOT NULL,
            amount numeric(18, 4),
            fees numeric[],
            paid_at timestamptz,
            details jsonb,
            note text,
            settled boolean,
            ratio double precision);
         INSERT INTO {s}.payouts VALUES
            (1, '2026-01-01 00:00:00+00', 12345678901234.5678, '{0.1, 2.50}',
             '2026-03-04 05:06:07.123456+02', '{\"lines\": [1, \"x\"], \"ok\": true}',
             'it''s \"quoted\"', true, 0.1),
            (2, '2026-01-01 00:00:01+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .await;
    let from = json!({ "table": db.table("payouts"), "cursor": "updated_at", "key": "id" });
    let mut source = db.source(from, &Value::Null).await;
    let batch = source.next_batch(100).await.unwrap().unwrap();
    let records = values(&batch);
    assert_eq!(
        records[0],
        json!({
            "id": 1,
            "updated_at": "2026-01-01T00:00:00+00:00",
            "amount": "12345678901234.5678",
            "fees": ["0.1", "2.50"],
            "paid_at": "2026-03-04T03:06:07.123456+00:00",
            "details": { "lines": [1, "x"], "ok": true },
            "note": "it's \"quoted\"",
            "settled": true,
            "ratio": 0.1,
        })
    );
    assert_eq!(
        records[1],
        json!({
            "id": 2, "updated_at": "2026-01-01T00:00:01+00:00", "amount": null, "fees": null,
            "paid_at": null, "details": null, "note": null, "settled": null, "ratio": null,
        })
    );
    assert_eq!(
        batch.position,
        json!({ "cursor": "2026-01-01 00:00:01+00", "key": "2" })
    );
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_is_read_like_a_table() {
    let Some(db) = Db::new("a_query_is_read_like_a_table", "query").await else {
        return;
    };
    db.sql(ORDERS).await;
    db.sql(
        "ALTER TABLE {s}.orders ADD COLUMN amount numeric(18, 4);
         INSERT INTO {s}.orders (id, updated_at, amount, note) VALUES
            (1, '2026-01-01 10:00:01+00', 10.5, 'keep'),
            (2, '2026-01-01 10:00:02+00', 99, 'skip; not this one'),
            (3, '2026-01-01 10:00:03+00', 0.0001, 'keep')",
    )
    .await;
    let query = "SELECT id AS order_id, updated_at AS changed, amount * 2 AS doubled \
                 FROM {s}.orders WHERE note = 'keep'; -- kept ones only; \"really\""
        .replace("{s}", &db.schema);
    let from = json!({
        "query": query, "cursor": "changed", "key": "order_id", "batch_size": 1
    });
    let mut source = db.source(from, &Value::Null).await;
    let first = source.next_batch(100).await.unwrap().unwrap();
    assert_eq!(
        values(&first),
        [json!({ "order_id": 1, "changed": "2026-01-01T10:00:01+00:00", "doubled": "21.0000" })]
    );
    let second = source.next_batch(100).await.unwrap().unwrap();
    assert_eq!(values(&second)[0]["doubled"], json!("0.0002"));
    assert!(source.next_batch(100).await.unwrap().is_none());
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_cannot_write() {
    let Some(db) = Db::new("a_source_cannot_write", "read_only").await else {
        return;
    };
    db.sql(ORDERS).await;
    db.sql("INSERT INTO {s}.orders (id) VALUES (1)").await;
    // A data-modifying query is refused by the check, and by the server when run anyway.
    let query = format!(
        "WITH gone AS (DELETE FROM {}.orders RETURNING *) SELECT * FROM gone",
        db.schema
    );
    let from = json!({ "query": query, "cursor": "updated_at", "key": "id" });
    let err = db.try_source(from, &Value::Null).await.err().unwrap();
    assert_eq!(err.fault, Fault::Spec, "{err}");
    assert_eq!(db.texts("SELECT id::text FROM {s}.orders").await.len(), 1);
    db.finish().await;
}

/// The ledger a sink posts into: the idempotency key under a unique constraint.
const LEDGER: &str = "CREATE TABLE {s}.ledger (
    id bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    order_id text NOT NULL,
    amount numeric(18, 4) NOT NULL CHECK (amount >= 0),
    posted_at timestamptz NOT NULL DEFAULT now())";

fn ledger_to(db: &Db) -> Value {
    json!({ "table": db.table("ledger"), "key_column": "idempotency_key" })
}

/// Records as the runtime hands them to a batch sink.
fn encoded<'a>(records: &'a [(&'a str, String)]) -> Vec<Encoded<'a>> {
    records
        .iter()
        .map(|(key, json)| Encoded {
            idempotency_key: key,
            json: json.as_bytes(),
        })
        .collect()
}

fn posting(order: &str, amount: &str) -> String {
    // The amount as JSON number text, the way a mapped record carries a decimal.
    format!("{{\"order_id\":\"{order}\",\"amount\":{amount}}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_writes_a_batch_in_one_transaction() {
    let Some(db) = Db::new("the_sink_writes_a_batch_in_one_transaction", "sink_batch").await else {
        return;
    };
    db.sql(LEDGER).await;
    let sink = db.sink(ledger_to(&db)).await.unwrap();
    assert_eq!(sink.style(), SinkStyle::Batch);
    let records = [
        ("k1", posting("o-1", "12345678901234.5678")),
        ("k2", posting("o-2", "0.0001")),
        (
            "k3",
            "{\"order_id\":\"o-3\",\"amount\":\"7.50\"}".to_owned(),
        ),
    ];
    let outcome = sink.write_batch(&encoded(&records)).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    assert_eq!(
        db.texts(
            "SELECT idempotency_key || ' ' || order_id || ' ' || amount FROM {s}.ledger \
             ORDER BY id"
        )
        .await,
        [
            Some("k1 o-1 12345678901234.5678".to_owned()),
            Some("k2 o-2 0.0001".to_owned()),
            Some("k3 o-3 7.5000".to_owned()),
        ]
    );
    // One transaction wrote them all.
    assert_eq!(
        db.texts("SELECT count(DISTINCT xmin::text)::text FROM {s}.ledger")
            .await,
        [Some("1".to_owned())]
    );
    let commit = sink.prepare_commit().await.unwrap();
    assert!(commit.durable.is_none());
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_written_twice_posts_each_row_once() {
    let Some(db) = Db::new(
        "the_same_batch_written_twice_posts_each_row_once",
        "sink_twice",
    )
    .await
    else {
        return;
    };
    db.sql(LEDGER).await;
    let records = [
        ("k1", posting("o-1", "10")),
        ("k2", posting("o-2", "20")),
        // The same key twice in one batch (a duplicate upstream) is posted once too.
        ("k2", posting("o-2", "20")),
    ];
    let sink = db.sink(ledger_to(&db)).await.unwrap();
    sink.write_batch(&encoded(&records)).await.unwrap();
    // A crash after the insert, before the state commit: a new run writes the batch again.
    drop(sink);
    let sink = db.sink(ledger_to(&db)).await.unwrap();
    let outcome = sink.write_batch(&encoded(&records)).await.unwrap();
    assert!(outcome.rejected.is_empty());
    assert_eq!(
        db.texts("SELECT idempotency_key FROM {s}.ledger ORDER BY id")
            .await,
        [Some("k1".to_owned()), Some("k2".to_owned())]
    );
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_is_rejected_and_the_others_are_written() {
    let Some(db) = Db::new(
        "a_bad_row_is_rejected_and_the_others_are_written",
        "sink_bad_row",
    )
    .await
    else {
        return;
    };
    db.sql(LEDGER).await;
    let sink = db.sink(ledger_to(&db)).await.unwrap();
    let records = [
        ("k1", posting("o-1", "10")),
        ("k2", posting("o-2", "-5")),
        ("k3", posting("o-3", "30")),
    ];
    let outcome = sink.write_batch(&encoded(&records)).await.unwrap();
    assert_eq!(outcome.rejected.len(), 1, "{:?}", outcome.rejected);
    let (index, err) = &outcome.rejected[0];
    assert_eq!(*index, 1);
    assert_eq!((err.fault, err.retryable), (Fault::Record, false));
    assert!(
        err.message.starts_with("record k2: ") && err.message.contains("SQLSTATE 23514"),
        "{err}"
    );

    // A value of the wrong type (22xxx) and a record that is no object are refused alike.
    let records = [
        ("k4", posting("o-4", "\"ten\"")),
        ("k5", "[1, 2]".to_owned()),
        ("k6", posting("o-6", "60")),
    ];
    let outcome = sink.write_batch(&encoded(&records)).await.unwrap();
    let refused: Vec<(usize, Fault)> = outcome
        .rejected
        .iter()
        .map(|(index, err)| (*index, err.fault))
        .collect();
    assert_eq!(refused, [(0, Fault::Record), (1, Fault::Record)]);
    assert!(outcome.rejected[0].1.message.contains("SQLSTATE 22P02"));
    assert_eq!(
        db.texts("SELECT idempotency_key FROM {s}.ledger ORDER BY id")
            .await,
        [
            Some("k1".to_owned()),
            Some("k3".to_owned()),
            Some("k6".to_owned())
        ]
    );
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_table_is_the_workspaces_fault() {
    let Some(db) = Db::new("a_dropped_table_is_the_workspaces_fault", "dropped").await else {
        return;
    };
    db.sql(LEDGER).await;
    db.sql(ORDERS).await;
    let sink = db.sink(ledger_to(&db)).await.unwrap();
    let from = json!({ "table": db.table("orders"), "cursor": "updated_at", "key": "id" });
    let mut source = db.source(from.clone(), &Value::Null).await;
    db.sql("DROP TABLE {s}.ledger; DROP TABLE {s}.orders").await;

    let records = [("k1", posting("o-1", "10"))];
    let err = sink.write_batch(&encoded(&records)).await.unwrap_err();
    assert_eq!((err.fault, err.retryable), (Fault::Spec, false), "{err}");
    assert!(err.message.contains("SQLSTATE 42P01"), "{err}");
    let err = source.next_batch(100).await.unwrap_err();
    assert_eq!((err.fault, err.retryable), (Fault::Spec, false), "{err}");
    // Opening on it says so at once, as does a column that is not there.
    let err = db.sink(ledger_to(&db)).await.err().unwrap();
    assert_eq!(err.fault, Fault::Spec, "{err}");
    db.sql(ORDERS).await;
    let from = json!({ "table": db.table("orders"), "cursor": "changed_at", "key": "id" });
    let err = db.try_source(from, &Value::Null).await.err().unwrap();
    assert_eq!(err.fault, Fault::Spec);
    assert!(
        err.message.ends_with(
            "\"changed_at\" is not a column of the table (its columns: id, updated_at, note)"
        ),
        "{err}"
    );
    // A key column without a unique constraint cannot keep writes effectively-once.
    db.sql("CREATE TABLE {s}.loose (idempotency_key text, amount numeric)")
        .await;
    let to = json!({ "table": db.table("loose"), "key_column": "idempotency_key" });
    let err = db.sink(to).await.err().unwrap();
    assert_eq!(err.fault, Fault::Spec, "{err}");
    assert!(err.message.contains("SQLSTATE 42P10"), "{err}");
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_port_is_an_outage_worth_retrying() {
    // Port 1 on loopback: nothing listens there. No server is needed for this one.
    let store = Store::in_memory().unwrap();
    let setup = Setup {
        flow: "pg-test",
        root: Path::new("."),
        store: &store,
        batch_size: 100,
    };
    let system = json!({ "url": "postgres://postgres@127.0.0.1:1/test" });
    let to = json!({ "table": "ledger", "key_column": "idempotency_key" });
    let err = postgres()
        .sink(&setup, &system, &to, &Value::Null)
        .await
        .err()
        .unwrap();
    assert_eq!((err.fault, err.retryable), (Fault::External, true), "{err}");
    assert!(err.message.contains("127.0.0.1:1/test"), "{err}");
    let from = json!({ "table": "orders", "cursor": "updated_at", "key": "id" });
    let err = postgres()
        .source(&setup, &system, &from, &Value::Null)
        .await
        .err()
        .unwrap();
    assert_eq!((err.fault, err.retryable), (Fault::External, true), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_by_the_server_is_an_outage_and_the_next_write_reconnects() {
    let Some(db) = Db::new(
        "a_connection_cut_by_the_server_is_an_outage_and_the_next_write_reconnects",
        "terminated",
    )
    .await
    else {
        return;
    };
    db.sql(LEDGER).await;
    // A session name of its own tells the sink's session apart from every other.
    let system = json!({
        "url": format!("{}?application_name={}", test_postgres_url(), db.schema), "pool": 1
    });
    let sink = postgres()
        .sink(&db.setup(), &system, &ledger_to(&db), &Value::Null)
        .await
        .unwrap();
    let records = [("k1", posting("o-1", "10"))];
    sink.write_batch(&encoded(&records)).await.unwrap();
    let cut = db
        .texts(
            "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity
              WHERE application_name = '{s}'",
        )
        .await;
    assert_eq!(cut, [Some("true".to_owned())]);
    // The next write finds the connection gone (an outage, retried) or already replaced by
    // the pool; either way one retry at most posts it, once.
    let records = [("k2", posting("o-2", "20"))];
    if let Err(err) = sink.write_batch(&encoded(&records)).await {
        assert_eq!((err.fault, err.retryable), (Fault::External, true), "{err}");
        sink.write_batch(&encoded(&records)).await.unwrap();
    }
    assert_eq!(
        db.texts("SELECT idempotency_key FROM {s}.ledger ORDER BY id")
            .await,
        [Some("k1".to_owned()), Some("k2".to_owned())]
    );
    db.finish().await;
}

#[test]
fn settings_are_checked_through_the_registry() {
    let system = json!({ "url": "postgres://app@db:5432/ledger" });
    assert_eq!(postgres().check_system(&system), []);
    let injected = json!({
        "table": "orders\"; DROP TABLE ledger; --", "cursor": "updated_at", "key": "id"
    });
    let problems = postgres().check_from(&system, &injected);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].pointer, "/table");
    assert!(problems[0].message.starts_with("table: "), "{problems:?}");
    let two = json!({ "query": "SELECT 1; DROP TABLE ledger", "cursor": "c", "key": "k" });
    let problems = postgres().check_from(&system, &two);
    assert_eq!(
        problems,
        [Problem::new(
            "/query",
            Code::InvalidValue,
            "query: holds more than one statement; write one SELECT"
        )]
    );
    // A typo is reported at the key itself, as an unknown field.
    let unknown = json!({ "table": "ledger", "key_column": "k", "colums": ["a"] });
    let problems = postgres().check_to(&system, &unknown);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        (
            problems[0].pointer.as_str(),
            problems[0].at_key,
            problems[0].code
        ),
        ("/colums", true, Code::UnknownField)
    );
    assert!(
        problems[0].message.contains("unknown field `colums`"),
        "{problems:?}"
    );
    // A system's own problems sit at their setting.
    let bad = json!({ "url": "host=db dbname=ledger", "statement_timeout": "soon" });
    let at: Vec<String> = postgres()
        .check_system(&bad)
        .into_iter()
        .map(|problem| problem.pointer)
        .collect();
    assert_eq!(at, ["/url", "/statement_timeout"]);
}

#[tokio::test]
async fn settings_that_fail_their_check_never_reach_the_server() {
    let store = Store::in_memory().unwrap();
    let setup = Setup {
        flow: "pg-test",
        root: Path::new("."),
        store: &store,
        batch_size: 100,
    };
    // Port 1: were the name sent, this would be an outage, not the workspace's fault.
    let system = json!({ "url": "postgres://postgres@127.0.0.1:1/test" });
    let from = json!({ "table": "t\"; DROP TABLE x; --", "cursor": "c", "key": "k" });
    let err = postgres()
        .source(&setup, &system, &from, &Value::Null)
        .await
        .err()
        .unwrap();
    assert_eq!(err.fault, Fault::Spec, "{err}");

    // An unset `${LEDGER_URL}` leaves the URL empty: validation lets the spec's warning about
    // the variable speak, and opening refuses it rather than connecting to a default server.
    let empty = json!({ "url": "" });
    assert_eq!(postgres().check_system(&empty), []);
    let unexpanded = json!({ "url": "${LEDGER_URL}" });
    assert_eq!(postgres().check_system(&unexpanded), []);
    let to = json!({ "table": "ledger", "key_column": "k" });
    let err = postgres()
        .sink(&setup, &empty, &to, &Value::Null)
        .await
        .err()
        .unwrap();
    assert_eq!(err.fault, Fault::Spec, "{err}");
    assert!(err.message.contains("url is empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_file_runs_at_open_even_for_two_sinks_at_once() {
    let Some(db) = Db::new("schema_file", "schema").await else {
        return;
    };
    let root = std::env::temp_dir().join(format!("sy-pg-schema-{}", std::process::id()));
    std::fs::create_dir_all(root.join("sql")).unwrap();
    std::fs::write(
        root.join("sql/ledger.sql"),
        format!(
            "CREATE TABLE IF NOT EXISTS {}.posted (idempotency_key text PRIMARY KEY, \
             amount numeric(18, 4) NOT NULL);",
            db.schema
        ),
    )
    .unwrap();
    std::fs::write(root.join("sql/broken.sql"), "CREATE TABLE oops (;").unwrap();
    let setup = Setup {
        root: &root,
        ..db.setup()
    };
    let with_schema = |file: &str| {
        let mut system = system();
        system["schema"] = json!(file);
        system
    };
    let to = json!({ "table": db.table("posted"), "key_column": "idempotency_key" });
    // Two flows opening at once: CREATE ... IF NOT EXISTS alone would race in the catalog.
    let system = with_schema("sql/ledger.sql");
    let (first, second) = tokio::join!(
        postgres().sink(&setup, &system, &to, &Value::Null),
        postgres().sink(&setup, &system, &to, &Value::Null),
    );
    let sink = first.unwrap();
    second.unwrap();
    let records = [("k1", json!({ "amount": "0.10" }).to_string())];
    let outcome = sink.write_batch(&encoded(&records)).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    assert_eq!(
        db.texts("SELECT amount::text FROM {s}.posted").await,
        [Some("0.1000".to_owned())]
    );

    let err = match postgres()
        .sink(&setup, &with_schema("sql/broken.sql"), &to, &Value::Null)
        .await
    {
        Ok(_) => panic!("a broken schema file was run"),
        Err(err) => err,
    };
    assert_eq!(err.fault, Fault::Spec, "{err}");
    assert!(
        err.message.contains("running the system's schema file"),
        "{err}"
    );
    let err = match postgres()
        .sink(&setup, &with_schema("sql/missing.sql"), &to, &Value::Null)
        .await
    {
        Ok(_) => panic!("a missing schema file was accepted"),
        Err(err) => err,
    };
    assert!(err.message.starts_with("schema: cannot read "), "{err}");
    let _ = std::fs::remove_dir_all(&root);
    db.finish().await;
}

#[test]
fn every_setting_is_documented_in_the_schema() {
    let mut generator = schemars::SchemaGenerator::default();
    for schema in postgres().schemas() {
        let schema = schema(&mut generator);
        let mut all = vec![schema.as_value().clone()];
        all.extend(generator.definitions().values().cloned());
        for schema in all {
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                assert!(
                    property.get("description").is_some(),
                    "{name} has no description"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_its_timeout_is_an_outage_worth_retrying() {
    let Some(db) = Db::new(
        "a_statement_past_its_timeout_is_an_outage_worth_retrying",
        "timeout",
    )
    .await
    else {
        return;
    };
    db.sql(LEDGER).await;
    let system = json!({ "url": test_postgres_url(), "statement_timeout": "200ms" });
    let sink = postgres()
        .sink(&db.setup(), &system, &ledger_to(&db), &Value::Null)
        .await
        .unwrap();
    // Another session holds the table; the insert waits until the server cancels it.
    let holder = slow_writer().await;
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {}.ledger IN ACCESS EXCLUSIVE MODE",
            db.schema
        ))
        .await
        .unwrap();
    let records = [("k1", posting("o-1", "10"))];
    let err = sink.write_batch(&encoded(&records)).await.unwrap_err();
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!((err.fault, err.retryable), (Fault::External, true), "{err}");
    assert!(err.message.contains("SQLSTATE 57014"), "{err}");
    sink.write_batch(&encoded(&records)).await.unwrap();
    assert_eq!(
        db.texts("SELECT idempotency_key FROM {s}.ledger").await,
        [Some("k1".to_owned())]
    );
    db.finish().await;
}

// ---------------------------------------------------------------------------------------
// Findings of a review, each failing before its fix.

/// A `char(n)` key: the position's key is cast back with `format_type(oid, NULL)`, which is
/// `character`, i.e. `char(1)`, so `'k0001'` becomes `'k'`. The source must still read each
/// row once and end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_char_n_key_reads_each_row_once_and_ends() {
    let Some(db) = Db::new("a_char_n_key_reads_each_row_once_and_ends", "rv_char").await else {
        return;
    };
    db.sql(
        "CREATE TABLE {s}.codes (code char(5) PRIMARY KEY,
            updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
         INSERT INTO {s}.codes (code, updated_at) VALUES
            ('k0001', '2026-01-01 10:00:01+00'), ('k0002', '2026-01-01 10:00:02+00'),
            ('k0003', '2026-01-01 10:00:03+00')",
    )
    .await;
    let from = json!({
        "table": db.table("codes"), "cursor": "updated_at", "key": "code", "batch_size": 2
    });
    let mut source = db.source(from, &Value::Null).await;
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(batch) = source.next_batch(100).await.unwrap() {
            for record in values(&batch) {
                seen.push(record["code"].as_str().unwrap().to_owned());
            }
            if seen.len() > 20 {
                break;
            }
        }
    })
    .await;
    db.finish().await;
    assert!(
        read.is_ok(),
        "the source never ended; read so far: {seen:?}"
    );
    assert_eq!(seen, ["k0001", "k0002", "k0003"]);
}

/// A cursor the database assigns at a coarse precision (`timestamptz(0)`): a transaction that
/// starts after pass 1 takes the bound's cursor value, with a smaller key, and commits after
/// pass 2. It is not in the open-transactions list: had the position moved past the bound's
/// row, it would never be read. Rows on the horizon wait until the clock has passed it.
///
/// (The review wrote this with a `date` cursor; a date's rows of today are read tomorrow, which
/// a test cannot wait for, so the same race runs here on a one-second cursor, and
/// `a_date_cursor_reads_todays_rows_only_once_the_day_is_over` covers the date.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_tying_the_bound_from_a_transaction_begun_after_pass_1_is_not_skipped() {
    let Some(db) = Db::new(
        "a_row_tying_the_bound_from_a_transaction_begun_after_pass_1_is_not_skipped",
        "rv_tie",
    )
    .await
    else {
        return;
    };
    db.sql(
        "CREATE TABLE {s}.orders (order_no text PRIMARY KEY,
            created_at timestamptz(0) NOT NULL DEFAULT now())",
    )
    .await;
    // An unrelated transaction open when the read starts: the read waits for it.
    let unrelated = slow_writer().await;
    unrelated
        .batch_execute("BEGIN; SELECT txid_current()")
        .await
        .unwrap();
    let late = slow_writer().await;
    // Just past the middle of a second: 'm' and 'a', a few hundred milliseconds apart, both
    // round to the next whole second, so they tie.
    loop {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        if (520..600).contains(&millis) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    db.sql("INSERT INTO {s}.orders (order_no) VALUES ('m')")
        .await;
    let schema = db.schema.clone();
    let writer = tokio::spawn(async move {
        // Begins after pass 1 (the read is settling on `unrelated`).
        tokio::time::sleep(Duration::from_millis(150)).await;
        late.batch_execute(&format!(
            "BEGIN; INSERT INTO {schema}.orders (order_no) VALUES ('a')"
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        unrelated.batch_execute("COMMIT").await.unwrap();
        // Commits after pass 2.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        late.batch_execute("COMMIT").await.unwrap();
    });
    let from = json!({
        "table": db.table("orders"), "cursor": "created_at", "key": "order_no",
        "settle_timeout": "30s"
    });
    let mut source = db.source(from, &Value::Null).await;
    let mut seen = Vec::new();
    if let Some(first) = source.next_batch(100).await.unwrap() {
        for record in values(&first) {
            seen.push(record["order_no"].as_str().unwrap().to_owned());
        }
    }
    writer.await.unwrap();
    // Once the clock has passed the tied second, both rows come out, each once.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while seen.len() < 2 && std::time::Instant::now() < deadline {
        match source.next_batch(100).await.unwrap() {
            Some(batch) => {
                for record in values(&batch) {
                    seen.push(record["order_no"].as_str().unwrap().to_owned());
                }
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(source.next_batch(100).await.unwrap().is_none());
    let tied = db
        .texts("SELECT count(DISTINCT created_at)::text FROM {s}.orders")
        .await;
    db.finish().await;
    assert_eq!(tied, [Some("1".to_owned())], "the scenario needs a tie");
    seen.sort();
    assert_eq!(seen, ["a", "m"], "row 'a' was committed but never read");
}

/// A `date` cursor: a transaction later today may still add a row of today with a smaller
/// key, so today's rows wait for tomorrow; yesterday's are read at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_cursor_reads_todays_rows_only_once_the_day_is_over() {
    let Some(db) = Db::new(
        "a_date_cursor_reads_todays_rows_only_once_the_day_is_over",
        "date_cursor",
    )
    .await
    else {
        return;
    };
    db.sql(
        "CREATE TABLE {s}.orders (id bigint PRIMARY KEY,
            created_on date NOT NULL DEFAULT current_date);
         INSERT INTO {s}.orders (id, created_on) VALUES (2, current_date - 1), (3, current_date - 1);
         INSERT INTO {s}.orders (id) VALUES (1)",
    )
    .await;
    let from = json!({ "table": db.table("orders"), "cursor": "created_on", "key": "id" });
    let mut source = db.source(from, &Value::Null).await;
    let batches = drain(source.as_mut(), 100).await;
    db.finish().await;
    assert_eq!(batches, [vec![2, 3]]);
}

/// A role's `extra_float_digits = 0` would print a float8 cursor rounded: the position read
/// back would fall below the row it came from, and the row come out again, forever. The
/// session pins every digit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_float_cursor_keeps_every_digit_whatever_the_roles_settings() {
    let Some(db) = Db::new(
        "a_float_cursor_keeps_every_digit_whatever_the_roles_settings",
        "float_cursor",
    )
    .await
    else {
        return;
    };
    let role = format!("sy_pgconn_float_{}", std::process::id());
    db.sql(&format!(
        "CREATE TABLE {{s}}.readings (id bigint PRIMARY KEY, at float8 NOT NULL);
         INSERT INTO {{s}}.readings VALUES (1, 1.0000000000000002), (2, 1.0000000000000004);
         DROP ROLE IF EXISTS {role};
         CREATE ROLE {role} LOGIN;
         ALTER ROLE {role} SET extra_float_digits = 0;
         GRANT pg_read_all_stats TO {role};
         GRANT USAGE ON SCHEMA {{s}} TO {role};
         GRANT SELECT ON {{s}}.readings TO {role}"
    ))
    .await;
    let url =
        test_postgres_url().replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let from = json!({
        "table": db.table("readings"), "cursor": "at", "key": "id", "batch_size": 1
    });
    let opened = postgres()
        .source(&db.setup(), &json!({ "url": url }), &from, &Value::Null)
        .await;
    let mut batches = Vec::new();
    if let Ok(mut source) = opened {
        // Bounded: a rounded position makes the read go round in circles.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(batch) = source.next_batch(100).await.unwrap() {
                batches.push(ids(&batch));
                if batches.len() > 5 {
                    break;
                }
            }
        })
        .await;
    }
    db.finish().await;
    db_drop_role(&role).await;
    assert_eq!(batches, [vec![1], vec![2]]);
}

/// Drops a role a test made (after its schema, which held its grants).
async fn db_drop_role(role: &str) {
    let client = raw_postgres(&test_postgres_url()).await.unwrap();
    client
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .unwrap();
}

/// A row whose cursor or key is NULL has no place in the order: a table whose columns allow
/// it is refused at open; a query holding such a row fails the read, naming the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_with_a_null_cursor_are_refused_never_skipped() {
    let Some(db) = Db::new("rows_with_a_null_cursor_are_refused_never_skipped", "nulls").await
    else {
        return;
    };
    db.sql(
        "CREATE TABLE {s}.orders (id bigint PRIMARY KEY, updated_at timestamptz);
         INSERT INTO {s}.orders VALUES (1, '2026-01-01 10:00:00+00'), (2, NULL)",
    )
    .await;
    let table = json!({ "table": db.table("orders"), "cursor": "updated_at", "key": "id" });
    let refused = db.try_source(table, &Value::Null).await.err();
    let query = json!({
        "query": format!("SELECT id, updated_at FROM {}.orders", db.schema),
        "cursor": "updated_at", "key": "id"
    });
    let mut source = db.source(query, &Value::Null).await;
    let first = source
        .next_batch(100)
        .await
        .unwrap()
        .map(|batch| ids(&batch));
    let then = source.next_batch(100).await.err();
    db.finish().await;
    let refused = refused.expect("a nullable cursor column is refused");
    assert_eq!(refused.fault, Fault::Spec, "{refused}");
    assert!(refused.message.contains("may hold NULL"), "{refused}");
    assert_eq!(first, Some(vec![1]));
    let then = then.expect("the NULL row fails the read once caught up");
    assert_eq!(then.fault, Fault::Spec, "{then}");
    assert!(
        then.message.contains("updated_at = NULL and id = 2"),
        "{then}"
    );
}

/// A trigger refusing one row (`RAISE EXCEPTION`, SQLSTATE P0001) is that row's fault: the
/// others of the batch must be written and the one refused come back rejected, not the whole
/// batch fail with a non-retryable error the runtime can only stop the run on, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_refused_by_a_trigger_is_rejected_alone() {
    let Some(db) = Db::new("a_row_refused_by_a_trigger_is_rejected_alone", "rv_trig").await else {
        return;
    };
    db.sql(LEDGER).await;
    db.sql(
        "CREATE FUNCTION {s}.no_blocked() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.order_id = 'blocked' THEN RAISE EXCEPTION 'order % is blocked', NEW.order_id;
         END IF; RETURN NEW; END $$;
         CREATE TRIGGER no_blocked BEFORE INSERT ON {s}.ledger
            FOR EACH ROW EXECUTE FUNCTION {s}.no_blocked()",
    )
    .await;
    let sink = db.sink(ledger_to(&db)).await.unwrap();
    let records = [
        ("k1", posting("o-1", "10")),
        ("k2", posting("blocked", "20")),
        ("k3", posting("o-3", "30")),
    ];
    let (outcome, written) = write_and_list_keys(db, sink.as_ref(), &records).await;
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(written, [Some("k1".to_owned()), Some("k3".to_owned())]);
}

/// A deferred constraint is checked at COMMIT: the failure comes back as the whole batch's
/// `Err` with `Fault::Record`, so no row is singled out and the same batch fails every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_constraint_refuses_one_row_not_the_batch() {
    let Some(db) = Db::new(
        "a_deferred_constraint_refuses_one_row_not_the_batch",
        "rv_defer",
    )
    .await
    else {
        return;
    };
    db.sql(
        "CREATE TABLE {s}.ledger (
            id bigserial PRIMARY KEY,
            idempotency_key text NOT NULL UNIQUE,
            order_id text NOT NULL,
            amount numeric NOT NULL,
            CONSTRAINT one_posting_per_order UNIQUE (order_id) DEFERRABLE INITIALLY DEFERRED)",
    )
    .await;
    let sink = db.sink(ledger_to(&db)).await.unwrap();
    let records = [
        ("k1", posting("o-1", "10")),
        ("k2", posting("o-1", "20")),
        ("k3", posting("o-3", "30")),
    ];
    let (outcome, written) = write_and_list_keys(db, sink.as_ref(), &records).await;
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].0, 1, "{:?}", outcome.rejected);
    assert_eq!(written, [Some("k1".to_owned()), Some("k3".to_owned())]);
}

/// Without `columns:`, the columns are every field of the batch's records: one record with a
/// field the table lacks (an optional field of the mapping) makes the whole batch a 42703,
/// a `Spec` error for the batch, and the flow stops on that batch every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_with_an_unknown_field_does_not_block_the_batch() {
    let Some(db) = Db::new(
        "one_record_with_an_unknown_field_does_not_block_the_batch",
        "rv_field",
    )
    .await
    else {
        return;
    };
    db.sql(LEDGER).await;
    let sink = db.sink(ledger_to(&db)).await.unwrap();
    let records = [
        ("k1", posting("o-1", "10")),
        (
            "k2",
            "{\"order_id\":\"o-2\",\"amount\":20,\"note\":\"gift\"}".to_owned(),
        ),
        ("k3", posting("o-3", "30")),
    ];
    let (outcome, written) = write_and_list_keys(db, sink.as_ref(), &records).await;
    // Rejected rather than written without the field: a mistyped mapping must not drop data.
    assert_eq!(outcome.rejected.len(), 1, "{:?}", outcome.rejected);
    let (index, err) = &outcome.rejected[0];
    assert_eq!(
        (*index, err.fault, err.retryable),
        (1, Fault::Record, false)
    );
    assert!(
        err.message.contains("note") && err.message.contains(".ledger"),
        "{err}"
    );
    assert_eq!(written, [Some("k1".to_owned()), Some("k3".to_owned())]);
}

/// A key another writer (another flow) already posted: the same content is a harmless repeat,
/// delivered; different content is not this record, and is rejected rather than counted as
/// delivered, on the whole batch's path and on the record-by-record one alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_already_posted_with_different_content_is_rejected_not_delivered() {
    let Some(db) = Db::new(
        "a_key_already_posted_with_different_content_is_rejected_not_delivered",
        "sink_conflict",
    )
    .await
    else {
        return;
    };
    db.sql(LEDGER).await;
    db.sql(
        "INSERT INTO {s}.ledger (idempotency_key, order_id, amount) VALUES
            ('k2', 'o-2', 99), ('k3', 'o-3', 30), ('k5', 'o-5', 50)",
    )
    .await;
    let sink = db.sink(ledger_to(&db)).await.unwrap();
    let whole = [
        ("k1", posting("o-1", "10")),
        ("k2", posting("o-2", "20")),
        ("k3", posting("o-3", "30.00")),
    ];
    let whole = sink.write_batch(&encoded(&whole)).await.unwrap();
    // A bad row sends this batch down the record-by-record path.
    let by_record = [
        ("k4", posting("o-4", "-1")),
        ("k5", posting("o-5", "51")),
        ("k6", posting("o-6", "60")),
    ];
    let by_record = sink.write_batch(&encoded(&by_record)).await.unwrap();
    let written = db
        .texts("SELECT idempotency_key || ':' || amount FROM {s}.ledger ORDER BY idempotency_key")
        .await;
    db.finish().await;

    assert_eq!(whole.rejected.len(), 1, "{:?}", whole.rejected);
    let (index, err) = &whole.rejected[0];
    assert_eq!(
        (*index, err.fault, err.retryable),
        (1, Fault::Record, false)
    );
    assert!(
        err.message
            .contains("idempotency key k2 is already posted in")
            && err
                .message
                .contains("column amount: stored 99.0000, this record 20.0000"),
        "{err}"
    );
    let refused: Vec<usize> = by_record.rejected.iter().map(|(index, _)| *index).collect();
    assert_eq!(refused, [0, 1], "{:?}", by_record.rejected);
    assert!(
        by_record.rejected[1]
            .1
            .message
            .contains("idempotency key k5 is already posted"),
        "{:?}",
        by_record.rejected
    );
    let expected: Vec<Option<String>> = [
        "k1:10.0000",
        "k2:99.0000",
        "k3:30.0000",
        "k5:50.0000",
        "k6:60.0000",
    ]
    .iter()
    .map(|row| Some((*row).to_owned()))
    .collect();
    assert_eq!(written, expected);
}

/// Writes `records` as one batch, lists the ledger's idempotency keys in insertion order and
/// drops the test's schema; the batch must not fail as a whole.
async fn write_and_list_keys(
    db: Db,
    sink: &dyn Sink,
    records: &[(&str, String)],
) -> (BatchOutcome, Vec<Option<String>>) {
    let outcome = sink.write_batch(&encoded(records)).await;
    let written = db
        .texts("SELECT idempotency_key FROM {s}.ledger ORDER BY id")
        .await;
    db.finish().await;
    match outcome {
        Ok(outcome) => (outcome, written),
        Err(err) => panic!(
            "the whole batch failed (fault {:?}, retryable {}), written {written:?}: {err}",
            err.fault, err.retryable
        ),
    }
}
