//! What a workspace declares, as plain data: the one description `explain --format json`
//! prints and every evidence-pack renderer (HTML, Markdown) reads, so they never disagree.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::spec::explain::{flow_summary, human};
use crate::spec::model::{Flow, Trigger, Workspace};

/// A workspace's facts.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// Display name.
    pub name: String,
    /// Systems with their connector and address.
    pub systems: Vec<SystemFacts>,
    /// Objects with ownership and field control.
    pub objects: Vec<ObjectFacts>,
    /// Flows in file order.
    pub flows: Vec<FlowFacts>,
}

/// One system.
#[derive(Debug, Clone, Serialize)]
pub struct SystemFacts {
    /// Its name.
    pub name: String,
    /// Its connector (`http`, `file`, `postgres`, ...).
    pub connector: String,
    /// What it is, as the workspace describes it.
    pub description: Option<String>,
    /// Who it acts for, if declared.
    pub acts_for: Option<String>,
}

/// One object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectFacts {
    /// Its name.
    pub name: String,
    /// Identity key fields.
    pub key: Vec<String>,
    /// Source of truth.
    pub source_of_truth: String,
    /// May create.
    pub create: Vec<String>,
    /// May update.
    pub update: Vec<String>,
    /// Only consume.
    pub consume: Vec<String>,
    /// Field -> (controlled by, operator may override).
    pub fields: Vec<FieldControlFacts>,
    /// Contract fields.
    pub contract: Vec<ContractField>,
    /// The contract's version: its `$id` or `version` when it declares one, and the first 12
    /// hex digits of the SHA-256 of its schema, which changes with any change to it.
    pub contract_version: String,
}

/// Who controls one field.
#[derive(Debug, Clone, Serialize)]
pub struct FieldControlFacts {
    /// The field.
    pub field: String,
    /// `seller` or `operator`.
    pub controlled_by: String,
    /// Whether the operator may override the seller's value.
    pub operator_override: bool,
}

/// One top-level field of a contract.
#[derive(Debug, Clone, Serialize)]
pub struct ContractField {
    /// The field.
    pub name: String,
    /// Its JSON types (or `enum: A | B`).
    pub kind: String,
    /// Whether a record must carry it.
    pub required: bool,
}

/// One flow.
#[derive(Debug, Clone, Serialize)]
pub struct FlowFacts {
    /// Its name.
    pub name: String,
    /// Its file, relative to the workspace.
    pub file: String,
    /// The object it moves.
    pub object: String,
    /// `event`, `near-real-time` or `batch`.
    pub pattern: String,
    /// What starts a run, in words.
    pub trigger: String,
    /// Latency class.
    pub latency: String,
    /// Source system.
    pub from: String,
    /// Sink system.
    pub to: String,
    /// The acknowledgement target, if any.
    pub acknowledge: Option<String>,
    /// The paragraph `explain` prints.
    pub summary: String,
    /// The idempotency key template, if declared.
    pub idempotency_key: Option<String>,
    /// Output field -> how it is computed.
    pub mapping: Vec<MappedField>,
    /// Filter conditions, in words.
    pub filters: Vec<String>,
    /// The guard, in words.
    pub guard: Option<String>,
    /// Enrichments, in words.
    pub enrichments: Vec<String>,
    /// The split, if any (`items by key`).
    pub split: Option<String>,
    /// The deadline, as declared.
    pub deadline: Option<Value>,
    /// Retry policy, in words, and its window.
    pub retry: RetryFacts,
    /// SLA freshness, if any.
    pub freshness: Option<String>,
    /// SLA reject rate, if any.
    pub max_reject_rate: Option<f64>,
    /// Every failure mode with its route.
    pub failures: Vec<FailureFacts>,
    /// Sample payloads from the flow's tests.
    pub samples: Vec<Sample>,
}

/// One mapped output field.
#[derive(Debug, Clone, Serialize)]
pub struct MappedField {
    /// Output field (nested as `lines[].sku`).
    pub field: String,
    /// Template, source pointer, constant or array mapping.
    pub source: String,
    /// Output type, when declared.
    pub kind: Option<String>,
}

