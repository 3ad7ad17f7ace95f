//! Input never decides how deep we recurse or how much we read (issue 6, items 8, 10 and 17):
//! templates nested thousands of levels deep, oversized HTTP bodies, endless contract files and
//! contract paths outside the workspace are all refused with a message naming the limit.

use std::path::{Path, PathBuf};

use crate::util::{assert_output, copy_dir, fixtures, switchyard};

const FLOW_FILE: &str = "flows/offers-to-storefront.yaml";

/// A private copy of the `valid` fixture workspace.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-limits-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&fixtures().join("valid"), &dir);
    dir
}

/// Replaces `from` with `to` in a file of the workspace.
fn patch(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{file}: {err}"));
    assert!(text.contains(from), "{file} has no {from:?}");
    std::fs::write(&path, text.replace(from, to)).unwrap_or_else(|err| panic!("{file}: {err}"));
}

#[test]
fn item_08_validate_refuses_deep_nesting() {
    let helpers = format!(
        "{{{{lower {}shop_sku{}}}}}",
        "(lower ".repeat(3_000),
        ")".repeat(3_000)
    );
    let blocks = format!(
        "{}x{}",
        "{{#if shop_sku}}".repeat(5_000),
        "{{/if}}".repeat(5_000)
    );
    // The template starts at column 9; the 33rd level is the token past the limit.
    for (name, template, column) in [
        ("helpers", helpers, 9 + 8 + 7 * 32),
        ("blocks", blocks, 9 + 16 * 32),
    ] {
        let root = scratch(&format!("nesting-{name}"));
        patch(&root, FLOW_FILE, "{{lower shop_sku}}", &template);
        let output = switchyard(&root, &["validate"]);
        assert_output(
            &output,
            &format!(
                "{FLOW_FILE}:18:{column}: error[E0304]: template does not compile: template nests \
                 deeper than 32 levels (blocks, `else` chains, subexpressions and literals count \
                 together) (at 1:{} of the template)\n  = hint: split the logic over several `map` \
                 fields, or flatten the nesting\n1 error, 0 warnings\n",
                column - 8
            ),
            1,
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}

#[test]
fn item_17_contract_outside_workspace_refused() {
    let root = scratch("outside");
    // A valid contract outside the workspace, so only confinement can refuse it.
    let outside = root.with_extension("outside.json");
    std::fs::copy(root.join("contracts/offer.json"), &outside).unwrap();
    let outside_name = outside
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap()
        .to_owned();
    std::os::unix::fs::symlink(&outside, root.join("contracts/link.json")).unwrap();
    let expected = |path: &str| {
        format!(
            "switchyard.yaml:16:15: error[E0604]: contract file {path} is outside the workspace \
             folder\n  = hint: keep contracts inside the workspace (for example under contracts/); \
             paths are relative to the workspace folder, and symbolic links that lead out of it \
             are refused\n1 error, 0 warnings\n"
        )
    };
    let mut current = "contracts/offer.json".to_owned();
    for path in [
        format!("../{outside_name}"),
        format!("contracts/../../{outside_name}"),
        outside.display().to_string(),
        "/proc/self/environ".to_owned(),
        "contracts/link.json".to_owned(),
    ] {
        patch(
            &root,
            "switchyard.yaml",
            &format!("contract: {current}"),
            &format!("contract: {path}"),
        );
        current = path.clone();
        assert_output(&switchyard(&root, &["validate"]), &expected(&path), 1);
    }
    // Inside the workspace, `..` that stays inside is fine.
    patch(
        &root,
        "switchyard.yaml",
        &format!("contract: {current}"),
        "contract: flows/../contracts/offer.json",
    );
    assert_output(
        &switchyard(&root, &["validate"]),
        "0 errors, 0 warnings\n",
        0,
    );
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(&outside);
}

#[test]
fn item_10_contract_files_are_read_up_to_the_limit() {
    let root = scratch("contract-size");
    // A valid JSON Schema, 5 MiB long.
    let text = std::fs::read_to_string(root.join("contracts/offer.json")).unwrap();
    let padded = text.replacen(
        '{',
        &format!("{{\"description\": \"{}\",", "x".repeat(5 << 20)),
        1,
    );
    std::fs::write(root.join("contracts/offer.json"), padded).unwrap();
    assert_output(
        &switchyard(&root, &["validate"]),
        "switchyard.yaml:16:15: error[E0001]: contract file contracts/offer.json is larger than \
         4 MiB (the limit for spec and contract files)\n1 error, 0 warnings\n",
        1,
    );
    // An endless file is refused without being read: `/dev/zero` is outside the workspace,
    // and a link to it inside the workspace leads outside.
    std::os::unix::fs::symlink("/dev/zero", root.join("contracts/zero.json")).unwrap();
    patch(
        &root,
        "switchyard.yaml",
        "contract: contracts/offer.json",
        "contract: contracts/zero.json",
    );
    let output = switchyard(&root, &["validate"]);
    assert!(output.stdout.contains("error[E0604]"), "{output:?}");
    // A spec file is capped the same way.
    std::fs::write(root.join("flows/huge.yaml"), "#".repeat(5 << 20)).unwrap();
    let output = switchyard(&root, &["validate"]);
    assert!(
        output.stdout.contains(
            "flows/huge.yaml:1:1: error[E0001]: cannot read file: file is larger than 4 MiB"
        ),
        "{output:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
