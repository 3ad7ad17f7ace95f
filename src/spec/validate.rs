//! Semantic validation of a workspace's raw files, and their resolution into the model.
//!
//! Every check runs, so one `validate` reports every problem at once; each diagnostic points at
//! the offending value through the file's [`SourceMap`]. Resolution (defaults, `${ENV}`
//! expansion, parsed durations) happens here too because it needs the same facts; the
//! resolved [`Workspace`] is only returned when there is no error.

mod conditions;
mod enrich;
mod flow;
mod guards;
mod money;
mod reconcile;
mod workspace;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use std::sync::Arc;

use super::compiled::{DEFAULT_MAX_DEAD_LETTER_RECORD_BYTES, FlowPlan, Shared};
use super::diagnostic::{Code, Diagnostic, did_you_mean};
use super::load::{FileError, LoadOptions, Parsed};
use super::model::{Endpoint, Flow, Object, TestSuite, Workspace};
use super::raw::{FlowFile, TestFile, WorkspaceFile};
use super::source_map::SourceMap;
use crate::contract::Contract;

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

    // Built once per load and shared by every flow's plan.
    let shared = workspace.as_ref().map(|checked| {
        let mut shared = shared_values(checked);
        shared.outcomes_required = guards::outcomes_required(&input.flows);
        shared
    });
    let mut flows = IndexMap::new();
    let mut reconciliations = IndexMap::new();
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
        let errors_before_flow = report.errors();
        if let Some(checked) = &workspace
            && reconcile::is_reconciliation(spec, &at, &mut report)
        {
            if let Some(shared) = &shared
                && let Some(plan) = reconcile::check(spec, &at, checked, shared, &mut report)
                && report.errors() == errors_before_flow
            {
                reconciliations.entry(spec.flow.clone()).or_insert(plan);
            }
            continue;
        }
        if let Some(checked) = &workspace
            && let Some(shared) = &shared
            && let Some(flow) = flow::check(spec, &at, checked, input.options, &mut report)
            // A flow with errors is not compiled: its plan would only repeat them.
            && report.errors() == errors_before_flow
            && let Some(flow) = compile_flow(flow, checked, shared, &at, &mut report)
        {
            flows.entry(spec.flow.clone()).or_insert(flow);
        }
    }

    guards::check_guards(&input.flows, &mut report);

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
        let flow_spec = input
            .flows
            .iter()
            .filter_map(|p| p.value.as_ref())
            .find(|f| f.flow == spec.flow);
        for (index, case) in spec.cases.iter().enumerate() {
            // Answers for an enrichment the flow does not have would never be used.
            if let Some(flow) = flow_spec {
                for name in case.enrich.keys().filter(|n| !flow.enrich.contains_key(*n)) {
                    report.push(
                        at.error(
                            &format!("/cases/{index}/enrich/{}", seg(name)),
                            Code::InvalidValue,
                            format!("flow \"{}\" has no enrichment \"{name}\"", spec.flow),
                        )
                        .with_hint(did_you_mean(name, flow.enrich.keys().map(String::as_str))),
                    );
                }
            }
            if let Some(now) = &case.now
                && now.parse::<jiff::Timestamp>().is_err()
            {
                report.push(
                    at.error(
                        &format!("/cases/{index}/now"),
                        Code::InvalidValue,
                        format!("`now: {now}` is not an RFC 3339 time"),
                    )
                    .with_hint(Some(
                        "write the case's clock like 2026-11-27T12:00:00Z (with a zone or offset)"
                            .into(),
                    )),
                );
            }
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
    let shared = shared?;
    Some(Workspace {
        root: input.root.to_path_buf(),
        state: checked.state?,
        name: checked.expanded.name.clone(),
        objects: checked
            .expanded
            .objects
            .iter()
            .map(|(name, object)| (name.clone(), object_model(object)))
            .collect(),
        systems: checked.expanded.systems,
        flows,
        reconciliations,
        tests,
        contracts: shared.contracts,
        max_dead_letter_record: shared.max_dead_letter_record,
    })
}

