//! `switchyard diff`: every check of the catalog proven by a before/after fixture pair
//! (tests/diff/cases.yaml) with a golden report, the documentation kept equal to the catalog,
//! and the command itself on folders and git revisions with its exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use switchyard::spec::diff::{self, Levels, Side, checks, render};
use switchyard::spec::{EnvLookup, LoadOptions, load::load_sources};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/diff");

#[derive(Deserialize)]
struct Case {
    check: String,
    #[serde(default)]
    before: Vec<Edit>,
    #[serde(default)]
    after: Vec<Edit>,
}

#[derive(Deserialize)]
struct Edit {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    create: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    find: Option<String>,
    #[serde(default)]
    replace: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

fn base_files() -> Vec<(PathBuf, String)> {
    let root = Path::new(FIXTURES).join("base");
    let mut files = Vec::new();
    for folder in ["", "flows", "contracts"] {
        for entry in std::fs::read_dir(root.join(folder)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                let relative = Path::new(folder).join(entry.file_name());
                files.push((relative, std::fs::read_to_string(entry.path()).unwrap()));
            }
        }
    }
    files
}

fn apply(case: &str, files: &mut Vec<(PathBuf, String)>, edits: &[Edit]) {
    for edit in edits {
        let replace = |text: &str| match (&edit.find, &edit.replace) {
            (Some(find), Some(replace)) => {
                assert_eq!(
                    text.matches(find.as_str()).count(),
                    1,
                    "{case}: {find:?} must occur exactly once"
                );
                text.replacen(find.as_str(), replace, 1)
            }
            _ => text.to_owned(),
        };
        if let (Some(create), Some(content)) = (&edit.create, &edit.content) {
            files.push((PathBuf::from(create), content.clone()));
        } else if let Some(create) = &edit.create {
            let from = edit.from.as_deref().expect("create needs from or content");
            let text = files
                .iter()
                .find(|(p, _)| p == Path::new(from))
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| panic!("{case}: no {from}"));
            files.push((PathBuf::from(create), replace(&text)));
        } else {
            let file = edit.file.as_deref().expect("an edit names a file");
            let entry = files
                .iter_mut()
                .find(|(p, _)| p == Path::new(file))
                .unwrap_or_else(|| panic!("{case}: no {file}"));
            entry.1 = replace(&entry.1);
        }
    }
}

