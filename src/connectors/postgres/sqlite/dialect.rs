//! The one translation the SQLite backend makes to a system's schema file: column types
//! `numeric` and `decimal` (with or without precision) become `TEXT`.
//!
//! Why: SQLite gives a `numeric` column NUMERIC affinity, which turns the text `59.90` into
//! the float 59.9 as it is stored, so sums drift and trailing zeros go. A `TEXT` column keeps
//! the amount exactly as posted; PostgreSQL reads the same file with its exact `numeric`.
//! Nothing else is translated: the file must be SQL both databases take (no `CREATE SCHEMA`,
//! no `now()`, no `bigserial`; `CURRENT_TIMESTAMP` and `CHECK`s on text work on both).

use super::super::config::blank_sql;

/// `sql` with every `numeric`/`decimal` type (outside literals, quoted names and comments)
/// written as `TEXT`.
pub(super) fn for_sqlite(sql: &str) -> String {
    let code = blank_sql(sql);
    let lower = code.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut i = 0;
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
    while i < bytes.len() {
        let word = ["numeric", "decimal"]
            .into_iter()
            .find(|word| lower[i..].starts_with(word));
        let starts_word = i == 0 || !is_word(bytes[i - 1]);
        let Some(word) = word
            .filter(|word| starts_word && !bytes.get(i + word.len()).copied().is_some_and(is_word))
        else {
            i += 1;
            continue;
        };
        let mut end = i + word.len();
        // An optional precision: `numeric(18, 4)`, `decimal (10)`.
        let after = lower[end..].trim_start();
        if after.starts_with('(')
            && let Some(close) = after.find(')')
        {
            end = lower.len() - after.len() + close + 1;
        }
        out.push_str(&sql[copied..i]);
        out.push_str("TEXT");
        copied = end;
        i = end;
    }
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::for_sqlite;

    #[test]
    fn numeric_columns_become_text_and_nothing_else_changes() {
        assert_eq!(
            for_sqlite(
                "CREATE TABLE t (amount numeric(18, 4) NOT NULL, fee DECIMAL, n numerical, \
                 note text DEFAULT 'numeric(1)', \"numeric\" int) -- numeric here\n"
            ),
            "CREATE TABLE t (amount TEXT NOT NULL, fee TEXT, n numerical, \
             note text DEFAULT 'numeric(1)', \"numeric\" int) -- numeric here\n"
        );
        assert_eq!(for_sqlite("x decimal (10)"), "x TEXT");
    }
}
