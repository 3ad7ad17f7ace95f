use serde_json::json;

use super::*;
use crate::connectors::{BatchRecords, RawRecord};
use crate::store::Store;

fn store(name: &str) -> Store {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-webhook-{name}-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Store::open(&dir.join("state.db")).unwrap()
}

async fn open(store: &Store, records: &str) -> Box<dyn Source> {
    let setup = Setup {
        flow: "orders",
        root: std::path::Path::new("."),
        store,
        batch_size: 2,
    };
    intake()
        .source(
            &setup,
            &json!({}),
            &json!({ "records": records }),
            &Value::Null,
        )
        .await
        .unwrap()
}

#[test]
fn an_event_is_an_object_or_an_array_of_objects() {
    assert_eq!(event_records(br#"{"a":1}"#).unwrap().len(), 1);
    assert_eq!(event_records(br#"[{"a":1},{"b":2}]"#).unwrap().len(), 2);
    assert!(matches!(
        event_records(b"[1]"),
        Err(UnreadableEvent::NotObjects)
    ));
    assert!(matches!(
        event_records(b"{nope"),
        Err(UnreadableEvent::NotJson(_))
    ));
    assert!(matches!(
        event_records(b"{\"a\":\"\xff\"}"),
        Err(UnreadableEvent::NotUtf8(6))
    ));
}

#[tokio::test]
async fn events_are_read_in_batches_and_processed_only_once_committed() {
    let store = store("batches");
    for (id, body) in [
        ("e1", r#"{"order": {"n": 1}}"#),
        ("e2", r#"[{"order": {"n": 2}}, {"order": {"n": 3}}]"#),
        ("e3", "42"),
    ] {
        store.inbox_insert("orders", id, body).await.unwrap();
    }
    let mut source = open(&store, "/order").await;
    let first = source.next_batch(2).await.unwrap().unwrap();
    // Two events, three records picked out by `records`.
    assert_eq!(first.len(), 3);
    assert!(matches!(first.get(2), Some(RawRecord::Value(v)) if v == &json!({"n": 3})));
    // Handed out but not committed: still pending, and not read twice by this run.
    assert_eq!(store.inbox_count("orders", "pending").await.unwrap(), 3);
    let second = source.next_batch(2).await.unwrap().unwrap();
    assert_eq!(second.len(), 1);
    let BatchRecords::Rows(rows) = &second.records else {
        panic!("{second:?}");
    };
    let Err(malformed) = &rows[0].record else {
        panic!("{rows:?}");
    };
    assert_eq!(malformed.bytes, b"42");
    assert_eq!(malformed.reason, "malformed_json");
    assert!(malformed.error.contains("`e3`"), "{}", malformed.error);
    assert_eq!(second.line(0), None, "an event has no line");
    assert!(source.next_batch(2).await.unwrap().is_none());

    // Only the committed batch is processed; the other stays pending for the next run.
    source.committed(&second.position).await.unwrap();
    assert_eq!(store.inbox_count("orders", "pending").await.unwrap(), 2);
    assert_eq!(store.inbox_count("orders", "processed").await.unwrap(), 1);
    drop(source);
    let mut again = open(&store, "/order").await;
    let batch = again.next_batch(10).await.unwrap().unwrap();
    assert_eq!(batch.len(), 3, "the unsettled events are read again");
    again.committed(&batch.position).await.unwrap();
    assert_eq!(store.inbox_count("orders", "pending").await.unwrap(), 0);
}
