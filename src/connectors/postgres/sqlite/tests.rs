//! The SQLite backend on real files: posting once, a repeat posting nothing, a conflicting
//! repeat refused, a constraint refusing one record alone, amounts kept exact as text, and the
//! keyset read back in order and resumed.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Db, SqliteSink, SqliteSource};
use crate::connectors::api::{Encoded, Fault, Sink, Source};
use crate::connectors::postgres::config::{PostgresFromConfig, PostgresToConfig};

/// The reference ledger's shape, as the workspace ships it.
const LEDGER_SQL: &str = include_str!("../../../../flows/sql/ledger.sql");

/// A fresh folder for one test.
fn folder(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-sqlite-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn to_ledger() -> PostgresToConfig {
    PostgresToConfig {
        table: "journal_lines".into(),
        key_column: "idempotency_key".into(),
        columns: Some(
            [
                "journal_id",
                "reference",
                "billing_cycle_id",
                "account",
                "amount",
                "currency",
                "posted_at",
            ]
            .map(String::from)
            .to_vec(),
        ),
    }
}

/// A journal line as a mapped record.
fn line(id: &str, amount: &str, currency: &str) -> (String, Vec<u8>) {
    let body = json!({
        "journal_id": id,
        "reference": format!("T-{id}"),
        "billing_cycle_id": "BC-2026-11-1",
        "account": "seller-payable",
        "amount": amount,
        "currency": currency,
        "posted_at": "2026-11-03T13:10:03Z",
    });
    (format!("journal:{id}"), serde_json::to_vec(&body).unwrap())
}

fn encoded(lines: &[(String, Vec<u8>)]) -> Vec<Encoded<'_>> {
    lines
        .iter()
        .map(|(key, json)| Encoded {
            idempotency_key: key,
            json,
        })
        .collect()
}

