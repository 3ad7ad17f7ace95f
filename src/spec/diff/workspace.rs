//! Workspace-level changes: systems, owners, defaults and the business objects with their
//! ownership and contracts.

use serde_json::{Map, Value};

use super::checks::{self as c, Check};
use super::{Collector, Group, Side, contract, seg};

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// The members of `value[key]` as a map (empty when absent).
pub(super) fn members<'a>(value: &'a Value, key: &str) -> &'a Map<String, Value> {
    value.get(key).and_then(Value::as_object).unwrap_or(&EMPTY)
}

/// The strings of a list setting.
pub(super) fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

pub(super) fn compare(base: &Side, head: &Side, out: &mut Collector<'_>) {
    let (b, h) = (&base.workspace.value, &head.workspace.value);
    systems(b, h, out);
    owners(b, h, out);
    let (old, new) = (
        b.pointer("/defaults/failure_owner"),
        h.pointer("/defaults/failure_owner"),
    );
    if old != new {
        let doc = out.head_workspace().clone();
        out.push(
            &c::DEFAULT_FAILURE_OWNER_CHANGED,
            Group::Workspace,
            "defaults.failure_owner",
            old,
            new,
            "failure modes without their own owner are routed to someone else",
            Some((&doc, "/defaults/failure_owner")),
        );
    }
    objects(base, head, out);
}