fn assert_valid(case: &str, side: &str, files: &[(PathBuf, String)]) {
    let options = LoadOptions {
        strict: false,
        env: EnvLookup::empty().offline(),
    };
    let loaded = load_sources(Path::new("."), files, &options);
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}:{}: {}", d.file.display(), d.line, d.message))
        .collect();
    assert!(
        errors.is_empty(),
        "{case}: {side} does not validate: {errors:#?}"
    );
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("cases.yaml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

#[test]
fn every_check_is_proven_by_a_fixture_pair_with_a_golden_report() {
    let cases = cases();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let check = checks::by_id(&case.check)
            .unwrap_or_else(|| panic!("cases.yaml names unknown check {}", case.check));
        let (mut before, mut after) = (base_files(), base_files());
        apply(&case.check, &mut before, &case.before);
        apply(&case.check, &mut after, &case.after);
        assert_valid(&case.check, "BASE", &before);
        assert_valid(&case.check, "HEAD", &after);
        let report = diff::compare(
            &Side::parse("base", &before),
            &Side::parse("head", &after),
            &Levels::default(),
        );
        let found = report.changes.iter().find(|c| c.check == check.id);
        match found {
            Some(change) if change.risk == check.risk => {}
            Some(change) => failures.push(format!(
                "{}: reported at {} instead of {}",
                check.id, change.risk, check.risk
            )),
            None => failures.push(format!(
                "{}: not reported; got {:?}",
                check.id,
                report.changes.iter().map(|c| c.check).collect::<Vec<_>>()
            )),
        }
        let text = render::human(&report, false);
        let golden = Path::new(FIXTURES)
            .join("golden")
            .join(format!("{}.txt", check.id));
        if update {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &text).unwrap();
        } else {
            let want = std::fs::read_to_string(&golden).unwrap_or_default();
            if want != text {
                failures.push(format!(
                    "{}: report differs from {} (UPDATE_GOLDEN=1 to accept):\n{text}",
                    check.id,
                    golden.display()
                ));
            }
        }
    }
    let covered: Vec<&str> = cases.iter().map(|c| c.check.as_str()).collect();
    for check in checks::ALL {
        if !covered.contains(&check.id) {
            failures.push(format!("{}: no fixture pair in cases.yaml", check.id));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_checks_document_lists_every_check_with_its_risk() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/diff-checks.md"))
        .unwrap();
    for check in checks::ALL {
        let row = format!("| `{}` | {} |", check.id, check.risk);
        assert!(
            doc.contains(&row),
            "docs/diff-checks.md lacks the row {row}"
        );
    }
}

#[test]
fn identical_sides_report_nothing() {
    let files = base_files();
    let report = diff::compare(
        &Side::parse("a", &files),
        &Side::parse("b", &files),
        &Levels::default(),
    );
    assert!(report.changes.is_empty(), "{:?}", report.changes);
}

#[test]
fn levels_file_raises_lowers_and_silences_checks() {
    let levels = Levels::parse(
        ".switchyard-diff.yaml",
        "risk:\n  consumer-added: high\n  spec-changed: off\n",
    )
    .unwrap();
    assert_eq!(levels.risk_of("consumer-added"), Some(diff::Risk::High));
    assert_eq!(levels.risk_of("spec-changed"), None);
    assert_eq!(levels.risk_of("flow-added"), Some(diff::Risk::Medium));
    let err = Levels::parse("x.yaml", "risk:\n  consumer-addd: high\n").unwrap_err();
    assert!(
        err.to_string().contains("did you mean \"consumer-added\""),
        "{err}"
    );
    let err = Levels::parse("x.yaml", "risk:\n  consumer-added: severe\n").unwrap_err();
    assert!(
        err.to_string().contains("use high, medium, low or off"),
        "{err}"
    );
}

/// The reviewer's scenario of issue 10 on the reference workspace, through the binary: each
/// change at its risk, `--fail-on high` exits 1, markdown is a table.
#[test]
fn the_reference_workspace_scenario_through_the_command() {
    let dir = tempfile_dir("diff-scenario");
    let head = dir.join("head");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"), &head);
    edit(
        &head.join("switchyard.yaml"),
        "    contract: contracts/offer.json\n    source_of_truth: marketplace",
        "    contract: contracts/offer.json\n    source_of_truth: storefront",
    );
    edit(
        &head.join("switchyard.yaml"),
        "    consume: [storefront]\n",
        "    consume: [storefront, oms]\n",
    );
    let orders = head.join("flows/orders-to-oms.yaml");
    edit(&orders, "window: 10m }", "window: 6h }");
    edit(&orders, "  basket_id: \"{{commercial_id}}\"\n", "");
    let text = std::fs::read_to_string(&orders).unwrap();
    let start = text.find("  sink-unavailable:\n").unwrap();
    let end = start + text[start..].find("  deadline-missed:\n").unwrap();
    std::fs::write(&orders, format!("{}{}", &text[..start], &text[end..])).unwrap();

    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("diff")
            .arg(&base)
            .arg(&head)
            .args(args)
            .output()
            .unwrap()
    };
    let json = run(&["--format", "json"]);
    assert_eq!(
        json.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let risk_of = |check: &str| {
        report["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check)
            .map(|c| c["risk"].as_str().unwrap().to_owned())
    };
    assert_eq!(risk_of("source-of-truth-changed").as_deref(), Some("high"));
    assert_eq!(risk_of("mapped-field-removed").as_deref(), Some("high"));
    assert_eq!(risk_of("failure-mode-removed").as_deref(), Some("high"));
    assert_eq!(
        risk_of("retry-window-past-freshness").as_deref(),
        Some("high")
    );
    assert_eq!(risk_of("consumer-added").as_deref(), Some("low"));
    // Most severe first.
    let risks: Vec<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["risk"].as_str().unwrap())
        .collect();
    assert_eq!(risks.first(), Some(&"high"), "{risks:?}");

    assert_eq!(run(&["--fail-on", "high"]).status.code(), Some(1));
    let markdown = run(&["--format", "markdown"]);
    let markdown = String::from_utf8(markdown.stdout).unwrap();
    assert!(
        markdown.contains("| Risk | Check | Where | Change |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| 🔴 high | `source-of-truth-changed` | object offer |"),
        "{markdown}"
    );

    let github = run(&["--format", "github"]);
    let github = String::from_utf8(github.stdout).unwrap();
    assert!(
        github
            .lines()
            .any(|l| l.starts_with("::error file=") && l.contains("orders-to-oms.yaml,line=")),
        "{github}"
    );

    let usage = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["diff", "no-such-folder", "flows", "--fail-on", "high"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("neither a folder nor REVISION:PATH"));
}

/// A side read from git history: commit a workspace, change it, diff `HEAD:ws` against the
/// folder; annotations carry paths from the repository root.
#[test]
fn a_git_revision_is_read_without_a_checkout() {
    let repo = tempfile_dir("diff-git");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    copy_dir(&Path::new(FIXTURES).join("base"), &repo.join("specs/ws"));
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        "base",
    ]);
    edit(
        &repo.join("specs/ws/flows/offers-to-storefront.yaml"),
        "trigger: { poll: 30s }",
        "trigger: { poll: 5m }",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .current_dir(&repo)
        .args(["diff", "HEAD:specs/ws", "specs/ws", "--format", "github"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("::warning file=specs/ws/flows/offers-to-storefront.yaml,line=8,title=trigger-changed (medium)::"),
        "{text}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .current_dir(&repo)
        .args(["diff", "nosuchrev:specs/ws", "specs/ws"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nosuchrev is not a revision"));
}

fn tempfile_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn edit(path: &Path, find: &str, replace: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(find), "{} lacks {find:?}", path.display());
    std::fs::write(path, text.replacen(find, replace, 1)).unwrap();
}
