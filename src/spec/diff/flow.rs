//! Flow-level changes: endpoints, trigger, mapping, identity, retry against the SLA and the
//! deadline, failure routes, SLAs, deadlines, acknowledgement and the record-shaping steps.

use std::time::Duration;

use serde_json::{Map, Value};

use super::checks::{self as c, Check};
use super::side::Doc;
use super::workspace::members;
use super::{Collector, Group, Side, seg, show};
use crate::spec::parse_duration;

/// Reports a changed setting: leaf by leaf when both sides have it (`trigger.poll: 30s → 2m`),
/// whole when it is added or removed.
#[allow(clippy::too_many_arguments)]
fn changed(
    out: &mut Collector<'_>,
    check: &'static Check,
    group: Group,
    key: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    reason: &str,
    after: &Doc,
) {
    if old == new {
        return;
    }
    if old.is_none() || new.is_none() {
        out.push(
            check,
            group,
            key,
            old,
            new,
            reason,
            Some((after, &format!("/{key}"))),
        );
        return;
    }
    for (below, was, now) in super::leaves(old, new) {
        out.push(
            check,
            group.clone(),
            format!("{key}{}", super::dotted(&below)),
            was.as_ref(),
            now.as_ref(),
            reason,
            Some((after, &format!("/{key}{below}"))),
        );
    }
}

/// Top-level keys with their own checks below; anything else falls to `spec-changed`.
const HANDLED: &[&str] = &[
    "flow",
    "description",
    "object",
    "from",
    "to",
    "trigger",
    "pattern",
    "latency",
    "map",
    "idempotency_key",
    "retry",
    "failures",
    "sla",
    "deadline",
    "acknowledge",
    "reconcile",
    "where",
    "requires",
    "enrich",
    "split",
];

pub(super) fn compare(base: &Side, head: &Side, out: &mut Collector<'_>) {
    for (name, doc) in &base.flows {
        if !head.flows.contains_key(name) {
            let workspace = out.head_workspace().clone();
            out.push(
                &c::FLOW_REMOVED,
                Group::Flow(name.clone()),
                format!(
                    "flows/{}",
                    doc.file
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
                Some(&Value::String(name.clone())),
                None,
                format!("flow {name} is removed: what it moved stops moving"),
                Some((&workspace, "")),
            );
        }
    }
    for (name, doc) in &head.flows {
        let Some(before) = base.flows.get(name) else {
            out.push(
                &c::FLOW_ADDED,
                Group::Flow(name.clone()),
                doc.file.display().to_string(),
                None,
                Some(&Value::String(name.clone())),
                format!(
                    "flow {name} is added: {} from {} to {}",
                    show(doc.value.get("object").unwrap_or(&Value::Null)),
                    show(doc.value.pointer("/from/system").unwrap_or(&Value::Null)),
                    show(doc.value.pointer("/to/system").unwrap_or(&Value::Null)),
                ),
                Some((doc, "/flow")),
            );
            continue;
        };
        one(name, base, head, before, doc, out);
    }
}

fn one(name: &str, base: &Side, head: &Side, before: &Doc, after: &Doc, out: &mut Collector<'_>) {
    let (b, h) = (&before.value, &after.value);
    let group = || Group::Flow(name.to_owned());
    let mut simple = |check: &'static Check, key: &str, reason: String| {
        changed(
            out,
            check,
            group(),
            key,
            b.get(key),
            h.get(key),
            &reason,
            after,
        );
    };
    simple(
        &c::FLOW_OBJECT_CHANGED,
        "object",
        format!("{name} moves another object"),
    );
    simple(
        &c::TRIGGER_CHANGED,
        "trigger",
        format!("what starts {name} changes"),
    );
    simple(
        &c::PATTERN_CHANGED,
        "pattern",
        format!("{name}'s sync pattern changes"),
    );
    simple(
        &c::LATENCY_CLASS_CHANGED,
        "latency",
        format!("{name}'s latency class changes"),
    );
    simple(
        &c::IDEMPOTENCY_KEY_CHANGED,
        "idempotency_key",
        "what counts as a duplicate changes: records already delivered may be delivered again"
            .into(),
    );
    simple(
        &c::SPLIT_CHANGED,
        "split",
        format!("how {name} splits a record changes"),
    );
    simple(
        &c::FILTER_CHANGED,
        "where",
        format!("which records {name} acts on changes"),
    );
    simple(
        &c::GUARD_CHANGED,
        "requires",
        format!("what {name}'s records wait for changes"),
    );
    simple(
        &c::ENRICHMENT_CHANGED,
        "enrich",
        format!("{name}'s lookups change"),
    );
    reconcile(name, b, h, after, out);
    endpoint(name, "from", &c::FLOW_SOURCE_CHANGED, before, after, out);
    endpoint(name, "to", &c::FLOW_SINK_CHANGED, before, after, out);
    mapping(
        name,
        members(b, "map"),
        members(h, "map"),
        "map",
        after,
        out,
    );
    acknowledgement(name, b, h, after, out);
    retry(name, base, head, before, after, out);
    failures(name, b, h, after, out);
    sla(name, b, h, after, out);
    deadline(name, b, h, after, out);
    let keys: std::collections::BTreeSet<&String> = b
        .as_object()
        .into_iter()
        .chain(h.as_object())
        .flat_map(|m| m.keys())
        .collect();
    for key in keys {
        if !HANDLED.contains(&key.as_str()) && b.get(key) != h.get(key) {
            out.push(
                &c::OTHER_CHANGED,
                group(),
                key.clone(),
                b.get(key),
                h.get(key),
                format!("{name}'s {key} changes"),
                Some((after, &format!("/{}", seg(key)))),
            );
        }
    }
}

