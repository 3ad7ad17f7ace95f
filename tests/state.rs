//! Which state store a command uses: the workspace's `state:` (a store URL, `${ENV}`
//! expanded), overridden by `--state`, logged with its password redacted; and the
//! diagnostics of a `state:` that names no usable store.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{copy_dir, switchyard};

/// A private copy of the reference workspace with `state` added to its `switchyard.yaml`.
fn workspace(name: &str, state: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), &dir);
    let file = dir.join("switchyard.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}\n{state}\n")).unwrap();
    dir
}

/// `switchyard run ROOT offers-to-storefront --sandbox` in `cwd` with `extra` arguments;
/// returns the exit code and stderr.
fn run_offers(cwd: &Path, root: &Path, extra: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .current_dir(cwd)
        .arg("run")
        .arg(root)
        .args(["offers-to-storefront", "--sandbox", "--sandbox-offers", "5"])
        .args(extra)
        .env("SWITCHYARD_LOG", "info")
        .env("ORDERS_WEBHOOK_SECRET", "state-tests")
        .output()
        .expect("run");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_workspace_names_the_store_and_state_overrides_it() {
    let root = workspace("choose", "state: sqlite:custom/state.db");
    let (code, stderr) = run_offers(&root, &root, &[]);
    assert_eq!(code, 0, "{stderr}");
    let custom = root.join("custom/state.db");
    assert!(custom.exists(), "the workspace's store is used");
    assert!(
        !root.join(".switchyard/state.db").exists(),
        "not the default one"
    );
    assert!(
        stderr.contains("Opening the state store.")
            && stderr.contains(&format!("sqlite:{}", custom.display())),
        "the store in use is logged: {stderr}"
    );
    let listed = switchyard(&root, &["dlq", "list", root.to_str().unwrap()]);
    assert_eq!(
        listed.code, 0,
        "dlq finds the workspace's store: {listed:?}"
    );

    // `--state` wins, a path taken from the current folder.
    let cwd = root.join("elsewhere");
    std::fs::create_dir_all(&cwd).unwrap();
    let (code, stderr) = run_offers(&cwd, &root, &["--state", "sqlite:override.db"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        cwd.join("override.db").exists(),
        "--state overrides the workspace"
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn the_password_of_the_store_never_reaches_the_log() {
    let root = workspace("redacted", "");
    let (code, stderr) = run_offers(
        &root,
        &root,
        &["--state", "postgres://app:s3cr3t-pw@127.0.0.1:1/test"],
    );
    assert_eq!(code, 1, "nothing listens on port 1: {stderr}");
    assert!(
        stderr.contains("postgres://app:***@127.0.0.1:1/test"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t-pw"), "{stderr}");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_state_that_names_no_usable_store_is_an_error_with_its_position() {
    let env = [
        ("MARKETPLACE_URL", "http://127.0.0.1:1"),
        ("STOREFRONT_URL", "http://127.0.0.1:1"),
        ("ALERTS_URL", "http://127.0.0.1:1"),
        ("OMS_URL", "http://127.0.0.1:1"),
        ("ORDERS_WEBHOOK_SECRET", "x"),
        ("MARKETPLACE_CLIENT_ID", "x"),
        ("MARKETPLACE_CLIENT_SECRET", "x"),
    ];
    for (name, state, expected) in [
        (
            "unset",
            "state: postgres://app:${SY_STATE_TEST_UNSET}@db/ledger",
            "error[E0701]: environment variable SY_STATE_TEST_UNSET is not set; the state store \
             URL needs it",
        ),
        (
            "scheme",
            "state: mysql://db/ledger",
            "error[E0005]: state store: unknown store `mysql:`; use `sqlite:PATH` (a file, \
             relative to the workspace) or \
             `postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME]`",
        ),
        (
            "malformed",
            "state:\n  url: postgres://db:port/ledger",
            "error[E0005]: state store: not a PostgreSQL URL (invalid connection string); use `sqlite:PATH`",
        ),
    ] {
        let root = workspace(name, state);
        let lines = std::fs::read_to_string(root.join("switchyard.yaml"))
            .unwrap()
            .lines()
            .count();
        // `state:` is the last entry; the malformed URL is on the line after it.
        let line = lines;
        let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("validate")
            .arg(&root)
            .env_remove("SY_STATE_TEST_UNSET")
            .envs(env)
            .output()
            .expect("validate");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {text}");
        assert!(
            text.contains(&format!("switchyard.yaml:{line}:")) && text.contains(expected),
            "{name}: {text}"
        );
        let _ = std::fs::remove_dir_all(root);
    }
}
