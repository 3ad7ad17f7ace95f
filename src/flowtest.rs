//! Flow tests: the cases declared in a workspace's `tests/*.yaml`, run through the real
//! runtime (contract, dedup, ownership, mapping, retry, dead letters, alert outbox) with the
//! source replaced by the case's input records and the sink by a recorder that injects the
//! case's faults. Each case runs on a fresh in-memory store and a virtual clock, so a
//! 30-minute retry window takes milliseconds.

mod reconcile;
mod source_pages;

use std::fmt::Write as _;

use serde_json::Value;

use crate::connectors::http::HttpToConfig;
use crate::connectors::recorder::{PlannedFault, RecorderSink};
use crate::mapping::{CompiledTemplate, Escape};
use crate::runtime::{Clock, FlowRun, RunOptions, SinkOverride, SourceOverride};
use crate::spec::model::Workspace;
use crate::spec::raw::{ExpectedAcknowledgement, ExpectedAlert, ExpectedDeadLetter, TestCase};
use crate::store::{DeadLetterFilter, Store};

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The test file, relative to the workspace.
    pub file: String,
    /// The flow.
    pub flow: String,
    /// The case's name.
    pub name: String,
    /// Differences between expected and actual outcomes; empty when the case passed.
    pub failures: Vec<String>,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every case of every test file of `workspace`, optionally only those whose flow or
/// name contains `filter`.
pub fn run_all(workspace: &Workspace, filter: Option<&str>) -> Vec<CaseResult> {
    let mut results = Vec::new();
    for suite in &workspace.tests {
        for case in &suite.spec.cases {
            let selected =
                filter.is_none_or(|f| suite.spec.flow.contains(f) || case.name.contains(f));
            if !selected {
                continue;
            }
            let failures = match run_case(workspace, &suite.spec.flow, case) {
                Ok(failures) => failures,
                Err(err) => vec![format!("the case could not run: {err:#}")],
            };
            results.push(CaseResult {
                file: suite.file.display().to_string(),
                flow: suite.spec.flow.clone(),
                name: case.name.clone(),
                failures,
            });
        }
    }
    results
}