fn endpoint(
    name: &str,
    key: &str,
    check: &'static Check,
    before: &Doc,
    after: &Doc,
    out: &mut Collector<'_>,
) {
    let (old, new) = (before.value.get(key), after.value.get(key));
    if old == new {
        return;
    }
    let system = |v: Option<&Value>| v.and_then(|v| v.get("system")).cloned();
    let (reason, check) = if system(old) != system(new) {
        (
            format!(
                "{name} now {} {} instead of {}",
                if key == "from" {
                    "reads from"
                } else {
                    "writes to"
                },
                show(&system(new).unwrap_or(Value::Null)),
                show(&system(old).unwrap_or(Value::Null))
            ),
            check,
        )
    } else {
        (
            format!(
                "{name} {} another place of {}",
                if key == "from" { "reads" } else { "writes" },
                show(&system(new).unwrap_or(Value::Null))
            ),
            check,
        )
    };
    changed(
        out,
        check,
        Group::Flow(name.to_owned()),
        key,
        old,
        new,
        &reason,
        after,
    );
}

/// The mapped fields: added, removed, retyped or computed differently. `each:` mappings are
/// followed into their item map.
fn mapping(
    name: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    path: &str,
    after: &Doc,
    out: &mut Collector<'_>,
) {
    let group = || Group::Flow(name.to_owned());
    let pointer = |field: &str| {
        format!(
            "/{}/{}",
            path.split('.').map(seg).collect::<Vec<_>>().join("/"),
            seg(field)
        )
    };
    for (field, spec) in old {
        if !new.contains_key(field) {
            out.push(
                &c::MAPPED_FIELD_REMOVED,
                group(),
                format!("{path}.{field}"),
                Some(spec),
                None,
                format!("{field} is no longer sent to the sink"),
                Some((after, &pointer(field))),
            );
        }
    }
    for (field, spec) in new {
        let Some(was) = old.get(field) else {
            out.push(
                &c::MAPPED_FIELD_ADDED,
                group(),
                format!("{path}.{field}"),
                None,
                Some(spec),
                format!("{field} is now sent to the sink"),
                Some((after, &pointer(field))),
            );
            continue;
        };
        if was == spec {
            continue;
        }
        let kind = |v: &Value| v.get("type").cloned().unwrap_or(Value::Null);
        if kind(was) != kind(spec) {
            out.push(
                &c::MAPPED_FIELD_RETYPED,
                group(),
                format!("{path}.{field}"),
                Some(&kind(was)),
                Some(&kind(spec)),
                format!("{field} is written as another type"),
                Some((after, &pointer(field))),
            );
        }
        let without_type = |v: &Value| match v {
            Value::Object(m) => {
                let mut m = m.clone();
                m.remove("type");
                m.remove("map");
                Value::Object(m)
            }
            other => other.clone(),
        };
        if without_type(was) != without_type(spec) {
            out.push(
                &c::MAPPED_FIELD_CHANGED,
                group(),
                format!("{path}.{field}"),
                Some(was),
                Some(spec),
                format!("{field} is computed differently"),
                Some((after, &pointer(field))),
            );
        }
        if let (Some(Value::Object(a)), Some(Value::Object(b))) = (was.get("map"), spec.get("map"))
        {
            mapping(name, a, b, &format!("{path}.{field}.map"), after, out);
        }
    }
}

