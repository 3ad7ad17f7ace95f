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
