//! Checks of one flow file against the workspace: references, ownership, templates, trigger,
//! retry, failure owners and SLA; and its resolution (compiled later by `super::compile`).

use std::str::FromStr;

use indexmap::IndexMap;

use super::workspace::{
    Checked, check_owner, check_retry, check_system, connector_of, problem_diagnostic,
    resolve_retry,
};
use super::{At, Report, seg};
use crate::mapping::TemplateErrorKind;
use crate::spec::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::spec::model::{
    Acknowledgement, CronSchedule, Endpoint, Escalation, FailureMode, FailureRoute, Secret,
    Trigger, WebhookAuth,
};
use crate::spec::raw::{AcknowledgeConfig, FailureConfig, FailuresConfig, FlowFile, MapField};
use crate::spec::templates;

/// Failure modes every flow can produce, so each needs an owner.
const POSSIBLE: [FailureMode; 6] = [
    FailureMode::ContractViolation,
    FailureMode::OwnershipViolation,
    FailureMode::MappingError,
    FailureMode::SourceUnavailable,
    FailureMode::SinkRejected,
    FailureMode::SinkUnavailable,
];

/// Variables a source request template may use: it renders once per page, not per record.
const SOURCE_REQUEST_VARIABLES: &[&str] = &["cursor"];

/// The fields a template may reference, and how to name them in a message.
pub(super) struct Scope<'a> {
    /// `None` when unknown (no contract properties): field checks are skipped.
    pub(super) fields: Option<Vec<String>>,
    pub(super) what: &'a str,
}

/// A flow that passed its checks, resolved but not yet compiled: the workspace compiles every
/// flow once validation is over (see `super::compile`).
pub(crate) struct CheckedFlow {
    pub(crate) file: std::path::PathBuf,
    pub(crate) spec: FlowFile,
    pub(crate) trigger: Trigger,
    pub(crate) retry: crate::spec::model::RetryPolicy,
    pub(crate) failures: IndexMap<FailureMode, FailureRoute>,
    pub(crate) freshness: Option<std::time::Duration>,
    pub(crate) webhook_auth: Option<WebhookAuth>,
    /// The resolved source, when its system and connector are known.
    pub(crate) from: Option<Endpoint>,
    /// The resolved sink, when its system and connector are known.
    pub(crate) to: Option<Endpoint>,
    /// The resolved acknowledgement, when the flow has one (`Some(None)`: not resolved).
    pub(crate) acknowledge: Option<Option<Acknowledgement>>,
}

/// Which end of a flow an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    From,
    To,
    Acknowledge,
}

impl Side {
    /// The section's pointer in the flow file.
    fn pointer(self) -> &'static str {
        match self {
            Side::From => "/from",
            Side::To => "/to",
            Side::Acknowledge => "/acknowledge",
        }
    }

    /// The section's keys besides its connector's.
    fn generic(self) -> &'static [&'static str] {
        match self {
            Side::From => &["system", "author"],
            Side::To => &["system", "capture"],
            Side::Acknowledge => &["system", "body", "map"],
        }
    }
}

/// Resolves one end of a flow to its system's connector, and has the connector check the
/// section's settings (reported at their own line and column).
fn endpoint(
    system: &str,
    settings: &serde_json::Map<String, serde_json::Value>,
    side: Side,
    known: bool,
    workspace: &Checked,
    at: &At<'_>,
    report: &mut Report<'_>,
) -> Option<Endpoint> {
    if !known {
        return None;
    }
    // A system without exactly one known connector was reported on the workspace file.
    let (connector, system_settings) = connector_of(workspace, system)?;
    let roles = connector.roles();
    let (can, role) = match side {
        Side::From => (roles.source, "a source (`from:`)"),
        Side::To => (roles.sink, "a sink (`to:`)"),
        Side::Acknowledge => (roles.sink, "acknowledged (`acknowledge:`)"),
    };
    let base = side.pointer();
    if !can {
        report.push(at.error(
            &format!("{base}/system"),
            Code::InvalidValue,
            format!(
                "system \"{system}\" is reached through the `{}` connector, which cannot be {role}",
                connector.name()
            ),
        ));
        return None;
    }
    let settings = serde_json::Value::Object(settings.clone());
    let problems = match side {
        Side::From => connector.check_from(system_settings, &settings),
        Side::To | Side::Acknowledge => connector.check_to(system_settings, &settings),
    };
    for problem in &problems {
        report.push(problem_diagnostic(problem, base, side.generic(), at));
    }
    Some(Endpoint {
        system: system.to_owned(),
        connector,
        system_settings: system_settings.clone(),
        settings,
    })
}