fn systems(b: &Value, h: &Value, out: &mut Collector<'_>) {
    let doc = out.head_workspace().clone();
    let (old, new) = (members(b, "systems"), members(h, "systems"));
    for (name, system) in old {
        if !new.contains_key(name) {
            out.push(
                &c::SYSTEM_REMOVED,
                Group::System(name.clone()),
                format!("systems.{name}"),
                Some(system),
                None,
                format!("system {name} is removed"),
                Some((&doc, "/systems")),
            );
        }
    }
    for (name, system) in new {
        let at = format!("/systems/{}", seg(name));
        let group = Group::System(name.clone());
        let Some(before) = old.get(name) else {
            out.push(
                &c::SYSTEM_ADDED,
                group,
                format!("systems.{name}"),
                None,
                Some(system),
                format!("system {name} is added"),
                Some((&doc, &at)),
            );
            continue;
        };
        if before.get("acts_for") != system.get("acts_for") {
            out.push(
                &c::SYSTEM_PARTY_CHANGED,
                group.clone(),
                format!("systems.{name}.acts_for"),
                before.get("acts_for"),
                system.get("acts_for"),
                format!("{name} now acts for another party"),
                Some((&doc, &format!("{at}/acts_for"))),
            );
        }
        let connector = |s: &Value| {
            s.as_object().and_then(|m| {
                m.iter()
                    .find(|(k, v)| {
                        !matches!(k.as_str(), "description" | "acts_for") && v.is_object()
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
            })
        };
        match (connector(before), connector(system)) {
            (Some((old_kind, _)), Some((new_kind, _))) if old_kind != new_kind => out.push(
                &c::SYSTEM_CONNECTOR_CHANGED,
                group,
                format!("systems.{name}"),
                Some(&Value::String(old_kind.clone())),
                Some(&Value::String(new_kind.clone())),
                format!("{name} is reached through {new_kind} instead of {old_kind}"),
                Some((&doc, &format!("{at}/{}", seg(&new_kind)))),
            ),
            (Some((kind, old_settings)), Some((_, new_settings))) => {
                settings(name, &kind, &old_settings, &new_settings, &at, &doc, out);
            }
            _ => {}
        }
    }
}

/// The settings that say *where* a system is; any other setting is tuning.
const ADDRESS_KEYS: &[&str] = &["base_url", "url", "dir", "path", "host", "database"];

fn settings(
    name: &str,
    kind: &str,
    old: &Value,
    new: &Value,
    at: &str,
    doc: &super::side::Doc,
    out: &mut Collector<'_>,
) {
    let (old, new) = (
        old.as_object().unwrap_or(&EMPTY),
        new.as_object().unwrap_or(&EMPTY),
    );
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.dedup();
    let mut seen = std::collections::HashSet::new();
    for key in keys {
        if !seen.insert(key) || old.get(key) == new.get(key) {
            continue;
        }
        let address = ADDRESS_KEYS.contains(&key.as_str());
        let check: &'static Check = if address {
            &c::SYSTEM_REPOINTED
        } else {
            &c::SYSTEM_SETTINGS_CHANGED
        };
        let reason = if address {
            format!("{name} now points somewhere else: records go to or come from another place")
        } else {
            format!("{name}'s {key} setting changes")
        };
        out.push(
            check,
            Group::System(name.to_owned()),
            format!("systems.{name}.{kind}.{key}"),
            old.get(key),
            new.get(key),
            reason,
            Some((doc, &format!("{at}/{}/{}", seg(kind), seg(key)))),
        );
    }
}

fn owners(b: &Value, h: &Value, out: &mut Collector<'_>) {
    let doc = out.head_workspace().clone();
    let (old, new) = (members(b, "owners"), members(h, "owners"));
    for (name, owner) in old {
        let group = Group::Owner(name.clone());
        match new.get(name) {
            None => out.push(
                &c::OWNER_REMOVED,
                group,
                format!("owners.{name}"),
                Some(owner),
                None,
                format!("owner {name} is removed"),
                Some((&doc, "/owners")),
            ),
            Some(after) if after != owner => out.push(
                &c::OWNER_CONTACT_CHANGED,
                group,
                format!("owners.{name}"),
                Some(owner),
                Some(after),
                format!("{name} is reached elsewhere"),
                Some((&doc, &format!("/owners/{}", seg(name)))),
            ),
            _ => {}
        }
    }
    for (name, owner) in new {
        if !old.contains_key(name) {
            out.push(
                &c::OWNER_ADDED,
                Group::Owner(name.clone()),
                format!("owners.{name}"),
                None,
                Some(owner),
                format!("owner {name} is added"),
                Some((&doc, &format!("/owners/{}", seg(name)))),
            );
        }
    }
}

fn objects(base: &Side, head: &Side, out: &mut Collector<'_>) {
    let doc = out.head_workspace().clone();
    let (old, new) = (
        members(&base.workspace.value, "objects"),
        members(&head.workspace.value, "objects"),
    );
    for (name, object) in old {
        if !new.contains_key(name) {
            out.push(
                &c::OBJECT_REMOVED,
                Group::Object(name.clone()),
                format!("objects.{name}"),
                Some(object),
                None,
                format!("object {name} is removed"),
                Some((&doc, "/objects")),
            );
        }
    }
    for (name, object) in new {
        let at = format!("/objects/{}", seg(name));
        let group = Group::Object(name.clone());
        let Some(before) = old.get(name) else {
            out.push(
                &c::OBJECT_ADDED,
                group,
                format!("objects.{name}"),
                None,
                None,
                format!("object {name} is added"),
                Some((&doc, &at)),
            );
            continue;
        };
        if before.get("source_of_truth") != object.get("source_of_truth") {
            out.push(
                &c::SOURCE_OF_TRUTH_CHANGED,
                group.clone(),
                format!("objects.{name}.source_of_truth"),
                before.get("source_of_truth"),
                object.get("source_of_truth"),
                format!(
                    "source of truth of {name} moved from {} to {}",
                    super::show(before.get("source_of_truth").unwrap_or(&Value::Null)),
                    super::show(object.get("source_of_truth").unwrap_or(&Value::Null))
                ),
                Some((&doc, &format!("{at}/source_of_truth"))),
            );
        }
        if before.get("key") != object.get("key") {
            out.push(
                &c::OBJECT_KEY_CHANGED,
                group.clone(),
                format!("objects.{name}.key"),
                before.get("key"),
                object.get("key"),
                format!("what identifies one {name} changes: duplicates and cross-references are counted differently"),
                Some((&doc, &format!("{at}/key"))),
            );
        }
        for (list, added, removed) in [
            ("create", &c::CREATOR_ADDED, &c::CREATOR_REMOVED),
            ("update", &c::UPDATER_ADDED, &c::UPDATER_REMOVED),
            ("consume", &c::CONSUMER_ADDED, &c::CONSUMER_REMOVED),
        ] {
            let (was, now) = (strings(before.get(list)), strings(object.get(list)));
            for system in now.iter().filter(|s| !was.contains(s)) {
                out.push(
                    added,
                    group.clone(),
                    format!("objects.{name}.{list}"),
                    None,
                    Some(&Value::String(system.clone())),
                    format!("{system} may now {list} {name}"),
                    Some((&doc, &format!("{at}/{list}"))),
                );
            }
            for system in was.iter().filter(|s| !now.contains(s)) {
                out.push(
                    removed,
                    group.clone(),
                    format!("objects.{name}.{list}"),
                    Some(&Value::String(system.clone())),
                    None,
                    format!("{system} may no longer {list} {name}"),
                    Some((&doc, &format!("{at}/{list}"))),
                );
            }
        }
        fields(name, before, object, &at, &doc, out);
        if before.get("contract") != object.get("contract") {
            out.push(
                &c::CONTRACT_CHANGED,
                group.clone(),
                format!("objects.{name}.contract"),
                before.get("contract"),
                object.get("contract"),
                format!("{name}'s contract is read from another schema"),
                Some((&doc, &format!("{at}/contract"))),
            );
        }
        if let (Some(old_schema), Some(new_schema)) =
            (base.contracts.get(name), head.contracts.get(name))
        {
            contract::compare(name, old_schema, new_schema, &doc, &at, out);
        }
    }
}

fn fields(
    name: &str,
    before: &Value,
    object: &Value,
    at: &str,
    doc: &super::side::Doc,
    out: &mut Collector<'_>,
) {
    let (old, new) = (members(before, "fields"), members(object, "fields"));
    let group = Group::Object(name.to_owned());
    for (field, control) in old {
        if !new.contains_key(field) {
            out.push(
                &c::FIELD_CONTROL_REMOVED,
                group.clone(),
                format!("objects.{name}.fields.{field}"),
                Some(control),
                None,
                format!("{name}.{field} no longer says who controls it"),
                Some((doc, &format!("{at}/fields"))),
            );
        }
    }
    for (field, control) in new {
        let here = format!("{at}/fields/{}", seg(field));
        let Some(was) = old.get(field) else {
            out.push(
                &c::FIELD_CONTROL_ADDED,
                group.clone(),
                format!("objects.{name}.fields.{field}"),
                None,
                Some(control),
                format!("{name}.{field} declares who controls it"),
                Some((doc, &here)),
            );
            continue;
        };
        if was.get("controlled_by") != control.get("controlled_by") {
            out.push(
                &c::FIELD_CONTROL_CHANGED,
                group.clone(),
                format!("objects.{name}.fields.{field}.controlled_by"),
                was.get("controlled_by"),
                control.get("controlled_by"),
                format!("{name}.{field} changes hands: the other party's edits now win"),
                Some((doc, &format!("{here}/controlled_by"))),
            );
        }
        for key in ["operator_override", "overrides"] {
            if was.get(key) != control.get(key) {
                out.push(
                    &c::FIELD_OVERRIDE_CHANGED,
                    group.clone(),
                    format!("objects.{name}.fields.{field}.{key}"),
                    was.get(key),
                    control.get(key),
                    format!("whether the operator may override {name}.{field} changes"),
                    Some((doc, &format!("{here}/{key}"))),
                );
            }
        }
    }
}
