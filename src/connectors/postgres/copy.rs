//! The sink's fast path: a batch of new rows sent with `COPY ... FROM STDIN`, the way `psql
//! \copy` loads a file, instead of one `INSERT ... SELECT` over `jsonb_populate_record`
//! (measured about four times slower on the server for the same rows).
//!
//! It is only an optimisation of the common case, never another semantics: `COPY` has no
//! `ON CONFLICT`, so it succeeds only when every key of the batch is new, and then it wrote
//! exactly what the insert would have. Any refusal the data causes — a key already posted (a
//! rerun after a crash), a type, a constraint, a trigger, or `COPY` not being allowed on the
//! table — rolls its transaction back and the batch takes the regular path, which skips
//! repeats, compares them, and rejects the guilty records alone. Records the text format could
//! not carry exactly (a fractional number, whose digits a JSON parse would round; an object or
//! an array) and tables with `json`, `jsonb` or array columns (where PostgreSQL's own JSON
//! conversion differs from text input) always take the regular path.

use std::collections::VecDeque;

use deadpool_postgres::Object;
use futures_util::SinkExt as _;
use serde_json::Value;
use tokio_postgres::types::{Kind, Type};

use super::classify;
use super::config::quote_ident;
use crate::connectors::api::{ConnectorError, Fault};

/// Whether columns of type `ty` take text input the way `jsonb_populate_record` fills them.
pub(super) fn copyable(ty: &Type) -> bool {
    !matches!(*ty, Type::JSON | Type::JSONB) && !matches!(ty.kind(), Kind::Array(_))
}

/// The batch as `COPY` text rows (`columns`, then the key), or `None` when a record holds a
/// value the text format would not carry exactly.
pub(super) fn rows(columns: &[String], bodies: &[&str], keys: &[&str]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bodies.iter().map(|body| body.len() + 16).sum());
    for (body, key) in bodies.iter().zip(keys) {
        let Fields(fields) = serde_json::from_str(body).ok()?;
        for column in columns {
            // The last of a repeated name wins, as in a JSON map; records hold few fields, so
            // a scan beats hashing each name.
            let value = fields.iter().rev().find(|(name, _)| name == column);
            match value.map(|(_, value)| value) {
                // A field the record lacks is NULL, as with jsonb_populate_record.
                None | Some(Value::Null) => out.extend_from_slice(b"\\N"),
                Some(Value::String(text)) => escape(&mut out, text),
                Some(Value::Bool(flag)) => {
                    out.extend_from_slice(if *flag { b"true" } else { b"false" })
                }
                Some(Value::Number(number)) if number.is_i64() || number.is_u64() => {
                    out.extend_from_slice(number.to_string().as_bytes())
                }
                Some(_) => return None,
            }
            out.push(b'\t');
        }
        escape(&mut out, key);
        out.push(b'\n');
    }
    Some(out)
}

/// A record's fields in their order, without a hash map.
struct Fields(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// Appends `text` in COPY's text format: backslash, tab, newline and carriage return escaped.
fn escape(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !bytes
        .iter()
        .any(|byte| matches!(byte, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    for &byte in bytes {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
}

/// Copies `rows` into `table` (quoted) filling `columns` and the key column, in one
/// transaction. `Ok(true)`: every row is written and committed. `Ok(false)`: the data or the
/// table refused it and nothing was written; take the regular path. `Err`: an outage.
pub(super) async fn copy(
    client: &mut Object,
    target: &str,
    table: &str,
    columns: &[String],
    key_column: &str,
    rows: Vec<u8>,
) -> Result<bool, ConnectorError> {
    let mut names: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    names.push(quote_ident(key_column));
    let sql = format!("COPY {table} ({}) FROM STDIN", names.join(", "));
    let pg = |err: tokio_postgres::Error| classify(&err, target);
    // What the regular path must look at again rather than fail the batch on.
    let refused = |err: ConnectorError| match err.fault {
        Fault::Record | Fault::Spec => Ok(false),
        _ => Err(err),
    };
    let tx = client.transaction().await.map_err(pg)?;
    let sink = match tx.copy_in::<_, VecDeque<u8>>(sql.as_str()).await {
        Ok(sink) => sink,
        Err(err) => return refused(pg(err)),
    };
    let mut sink = std::pin::pin!(sink);
    if let Err(err) = sink.send(VecDeque::from(rows)).await {
        return refused(pg(err));
    }
    if let Err(err) = sink.as_mut().finish().await {
        return refused(pg(err));
    }
    // A deferred constraint speaks only at COMMIT.
    match tx.commit().await {
        Ok(()) => Ok(true),
        Err(err) => refused(pg(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_copy_text_and_inexact_values_are_left_to_the_json_path() {
        let columns = ["amount".to_owned(), "note".to_owned(), "n".to_owned()];
        let bodies = [
            r#"{"amount":"59.90","note":"a\tb\\c\nd","n":7}"#,
            r#"{"amount":"-1","note":null,"flag":true}"#,
        ];
        assert_eq!(
            rows(&columns, &bodies, &["k1", "k\t2"]).map(String::from_utf8),
            Some(Ok(
                "59.90\ta\\tb\\\\c\\nd\t7\tk1\n-1\t\\N\t\\N\tk\\t2\n".to_owned()
            ))
        );
        assert_eq!(rows(&columns, &[r#"{"amount":59.90}"#], &["k"]), None);
        assert_eq!(rows(&columns, &[r#"{"note":{"a":1}}"#], &["k"]), None);
        assert_eq!(rows(&columns, &["[1]"], &["k"]), None);
        // A repeated name: the last wins, as in a JSON map.
        assert_eq!(
            rows(&columns, &[r#"{"n":1,"n":2}"#], &["k"]).map(String::from_utf8),
            Some(Ok("\\N\t\\N\t2\tk\n".to_owned()))
        );
        assert!(copyable(&Type::NUMERIC) && copyable(&Type::TIMESTAMPTZ));
        assert!(!copyable(&Type::JSONB) && !copyable(&Type::TEXT_ARRAY));
    }
}