/// Checks one flow; returns it resolved (meaningful only when no error was reported).
pub(crate) fn check(
    spec: &FlowFile,
    at: &At<'_>,
    workspace: &Checked,
    options: &crate::spec::LoadOptions,
    report: &mut Report<'_>,
) -> Option<CheckedFlow> {
    let systems: Vec<&str> = workspace.spec.systems.keys().map(String::as_str).collect();
    let owners: Vec<&str> = workspace.spec.owners.keys().map(String::as_str).collect();

    let object = workspace.spec.objects.get(&spec.object);
    if object.is_none() {
        report.push(
            at.error(
                "/object",
                Code::UnknownObject,
                format!("unknown object \"{}\"", spec.object),
            )
            .with_hint(did_you_mean(
                &spec.object,
                workspace.spec.objects.keys().map(String::as_str),
            )),
        );
    }
    // A flow without `to:` is a reconciliation, checked by `super::reconcile`.
    let sink_spec = spec.to.as_ref()?;
    let source_known = check_system(&spec.from.system, "/from/system", &systems, at, report);
    let sink_known = check_system(&sink_spec.system, "/to/system", &systems, at, report);
    if let Some(object) = object {
        let source = &spec.from.system;
        if source_known && !object.create.contains(source) && !object.update.contains(source) {
            report.push(
                at.error(
                    "/from/system",
                    Code::SourceMayNotWrite,
                    format!(
                        "system \"{source}\" may neither create nor update object \"{}\"",
                        spec.object
                    ),
                )
                .with_hint(Some(format!(
                    "add \"{source}\" to `create` or `update` of object \"{}\", or read from a system that owns it",
                    spec.object
                ))),
            );
        }
        let sink = &sink_spec.system;
        if sink_known && !object.consume.contains(sink) {
            report.push(
                at.error(
                    "/to/system",
                    Code::SinkNotConsumer,
                    format!(
                        "system \"{sink}\" does not consume object \"{}\"",
                        spec.object
                    ),
                )
                .with_hint(Some(format!(
                    "add \"{sink}\" to `consume` of object \"{}\"",
                    spec.object
                ))),
            );
        }
    }

    let from = endpoint(
        &spec.from.system,
        &spec.from.settings,
        Side::From,
        source_known,
        workspace,
        at,
        report,
    );
    let to = endpoint(
        &sink_spec.system,
        &sink_spec.settings,
        Side::To,
        sink_known,
        workspace,
        at,
        report,
    );
    let acknowledge = spec.acknowledge.as_ref().map(|ack| {
        // An unknown system is reported with the other order sections.
        let known = systems.contains(&ack.system.as_str());
        let endpoint = endpoint(
            &ack.system,
            &ack.settings,
            Side::Acknowledge,
            known,
            workspace,
            at,
            report,
        );
        endpoint.map(|endpoint| Acknowledgement {
            endpoint,
            body: ack.body.clone().unwrap_or(serde_json::Value::Null),
            map_fields: ack
                .map
                .iter()
                .flatten()
                .map(|(name, _)| name.clone())
                .collect(),
        })
    });

    check_templates(spec, at, workspace, [&from, &to], &acknowledge, report);
    check_order_sections(spec, at, workspace, report);
    super::enrich::check_enrichments(spec, at, workspace, report);
    super::conditions::check_conditions(spec, at, workspace, report);
    let trigger = check_trigger(spec, at, report);

    if let Some(retry) = &spec.retry {
        check_retry(retry, "/retry", at, report);
    }
    let defaults = workspace.spec.defaults.as_ref();
    let retry = resolve_retry(spec.retry.as_ref(), defaults.and_then(|d| d.retry.as_ref()));
    if let Some(flow_retry) = &spec.retry {
        let own = flow_retry.initial.is_some() || flow_retry.window.is_some();
        let both_own = flow_retry.initial.is_some() && flow_retry.window.is_some();
        // A block that is wrong on its own was reported above; this catches a flow whose
        // window is only too short against the workspace default's first delay (or back).
        if own && !both_own && retry.window < retry.initial {
            let field = if flow_retry.window.is_some() {
                "window"
            } else {
                "initial"
            };
            report.push(at.error(
                &format!("/retry/{field}"),
                Code::RetryWindowTooShort,
                format!(
                    "retry window {:?} is shorter than the first retry delay {:?} (with the workspace defaults)",
                    retry.window, retry.initial
                ),
            ));
        }
    }

    let default_owner = defaults.and_then(|d| d.failure_owner.clone());
    // A guard that can dead-letter needs its failure mode routed too.
    let extra: &[FailureMode] = match &spec.requires {
        Some(guard) if guard.otherwise != crate::spec::guard::Otherwise::Skip => {
            &[FailureMode::GuardUnmet]
        }
        _ => &[],
    };
    // So can an enrichment that dead-letters.
    let enrich_modes = super::enrich::failure_modes(spec);
    // And checks, which flag records.
    let check_modes = if spec.checks.is_empty() {
        Vec::new()
    } else {
        vec![FailureMode::CheckFailed]
    };
    let extra: Vec<FailureMode> = extra
        .iter()
        .chain(&enrich_modes)
        .chain(&check_modes)
        .copied()
        .collect();
    let extra = extra.as_slice();
    let required: Vec<FailureMode> = POSSIBLE.iter().chain(extra).copied().collect();
    let failures = check_failures(
        &spec.failures,
        default_owner,
        &owners,
        &required,
        at,
        report,
    );

    let freshness = spec
        .sla
        .as_ref()
        .and_then(|sla| sla.freshness.as_ref())
        .and_then(|text| at.duration("/sla/freshness", text, report));

    let trigger = trigger?;
    let webhook_auth = check_webhook_auth(spec, &trigger, options, at, report);
    Some(CheckedFlow {
        file: at.file.to_path_buf(),
        from,
        to,
        acknowledge,
        spec: spec.clone(),
        webhook_auth,
        trigger,
        retry,
        failures,
        freshness,
    })
}