/// A retry policy.
#[derive(Debug, Clone, Serialize)]
pub struct RetryFacts {
    /// `exponential` or `fixed`.
    pub backoff: String,
    /// First delay.
    pub initial: String,
    /// Longest delay.
    pub max_delay: String,
    /// How long a failing delivery is retried.
    pub window: String,
    /// The window in seconds (for timelines).
    pub window_seconds: u64,
}

/// One failure mode's route.
#[derive(Debug, Clone, Serialize)]
pub struct FailureFacts {
    /// The failure mode.
    pub mode: String,
    /// Its owner.
    pub owner: String,
    /// What the owner does.
    pub action: Option<String>,
    /// Likely cause and recovery.
    pub runbook: Option<String>,
    /// Escalation: to whom, after how long.
    pub escalate: Option<String>,
}

/// A sample from a flow test case.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The case's name.
    pub case: String,
    /// The first input record.
    pub input: Option<Value>,
    /// The first delivered record expected.
    pub output: Option<Value>,
    /// The first dead letter expected.
    pub dead_letter: Option<Value>,
    /// The first alert expected.
    pub alert: Option<Value>,
}

/// Gathers the facts. `raw_flows` are the flow files as JSON by flow name (for the mapping
/// as written); a flow missing there gets an empty mapping table.
pub fn gather(workspace: &Workspace, raw_flows: &IndexMap<String, Value>) -> Facts {
    let systems = workspace
        .systems
        .iter()
        .map(|(name, system)| SystemFacts {
            name: name.clone(),
            connector: system.connectors.keys().next().cloned().unwrap_or_default(),
            description: system.description.clone(),
            acts_for: system
                .acts_for
                .and_then(|p| serde_json::to_value(p).ok())
                .and_then(|v| v.as_str().map(str::to_owned)),
        })
        .collect();
    let objects = workspace
        .objects
        .iter()
        .map(|(name, object)| ObjectFacts {
            name: name.clone(),
            key: object.key.clone(),
            source_of_truth: object.source_of_truth.clone(),
            create: object.create.clone(),
            update: object.update.clone(),
            consume: object.consume.clone(),
            fields: object
                .fields
                .iter()
                .map(|(field, control)| FieldControlFacts {
                    field: field.clone(),
                    controlled_by: word(&control.controlled_by),
                    operator_override: control.operator_override,
                })
                .collect(),
            contract: workspace
                .contracts
                .get(name)
                .map(|c| contract_fields(c.schema()))
                .unwrap_or_default(),
            contract_version: workspace
                .contracts
                .get(name)
                .map(|c| contract_version(c.schema()))
                .unwrap_or_default(),
        })
        .collect();
    let flows = workspace
        .flows
        .values()
        .map(|flow| flow_facts(workspace, flow, raw_flows.get(&flow.name)))
        .collect();
    Facts {
        name: workspace.name.clone().unwrap_or_else(|| "workspace".into()),
        systems,
        objects,
        flows,
    }
}

fn word<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn contract_fields(schema: &Value) -> Vec<ContractField> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| ContractField {
            name: name.clone(),
            kind: kind_of(property),
            required: required.contains(&name.as_str()),
        })
        .collect()
}

fn contract_version(schema: &Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(schema.to_string().as_bytes());
    let short = hex::encode(&digest[..6]);
    match schema
        .get("$id")
        .or_else(|| schema.get("version"))
        .and_then(Value::as_str)
    {
        Some(declared) => format!("{declared} (sha256 {short})"),
        None => format!("sha256 {short}"),
    }
}

fn kind_of(property: &Value) -> String {
    if let Some(values) = property.get("enum").and_then(Value::as_array) {
        let shown: Vec<String> = values.iter().map(crate::spec::diff::show_value).collect();
        return format!("enum: {}", shown.join(" | "));
    }
    let mut kind = match property.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    };
    if let Some(format) = property.get("format").and_then(Value::as_str) {
        kind.push_str(&format!(" ({format})"));
    }
    kind
}

fn trigger_words(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Manual => "on demand".into(),
        Trigger::Poll(every) => format!("poll every {}", human(*every)),
        Trigger::Cron(cron) => format!("cron `{}` ({})", cron.expression, cron.timezone),
        Trigger::Webhook(path) => format!("webhook {path}"),
    }
}

