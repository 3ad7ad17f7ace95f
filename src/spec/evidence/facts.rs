//! What a workspace declares, as plain data: the one description `explain --format json`
//! prints and every evidence-pack renderer (HTML, Markdown) reads, so they never disagree.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::reconcile::Kind;
use crate::reconcile::Reconciliation;
use crate::reconcile::plan::{Pair, Tolerance};
use crate::spec::explain::{
    flow_summary, human, location, percent, reconcile_summary, strategy_words, tolerance_words,
};
use crate::spec::model::{FailureMode, Flow, Trigger, Workspace};

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

/// One flow: a moving flow (`from:` → `to:`) or a reconcile flow (`from:` against
/// `reconcile.ledger`), told apart by `kind`.
#[derive(Debug, Clone, Serialize)]
pub struct FlowFacts {
    /// Its name.
    pub name: String,
    /// `move` (records go from a source to a sink) or `reconcile` (a statement is joined to a
    /// ledger and every variance reported; see `reconcile`).
    pub kind: FlowKind,
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
    /// Sink system; none for a reconcile flow, whose output is its report and dead letters.
    pub to: Option<String>,
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
    /// Retry policy, in words, and its window; none for a reconcile flow (a run that cannot
    /// read a side stops, and the next scheduled run reconciles everything again).
    pub retry: Option<RetryFacts>,
    /// SLA freshness, if any.
    pub freshness: Option<String>,
    /// SLA reject rate, if any.
    pub max_reject_rate: Option<f64>,
    /// Every failure mode with its route.
    pub failures: Vec<FailureFacts>,
    /// Sample payloads from the flow's tests.
    pub samples: Vec<Sample>,
    /// What a reconcile flow matches and checks; none for a moving flow.
    pub reconcile: Option<ReconcileFacts>,
}

impl FlowFacts {
    /// The path in a few words: `marketplace → oms`, or for a reconcile flow
    /// `ledger (table `a`) ⇄ ledger (table `b`) → report`.
    pub fn path(&self) -> String {
        match (&self.reconcile, &self.to) {
            (Some(rec), _) => format!(
                "statement from {} against ledger from {} → report and dead letters",
                rec.statement.system, rec.ledger.system
            ),
            (None, Some(to)) => format!("{} → {to}", self.from),
            (None, None) => format!("from {}", self.from),
        }
    }
}

/// What kind of flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowKind {
    /// Moves records from a source to a sink.
    Move,
    /// Reconciles a statement against a ledger.
    Reconcile,
}

/// The matching settings, rules and contracted rates of a reconcile flow.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileFacts {
    /// The statement side: the flow's `from:`.
    pub statement: SideFacts,
    /// The ledger side: `reconcile.ledger`.
    pub ledger: SideFacts,
    /// The join key on each side.
    pub key: PairFacts,
    /// The billing cycle field on each side.
    pub cycle: PairFacts,
    /// The amount field on each side.
    pub amount: PairFacts,
    /// The currency field on each side.
    pub currency: PairFacts,
    /// The field naming a ledger line in the report, if declared.
    pub ledger_line: Option<String>,
    /// `one-to-one`, `one-to-many` or `many-to-one`.
    pub strategy: String,
    /// The strategy in business words.
    pub strategy_words: String,
    /// Largest difference still matched, per currency (`default` for the others); empty is
    /// exact.
    pub tolerance: Vec<ToleranceFacts>,
    /// The tolerance as a sentence.
    pub tolerance_words: String,
    /// The date window, if dates are compared.
    pub date_window: Option<DateWindowFacts>,
    /// Where lines are dated for ages and cycle ends: (statement field, ledger field).
    pub line_date: Option<PairFacts>,
    /// Named checks of matched lines.
    pub rules: Vec<RuleFacts>,
    /// Contracted rates checked on the statement.
    pub rates: Vec<RateFacts>,
    /// What a variance becomes, and what a cycle that ties out shows.
    pub outcome: String,
}

/// One side of a reconciliation.
#[derive(Debug, Clone, Serialize)]
pub struct SideFacts {
    /// The system read.
    pub system: String,
    /// Its connector.
    pub connector: String,
    /// Where in it: `table `x``, `query `...``, `GET /path`, `path `...``.
    pub location: String,
}

/// A field on each side.
#[derive(Debug, Clone, Serialize)]
pub struct PairFacts {
    /// In a statement line.
    pub statement: String,
    /// In a ledger line (empty when the ledger does not declare one).
    pub ledger: String,
}

/// A tolerance for one currency (or `default`).
#[derive(Debug, Clone, Serialize)]
pub struct ToleranceFacts {
    /// An ISO 4217 code, or `default` for the currencies not listed.
    pub currency: String,
    /// The largest difference still matched.
    pub amount: String,
}