pub(super) fn check_trigger(
    spec: &FlowFile,
    at: &At<'_>,
    report: &mut Report<'_>,
) -> Option<Trigger> {
    let Some(trigger) = &spec.trigger else {
        return Some(Trigger::Manual);
    };
    let given = [
        trigger.poll.is_some(),
        trigger.cron.is_some(),
        trigger.webhook.is_some(),
    ]
    .into_iter()
    .filter(|given| *given)
    .count();
    if given > 1 {
        report.push(
            at.key_error(
                "/trigger",
                Code::AmbiguousTrigger,
                "a trigger gives more than one of `poll`, `cron` and `webhook`",
            )
            .with_hint(Some(
                "keep exactly one; a flow without a trigger runs on demand".into(),
            )),
        );
    }
    let timezone = trigger.timezone.clone().unwrap_or_else(|| "UTC".to_owned());
    // Resolved here, once: the daemon's schedule reads this zone.
    let mut tz = Some(jiff::tz::TimeZone::UTC);
    if let Some(name) = &trigger.timezone {
        tz = jiff::tz::TimeZone::get(name)
            .inspect_err(|err| {
                report.push(
                    at.error(
                        "/trigger/timezone",
                        Code::InvalidTimezone,
                        format!("unknown time zone \"{name}\": {err}"),
                    )
                    .with_hint(Some("use an IANA name such as Europe/Paris or UTC".into())),
                );
            })
            .ok();
    }
    let resolved = if let Some(poll) = &trigger.poll {
        at.duration("/trigger/poll", poll, report)
            .map(Trigger::Poll)
    } else if let Some(expression) = &trigger.cron {
        match parse_cron(expression) {
            Ok((expression, schedule)) => tz.map(|tz| {
                Trigger::Cron(Box::new(CronSchedule {
                    expression,
                    timezone,
                    schedule,
                    tz,
                }))
            }),
            Err(message) => {
                report.push(
                    at.error("/trigger/cron", Code::InvalidCron, message).with_hint(Some(
                        "write 5 fields (`*/15 * * * *`: minute hour day month weekday) or 6 with seconds first".into(),
                    )),
                );
                None
            }
        }
    } else if let Some(path) = &trigger.webhook {
        Some(Trigger::Webhook(path.clone()))
    } else {
        Some(Trigger::Manual)
    };
    if given > 1 { None } else { resolved }
}

