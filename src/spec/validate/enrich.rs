//! Checks a flow's `enrich:` block: each call's system exists and is reached over HTTP, its
//! templates compile over the record as read, its retry block parses, and its field does not
//! silently replace a field of the contract (a warning).

use super::flow::{Scope, check_template};
use super::workspace::{Checked, check_retry, check_system, connector_of};
use super::{At, Report, seg};
use crate::spec::diagnostic::{Code, Diagnostic};
use crate::spec::enrich::OnEnrichFailure;
use crate::spec::model::FailureMode;
use crate::spec::raw::FlowFile;

/// The failure modes a flow's enrichments can produce (they then need an owner).
pub(super) fn failure_modes(spec: &FlowFile) -> Vec<FailureMode> {
    let dead_letters = spec
        .enrich
        .values()
        .any(|e| e.on_failure == OnEnrichFailure::DeadLetter);
    if dead_letters {
        vec![FailureMode::EnrichmentFailed]
    } else {
        Vec::new()
    }
}

/// Reports every problem of the flow's `enrich:` block at its line.
pub(super) fn check_enrichments(
    spec: &FlowFile,
    at: &At<'_>,
    workspace: &Checked,
    report: &mut Report<'_>,
) {
    if spec.enrich.is_empty() {
        return;
    }
    let systems: Vec<&str> = workspace.spec.systems.keys().map(String::as_str).collect();
    let contract = workspace.contract_label(&spec.object);
    let properties = workspace.properties(&spec.object);
    // A call's templates see the record as read plus the lookups (they run before) and the
    // enrichments written above it.
    let mut scope = Scope {
        fields: properties.clone().map(|mut fields| {
            fields.extend(spec.lookup.keys().cloned());
            fields
        }),
        what: &contract,
    };
    for (name, enrich) in &spec.enrich {
        let base = format!("/enrich/{}", seg(name));
        let system_pointer = format!("{base}/system");
        if check_system(&enrich.system, &system_pointer, &systems, at, report)
            && let Some((connector, _)) = connector_of(workspace, &enrich.system)
            && connector.name() != "http"
        {
            report.push(
                at.error(
                    &system_pointer,
                    Code::InvalidValue,
                    format!(
                        "system \"{}\" is reached through the `{}` connector; enrichment calls \
                         are HTTP requests",
                        enrich.system,
                        connector.name()
                    ),
                )
                .with_hint(Some(
                    "name a system with an `http:` section in switchyard.yaml".to_owned(),
                )),
            );
        }
        let request = &enrich.request;
        check_template(
            &request.path,
            &format!("{base}/request/path"),
            &scope,
            at,
            report,
        );
        for (what, pairs) in [("query", &request.query), ("headers", &request.headers)] {
            for (key, template) in pairs {
                let pointer = format!("{base}/request/{what}/{}", seg(key));
                check_template(template, &pointer, &scope, at, report);
            }
        }
        if let Some(records) = &enrich.records
            && !records.is_empty()
            && !records.starts_with('/')
        {
            report.push(
                at.error(
                    &format!("{base}/records"),
                    Code::InvalidValue,
                    format!("\"{records}\" is not a JSON Pointer"),
                )
                .with_hint(Some(format!("write \"/{records}\""))),
            );
        }
        if let Some(rate) = &request.rate_limit
            && let Err(err) = crate::connectors::http::rate_limit::Rate::parse(rate, request.burst)
        {
            report.push(
                at.error(
                    &format!("{base}/request/rate_limit"),
                    Code::InvalidValue,
                    err.to_string(),
                )
                .with_hint(Some(
                    crate::connectors::http::rate_limit::RATE_HINT.to_owned(),
                )),
            );
        }
        if let Some(retry) = &enrich.retry {
            check_retry(retry, &format!("{base}/retry"), at, report);
        }
        if let Some(fields) = &mut scope.fields {
            fields.push(name.clone());
        }
        if properties.as_ref().is_some_and(|p| p.contains(name)) {
            report.push(
                Diagnostic::warning(
                    at.file,
                    at.map.key(&base),
                    Code::EnrichShadowsField,
                    format!(
                        "enrichment \"{name}\" replaces the field \"{name}\" of the {contract} \
                         in every record"
                    ),
                )
                .with_hint(Some(format!(
                    "rename the enrichment (for example \"{name}_enriched\") and read it under \
                     that name in `map:`"
                ))),
            );
        }
    }
}