/// A date window.
#[derive(Debug, Clone, Serialize)]
pub struct DateWindowFacts {
    /// The statement's date field.
    pub statement: String,
    /// The ledger's date field.
    pub ledger: String,
    /// How far apart they may be.
    pub window: String,
}

/// A rule checked on matched lines.
#[derive(Debug, Clone, Serialize)]
pub struct RuleFacts {
    /// Its name.
    pub name: String,
    /// What it protects.
    pub description: Option<String>,
    /// The statement lines it applies to (`/type = "CHARGEBACK"`); every matched line when
    /// absent.
    pub when: Option<String>,
    /// The ledger field checked.
    pub ledger_field: String,
    /// The statement field selecting the expected value.
    pub by: String,
    /// Expected ledger value per statement value.
    pub expect: Vec<ExpectedValue>,
    /// The variance kind a breach is (`wrong_party`).
    pub variance: String,
    /// The failure mode its dead letter carries.
    pub failure: String,
    /// That failure mode's owner.
    pub owner: String,
}

/// One row of a rule's table.
#[derive(Debug, Clone, Serialize)]
pub struct ExpectedValue {
    /// The statement value (of the rule's `by`).
    pub when: String,
    /// The ledger value required.
    pub expect: String,
}

/// A contracted rate.
#[derive(Debug, Clone, Serialize)]
pub struct RateFacts {
    /// Its name.
    pub name: String,
    /// What it protects.
    pub description: Option<String>,
    /// The charged lines (`/type = "COMMISSION_FEE"`).
    pub charged: String,
    /// The base lines (`/type = "ORDER_AMOUNT"`).
    pub base: String,
    /// The field joining a charged line to its base lines.
    pub per: String,
    /// The field selecting the rate, if rates differ by it.
    pub by: Option<String>,
    /// Contracted rate per value of `by`, as `12% (0.12)`.
    pub contracted: Vec<ExpectedValue>,
    /// The rate for values not listed, as `12% (0.12)`; none means no rate is contracted.
    pub default: Option<String>,
    /// `opposite` or `same`.
    pub sign: String,
    /// `half-even` or `half-away-from-zero`.
    pub rounding: String,
    /// Largest accepted difference per currency; empty is exact.
    pub tolerance: Vec<ToleranceFacts>,
    /// The variance kind a breach is (`rate_mismatch`).
    pub variance: String,
    /// The failure mode its dead letter carries.
    pub failure: String,
    /// That failure mode's owner.
    pub owner: String,
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
    /// A reconcile flow's case: every statement line given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statement: Vec<Value>,
    /// A reconcile flow's case: every ledger line given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ledger: Vec<Value>,
    /// A reconcile flow's case: the variances expected (empty: every cycle ties out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variances: Option<Vec<Value>>,
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
    // A reconcile flow lives apart in the model (no sink, no mapping); both kinds are listed
    // together in file order so no renderer can leave one out.
    let mut flows: Vec<FlowFacts> = workspace
        .flows
        .values()
        .map(|flow| flow_facts(workspace, flow, raw_flows.get(&flow.name)))
        .chain(
            workspace
                .reconciliations
                .values()
                .map(|rec| reconcile_facts(workspace, rec)),
        )
        .collect();
    flows.sort_by(|a, b| a.file.cmp(&b.file));
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
    let failures = failure_facts(&flow.failures);
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
            statement: Vec::new(),
            ledger: Vec::new(),
            variances: None,
        })
        .collect();
    FlowFacts {
        name: flow.name.clone(),
        kind: FlowKind::Move,
        file: flow.file.display().to_string(),
        object: flow.object.clone(),
        pattern: word(&flow.pattern),
        trigger: trigger_words(&flow.trigger),
        latency: word(&flow.latency),
        from: flow.from.system.clone(),
        to: Some(flow.to.system.clone()),
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
        retry: Some(RetryFacts {
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
        }),
        freshness: flow.freshness.map(human),
        max_reject_rate: flow.max_reject_rate,
        failures,
        samples,
        reconcile: None,
    }
}

fn failure_facts(
    failures: &IndexMap<crate::spec::model::FailureMode, crate::spec::model::FailureRoute>,
) -> Vec<FailureFacts> {
    failures
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
        .collect()
}