fn acknowledgement(name: &str, b: &Value, h: &Value, after: &Doc, out: &mut Collector<'_>) {
    let (old, new) = (b.get("acknowledge"), h.get("acknowledge"));
    let check = match (old, new) {
        (None, Some(_)) => &c::ACK_ADDED,
        (Some(_), None) => &c::ACK_REMOVED,
        (Some(x), Some(y)) if x != y => &c::ACK_CHANGED,
        _ => return,
    };
    let reason = match (old, new) {
        (None, _) => format!("{name} now acknowledges each record to its source"),
        (_, None) => {
            format!("{name} no longer acknowledges records: the source may cancel or resend them")
        }
        _ => format!("{name}'s acknowledgement changes"),
    };
    changed(
        out,
        check,
        Group::Flow(name.to_owned()),
        "acknowledge",
        old,
        new,
        &reason,
        after,
    );
}

/// A flow's retry settings with the workspace defaults under them.
fn effective_retry(side: &Side, flow: &Value) -> Map<String, Value> {
    let mut merged = side
        .workspace
        .value
        .pointer("/defaults/retry")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(own) = flow.get("retry").and_then(Value::as_object) {
        merged.extend(own.clone());
    }
    merged
}

fn duration(value: Option<&Value>) -> Option<Duration> {
    value
        .and_then(Value::as_str)
        .and_then(|s| parse_duration(s).ok())
}

fn retry(name: &str, base: &Side, head: &Side, before: &Doc, after: &Doc, out: &mut Collector<'_>) {
    let (old, new) = (
        effective_retry(base, &before.value),
        effective_retry(head, &after.value),
    );
    let group = || Group::Flow(name.to_owned());
    // A flow on the workspace's default retry has no `retry:` of its own to point at.
    let (at, window_at) = if after.value.get("retry").is_some() {
        ("/retry", "/retry/window")
    } else {
        ("/flow", "/flow")
    };
    let window = |m: &Map<String, Value>| m.get("window").cloned();
    let (was, now) = (window(&old), window(&new));
    if was != now {
        out.push(
            &c::RETRY_WINDOW_CHANGED,
            group(),
            "retry.window",
            was.as_ref(),
            now.as_ref(),
            format!("{name} retries a failing delivery for another length of time"),
            Some((after, window_at)),
        );
    }
    let new_window = duration(now.as_ref());
    // Reported when HEAD's window outlasts the limit and the window or the limit changed.
    let past = |limit: Option<Duration>, old_limit: Option<Duration>| {
        let now_past = matches!((new_window, limit), (Some(w), Some(l)) if w > l);
        now_past && (was != now || limit != old_limit)
    };
    let freshness = duration(after.value.pointer("/sla/freshness"));
    let old_freshness = duration(before.value.pointer("/sla/freshness"));
    if past(freshness, old_freshness) {
        out.push(
            &c::RETRY_PAST_FRESHNESS,
            group(),
            "retry.window",
            was.as_ref(),
            now.as_ref(),
            format!(
                "retry window of {name} {} → {}: the freshness SLA is {}",
                show(was.as_ref().unwrap_or(&Value::Null)),
                show(now.as_ref().unwrap_or(&Value::Null)),
                show(
                    after
                        .value
                        .pointer("/sla/freshness")
                        .unwrap_or(&Value::Null)
                )
            ),
            Some((after, window_at)),
        );
    }
    let deadline = duration(after.value.pointer("/deadline/plus"));
    let old_deadline = duration(before.value.pointer("/deadline/plus"));
    if past(deadline, old_deadline) {
        out.push(
            &c::RETRY_PAST_DEADLINE,
            group(),
            "retry.window",
            was.as_ref(),
            now.as_ref(),
            format!(
                "retry window of {name} {} → {}: the deadline is {} after the record",
                show(was.as_ref().unwrap_or(&Value::Null)),
                show(now.as_ref().unwrap_or(&Value::Null)),
                show(
                    after
                        .value
                        .pointer("/deadline/plus")
                        .unwrap_or(&Value::Null)
                )
            ),
            Some((after, window_at)),
        );
    }
    let spacing = |m: &Map<String, Value>| {
        ["backoff", "initial", "max_delay"]
            .iter()
            .map(|k| m.get(*k).cloned().unwrap_or(Value::Null))
            .collect::<Vec<_>>()
    };
    if spacing(&old) != spacing(&new) {
        let pick = |m: &Map<String, Value>| {
            let mut m = m.clone();
            m.remove("window");
            Value::Object(m)
        };
        out.push(
            &c::RETRY_BACKOFF_CHANGED,
            group(),
            "retry",
            Some(&pick(&old)),
            Some(&pick(&new)),
            format!("{name} spaces its retries differently"),
            Some((after, at)),
        );
    }
}

