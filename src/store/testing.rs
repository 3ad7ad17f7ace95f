//! Test support: fresh PostgreSQL schemas for tests that run against a real server, shared by
//! the store conformance suite and the integration tests (`tests/util.rs`), so both find the
//! server, skip and require it the same way.
//!
//! The server is `$SWITCHYARD_TEST_POSTGRES` (default [`DEFAULT_POSTGRES`]). When it does not
//! answer, a test says `SKIPPED <test>: ...` on stderr and runs no PostgreSQL half, unless
//! `SWITCHYARD_REQUIRE_POSTGRES=1` (CI), which makes that a failure. Not part of the product.

use std::io::Write as _;
use std::time::Duration;

/// The server tests use when `SWITCHYARD_TEST_POSTGRES` is not set.
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1/test";

/// The test server's URL, without a schema.
pub fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

/// Whether a PostgreSQL that does not answer must fail the test.
pub fn postgres_required() -> bool {
    std::env::var("SWITCHYARD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// A unique schema name for one test in this process: `t_<test>_<pid>_<n>`, a plain name of
/// at most 63 characters.
pub fn unique_schema(test: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name: String = test
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '_',
        })
        .take(36)
        .collect();
    format!("t_{name}_{}_{n}", std::process::id())
}

/// `url` with `schema` as its state schema (`?schema=` or `&schema=`).
pub fn with_schema(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}schema={schema}")
}

/// Drops `schema` (left by an earlier run, or at the end of a test) so the next state there
/// starts empty, and so checks the server answers. On failure: panics when PostgreSQL is
/// required, otherwise says `SKIPPED <test>` on stderr and returns `false`.
pub async fn fresh_schema(test: &str, url: &str, schema: &str) -> bool {
    let answer = tokio::time::timeout(Duration::from_secs(10), drop_schema(url, schema)).await;
    match answer.unwrap_or_else(|_| Err("no answer within 10s".to_owned())) {
        Ok(()) => true,
        Err(why) => {
            let url = crate::redact::redact(url);
            if postgres_required() {
                panic!(
                    "SWITCHYARD_REQUIRE_POSTGRES=1 but PostgreSQL at {url} does not answer: {why}"
                );
            }
            // Straight to the stream: the harness captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: PostgreSQL not reachable at {url} ({why}); set \
                 SWITCHYARD_TEST_POSTGRES / run .ci/run (SWITCHYARD_REQUIRE_POSTGRES=1 makes \
                 this a failure)"
            );
            false
        }
    }
}

/// Drops `schema` and everything in it, if it exists.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), String> {
    let client = raw_postgres(url).await?;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .map_err(|e| crate::error_text::with_causes(&e))
}

/// A plain connection to the test server, for what a test does behind the store's back.
pub async fn raw_postgres(url: &str) -> Result<tokio_postgres::Client, String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    if config.get_user().is_none() {
        let user = std::env::var("PGUSER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "postgres".into());
        config.user(user);
    }
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| crate::error_text::with_causes(&e))?;
    tokio::spawn(connection);
    Ok(client)
}
