//! Semantic validation of a workspace's raw files, and their resolution into the model.
//!
//! Every check runs, so one `validate` reports every problem at once; each diagnostic points at
//! the offending value through the file's [`SourceMap`]. Resolution (defaults, `${ENV}`
//! expansion, parsed durations) happens here too because it needs the same facts; the
//! resolved [`Workspace`] is only returned when there is no error.

mod flow;
mod workspace;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::diagnostic::{Code, Diagnostic, did_you_mean};
use super::load::{FileError, LoadOptions, Parsed};
use super::model::{TestSuite, Workspace};
use super::raw::{FlowFile, TestFile, WorkspaceFile};
use super::source_map::SourceMap;

/// The parsed files of one workspace.
pub(crate) struct Input<'a> {
    pub(crate) root: &'a Path,
    pub(crate) workspace: Option<Parsed<WorkspaceFile>>,
    pub(crate) flows: Vec<Parsed<FlowFile>>,
    pub(crate) tests: Vec<Parsed<TestFile>>,
    pub(crate) read_contract: &'a dyn Fn(&Path) -> Result<String, FileError>,
    pub(crate) options: &'a LoadOptions,
}

/// Checks everything, pushing diagnostics; returns the resolved workspace when every file
/// parsed and no check failed.
pub(crate) fn validate(input: Input<'_>, diagnostics: &mut Vec<Diagnostic>) -> Option<Workspace> {
    let errors_before = diagnostics.iter().filter(|d| d.is_error()).count();
    let mut report = Report { diagnostics };

    let workspace = input
        .workspace
        .as_ref()
        .and_then(|parsed| parsed.value.as_ref().map(|value| (parsed, value)))
        .map(|(parsed, value)| {
            let at = At::new(&parsed.file, &parsed.map);
            workspace::check(value, &at, &input, &mut report)
        });

    let mut flows = IndexMap::new();
    let mut flow_names: IndexMap<String, PathBuf> = IndexMap::new();
    for parsed in &input.flows {
        let Some(spec) = &parsed.value else { continue };
        let at = At::new(&parsed.file, &parsed.map);
        if let Some(first) = flow_names.get(&spec.flow) {
            report.push(at.error(
                "/flow",
                Code::DuplicateFlow,
                format!(
                    "flow \"{}\" is already declared in {}",
                    spec.flow,
                    first.display()
                ),
            ));
        } else {
            flow_names.insert(spec.flow.clone(), parsed.file.clone());
        }
        if let Some(checked) = &workspace
            && let Some(flow) = flow::check(spec, &at, checked, input.options, &mut report)
        {
            flows.entry(spec.flow.clone()).or_insert(flow);
        }
    }

    let mut tests = Vec::new();
    for parsed in &input.tests {
        let Some(spec) = &parsed.value else { continue };
        let at = At::new(&parsed.file, &parsed.map);
        // An unparsable flow file hides its name: do not blame the test file for it.
        let all_flows_parsed = input.flows.iter().all(|p| p.value.is_some());
        if all_flows_parsed && !flow_names.contains_key(&spec.flow) {
            report.push(
                at.error(
                    "/flow",
                    Code::UnknownFlow,
                    format!("unknown flow \"{}\"", spec.flow),
                )
                .with_hint(did_you_mean(
                    &spec.flow,
                    flow_names.keys().map(String::as_str),
                )),
            );
        }
        for (index, case) in spec.cases.iter().enumerate() {
            for (fault_index, fault) in case.faults.iter().enumerate() {
                if let Some(text) = &fault.for_duration {
                    at.duration(
                        &format!("/cases/{index}/faults/{fault_index}/for"),
                        text,
                        &mut report,
                    );
                }
            }
        }
        tests.push(TestSuite {
            file: parsed.file.clone(),
            spec: spec.clone(),
        });
    }

    let all_parsed = input.workspace.as_ref().is_some_and(|p| p.value.is_some())
        && input.flows.iter().all(|p| p.value.is_some())
        && input.tests.iter().all(|p| p.value.is_some());
    let errors_after = report.diagnostics.iter().filter(|d| d.is_error()).count();
    if errors_after > errors_before || !all_parsed {
        return None;
    }
    let checked = workspace?;
    Some(Workspace {
        root: input.root.to_path_buf(),
        state: checked.state?,
        spec: checked.expanded,
        flows,
        tests,
        contracts: checked
            .contracts
            .into_iter()
            .filter_map(|(name, contract)| contract.map(|value| (name, value)))
            .collect(),
    })
}

/// Where diagnostics go.
pub(crate) struct Report<'a> {
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Report<'_> {
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }
}

/// One file and its pointer index: makes diagnostics at pointers.
pub(crate) struct At<'a> {
    pub(crate) file: &'a Path,
    pub(crate) map: &'a SourceMap,
}

impl<'a> At<'a> {
    pub(crate) fn new(file: &'a Path, map: &'a SourceMap) -> Self {
        Self { file, map }
    }

    /// An error at the value under `pointer`.
    pub(crate) fn error(
        &self,
        pointer: &str,
        code: Code,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::error(self.file, self.map.value(pointer), code, message)
    }

    /// An error at the key of `pointer` (for problems with a whole entry).
    pub(crate) fn key_error(
        &self,
        pointer: &str,
        code: Code,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::error(self.file, self.map.key(pointer), code, message)
    }

    /// Parses a duration, reporting it when invalid.
    pub(crate) fn duration(
        &self,
        pointer: &str,
        text: &str,
        report: &mut Report<'_>,
    ) -> Option<std::time::Duration> {
        match super::duration::parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(message) => {
                report.push(
                    self.error(pointer, Code::InvalidDuration, message)
                        .with_hint(Some(
                            "durations look like 30s, 15m, 1h30m, 250ms or PT15M".into(),
                        )),
                );
                None
            }
        }
    }
}

/// A pointer segment, escaped.
pub(crate) fn seg(name: &str) -> String {
    super::source_map::escape(name)
}
