//! `switchyard validate`: every fixture through the library, and exact output of the binary.

use std::path::Path;

use switchyard::spec::{EnvLookup, LoadOptions, load_workspace};

use crate::util::{FIXTURE_ENV, assert_output, fixtures, switchyard};

/// Each folder under `tests/spec/fixtures` is a workspace whose `expect.txt` lists the
/// expected diagnostics as `file:line:col: CODE` lines, or `ok`. Folders ending in `-strict`
/// load with `--strict`. Set `SWITCHYARD_BLESS=1` to rewrite the expectations (then review
/// the diff).
#[test]
fn fixtures_report_expected_diagnostics() {
    let bless = std::env::var_os("SWITCHYARD_BLESS").is_some();
    let mut entries: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap_or_else(|err| panic!("cannot list fixtures: {err}"))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    entries.sort();
    assert!(entries.len() > 20, "fixtures are missing");
    let mut failures = Vec::new();
    for root in entries {
        let name = root
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let actual = diagnose(&root, name.ends_with("-strict"));
        let expect_path = root.join("expect.txt");
        if bless {
            std::fs::write(&expect_path, &actual).unwrap_or_else(|err| panic!("{err}"));
            continue;
        }
        let expected = std::fs::read_to_string(&expect_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{name}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn diagnose(root: &Path, strict: bool) -> String {
    let env = FIXTURE_ENV
        .iter()
        .fold(EnvLookup::empty(), |env, (name, value)| {
            env.with(*name, *value)
        });
    let loaded = load_workspace(root, &LoadOptions { strict, env });
    let has_error = loaded.diagnostics.iter().any(|d| d.is_error());
    assert_eq!(loaded.workspace.is_some(), !has_error, "{}", root.display());
    if loaded.diagnostics.is_empty() {
        return "ok\n".to_owned();
    }
    loaded
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{}:{}: {}\n",
                d.file.display(),
                d.line,
                d.column,
                d.code.as_str()
            )
        })
        .collect()
}

#[test]
fn human_output_and_exit_code() {
    let output = switchyard(&fixtures(), &["validate", "unknown-system"]);
    assert_output(
        &output,
        "flows/offers-to-storefront.yaml:14:11: error[E0101]: unknown system \"storefrnt\"\n  = hint: did you mean \"storefront\"?\n1 error, 0 warnings\n",
        1,
    );
}

/// A malformed contracted-rate table: each mistake at its value, said plainly, with the fix.
#[test]
fn a_malformed_rate_table_is_reported_value_by_value() {
    let output = switchyard(&fixtures(), &["validate", "reconcile-rates-invalid"]);
    assert_output(
        &output,
        "flows/recon.yaml:12:27: error[E0902]: \"date_created\" is not a JSON Pointer to a field
  = hint: write it as a JSON Pointer: /date_created
flows/recon.yaml:17:12: error[E0902]: \"order_line_id\" is not a JSON Pointer to a field
  = hint: write it as a JSON Pointer: /order_line_id
flows/recon.yaml:19:28: error[E0902]: \"twelve\" is not a decimal rate
  = hint: write the rate as a quoted decimal fraction: 12 % is \"0.12\"
flows/recon.yaml:19:45: error[E0902]: a contracted rate is a fraction from 0 to 1, not 12
  = hint: write the rate as a quoted decimal fraction: 12 % is \"0.12\"
flows/recon.yaml:19:58: error[E0902]: a contracted rate is a fraction from 0 to 1, not -0.05
  = hint: write the rate as a quoted decimal fraction: 12 % is \"0.12\"
flows/recon.yaml:20:16: error[E0902]: a contracted rate is a fraction from 0 to 1, not 1.5
  = hint: write the rate as a quoted decimal fraction: 12 % is \"0.12\"
flows/recon.yaml:21:29: error[E0902]: a tolerance cannot be negative
  = hint: write the largest difference still matched, such as \"0.01\"
flows/recon.yaml:21:38: error[E0902]: \"EURO\" is not an ISO 4217 currency code; write an active three-letter code such as EUR, JPY or BHD
  = hint: a tolerance is per ISO 4217 code (EUR, JPY, BHD) or `default`: the contracted amount is rounded to that currency's minor units
flows/recon.yaml:24:7: error[E0902]: rate \"vat-rate\" charges the lines it is based on: a line cannot be charged on itself
  = hint: name the charged lines (`charged: { field: /type, equals: COMMISSION_FEE }`) and the lines they are a rate of (`base: { field: /type, equals: ORDER_AMOUNT }`)
flows/recon.yaml:26:7: error[E0902]: contracted rates are chosen by the value of `by`, and `by` is not declared
  = hint: add `by:` naming the statement field the table is keyed by, such as /shop_id
flows/recon.yaml:27:5: error[E0902]: rate \"empty-rate\" contracts no rate: every line it charges would breach it
  = hint: declare `default: \"0.12\"`, or `by:` and the `contracted:` rate per value
11 errors, 0 warnings
",
        1,
    );
}

#[test]
fn json_output() {
    let output = switchyard(
        &fixtures(),
        &["validate", "unknown-system", "--format", "json"],
    );
    assert_output(
        &output,
        r#"[
  {
    "file": "flows/offers-to-storefront.yaml",
    "line": 14,
    "column": 11,
    "severity": "error",
    "code": "E0101",
    "message": "unknown system \"storefrnt\"",
    "hint": "did you mean \"storefront\"?"
  }
]
"#,
        1,
    );
}

#[test]
fn github_output() {
    let output = switchyard(
        &fixtures(),
        &["validate", "unknown-system", "--format", "github"],
    );
    assert_output(
        &output,
        "::error file=flows/offers-to-storefront.yaml,line=14,col=11,title=E0101::unknown system \"storefrnt\" (hint: did you mean \"storefront\"?)\n",
        1,
    );
}

#[test]
fn valid_workspace_exits_zero() {
    let output = switchyard(&fixtures().join("valid"), &["validate"]);
    assert_output(&output, "0 errors, 0 warnings\n", 0);
}

#[test]
fn warnings_alone_exit_zero_and_strict_fails() {
    let output = switchyard(&fixtures(), &["validate", "unset-env"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stdout.contains("warning[W0701]"), "{output:?}");
    assert!(
        output.stdout.ends_with("0 errors, 1 warning\n"),
        "{output:?}"
    );
    let strict = switchyard(&fixtures(), &["validate", "unset-env", "--strict"]);
    assert_eq!(strict.code, 1, "{strict:?}");
    assert!(strict.stdout.contains("error[E0701]"), "{strict:?}");
}

#[test]
fn missing_workspace_is_a_usage_error() {
    let output = switchyard(&fixtures(), &["validate", "no-such-workspace"]);
    assert_eq!(output.code, 2, "{output:?}");
    assert_eq!(output.stdout, "");
    assert!(
        output
            .stderr
            .contains("workspace folder no-such-workspace does not exist"),
        "{output:?}"
    );
    let bad_flag = switchyard(&fixtures(), &["validate", "valid", "--format", "xml"]);
    assert_eq!(bad_flag.code, 2, "{bad_flag:?}");
}

#[test]
fn every_code_is_documented() {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/spec-diagnostics.md"),
    )
    .unwrap_or_default();
    for code in switchyard::spec::Code::ALL {
        assert!(
            docs.contains(&format!("| {} |", code.as_str())),
            "{} is not documented",
            code.as_str()
        );
    }
}