/// The values every flow of the workspace shares: compiled contracts, parties, alert URLs and
/// the dead-letter size limit.
fn shared_values(checked: &workspace::Checked) -> Shared {
    let spec = &checked.expanded;
    let contracts = checked
        .contracts
        .iter()
        .filter_map(|(name, schema)| {
            // An invalid schema was reported by the workspace checks; no flow compiles then.
            let lenient = spec.objects.get(name).is_some_and(|object| {
                object.contract_nulls == crate::spec::raw::ContractNulls::Lenient
            });
            let contract = Contract::compile(schema.as_ref()?)
                .ok()?
                .with_lenient_nulls(lenient);
            Some((name.clone(), Arc::new(contract)))
        })
        .collect();
    let parties = spec
        .systems
        .iter()
        .filter_map(|(name, system)| system.acts_for.map(|party| (name.clone(), party)))
        .collect();
    let alert_urls = spec
        .owners
        .iter()
        .filter_map(|(name, owner)| {
            let url = owner.alert.as_ref()?.webhook.clone();
            (!url.is_empty()).then(|| (name.clone(), url))
        })
        .collect();
    // A size that does not parse was reported by the workspace checks.
    let max_dead_letter_record = spec
        .state
        .as_ref()
        .and_then(|state| state.max_dead_letter_record_size.as_deref())
        .and_then(|size| super::parse_size(size).ok())
        .unwrap_or(DEFAULT_MAX_DEAD_LETTER_RECORD_BYTES);
    Shared {
        contracts,
        parties: Arc::new(parties),
        alert_urls: Arc::new(alert_urls),
        max_dead_letter_record,
        outcomes_required: IndexMap::new(),
        // An invalid table was reported by the workspace checks; no flow compiles then.
        rates: spec
            .exchange_rates
            .as_ref()
            .and_then(|config| crate::money::rates::RateTable::from_config(config).ok())
            .map(Arc::new),
    }
}

fn object_model(object: &super::raw::ObjectConfig) -> Object {
    Object {
        key: object.key.clone(),
        source_of_truth: object.source_of_truth.clone(),
        create: object.create.clone(),
        update: object.update.clone(),
        consume: object.consume.clone(),
        fields: object.fields.clone(),
    }
}

/// Compiles a checked flow into the model. Validation has reported everything that would fail
/// here, so an error is a gap in the checks: it is reported at the flow rather than lost.
fn compile_flow(
    flow: flow::CheckedFlow,
    checked: &workspace::Checked,
    shared: &Shared,
    at: &At<'_>,
    report: &mut Report<'_>,
) -> Option<Flow> {
    let spec = flow.spec;
    // An end that did not resolve was reported (unknown system, connector or role).
    let from = flow.from?;
    let to = flow.to?;
    let intake = Endpoint {
        system: from.system.clone(),
        connector: crate::connectors::webhook::intake(),
        system_settings: serde_json::Value::Object(serde_json::Map::new()),
        settings: from.settings.clone(),
    };
    let acknowledge = match flow.acknowledge {
        Some(ack) => Some(ack?),
        None => None,
    };
    // A contract that could not be read or is not a schema was reported by the workspace
    // checks, which fails the load: nothing to add at the flow.
    checked.contracts.get(&spec.object)?.as_ref()?;
    let object = object_model(checked.expanded.objects.get(&spec.object)?);
    match FlowPlan::compile(&spec, &object, shared, flow.retry, &flow.failures) {
        Ok(plan) => Some(Flow {
            file: flow.file,
            plan: Arc::new(plan),
            name: spec.flow,
            object: spec.object,
            pattern: spec.pattern,
            latency: spec.latency,
            from,
            intake,
            to,
            acknowledge,
            trigger: flow.trigger,
            retry: flow.retry,
            failures: flow.failures,
            freshness: flow.freshness,
            max_reject_rate: spec.sla.and_then(|sla| sla.max_reject_rate),
            webhook_auth: flow.webhook_auth,
        }),
        Err(err) => {
            report.push(at.error("", Code::InvalidValue, err.to_string()));
            None
        }
    }
}

/// Where diagnostics go.
pub(crate) struct Report<'a> {
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Report<'_> {
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
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
