//! Feeds arbitrary bytes as each kind of spec file through loading and validation: the
//! loader must report diagnostics, never panic.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The same text as the workspace file, as a flow beside a minimal workspace, and as a test.
    let workspace = "version: 1\nmodel: operator\n".to_owned();
    let _ = switchyard::spec::check_sources(&[(PathBuf::from("switchyard.yaml"), text.to_owned())]);
    let _ = switchyard::spec::check_sources(&[
        (PathBuf::from("switchyard.yaml"), workspace.clone()),
        (PathBuf::from("flows/f.yaml"), text.to_owned()),
    ]);
    let _ = switchyard::spec::check_sources(&[
        (PathBuf::from("switchyard.yaml"), workspace),
        (PathBuf::from("tests/t.yaml"), text.to_owned()),
    ]);
});