/// Default largest webhook body: 1 MiB.
const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// Resolves a webhook trigger's HMAC settings: a webhook flow needs them, with a secret that
/// is set where the workspace is loaded (the daemon could not verify anything otherwise).
fn check_webhook_auth(
    spec: &FlowFile,
    trigger: &Trigger,
    options: &crate::spec::LoadOptions,
    at: &At<'_>,
    report: &mut Report<'_>,
) -> Option<WebhookAuth> {
    if !matches!(trigger, Trigger::Webhook(_)) {
        return None;
    }
    let Some(auth) = spec.trigger.as_ref().and_then(|t| t.webhook_auth.as_ref()) else {
        report.push(
            at.error(
                "/trigger/webhook",
                Code::WebhookAuthMissing,
                "a webhook trigger has no `webhook_auth`; unsigned events cannot be told from forged ones",
            )
            .with_hint(Some(
                "add `webhook_auth: { secret_env: ORDERS_WEBHOOK_SECRET }` to the trigger".into(),
            )),
        );
        return None;
    };
    let secret = options
        .env
        .get(&auth.secret_env)
        .filter(|value| !value.is_empty());
    if secret.is_none() {
        // Only the daemon needs the secret: validating, testing or running other flows
        // without it is fine, so this is an error only under `--strict` (as in CI for a
        // deployment). The daemon answers 404 on a webhook path it has no secret for.
        let message = format!(
            "environment variable {} (the webhook secret) is not set",
            auth.secret_env
        );
        let pointer = "/trigger/webhook_auth/secret_env";
        let diagnostic = if options.strict {
            at.error(pointer, Code::WebhookSecretUnset, message)
        } else {
            let mut warning = at.error(pointer, Code::UnsetEnv, message);
            warning.severity = crate::spec::Severity::Warning;
            warning
        };
        report.push(diagnostic.with_hint(Some(
            "set it before starting the daemon, or fix the variable name".into(),
        )));
    }
    let tolerance = match &auth.tolerance {
        Some(text) => at.duration("/trigger/webhook_auth/tolerance", text, report),
        None => Some(std::time::Duration::from_secs(300)),
    };
    let header =
        |value: &Option<String>, default: &str| value.clone().unwrap_or_else(|| default.to_owned());
    Some(WebhookAuth {
        secret_env: auth.secret_env.clone(),
        secret: Secret::new(secret?),
        signature_header: header(&auth.signature_header, "X-Signature"),
        timestamp_header: header(&auth.timestamp_header, "X-Timestamp"),
        event_id_header: header(&auth.event_id_header, "X-Event-Id"),
        tolerance: tolerance?,
        max_body: usize::try_from(auth.max_body.unwrap_or(DEFAULT_MAX_BODY)).unwrap_or(usize::MAX),
    })
}

/// Normalises a cron expression to the 6-field form (seconds first) the `cron` crate reads,
/// and checks that it parses.
#[cfg(test)]
pub(crate) fn normalize_cron(expression: &str) -> Result<String, String> {
    parse_cron(expression).map(|(normalized, _)| normalized)
}