/// `sql` over the file, each row's columns as text.
fn query(file: &PathBuf, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(file).unwrap();
    let mut statement = conn.prepare(sql).unwrap();
    let width = statement.column_count();
    statement
        .query_map([], |row| {
            (0..width)
                .map(|i| row.get_ref(i).map(super::shown))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn a_batch_posts_once_and_amounts_stay_exact_text() {
    let dir = folder("post");
    let file = dir.join("nested/ledger.db");
    let db = Db::open(file.clone(), Some(LEDGER_SQL.to_owned()))
        .await
        .unwrap();
    let sink = SqliteSink::open(db, &to_ledger()).await.unwrap();
    let lines = [
        line("J1", "0.1", "EUR"),
        line("J2", "0.2", "EUR"),
        line("J3", "12800", "JPY"),
        line("J4", "1.250", "BHD"),
    ];
    let outcome = sink.write_batch(&encoded(&lines)).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    // Stored as text, exactly as posted: no float on the way, no trailing zero lost.
    assert_eq!(
        query(
            &file,
            "SELECT journal_id, amount, typeof(amount), idempotency_key FROM journal_lines \
             ORDER BY journal_id"
        ),
        [
            ["J1", "0.1", "text", "journal:J1"],
            ["J2", "0.2", "text", "journal:J2"],
            ["J3", "12800", "text", "journal:J3"],
            ["J4", "1.250", "text", "journal:J4"],
        ]
    );

    // The same batch again (a rerun after a crash before the checkpoint): nothing changes.
    let before = query(&file, "SELECT * FROM journal_lines ORDER BY journal_id");
    let outcome = sink.write_batch(&encoded(&lines)).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    assert_eq!(
        query(&file, "SELECT * FROM journal_lines ORDER BY journal_id"),
        before
    );
    // The schema runs again at every open, harmlessly.
    let db = Db::open(file.clone(), Some(LEDGER_SQL.to_owned()))
        .await
        .unwrap();
    SqliteSink::open(db, &to_ledger()).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_conflicting_repeat_and_a_constraint_refuse_their_record_alone() {
    let dir = folder("refuse");
    let file = dir.join("ledger.db");
    let db = Db::open(file.clone(), Some(LEDGER_SQL.to_owned()))
        .await
        .unwrap();
    let sink = SqliteSink::open(db, &to_ledger()).await.unwrap();
    sink.write_batch(&encoded(&[line("J1", "10.00", "EUR")]))
        .await
        .unwrap();

    // J1 again with another amount: another writer used the key; J2's currency breaks the
    // CHECK; J3 is fine and is posted in the same transaction.
    let lines = [
        line("J1", "10.01", "EUR"),
        line("J2", "5.00", "EURO"),
        line("J3", "7.00", "EUR"),
    ];
    let outcome = sink.write_batch(&encoded(&lines)).await.unwrap();
    let refused: Vec<(usize, Fault, String)> = outcome
        .rejected
        .iter()
        .map(|(index, err)| (*index, err.fault, err.message.clone()))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(
        (refused[0].0, refused[0].1, refused[0].2.as_str()),
        (
            0,
            Fault::Record,
            "record journal:J1: idempotency key journal:J1 is already posted in journal_lines \
             with different content (column amount: stored 10.00, this record 10.01); another \
             flow or writer uses the same keys: make the keys unique to this flow (a prefix in \
             the mapping), or remove the stored row if it is wrong"
        )
    );
    assert_eq!((refused[1].0, refused[1].1), (1, Fault::Record));
    assert!(
        refused[1].2.starts_with("record journal:J2: SQLite at ")
            && refused[1].2.contains("CHECK constraint failed"),
        "{}",
        refused[1].2
    );
    assert_eq!(
        query(
            &file,
            "SELECT journal_id, amount FROM journal_lines ORDER BY 1"
        ),
        [["J1", "10.00"], ["J3", "7.00"]]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn settings_sqlite_cannot_serve_are_refused_with_the_fix() {
    let dir = folder("settings");
    let file = dir.join("ledger.db");
    let db = Db::open(file.clone(), Some(LEDGER_SQL.to_owned()))
        .await
        .unwrap();
    let message = |to: PostgresToConfig| {
        let db = db.clone();
        async move {
            match SqliteSink::open(db, &to).await {
                Ok(_) => panic!("{} accepted", to.table),
                Err(err) => (err.fault, err.message),
            }
        }
    };
    let (fault, text) = message(PostgresToConfig {
        table: "ledger.journal_lines".into(),
        ..to_ledger()
    })
    .await;
    assert_eq!(fault, Fault::Spec);
    assert!(
        text.contains("names a schema, which SQLite does not have"),
        "{text}"
    );
    let (_, text) = message(PostgresToConfig {
        table: "journal".into(),
        ..to_ledger()
    })
    .await;
    assert!(text.ends_with("there is no table journal; create it in the file the system's schema: names (CREATE TABLE IF NOT EXISTS journal ...)"), "{text}");
    let (fault, text) = message(PostgresToConfig {
        key_column: "account".into(),
        columns: Some(vec!["journal_id".into()]),
        ..to_ledger()
    })
    .await;
    assert_eq!(fault, Fault::Spec);
    assert!(
        text.ends_with(
            "to.key_column \"account\" needs a UNIQUE constraint (or the PRIMARY KEY) of its \
             own in the table journal_lines"
        ),
        "{text}"
    );
    // A schema SQLite cannot run names the file's trouble.
    let err = match Db::open(dir.join("other.db"), Some("CREATE SCHEMA ledger;".into())).await {
        Ok(_) => panic!("CREATE SCHEMA accepted"),
        Err(err) => err,
    };
    assert_eq!(err.fault, Fault::Spec, "{}", err.message);
    assert!(
        err.message.contains("running the system's schema file"),
        "{}",
        err.message
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn from_table(table: &str, cursor: &str, key: &str, batch: usize) -> PostgresFromConfig {
    PostgresFromConfig {
        table: Some(table.into()),
        query: None,
        cursor: cursor.into(),
        key: key.into(),
        batch_size: Some(batch),
        settle_timeout: None,
    }
}

/// Every batch of `source` until it ends: the records' `field`s, batch by batch, and the last
/// position.
async fn drain(source: &mut SqliteSource, field: &str) -> (Vec<Vec<Value>>, Value) {
    let mut batches = Vec::new();
    let mut position = Value::Null;
    for _ in 0..100 {
        let Some(batch) = source.next_batch(1000).await.unwrap() else {
            return (batches, position);
        };
        let crate::connectors::BatchRecords::Values(records) = &batch.records else {
            panic!("not values");
        };
        batches.push(records.iter().map(|r| r[field].clone()).collect());
        position = batch.position;
    }
    panic!("the source did not end in 100 batches");
}

#[tokio::test]
async fn the_keyset_reads_in_order_resumes_and_waits_on_the_horizon() {
    let dir = folder("read");
    let file = dir.join("ledger.db");
    let schema = "CREATE TABLE IF NOT EXISTS moves (seq INTEGER PRIMARY KEY, at text NOT NULL, \
                  id text NOT NULL, amount numeric(18, 4) NOT NULL);";
    let db = Db::open(file.clone(), Some(schema.into())).await.unwrap();
    {
        let conn = rusqlite::Connection::open(&file).unwrap();
        // Ties on `at` are ordered by `id`; the last second is in the future, so it is the
        // horizon the clock has not passed yet.
        conn.execute_batch(
            "INSERT INTO moves (at, id, amount) VALUES \
             ('2026-01-01 00:00:02', 'b', '0.10'), ('2026-01-01 00:00:01', 'z', '0.20'), \
             ('2026-01-01 00:00:02', 'a', '1.005'), ('2026-01-01 00:00:03', 'c', '3'), \
             ('2999-01-01 00:00:00', 'd', '4'), ('2999-01-01 00:00:00', 'e', '5');",
        )
        .unwrap();
    }
    let from = from_table("moves", "at", "id", 2);
    let mut source = SqliteSource::open(db.clone(), &from, &Value::Null)
        .await
        .unwrap();
    let (batches, position) = drain(&mut source, "id").await;
    assert_eq!(
        batches,
        [vec![json!("z"), json!("a")], vec![json!("b"), json!("c")]]
    );
    assert_eq!(
        position,
        json!({ "cursor": "2026-01-01 00:00:03", "key": "c" })
    );
    // Amounts read back as the text stored: the numeric column was created as TEXT.
    let mut again = SqliteSource::open(db.clone(), &from, &Value::Null)
        .await
        .unwrap();
    let (amounts, _) = drain(&mut again, "amount").await;
    assert_eq!(
        amounts.concat(),
        [json!("0.20"), json!("1.005"), json!("0.10"), json!("3")]
    );

    // Resumed from the position, once the horizon's rows are in the past, reads only them.
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch("UPDATE moves SET at = '2026-01-02 00:00:00' WHERE at >= '2999'")
        .unwrap();
    let mut resumed = SqliteSource::open(db.clone(), &from, &position)
        .await
        .unwrap();
    let (batches, _) = drain(&mut resumed, "id").await;
    assert_eq!(batches, [vec![json!("d"), json!("e")]]);

    // An integer cursor never waits: nothing hands its values out twice.
    let mut by_seq = SqliteSource::open(
        db.clone(),
        &from_table("moves", "seq", "id", 10),
        &Value::Null,
    )
    .await
    .unwrap();
    let (batches, position) = drain(&mut by_seq, "seq").await;
    assert_eq!(
        batches.concat(),
        (1..=6).map(Value::from).collect::<Vec<_>>()
    );
    assert_eq!(position, json!({ "cursor": 6, "key": "e" }));

    // A row with no cursor has no place in the order: the read fails, naming it.
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch(
            "CREATE TABLE loose (at text, id text NOT NULL); INSERT INTO loose VALUES (NULL, 'x');",
        )
        .unwrap();
    let mut loose = SqliteSource::open(db, &from_table("loose", "at", "id", 10), &Value::Null)
        .await
        .unwrap();
    let err = loose.next_batch(10).await.err().unwrap();
    assert_eq!(err.fault, Fault::Spec);
    assert!(
        err.message.contains("a row has at = NULL and id = x"),
        "{}",
        err.message
    );
    let _ = std::fs::remove_dir_all(&dir);
}
