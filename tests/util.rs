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