/// Normalises a cron expression to the 6-field form (seconds first) the `cron` crate reads,
/// and parses it.
fn parse_cron(expression: &str) -> Result<(String, cron::Schedule), String> {
    let fields = expression.split_whitespace().count();
    let normalized = match fields {
        5 => format!(
            "0 {}",
            expression.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        6 | 7 => expression.split_whitespace().collect::<Vec<_>>().join(" "),
        _ => {
            return Err(format!(
                "invalid cron expression \"{expression}\": expected 5 or 6 fields, found {fields}"
            ));
        }
    };
    cron::Schedule::from_str(&normalized)
        .map(|schedule| (normalized, schedule))
        .map_err(|err| format!("invalid cron expression \"{expression}\": {err}"))
}

fn check_templates(
    spec: &FlowFile,
    at: &At<'_>,
    workspace: &Checked,
    [from, to]: [&Option<Endpoint>; 2],
    acknowledge: &Option<Option<Acknowledgement>>,
    report: &mut Report<'_>,
) {
    let contract = workspace.contract_label(&spec.object);
    // Lookups and enrichments add their fields to the record before mapping, and a split
    // adds `_leg`.
    let extra = spec
        .lookup
        .keys()
        .chain(spec.enrich.keys())
        .cloned()
        .chain(spec.split.as_ref().map(|_| "_leg".to_owned()));
    let record = Scope {
        fields: workspace.properties(&spec.object).map(|mut fields| {
            fields.extend(extra);
            fields
        }),
        what: &contract,
    };
    let mapped = if spec.map.is_empty() {
        Scope {
            fields: workspace.properties(&spec.object),
            what: &contract,
        }
    } else {
        Scope {
            fields: Some(spec.map.keys().cloned().collect()),
            what: "mapped record (the keys of `map`)",
        }
    };
    let source = Scope {
        fields: Some(
            SOURCE_REQUEST_VARIABLES
                .iter()
                .map(|v| (*v).to_owned())
                .collect(),
        ),
        what: "source request variables (only `cursor`)",
    };

    check_map(&spec.map, "/map", &record, 1, at, report);
    super::money::check_conversions(&spec.map, "/map", workspace, at, report);
    if let Some(key) = &spec.idempotency_key {
        check_template(key, "/idempotency_key", &record, at, report);
    }
    // Connectors say which of their settings are templates; they are checked here like
    // every other template, against what they render over.
    if let Some(from) = from {
        for (pointer, template) in from.connector.source_templates(&from.settings) {
            check_template(&template, &format!("/from{pointer}"), &source, at, report);
        }
    }
    if let Some(to) = to {
        for (pointer, template) in to.connector.sink_templates(&to.settings) {
            check_template(&template, &format!("/to{pointer}"), &mapped, at, report);
        }
    }
    if let Some(ack) = &spec.acknowledge {
        check_ack_body(ack, &record, at, report);
    }
    if let Some(Some(ack)) = acknowledge {
        let endpoint = &ack.endpoint;
        for (pointer, template) in endpoint.connector.sink_templates(&endpoint.settings) {
            let pointer = format!("/acknowledge{pointer}");
            check_template(&template, &pointer, &mapped, at, report);
        }
    }
    let lookup_scope = Scope {
        fields: workspace.properties(&spec.object),
        what: &contract,
    };
    for (name, lookup) in &spec.lookup {
        check_template(
            &lookup.id,
            &format!("/lookup/{}/id", seg(name)),
            &lookup_scope,
            at,
            report,
        );
    }
}

/// `acknowledge:`'s body: `map` (checked like a flow's `map:`, over the record as read) or
/// `body`, not both.
fn check_ack_body(
    ack: &AcknowledgeConfig,
    record: &Scope<'_>,
    at: &At<'_>,
    report: &mut Report<'_>,
) {
    if ack.map.is_some() && ack.body.is_some() {
        report.push(
            at.error(
                "/acknowledge/body",
                Code::InvalidValue,
                "`acknowledge` has both `body` and `map`",
            )
            .with_hint(Some(
                "keep one: `map` builds the body from each record, `body` sends the same JSON \
                 for every record"
                    .to_owned(),
            )),
        );
    }
    if let Some(map) = &ack.map {
        check_map(map, "/acknowledge/map", record, 1, at, report);
    }
}

/// The order-handling sections: deadline, acknowledgement, split and lookups.
fn check_order_sections(
    spec: &FlowFile,
    at: &At<'_>,
    workspace: &Checked,
    report: &mut Report<'_>,
) {
    let systems: Vec<&str> = workspace.spec.systems.keys().map(String::as_str).collect();
    if let Some(deadline) = &spec.deadline {
        match (&deadline.at, &deadline.from, &deadline.plus) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            _ => report.push(at.error(
                "/deadline",
                Code::InvalidValue,
                "a deadline needs `at` (the deadline itself), or `from` and `plus`".to_owned(),
            )),
        }
        if let Some(plus) = &deadline.plus {
            at.duration("/deadline/plus", plus, report);
        }
        if let Some(share) = deadline.warn_at
            && !(0.0..=1.0).contains(&share)
        {
            report.push(at.error(
                "/deadline/warn_at",
                Code::InvalidValue,
                format!("warn_at is a share of the window between 0 and 1, not {share}"),
            ));
        }
        for (field, pointer) in [
            ("at", &deadline.at),
            ("from", &deadline.from),
            ("window_start", &deadline.window_start),
        ] {
            if let Some(pointer) = pointer
                && !pointer.starts_with('/')
            {
                report.push(at.error(
                    &format!("/deadline/{field}"),
                    Code::InvalidValue,
                    format!("\"{pointer}\" is not a JSON Pointer: write \"/{pointer}\""),
                ));
            }
        }
    }
    if let Some(ack) = &spec.acknowledge {
        check_system(&ack.system, "/acknowledge/system", &systems, at, report);
    }
    if let Some(split) = &spec.split
        && !split.items.starts_with('/')
    {
        report.push(at.error(
            "/split/items",
            Code::InvalidValue,
            format!(
                "\"{}\" is not a JSON Pointer: write \"/{}\"",
                split.items, split.items
            ),
        ));
    }
    for (name, lookup) in &spec.lookup {
        let base = format!("/lookup/{}", seg(name));
        check_system(
            &lookup.system,
            &format!("{base}/system"),
            &systems,
            at,
            report,
        );
        if !workspace.spec.objects.contains_key(&lookup.object) {
            report.push(
                at.error(
                    &format!("{base}/object"),
                    Code::UnknownObject,
                    format!("unknown object \"{}\"", lookup.object),
                )
                .with_hint(did_you_mean(
                    &lookup.object,
                    workspace.spec.objects.keys().map(String::as_str),
                )),
            );
        }
    }
}