fn reconcile_facts(workspace: &Workspace, rec: &Reconciliation) -> FlowFacts {
    let plan = &rec.plan;
    let owner = |mode: FailureMode| {
        rec.failures
            .get(&mode)
            .map(|route| route.owner.clone())
            .unwrap_or_else(|| "no owner".to_owned())
    };
    let pair = |p: &Pair| PairFacts {
        statement: p.statement.clone(),
        ledger: p.ledger.clone(),
    };
    let side = |endpoint: &crate::spec::model::Endpoint| SideFacts {
        system: endpoint.system.clone(),
        connector: endpoint.connector.name().to_owned(),
        location: location(&endpoint.settings),
    };
    let condition = |(field, value): &(String, String)| format!("`{field}` = \"{value}\"");
    let rules = plan
        .rules
        .iter()
        .map(|rule| RuleFacts {
            name: rule.name.clone(),
            description: rule.description.clone(),
            when: rule.when.as_ref().map(condition),
            ledger_field: rule.ledger_field.clone(),
            by: rule.by.clone(),
            expect: rule
                .expect
                .iter()
                .map(|(when, expect)| ExpectedValue {
                    when: when.clone(),
                    expect: expect.clone(),
                })
                .collect(),
            variance: Kind::WrongParty.as_str().to_owned(),
            failure: Kind::WrongParty.failure().to_string(),
            owner: owner(Kind::WrongParty.failure()),
        })
        .collect();
    let rates = plan
        .rates
        .iter()
        .map(|rate| RateFacts {
            name: rate.name.clone(),
            description: rate.description.clone(),
            charged: condition(&rate.charged),
            base: condition(&rate.base),
            per: rate.per.clone(),
            by: rate.by.clone(),
            contracted: rate
                .contracted
                .iter()
                .map(|(when, rate)| ExpectedValue {
                    when: when.clone(),
                    expect: percent(*rate),
                })
                .collect(),
            default: rate.default.map(percent),
            sign: word(&rate.sign),
            rounding: word(&rate.rounding),
            tolerance: tolerances(&rate.tolerance),
            variance: Kind::RateMismatch.as_str().to_owned(),
            failure: Kind::RateMismatch.failure().to_string(),
            owner: owner(Kind::RateMismatch.failure()),
        })
        .collect();
    let summary = reconcile_summary(rec);
    let outcome = summary.lines().last().unwrap_or_default().to_owned();
    let samples = workspace
        .tests
        .iter()
        .filter(|suite| suite.spec.flow == rec.name)
        .flat_map(|suite| suite.spec.cases.iter())
        .map(|case| Sample {
            case: case.name.clone(),
            input: None,
            output: None,
            dead_letter: None,
            alert: None,
            statement: case.input.clone(),
            ledger: case.ledger.clone(),
            variances: Some(
                case.expect
                    .variances
                    .iter()
                    .flatten()
                    .filter_map(|v| serde_json::to_value(v).ok())
                    .collect(),
            ),
        })
        .collect();
    FlowFacts {
        name: rec.name.clone(),
        kind: FlowKind::Reconcile,
        file: rec.file.display().to_string(),
        object: rec.object.clone(),
        pattern: word(&rec.pattern),
        trigger: trigger_words(&rec.trigger),
        latency: word(&rec.latency),
        from: rec.statement.system.clone(),
        to: None,
        acknowledge: None,
        summary,
        idempotency_key: None,
        mapping: Vec::new(),
        filters: Vec::new(),
        guard: None,
        enrichments: Vec::new(),
        split: None,
        deadline: None,
        retry: None,
        freshness: None,
        max_reject_rate: None,
        failures: failure_facts(&rec.failures),
        samples,
        reconcile: Some(ReconcileFacts {
            statement: side(&rec.statement),
            ledger: side(&rec.ledger),
            key: pair(&plan.key),
            cycle: pair(&plan.cycle),
            amount: pair(&plan.amount),
            currency: pair(&plan.currency),
            ledger_line: plan.ledger_line.clone(),
            strategy: word(&plan.strategy),
            strategy_words: strategy_words(plan.strategy).to_owned(),
            tolerance: tolerances(&plan.tolerance),
            tolerance_words: tolerance_words(&plan.tolerance, "Amounts"),
            date_window: plan.date.as_ref().map(|d| DateWindowFacts {
                statement: d.statement.clone(),
                ledger: d.ledger.clone(),
                window: human(d.window),
            }),
            line_date: plan.line_date.as_ref().map(|d| PairFacts {
                statement: d.statement.clone(),
                ledger: d.ledger.clone().unwrap_or_default(),
            }),
            rules,
            rates,
            outcome,
        }),
    }
}

fn tolerances(tolerance: &Tolerance) -> Vec<ToleranceFacts> {
    tolerance
        .by_currency
        .iter()
        .map(|(currency, amount)| ToleranceFacts {
            currency: currency.clone(),
            amount: amount.to_string(),
        })
        .chain(tolerance.default.map(|amount| ToleranceFacts {
            currency: "default".to_owned(),
            amount: amount.to_string(),
        }))
        .collect()
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