fn flow_facts(workspace: &Workspace, flow: &Flow, raw: Option<&Value>) -> FlowFacts {
    let mut mapping = Vec::new();
    if let Some(map) = raw.and_then(|r| r.get("map")).and_then(Value::as_object) {
        mapped(map, "", &mut mapping, 0);
    }
    let failures = flow
        .failures
        .iter()
        .map(|(mode, route)| FailureFacts {
            mode: mode.to_string(),
            owner: route.owner.clone(),
            action: route.action.map(|a| word(&a)),
            runbook: route.runbook.clone(),
            escalate: route
                .escalate
                .as_ref()
                .map(|e| format!("{} after {}", e.to, e.after)),
        })
        .collect();
    let samples = workspace
        .tests
        .iter()
        .filter(|suite| suite.spec.flow == flow.name)
        .flat_map(|suite| suite.spec.cases.iter())
        .map(|case| Sample {
            case: case.name.clone(),
            input: case.input.first().cloned(),
            output: case.expect.delivered.first().cloned(),
            dead_letter: case
                .expect
                .dead_letters
                .first()
                .and_then(|d| serde_json::to_value(d).ok()),
            alert: case
                .expect
                .alerts
                .first()
                .and_then(|a| serde_json::to_value(a).ok()),
        })
        .collect();
    FlowFacts {
        name: flow.name.clone(),
        file: flow.file.display().to_string(),
        object: flow.object.clone(),
        pattern: word(&flow.pattern),
        trigger: trigger_words(&flow.trigger),
        latency: word(&flow.latency),
        from: flow.from.system.clone(),
        to: flow.to.system.clone(),
        acknowledge: flow.acknowledge.as_ref().map(|a| a.endpoint.system.clone()),
        summary: flow_summary(flow),
        idempotency_key: raw
            .and_then(|r| r.get("idempotency_key"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        mapping,
        filters: flow.plan.filter.describe(),
        guard: flow.plan.guard.as_ref().map(|g| g.describe()),
        enrichments: flow.plan.enrichments.iter().map(|e| e.describe()).collect(),
        split: flow
            .plan
            .split
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .map(|s| crate::spec::diff::show_value(&s)),
        deadline: raw.and_then(|r| r.get("deadline")).cloned(),
        retry: RetryFacts {
            backoff: if flow.retry.exponential {
                "exponential"
            } else {
                "fixed"
            }
            .into(),
            initial: human(flow.retry.initial),
            max_delay: human(flow.retry.max_delay),
            window: human(flow.retry.window),
            window_seconds: flow.retry.window.as_secs(),
        },
        freshness: flow.freshness.map(human),
        max_reject_rate: flow.max_reject_rate,
        failures,
        samples,
    }
}

/// Flattens a `map:` into rows; `each:` mappings become `field[].item` rows.
fn mapped(
    map: &serde_json::Map<String, Value>,
    prefix: &str,
    out: &mut Vec<MappedField>,
    depth: usize,
) {
    for (field, spec) in map {
        let name = format!("{prefix}{field}");
        match spec {
            Value::String(template) => out.push(MappedField {
                field: name,
                source: template.clone(),
                kind: None,
            }),
            Value::Object(detail) => {
                let kind = detail
                    .get("type")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let source = if let Some(t) = detail.get("template").and_then(Value::as_str) {
                    t.to_owned()
                } else if let Some(from) = detail.get("from").and_then(Value::as_str) {
                    format!("copy of {from}")
                } else if let Some(value) = detail.get("value") {
                    format!("constant {value}")
                } else if let Some(each) = detail.get("each").and_then(Value::as_str) {
                    format!("one item per element of {each}")
                } else {
                    crate::spec::diff::show_value(spec)
                };
                out.push(MappedField {
                    field: name.clone(),
                    source,
                    kind,
                });
                if let (Some(Value::Object(inner)), true) = (detail.get("map"), depth < 4) {
                    mapped(inner, &format!("{name}[]."), out, depth + 1);
                }
            }
            other => out.push(MappedField {
                field: name,
                source: other.to_string(),
                kind: None,
            }),
        }
    }
}