/// Checks a `map` (or an `each` field's item `map`) over `scope`: templates and pointers, and
/// each detailed field's shape. Item fields read an array item whose fields the contract does
/// not list at the top, so only their syntax and shape are checked.
fn check_map(
    map: &IndexMap<String, MapField>,
    base: &str,
    scope: &Scope<'_>,
    depth: usize,
    at: &At<'_>,
    report: &mut Report<'_>,
) {
    for (name, field) in map {
        let base = format!("{base}/{}", seg(name));
        let detail = match field {
            MapField::Template(template) => {
                check_template(template, &base, scope, at, report);
                continue;
            }
            MapField::Detailed(detail) => detail,
        };
        if let Some((key, message)) = detail.shape_problem() {
            let pointer = if key.is_empty() {
                base.clone()
            } else {
                format!("{base}/{key}")
            };
            report.push(
                at.error(&pointer, Code::InvalidValue, message)
                    .with_hint(Some(
                        "see docs/mapping.md for the forms of a mapped field".into(),
                    )),
            );
            continue;
        }
        if let Some(template) = &detail.template {
            check_template(template, &format!("{base}/template"), scope, at, report);
        }
        if let Some(pointer) = &detail.from {
            check_pointer(pointer, &format!("{base}/from"), scope, at, report);
        }
        if let (Some(each), Some(items)) = (&detail.each, &detail.map) {
            check_pointer(each, &format!("{base}/each"), scope, at, report);
            if depth >= crate::mapping::MAX_EACH_DEPTH {
                report.push(at.error(
                    &format!("{base}/each"),
                    Code::InvalidValue,
                    format!(
                        "`each` nests deeper than {} levels; flatten the mapping",
                        crate::mapping::MAX_EACH_DEPTH
                    ),
                ));
                continue;
            }
            let item = Scope {
                fields: None,
                what: "array item",
            };
            check_map(items, &format!("{base}/map"), &item, depth + 1, at, report);
        }
    }
}