fn failures(name: &str, b: &Value, h: &Value, after: &Doc, out: &mut Collector<'_>) {
    let (old, new) = (members(b, "failures"), members(h, "failures"));
    let group = || Group::Flow(name.to_owned());
    for (mode, route) in old {
        if !new.contains_key(mode) {
            out.push(
                &c::FAILURE_MODE_REMOVED,
                group(),
                format!("failures.{mode}"),
                Some(route),
                None,
                format!("{mode} of {name} loses its owner, action and runbook: it falls to the default owner"),
                Some((after, "/failures")),
            );
        }
    }
    for (mode, route) in new {
        let at = format!("/failures/{}", seg(mode));
        let Some(was) = old.get(mode) else {
            out.push(
                &c::FAILURE_MODE_ADDED,
                group(),
                format!("failures.{mode}"),
                None,
                Some(route),
                format!("{mode} of {name} gets its own route"),
                Some((after, &at)),
            );
            continue;
        };
        for (key, removed, changed, what) in [
            // A declared failure mode always has an owner (E0501): losing it means losing
            // the whole route, which `failure-mode-removed` reports.
            (
                "owner",
                &c::FAILURE_OWNER_CHANGED,
                &c::FAILURE_OWNER_CHANGED,
                "owner",
            ),
            (
                "action",
                &c::FAILURE_ACTION_CHANGED,
                &c::FAILURE_ACTION_CHANGED,
                "action",
            ),
            (
                "runbook",
                &c::FAILURE_RUNBOOK_REMOVED,
                &c::FAILURE_RUNBOOK_CHANGED,
                "runbook",
            ),
            (
                "escalate",
                &c::FAILURE_ESCALATION_REMOVED,
                &c::FAILURE_ESCALATION_CHANGED,
                "escalation",
            ),
        ] {
            let (x, y) = (was.get(key), route.get(key));
            if x == y {
                continue;
            }
            let (check, reason) = match (x, y) {
                (Some(_), None) => (removed, format!("{mode} of {name} loses its {what}")),
                (None, Some(_)) => (changed, format!("{mode} of {name} gains a {what}")),
                _ => (changed, format!("{mode} of {name}: {what} changes")),
            };
            let pointer = if y.is_some() {
                format!("{at}/{key}")
            } else {
                at.clone()
            };
            out.push(
                check,
                group(),
                format!("failures.{mode}.{key}"),
                x,
                y,
                reason,
                Some((after, &pointer)),
            );
        }
    }
}

