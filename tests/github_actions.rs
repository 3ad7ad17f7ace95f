//! The GitHub Actions example (examples/github-actions) stays true to the binary: valid YAML,
//! the review steps present, and every `switchyard` command line in it accepted by the current
//! command-line parser (run with `--help` appended so nothing executes).

use std::process::Command;

#[test]
fn the_workflow_is_valid_and_its_commands_parse() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/github-actions/switchyard-review.yml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let workflow: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let steps = workflow["jobs"]["review"]["steps"].as_array().unwrap();
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let all = runs.join("\n");
    for needle in [
        "validate \"$WORKSPACE\" --format github",
        "--format markdown",
        "--fail-on high",
        "docs \"$WORKSPACE\" --out evidence-pack",
    ] {
        assert!(all.contains(needle), "the workflow lacks {needle}");
    }
    assert!(steps.iter().any(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/upload-artifact"))
    }));
    let mut checked = 0;
    for line in all
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("switchyard ") && !l.starts_with("switchyard."))
    {
        // Drop shell redirections, then parse the arguments with the real binary.
        let command = line.split(" >").next().unwrap();
        let args: Vec<String> = command
            .split_whitespace()
            .skip(1)
            .map(|a| {
                a.trim_matches('"')
                    .replace("$WORKSPACE", "flows")
                    .replace("$base", "main:flows")
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`{line}` does not parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} switchyard commands found");
}