pub(super) fn check_template(
    source: &str,
    pointer: &str,
    scope: &Scope<'_>,
    at: &At<'_>,
    report: &mut Report<'_>,
) {
    let info = match templates::inspect(source) {
        Ok(info) => info,
        Err(err) => {
            let (code, hint) = match err.kind {
                TemplateErrorKind::Syntax => (Code::TemplateSyntax, None),
                TemplateErrorKind::TooDeep => (
                    Code::TemplateTooDeep,
                    Some("split the logic over several `map` fields, or flatten the nesting"),
                ),
                TemplateErrorKind::TooLarge => (
                    Code::TemplateTooLarge,
                    Some("split the template over several `map` fields"),
                ),
            };
            report.push(
                Diagnostic::error(
                    at.file,
                    at.map.inside(pointer, (err.line, err.column)),
                    code,
                    format!(
                        "template does not compile: {} (at {}:{} of the template)",
                        err.message, err.line, err.column
                    ),
                )
                .with_hint(hint.map(str::to_owned)),
            );
            return;
        }
    };
    for helper in &info.helpers {
        if !templates::is_known_helper(helper) {
            report.push(
                at.error(
                    pointer,
                    Code::UnknownHelper,
                    format!("unknown template helper \"{helper}\""),
                )
                .with_hint(did_you_mean(helper, templates::known_helpers())),
            );
        }
    }
    if let Some(fields) = &scope.fields {
        for field in &info.fields {
            if !fields.contains(field) {
                report.push(
                    at.error(
                        pointer,
                        Code::UnknownTemplateField,
                        format!(
                            "template uses field \"{field}\", which is not in the {}",
                            scope.what
                        ),
                    )
                    .with_hint(did_you_mean(field, fields.iter().map(String::as_str))),
                );
            }
        }
    }
}

/// A `from` JSON Pointer must start at a property of the input record.
fn check_pointer(
    pointer_text: &str,
    pointer: &str,
    scope: &Scope<'_>,
    at: &At<'_>,
    report: &mut Report<'_>,
) {
    let Some(fields) = &scope.fields else { return };
    let Some(first) = pointer_text.strip_prefix('/').map(|rest| {
        rest.split('/')
            .next()
            .unwrap_or_default()
            .replace("~1", "/")
            .replace("~0", "~")
    }) else {
        report.push(at.error(
            pointer,
            Code::InvalidValue,
            format!("\"{pointer_text}\" is not a JSON Pointer: it must start with `/`"),
        ));
        return;
    };
    if !fields.contains(&first) {
        report.push(
            at.error(
                pointer,
                Code::UnknownTemplateField,
                format!(
                    "`{}` names field \"{first}\", which is not in the {}",
                    pointer.rsplit('/').next().unwrap_or("from"),
                    scope.what
                ),
            )
            .with_hint(did_you_mean(&first, fields.iter().map(String::as_str))),
        );
    }
}

fn declared(failures: &FailuresConfig) -> [(FailureMode, &Option<FailureConfig>); 12] {
    [
        (FailureMode::ContractViolation, &failures.contract_violation),
        (
            FailureMode::OwnershipViolation,
            &failures.ownership_violation,
        ),
        (FailureMode::Duplicate, &failures.duplicate),
        (FailureMode::MappingError, &failures.mapping_error),
        (FailureMode::SourceUnavailable, &failures.source_unavailable),
        (FailureMode::SinkRejected, &failures.sink_rejected),
        (FailureMode::SinkUnavailable, &failures.sink_unavailable),
        (FailureMode::DeadlineMissed, &failures.deadline_missed),
        (
            FailureMode::ReconciliationVariance,
            &failures.reconciliation_variance,
        ),
        (FailureMode::GuardUnmet, &failures.guard_unmet),
        (FailureMode::EnrichmentFailed, &failures.enrichment_failed),
        (FailureMode::CheckFailed, &failures.check_failed),
    ]
}