fn sla(name: &str, b: &Value, h: &Value, after: &Doc, out: &mut Collector<'_>) {
    let (old, new) = (b.get("sla"), h.get("sla"));
    if old == new {
        return;
    }
    let group = || Group::Flow(name.to_owned());
    let (check, reason) = match (old, new) {
        (None, Some(_)) => (&c::SLA_ADDED, format!("{name} gains an SLA")),
        (Some(_), None) => (
            &c::SLA_REMOVED,
            format!("{name} drops its SLA: breaches are no longer seen"),
        ),
        (Some(x), Some(y)) => {
            let freshness = |v: &Value| duration(v.get("freshness"));
            let reject = |v: &Value| v.get("max_reject_rate").and_then(Value::as_f64);
            let looser = match (freshness(x), freshness(y)) {
                (Some(a), Some(b)) if b > a => true,
                (Some(_), None) => true,
                _ => false,
            } || match (reject(x), reject(y)) {
                (Some(a), Some(b)) => b > a,
                (Some(_), None) => true,
                _ => false,
            };
            if looser {
                (&c::SLA_LOOSENED, format!("{name} promises less"))
            } else {
                (&c::SLA_TIGHTENED, format!("{name} promises more"))
            }
        }
        (None, None) => return,
    };
    out.push(
        check,
        group(),
        "sla",
        old,
        new,
        reason,
        Some((after, "/sla")),
    );
}

fn deadline(name: &str, b: &Value, h: &Value, after: &Doc, out: &mut Collector<'_>) {
    let (old, new) = (b.get("deadline"), h.get("deadline"));
    let (check, reason) = match (old, new) {
        (None, Some(_)) => (
            &c::DEADLINE_ADDED,
            format!("{name}'s records gain a deadline"),
        ),
        (Some(_), None) => (
            &c::DEADLINE_REMOVED,
            format!("{name} no longer detects missed deadlines"),
        ),
        (Some(x), Some(y)) if x != y => (
            &c::DEADLINE_CHANGED,
            format!("when {name}'s deadline falls or warns changes"),
        ),
        _ => return,
    };
    let pointer = if new.is_some() { "/deadline" } else { "/flow" };
    out.push(
        check,
        Group::Flow(name.to_owned()),
        "deadline",
        old,
        new,
        reason,
        Some((after, pointer)),
    );
}

/// `reconcile:` in three parts: the matching (`reconciliation-changed`), the contracted rates
/// (`contracted-rate-changed`, a business term finance agrees, reviewed apart) and the line
/// dates, which only age lines in the metrics (`spec-changed`). A section added or removed
/// whole is one `reconciliation-changed`.
fn reconcile(name: &str, b: &Value, h: &Value, after: &Doc, out: &mut Collector<'_>) {
    const APART: [&str; 2] = ["rates", "line_date"];
    let group = || Group::Flow(name.to_owned());
    let (old, new) = (b.get("reconcile"), h.get("reconcile"));
    let (Some(old), Some(new)) = (old, new) else {
        changed(
            out,
            &c::RECONCILIATION_CHANGED,
            group(),
            "reconcile",
            old,
            new,
            &format!("how {name} matches the statement to the ledger changes"),
            after,
        );
        return;
    };
    // The section with only (`keep`) or without the keys reviewed apart.
    let part = |section: &Value, key: Option<&str>| -> Value {
        let mut object = section.as_object().cloned().unwrap_or_default();
        object.retain(|k, _| match key {
            Some(key) => k == key,
            None => !APART.contains(&k.as_str()),
        });
        Value::Object(object)
    };
    for (check, key, reason) in [
        (
            &c::RECONCILIATION_CHANGED,
            None,
            format!("how {name} matches the statement to the ledger changes"),
        ),
        (
            &c::CONTRACTED_RATE_CHANGED,
            Some("rates"),
            format!("the contracted rates {name} checks the statement's charges against change"),
        ),
        (
            &c::OTHER_CHANGED,
            Some("line_date"),
            format!("the dates that age {name}'s unmatched lines in the metrics change"),
        ),
    ] {
        changed(
            out,
            check,
            group(),
            "reconcile",
            Some(&part(old, key)),
            Some(&part(new, key)),
            &reason,
            after,
        );
    }
}
