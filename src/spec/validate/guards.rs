//! Checks of flows' `requires:` guards, which name other flows: the required flow exists, is
//! another flow, and can reach the outcome required (`acknowledged` needs its
//! `acknowledge:`); and which outcomes each flow must therefore record.

use std::collections::HashSet;

use indexmap::IndexMap;

use super::{At, Report};
use crate::mapping::CompiledTemplate;
use crate::spec::diagnostic::{Code, did_you_mean};
use crate::spec::guard::RequiredOutcome;
use crate::spec::load::Parsed;
use crate::spec::raw::FlowFile;

/// The outcomes each flow must record because another flow's `requires:` names them.
pub(crate) fn outcomes_required(
    flows: &[Parsed<FlowFile>],
) -> IndexMap<String, HashSet<RequiredOutcome>> {
    let mut required: IndexMap<String, HashSet<RequiredOutcome>> = IndexMap::new();
    for spec in flows.iter().filter_map(|p| p.value.as_ref()) {
        if let Some(guard) = &spec.requires {
            required
                .entry(guard.flow.clone())
                .or_default()
                .insert(guard.outcome);
        }
    }
    required
}

/// Reports every guard that cannot work, at its line, with the fix.
pub(crate) fn check_guards(flows: &[Parsed<FlowFile>], report: &mut Report<'_>) {
    // An unparsable flow file hides its name: do not blame a guard for naming it.
    if flows.iter().any(|p| p.value.is_none()) {
        return;
    }
    let by_name: IndexMap<&str, &FlowFile> = flows
        .iter()
        .filter_map(|p| p.value.as_ref())
        .map(|spec| (spec.flow.as_str(), spec))
        .collect();
    for parsed in flows {
        let Some(spec) = &parsed.value else { continue };
        let Some(guard) = &spec.requires else {
            continue;
        };
        let at = At::new(&parsed.file, &parsed.map);
        if let Err(err) = CompiledTemplate::compile(&guard.key) {
            report.push(at.error(
                "/requires/key",
                Code::TemplateSyntax,
                format!("template does not compile: {err}"),
            ));
        }
        if guard.flow == spec.flow {
            report.push(
                at.error(
                    "/requires/flow",
                    Code::InvalidValue,
                    format!("flow \"{}\" requires an outcome of itself", spec.flow),
                )
                .with_hint(Some(
                    "name the earlier flow whose outcome this one waits for".into(),
                )),
            );
            continue;
        }
        let Some(required) = by_name.get(guard.flow.as_str()) else {
            report.push(
                at.error(
                    "/requires/flow",
                    Code::UnknownFlow,
                    format!("unknown flow \"{}\"", guard.flow),
                )
                .with_hint(did_you_mean(&guard.flow, by_name.keys().copied())),
            );
            continue;
        };
        if guard.outcome == RequiredOutcome::Acknowledged && required.acknowledge.is_none() {
            report.push(
                at.error(
                    "/requires/outcome",
                    Code::InvalidValue,
                    format!(
                        "flow \"{}\" has no `acknowledge:`, so it never acknowledges a record",
                        guard.flow
                    ),
                )
                .with_hint(Some(format!(
                    "require `outcome: delivered`, or add `acknowledge:` to flow \"{}\"",
                    guard.flow
                ))),
            );
        }
    }
}