/// Resolves the declared failure routes; every mode in `required` needs an owner (its own or
/// `defaults.failure_owner`).
pub(super) fn check_failures(
    failures: &FailuresConfig,
    default_owner: Option<String>,
    owners: &[&str],
    required: &[FailureMode],
    at: &At<'_>,
    report: &mut Report<'_>,
) -> IndexMap<FailureMode, FailureRoute> {
    let mut routes = IndexMap::new();
    for (mode, config) in declared(failures) {
        let Some(config) = config else { continue };
        let base = format!("/failures/{mode}");
        if let Some(escalate) = &config.escalate {
            check_owner(
                &escalate.to,
                &format!("{base}/escalate/to"),
                owners,
                at,
                report,
            );
            at.duration(&format!("{base}/escalate/after"), &escalate.after, report);
        }
        let Some(owner) = &config.owner else {
            report.push(
                at.key_error(
                    &base,
                    Code::FailureWithoutOwner,
                    format!("failure mode {mode} has no owner"),
                )
                .with_hint(Some(format!(
                    "add `owner:` naming one of: {}",
                    owners.join(", ")
                ))),
            );
            continue;
        };
        check_owner(owner, &format!("{base}/owner"), owners, at, report);
        routes.insert(
            mode,
            FailureRoute {
                owner: owner.clone(),
                action: config.action,
                runbook: config.runbook.clone(),
                escalate: config.escalate.as_ref().map(|e| Escalation {
                    to: e.to.clone(),
                    after: e.after.clone(),
                }),
            },
        );
    }
    let declared_modes: Vec<FailureMode> = declared(failures)
        .into_iter()
        .filter(|(_, config)| config.is_some())
        .map(|(mode, _)| mode)
        .collect();
    let missing: Vec<FailureMode> = required
        .iter()
        .copied()
        .filter(|mode| !declared_modes.contains(mode))
        .collect();
    match default_owner {
        Some(owner) => {
            for mode in missing {
                routes.insert(
                    mode,
                    FailureRoute {
                        owner: owner.clone(),
                        action: None,
                        runbook: None,
                        escalate: None,
                    },
                );
            }
        }
        None if !missing.is_empty() => {
            let names: Vec<&str> = missing.iter().map(|mode| mode.as_str()).collect();
            let pointer = if at.map.get("/failures").is_some() {
                "/failures"
            } else {
                "/flow"
            };
            report.push(
                at.key_error(
                    pointer,
                    Code::UnownedFailureMode,
                    format!("failure modes without an owner: {}", names.join(", ")),
                )
                .with_hint(Some(
                    "declare them under `failures`, or set `defaults.failure_owner` in switchyard.yaml".into(),
                )),
            );
        }
        None => {}
    }
    routes.sort_keys();
    routes
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::spec::raw::RetryConfig;

    #[test]
    fn five_field_cron_gets_a_seconds_field() {
        assert_eq!(
            normalize_cron("*/15 * * * *").as_deref(),
            Ok("0 */15 * * * *")
        );
        assert_eq!(normalize_cron("0  5 * * * *").as_deref(), Ok("0 5 * * * *"));
        assert!(normalize_cron("*/15 * * *").is_err());
        assert!(normalize_cron("99 * * * *").is_err());
    }

    #[test]
    fn retry_resolves_field_by_field() {
        let retry = |initial: Option<&str>, window: Option<&str>| RetryConfig {
            backoff: None,
            initial: initial.map(str::to_owned),
            max_delay: None,
            window: window.map(str::to_owned),
        };
        let flow = retry(None, Some("10m"));
        let defaults = retry(Some("5s"), Some("1h"));
        let policy = resolve_retry(Some(&flow), Some(&defaults));
        assert_eq!(policy.initial, Duration::from_secs(5));
        assert_eq!(policy.window, Duration::from_secs(600));
        assert_eq!(policy.max_delay, Duration::from_secs(120));
        assert!(policy.exponential);
    }
}