/// Runs one case and lists how its outcome differs from what it expects.
pub fn run_case(workspace: &Workspace, flow: &str, case: &TestCase) -> anyhow::Result<Vec<String>> {
    if workspace.reconciliations.contains_key(flow) {
        return reconcile::run_case(workspace, flow, case);
    }
    // Scripted source pages travel over loopback: a paused clock would jump to the request
    // timeout while a response is in flight, so those cases run on real time.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(case.source_pages.is_none())
        .build()?;
    runtime.block_on(async {
        let store = Store::in_memory()?;
        let faults = case
            .faults
            .iter()
            .map(|f| {
                Ok(PlannedFault {
                    status: f.status,
                    times: f.times.unwrap_or(1),
                    retry_after: f.retry_after,
                    lasts_ms: f
                        .for_duration
                        .as_deref()
                        .map(crate::spec::parse_duration)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("fault `for`: {e}"))?
                        .map(|d| d.as_millis() as i64),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let recorder = RecorderSink::new(faults);
        let acks = RecorderSink::new(Vec::new());
        for xref in &case.cross_references {
            let xref = crate::store::CrossReference {
                object: xref.object.clone(),
                system: xref.system.clone(),
                external_id: xref.id.clone(),
                record_key: xref.key.clone(),
            };
            store.put_xref(&xref, "test-setup").await?;
        }
        for prior in &case.outcomes {
            crate::runtime::guard::seed_outcome(&store, &prior.flow, prior.outcome, &prior.key)
                .await?;
        }
        let clock = match &case.now {
            Some(now) => Clock::Virtual {
                base_ms: now
                    .parse::<jiff::Timestamp>()
                    .map_err(|e| anyhow::anyhow!("now: {now:?} is not an RFC 3339 time: {e}"))?
                    .as_millisecond(),
                start: tokio::time::Instant::now(),
            },
            None => Clock::virtual_now(),
        };
        let options = RunOptions {
            clock,
            batch_size: 1_000,
            progress: false,
            concurrency: 1,
            stop: None,
            deadlines: None,
            observer: crate::runtime::Observer::default(),
            intake: false,
        };
        let canned = crate::runtime::enrich::CannedEnrichment {
            responses: case
                .enrich
                .iter()
                .map(|(field, by_path)| {
                    let answers = by_path
                        .iter()
                        .map(|(path, answer)| (path.clone(), (answer.status, answer.body.clone())))
                        .collect();
                    (field.clone(), answers)
                })
                .collect(),
            calls: std::sync::Arc::default(),
        };
        let scripted = match &case.source_pages {
            Some(pages) => Some(source_pages::ScriptedSource::start(pages).await?),
            None => None,
        };
        let mut pointed = None;
        if let Some(scripted) = &scripted {
            let mut copy = workspace.clone();
            let from = copy
                .flows
                .get_mut(flow)
                .map(|f| &mut f.from.system_settings)
                .filter(|settings| settings.get("base_url").is_some())
                .ok_or_else(|| {
                    anyhow::anyhow!("source_pages needs a flow whose source is an HTTP system")
                })?;
            from["base_url"] = Value::String(scripted.base_url());
            // The scripted server stands for the API and asks for no credential; the flow's
            // paging, retries and mapping are what a case tests.
            if let Some(settings) = from.as_object_mut() {
                settings.remove("auth");
            }
            pointed = Some(copy);
        }
        let workspace = pointed.as_ref().unwrap_or(workspace);
        let source = scripted
            .is_none()
            .then(|| SourceOverride(case.input.clone()));
        let run = FlowRun::new(
            workspace,
            flow,
            store.clone(),
            options,
            source,
            Some(SinkOverride {
                sink: recorder.clone(),
                acks: acks.clone(),
            }),
        )
        .await?
        .with_enrichment(&canned);
        let mut failures = Vec::new();
        // A run that stops with an error is an outcome a case may expect (`stopped`).
        let (report, stopped) = match (run.run().await, &case.expect.stopped) {
            (Ok(report), _) => {
                let stopped = report.stopped_early.clone();
                (report, stopped)
            }
            (Err(err), Some(_)) => (Default::default(), Some(err.to_string())),
            (Err(err), None) => return Err(err.into()),
        };
        if let Some(expected) = &case.expect.stopped {
            let actual = stopped.unwrap_or_default();
            let matches = if expected.is_empty() {
                actual.is_empty()
            } else {
                actual.contains(expected.as_str())
            };
            if !matches {
                failures.push(format!("stopped: expected {expected:?}, got {actual:?}"));
            }
        }
        if let (Some(expected), Some(scripted)) = (case.expect.source_requests, &scripted)
            && expected != scripted.requests()
        {
            failures.push(format!(
                "source requests: expected {expected}, got {}",
                scripted.requests()
            ));
        }
        let delivered: Vec<Value> = recorder.received().into_iter().map(|r| r.body).collect();
        compare_records(&case.expect.delivered, &delivered, &mut failures);
        let letters = store.dead_letters(&DeadLetterFilter::default()).await?;
        compare_dead_letters(&case.expect.dead_letters, &letters, &mut failures);
        let alerts: Vec<(String, String)> = store
            .due_alerts(i64::MAX, 10_000)
            .await?
            .into_iter()
            .map(|a| {
                let failure = a.alert.payload["failure"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                (a.alert.owner, failure)
            })
            .collect();
        compare_alerts(&case.expect.alerts, &alerts, &mut failures);
        if let Some(expected) = &case.expect.acknowledged {
            let actual: Vec<String> = acks
                .received()
                .into_iter()
                .map(|r| r.idempotency_key.trim_start_matches("ack:").to_owned())
                .collect();
            if *expected != actual {
                failures.push(format!(
                    "acknowledged differ:\n  - expected {expected:?}\n  + got      {actual:?}"
                ));
            }
        }
        if let Some(expected) = &case.expect.acknowledgements {
            let path = ack_path_template(workspace, flow);
            let actual: Vec<ActualAck> = acks
                .received()
                .into_iter()
                .map(|r| ActualAck {
                    key: r.idempotency_key.trim_start_matches("ack:").to_owned(),
                    path: path
                        .as_ref()
                        .and_then(|t| t.render(&r.context, Escape::Url).ok()),
                    body: r.body,
                })
                .collect();
            compare_acks(expected, &actual, &mut failures);
        }
        if let Some(expected) = &case.expect.enrichment_calls {
            let actual = canned.calls();
            if *expected != actual {
                failures.push(format!(
                    "enrichment calls differ:\n  - expected {expected:?}\n  + got      {actual:?}"
                ));
            }
        }
        if let Some(expected) = case.expect.duplicates
            && expected != report.duplicates
        {
            failures.push(format!(
                "duplicates: expected {expected}, got {}",
                report.duplicates
            ));
        }
        if let Some(expected) = case.expect.filtered
            && expected != report.filtered
        {
            failures.push(format!(
                "filtered: expected {expected}, got {}",
                report.filtered
            ));
        }
        Ok(failures)
    })
}

/// An acknowledgement call the recorder received.
struct ActualAck {
    key: String,
    path: Option<String>,
    body: Value,
}

/// The path template of the flow's acknowledgement when it goes through HTTP (flow tests
/// record acknowledgements instead of sending them, so the path is rendered here).
fn ack_path_template(workspace: &Workspace, flow: &str) -> Option<CompiledTemplate> {
    let endpoint = &workspace.flows.get(flow)?.acknowledge.as_ref()?.endpoint;
    if endpoint.connector.name() != "http" {
        return None;
    }
    let to: HttpToConfig = serde_json::from_value(endpoint.settings.clone()).ok()?;
    CompiledTemplate::compile(&to.request?.path).ok()
}

/// Compares acknowledgement calls in order, each on the keys the case gives.
fn compare_acks(
    expected: &[ExpectedAcknowledgement],
    actual: &[ActualAck],
    failures: &mut Vec<String>,
) {
    let describe = |key: &str, path: Option<&str>, body: Option<&Value>| {
        let mut text = format!("key {key}");
        if let Some(path) = path {
            let _ = write!(text, ", path {path}");
        }
        if let Some(body) = body {
            let _ = write!(text, ", body {body}");
        }
        text
    };
    let matches = |e: &ExpectedAcknowledgement, a: &ActualAck| {
        e.key.as_ref().is_none_or(|k| *k == a.key)
            && e.path.as_ref().is_none_or(|p| Some(p) == a.path.as_ref())
            && e.body.as_ref().is_none_or(|b| *b == a.body)
    };
    if expected.len() == actual.len() && expected.iter().zip(actual).all(|(e, a)| matches(e, a)) {
        return;
    }
    let mut diff = format!(
        "acknowledgements differ (expected {}, got {}):\n",
        expected.len(),
        actual.len()
    );
    for index in 0..expected.len().max(actual.len()) {
        match (expected.get(index), actual.get(index)) {
            (Some(e), Some(a)) if matches(e, a) => {
                let _ = writeln!(
                    diff,
                    "    {}",
                    describe(&a.key, a.path.as_deref(), Some(&a.body))
                );
            }
            (e, a) => {
                if let Some(e) = e {
                    let key = e.key.as_deref().unwrap_or("(any)");
                    let _ = writeln!(
                        diff,
                        "  - {}",
                        describe(key, e.path.as_deref(), e.body.as_ref())
                    );
                }
                if let Some(a) = a {
                    let _ = writeln!(
                        diff,
                        "  + {}",
                        describe(&a.key, a.path.as_deref(), Some(&a.body))
                    );
                }
            }
        }
    }
    failures.push(diff.trim_end().to_owned());
}

fn compare_records(expected: &[Value], actual: &[Value], failures: &mut Vec<String>) {
    if expected == actual {
        return;
    }
    let mut diff = format!(
        "delivered records differ (expected {}, got {}):\n",
        expected.len(),
        actual.len()
    );
    for index in 0..expected.len().max(actual.len()) {
        match (expected.get(index), actual.get(index)) {
            (Some(e), Some(a)) if e == a => {
                let _ = writeln!(diff, "    {e}");
            }
            (e, a) => {
                if let Some(e) = e {
                    let _ = writeln!(diff, "  - {e}");
                }
                if let Some(a) = a {
                    let _ = writeln!(diff, "  + {a}");
                }
            }
        }
    }
    failures.push(diff.trim_end().to_owned());
}

fn compare_dead_letters(
    expected: &[ExpectedDeadLetter],
    actual: &[crate::store::DeadLetter],
    failures: &mut Vec<String>,
) {
    let describe = |l: &crate::store::DeadLetter| {
        format!(
            "{} (owner {}, action {}): {}",
            l.letter.failure,
            l.letter.owner,
            l.letter.action.as_deref().unwrap_or("-"),
            l.letter.error
        )
    };
    let mut problems = Vec::new();
    if expected.len() != actual.len() {
        problems.push(format!("expected {}, got {}", expected.len(), actual.len()));
    }
    for (index, want) in expected.iter().enumerate() {
        let Some(got) = actual.get(index) else {
            problems.push(format!("  - missing: {}", want.failure));
            continue;
        };
        let action = want.action.and_then(|a| serde_json::to_value(a).ok());
        let matches = got.letter.failure == want.failure
            && want.owner.as_ref().is_none_or(|o| *o == got.letter.owner)
            && action
                .as_ref()
                .is_none_or(|a| a.as_str() == got.letter.action.as_deref())
            && want
                .error_contains
                .as_ref()
                .is_none_or(|t| got.letter.error.contains(t.as_str()));
        if !matches {
            problems.push(format!(
                "  - expected {} (owner {}, action {}{})\n  + got {}",
                want.failure,
                want.owner.as_deref().unwrap_or("any"),
                action.as_ref().and_then(Value::as_str).unwrap_or("any"),
                want.error_contains
                    .as_ref()
                    .map(|t| format!(", error containing {t:?}"))
                    .unwrap_or_default(),
                describe(got)
            ));
        }
    }
    for got in actual.iter().skip(expected.len()) {
        problems.push(format!("  + unexpected: {}", describe(got)));
    }
    if !problems.is_empty() {
        failures.push(format!("dead letters differ: {}", problems.join("\n")));
    }
}

fn compare_alerts(
    expected: &[ExpectedAlert],
    actual: &[(String, String)],
    failures: &mut Vec<String>,
) {
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|a| (a.owner.clone(), a.failure.clone()))
        .collect();
    if want != actual {
        let show = |list: &[(String, String)]| {
            list.iter()
                .map(|(o, f)| format!("{o}/{f}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        failures.push(format!(
            "alerts differ:\n  - expected [{}]\n  + got      [{}]",
            show(&want),
            show(actual)
        ));
    }
}
