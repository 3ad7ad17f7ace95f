//! Shared helpers: fixture paths and a small runner for the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder of spec fixtures, one workspace per case.
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spec/fixtures")
}

/// The environment fixtures run with: the variables the valid workspace references.
pub(crate) const FIXTURE_ENV: &[(&str, &str)] = &[
    ("MARKETPLACE_URL", "http://marketplace.test"),
    ("STOREFRONT_URL", "http://storefront.test"),
    ("ALERTS_URL", "http://alerts.test"),
];

/// What a run of the binary produced.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: i32,
}

/// Runs `switchyard` with `args` in `dir`, with only [`FIXTURE_ENV`] set among the
/// workspace's variables.
pub(crate) fn switchyard(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command.current_dir(dir).args(args);
    for (name, _) in FIXTURE_ENV {
        command.env_remove(name);
    }
    command.env_remove("STOREFRONT_TOKEN");
    command.envs(FIXTURE_ENV.iter().copied());
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run switchyard: {err}"));
    Output {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code().unwrap_or(-1),
    }
}

/// Asserts an exact output and exit code, showing both on failure.
#[track_caller]
pub(crate) fn assert_output(output: &Output, stdout: &str, code: i32) {
    assert_eq!(
        (output.stdout.as_str(), output.code),
        (stdout, code),
        "stderr: {}",
        output.stderr
    );
}

/// Copies a folder recursively (hidden entries such as `.switchyard` state excluded).
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|err| panic!("{}: {err}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|err| panic!("{}: {err}", from.display()));
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let target = to.join(&name);
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|err| panic!("{}: {err}", target.display()));
        }
    }
}

/// Whether the suite runs against PostgreSQL (`SWITCHYARD_TEST_STATE=postgres`) rather than
/// SQLite files.
pub(crate) fn state_is_postgres() -> bool {
    std::env::var("SWITCHYARD_TEST_STATE").is_ok_and(|v| v == "postgres")
}

/// The state store of one test: a fresh SQLite file by default, a fresh PostgreSQL schema of
/// `$SWITCHYARD_TEST_POSTGRES` with `SWITCHYARD_TEST_STATE=postgres` (dropped when this is
/// dropped). Every integration test that keeps state gets it here, so one variable runs the
/// suite against either store.
pub(crate) struct TestState {
    target: String,
    postgres: Option<(String, String)>,
}

impl TestState {
    /// A fresh store for `test`; its SQLite file would be `file`.
    pub(crate) fn new(test: &str, file: &Path) -> TestState {
        if state_is_postgres() {
            let url = switchyard::store::testing::postgres_url();
            let schema = switchyard::store::testing::unique_schema(test);
            let fresh = {
                let (url, schema) = (url.clone(), schema.clone());
                let test = format!("{test} on PostgreSQL (it ran on SQLite)");
                on_own_runtime(async move {
                    switchyard::store::testing::fresh_schema(&test, &url, &schema).await
                })
            };
            if fresh {
                return TestState {
                    target: switchyard::store::testing::with_schema(&url, &schema),
                    postgres: Some((url, schema)),
                };
            }
        }
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        }
        let _ = std::fs::remove_file(file);
        TestState {
            target: format!("sqlite:{}", file.display()),
            postgres: None,
        }
    }

    /// Gives the workspace at `root` a fresh store and names it in its `switchyard.yaml`
    /// (`state:`), so every command and every load of the workspace uses it. With SQLite that
    /// is the workspace's default file, and the file is left as it is.
    pub(crate) fn attach(test: &str, root: &Path) -> TestState {
        let state = TestState::new(test, &root.join(".switchyard").join("state.db"));
        if state.postgres.is_some() {
            let path = root.join("switchyard.yaml");
            let text = std::fs::read_to_string(&path).unwrap();
            let url = format!("url: \"{}\"", state.target);
            let text = if text.contains("\nstate: {") {
                text.replacen("\nstate: {", &format!("\nstate: {{ {url}, "), 1)
            } else {
                assert!(
                    !text.contains("\nstate:"),
                    "{}: a `state:` this helper cannot extend",
                    path.display()
                );
                format!("{text}\nstate: {{ {url} }}\n")
            };
            std::fs::write(&path, text).unwrap();
        }
        state
    }

    /// The store, as `--state` takes it.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Opens the store.
    pub(crate) async fn open(&self) -> switchyard::store::Store {
        switchyard::store::Store::connect(&self.target)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", self.target))
    }
}

impl Drop for TestState {
    fn drop(&mut self) {
        // Kept when the test failed, to look at.
        if std::thread::panicking() {
            return;
        }
        if let Some((url, schema)) = self.postgres.take() {
            on_own_runtime(async move {
                let _ = switchyard::store::testing::drop_schema(&url, &schema).await;
            });
        }
    }
}

/// A write lock on the state store taken from outside, so that the run's next commit of a
/// checkpoint waits: what the run's output shows from then on is written but not yet
/// checkpointed, the window a crash must not turn into a double posting.
pub(crate) enum StateHold {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl StateHold {
    /// Takes the lock on the store `target` (as `--state` takes it).
    pub(crate) async fn take(target: &str) -> StateHold {
        if let Some(path) = target.strip_prefix("sqlite:") {
            let conn = rusqlite::Connection::open(path).unwrap();
            // A reserved lock: the run still reads, but its next write waits.
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            return StateHold::Sqlite(conn);
        }
        let (url, schema) = target.split_once("?schema=").unwrap();
        let client = switchyard::store::testing::raw_postgres(url).await.unwrap();
        client
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE \"{schema}\".checkpoints IN EXCLUSIVE MODE"
            ))
            .await
            .unwrap();
        StateHold::Postgres(client)
    }

    /// Lets the store be written again.
    pub(crate) async fn release(self) {
        match self {
            StateHold::Sqlite(conn) => conn.execute_batch("ROLLBACK").unwrap(),
            StateHold::Postgres(client) => client.batch_execute("ROLLBACK").await.unwrap(),
        }
    }
}

/// Runs `work` to completion on a runtime of its own, on a thread of its own: callable from
/// plain tests, tokio tests and `Drop` alike.
fn on_own_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join()
    .unwrap()
}
