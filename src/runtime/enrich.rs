//! Enrichment calls at run time: for each record of a batch, the flow's `enrich:` requests are
//! rendered over the record, sent through the HTTP connector's client (one client per
//! enrichment per run), retried on the runtime's clock, and their answers merged into the
//! record as named fields — after `lookup:`, before `where:`, the contract and the mapping.
//!
//! A rendered request is sent once per run: records (or legs) that render the same request
//! share one answer, failures included, from the run's cache. A request that fails for good
//! gives its records a [`Verdict`] by the enrichment's `on_failure`: an `enrichment-failed`
//! dead letter, a counted skip, or the record going on without the field. This module never
//! settles a record itself; the engine applies the verdicts where it admits records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use super::clock::Clock;
use super::events::{EnrichmentCalled, EnrichmentOutcome, FlowEvents};
use super::record::Rejection;
use crate::connectors::http::lookup::{HttpLookup, LookupRequest};
use crate::connectors::{Batch, ConnectorError};
use crate::mapping::Escape;
use crate::spec::enrich::{EnrichPlan, OnEnrichFailure};
use crate::spec::model::{FailureMode, Workspace};

/// What an enrichment failure does to a record (records without one go on as usual).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Skip the record and count it as filtered; the reason, for the event.
    Skip(String),
    /// Dead-letter the record as `enrichment-failed`.
    DeadLetter(String),
}

impl Verdict {
    /// The rejection a dead-letter verdict makes.
    pub fn rejection(error: &str) -> Rejection {
        Rejection {
            mode: FailureMode::EnrichmentFailed,
            reason: "enrichment_failed".into(),
            error: error.to_owned(),
        }
    }
}

/// An enrichment that cannot be set up, or records it cannot read.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// The system is not an HTTP system, or its client cannot be built.
    #[error("enrich.{field}: system `{system}`: {message}")]
    Open {
        /// The enrichment.
        field: String,
        /// Its system.
        system: String,
        /// Why.
        message: String,
    },
    /// The source hands over undecoded lines (JSONL files): there is no record to merge into.
    #[error(
        "enrich: needs decoded records, and this source hands over raw JSON lines; read the \
         file as CSV or through an HTTP or PostgreSQL source, or remove `enrich:`"
    )]
    RawLines,
}

/// Answers given to enrichment requests in flow tests, by path (with `?query` when the
/// request has one); a request with no answer gets a 404. Records every request made.
#[derive(Debug, Clone, Default)]
pub struct CannedEnrichment {
    /// By enrichment field, then by path: the status and body answered.
    pub responses: IndexMap<String, IndexMap<String, (u16, Value)>>,
    /// Requests made, in order, by path (with `?query`).
    pub calls: Arc<Mutex<Vec<String>>>,
}

impl CannedEnrichment {
    /// The requests made so far.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }
}

/// Where an enrichment's requests go.
#[derive(Debug, Clone)]
enum Target {
    Http(HttpLookup),
    Canned(CannedEnrichment),
}

/// One enrichment of a run: its plan, its client and its cache.
#[derive(Debug)]
struct Step {
    plan: EnrichPlan,
    target: Target,
    /// Answers of this run by rendered request: a value, or the failure's message.
    cache: Mutex<HashMap<LookupRequest, Result<Value, String>>>,
}

/// The enrichments of one run.
#[derive(Debug, Default)]
pub struct Enricher {
    steps: Vec<Arc<Step>>,
}

impl Enricher {
    /// Opens a client per enrichment of the flow.
    pub fn open(workspace: &Workspace, plans: &[EnrichPlan]) -> Result<Self, EnrichError> {
        let steps = plans
            .iter()
            .map(|plan| {
                let fail = |message: String| EnrichError::Open {
                    field: plan.field.clone(),
                    system: plan.system.clone(),
                    message,
                };
                let settings = match workspace
                    .systems
                    .get(&plan.system)
                    .and_then(|system| system.connector())
                {
                    Some(("http", settings)) => settings,
                    Some((other, _)) => {
                        return Err(fail(format!("is a `{other}` system, not an HTTP one")));
                    }
                    None => return Err(fail("is not declared with one connector".into())),
                };
                let client = HttpLookup::open(settings, &plan.request.as_http())
                    .map_err(|e| fail(e.message))?;
                Ok(Arc::new(Step {
                    plan: plan.clone(),
                    target: Target::Http(client),
                    cache: Mutex::default(),
                }))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { steps })
    }

    /// Answers every enrichment from `canned` instead of its system (flow tests).
    pub fn canned(plans: &[EnrichPlan], canned: &CannedEnrichment) -> Self {
        let steps = plans
            .iter()
            .map(|plan| {
                Arc::new(Step {
                    plan: plan.clone(),
                    target: Target::Canned(canned.clone()),
                    cache: Mutex::default(),
                })
            })
            .collect();
        Self { steps }
    }

    /// Whether the flow has no enrichment.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Enriches every record of `batch` in place; returns the verdict of each record (by
    /// index), `None` for records that go on. At most `concurrency` requests are in flight.
    pub async fn apply(
        &self,
        batch: &mut Batch,
        clock: Clock,
        events: &FlowEvents,
        concurrency: usize,
    ) -> Result<Vec<Option<Verdict>>, EnrichError> {
        let mut verdicts = vec![None; batch.len()];
        if self.steps.is_empty() || batch.is_empty() {
            return Ok(verdicts);
        }
        let Some(mut values) = batch.values_mut() else {
            return Err(EnrichError::RawLines);
        };
        for step in &self.steps {
            // A record a failure has already decided is not called for again.
            let rendered: Vec<Option<Result<LookupRequest, String>>> = values
                .iter()
                .zip(&verdicts)
                .map(|(value, verdict)| verdict.is_none().then(|| render(&step.plan, value)))
                .collect();
            // Each request not cached yet, once, in the order records ask for it.
            let mut todo = Vec::new();
            {
                let cache = lock(&step.cache);
                let mut asked = std::collections::HashSet::new();
                for request in rendered.iter().flatten().flatten() {
                    if !cache.contains_key(request) && asked.insert(request) {
                        todo.push(request.clone());
                    }
                }
            }
            let fetched = fetch_all(step, todo, clock, events, concurrency.max(1)).await;
            let mut cache = lock(&step.cache);
            // The first record of each request fetched now paid for the call; every other
            // record answered is a cache hit.
            let mut unpaid: std::collections::HashSet<LookupRequest> =
                fetched.iter().map(|(request, _)| request.clone()).collect();
            cache.extend(fetched);
            for (index, request) in rendered.into_iter().enumerate() {
                let Some(request) = request else { continue };
                let answer = match request {
                    Err(error) => Err(error),
                    Ok(request) => {
                        let answer = cache.get(&request).cloned().unwrap_or_else(|| {
                            Err("no answer was recorded for this request (a bug)".into())
                        });
                        if !unpaid.remove(&request) {
                            events.emit(EnrichmentCalled {
                                enrichment: &step.plan.field,
                                outcome: EnrichmentOutcome::CacheHit,
                                url: &request.path,
                                error: None,
                            });
                        }
                        answer.and_then(|body| pick(&step.plan, body))
                    }
                };
                let Some(value) = values.get_mut(index) else {
                    continue;
                };
                match answer {
                    Ok(found) => {
                        if let Value::Object(fields) = &mut **value {
                            fields.insert(step.plan.field.clone(), found);
                        }
                    }
                    Err(error) => {
                        let error = format!("enrich.{}: {error}", step.plan.field);
                        verdicts[index] = match step.plan.on_failure {
                            OnEnrichFailure::DeadLetter => Some(Verdict::DeadLetter(error)),
                            OnEnrichFailure::Skip => Some(Verdict::Skip(error)),
                            OnEnrichFailure::Continue => None,
                        };
                    }
                }
            }
        }
        Ok(verdicts)
    }
}

/// Renders an enrichment's request over one record.
fn render(plan: &EnrichPlan, record: &Value) -> Result<LookupRequest, String> {
    let path = plan
        .path
        .render(record, Escape::Url)
        .map_err(|e| format!("request path: {e}"))?;
    let each = |what: &str, pairs: &[(String, crate::mapping::CompiledTemplate)]| {
        pairs
            .iter()
            .map(|(name, template)| {
                template
                    .render(record, Escape::None)
                    .map(|value| (name.clone(), value))
                    .map_err(|e| format!("request {what} `{name}`: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()
    };
    Ok(LookupRequest {
        method: plan.method,
        path,
        query: each("query", &plan.query)?,
        headers: each("header", &plan.headers)?,
    })
}

/// The part of an answer merged into the record: the whole body, or what `records` points at.
fn pick(plan: &EnrichPlan, body: Value) -> Result<Value, String> {
    match &plan.records {
        None => Ok(body),
        Some(pointer) => body
            .pointer(pointer)
            .cloned()
            .ok_or_else(|| format!("the response has nothing at {pointer}")),
    }
}

/// Sends each request (retried on its policy), at most `concurrency` at once; returns the
/// answers in any order.
async fn fetch_all(
    step: &Arc<Step>,
    requests: Vec<LookupRequest>,
    clock: Clock,
    events: &FlowEvents,
    concurrency: usize,
) -> Vec<(LookupRequest, Result<Value, String>)> {
    let mut answers = Vec::with_capacity(requests.len());
    let mut queue = requests.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < concurrency {
            let Some(request) = queue.next() else { break };
            let (step, events) = (Arc::clone(step), events.clone());
            running.spawn(async move {
                let answer = call(&step, &request, clock, &events).await;
                (request, answer)
            });
        }
        match running.join_next().await {
            Some(Ok(answer)) => answers.push(answer),
            // A panicked call is a bug; its records get no answer and are dead-lettered
            // (or skipped) by their rule rather than lost.
            Some(Err(err)) => tracing::error!(error = %err, "Enrichment call panicked."),
            None => break,
        }
    }
    answers
}

/// Sends one request until it is answered, refused (4xx), or its retry window closes.
async fn call(
    step: &Step,
    request: &LookupRequest,
    clock: Clock,
    events: &FlowEvents,
) -> Result<Value, String> {
    let plan = &step.plan;
    let url = match &step.target {
        Target::Http(client) => client.url(request),
        Target::Canned(_) => request.path.clone(),
    };
    let emit = |outcome, error: Option<&str>| {
        events.emit(EnrichmentCalled {
            enrichment: &plan.field,
            outcome,
            url: &url,
            error,
        });
    };
    let mut first_failure: Option<i64> = None;
    let mut failures = 0u32;
    loop {
        emit(EnrichmentOutcome::Called, None);
        let failure = match send(&step.target, &plan.field, request).await {
            Ok(body) => return Ok(body),
            Err(failure) => failure,
        };
        if !failure.retryable {
            emit(EnrichmentOutcome::Failed, Some(&failure.message));
            return Err(failure.message);
        }
        failures += 1;
        let now = clock.now_ms();
        let first = *first_failure.get_or_insert(now);
        let elapsed = Duration::from_millis((now - first).max(0) as u64);
        let Some(delay) =
            super::retry::next_attempt(&plan.retry, failures, elapsed, failure.retry_after)
        else {
            let error = format!(
                "{} (still failing {}s after the first failure, {failures} attempts)",
                failure.message,
                elapsed.as_secs()
            );
            emit(EnrichmentOutcome::Failed, Some(&error));
            return Err(error);
        };
        emit(EnrichmentOutcome::Retried, Some(&failure.message));
        clock.sleep(delay).await;
    }
}

/// One attempt.
async fn send(
    target: &Target,
    field: &str,
    request: &LookupRequest,
) -> Result<Value, ConnectorError> {
    match target {
        Target::Http(client) => client.fetch(request).await,
        Target::Canned(canned) => {
            let mut at = request.path.clone();
            if !request.query.is_empty() {
                let query: Vec<String> = request
                    .query
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect();
                at = format!("{at}?{}", query.join("&"));
            }
            lock(&canned.calls).push(at.clone());
            let answer = canned.responses.get(field).and_then(|by| by.get(&at));
            match answer {
                Some((status, body)) if (200..300).contains(status) => Ok(body.clone()),
                Some((status, body)) => Err(ConnectorError::from_status(
                    *status,
                    None,
                    &body.to_string(),
                )),
                None => Err(ConnectorError::from_status(
                    404,
                    None,
                    "no response given for this request in the test case",
                )),
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::BatchRecords;
    use crate::runtime::events::Observer;
    use crate::spec::enrich::EnrichConfig;

    fn plans(on_failure: &str) -> Vec<EnrichPlan> {
        let config: EnrichConfig = serde_json::from_value(serde_json::json!({
            "system": "m",
            "request": { "path": "/orders/{{order_id}}/items" },
            "records": "/items",
            "retry": { "initial": "1s", "window": "1m" },
            "on_failure": on_failure,
        }))
        .unwrap();
        let mut enrich = IndexMap::new();
        enrich.insert("items".to_owned(), config);
        EnrichPlan::compile_all(&enrich, &Default::default()).unwrap()
    }

    fn batch(ids: &[&str]) -> Batch {
        Batch {
            records: BatchRecords::Values(
                ids.iter()
                    .map(|id| serde_json::json!({ "order_id": id }))
                    .collect(),
            ),
            position: Value::Null,
        }
    }

    fn canned() -> CannedEnrichment {
        let mut by_path = IndexMap::new();
        by_path.insert(
            "/orders/A/items".to_owned(),
            (200, serde_json::json!({ "items": [{ "sku": "x" }] })),
        );
        by_path.insert("/orders/B/items".to_owned(), (500, Value::Null));
        let mut responses = IndexMap::new();
        responses.insert("items".to_owned(), by_path);
        CannedEnrichment {
            responses,
            calls: Arc::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn merges_caches_and_decides_failures_by_rule() {
        let canned = canned();
        let enricher = Enricher::canned(&plans("dead-letter"), &canned);
        let observer = Observer::default();
        let events = observer.flow("f");
        let mut batch = batch(&["A", "A", "C", "B"]);
        let verdicts = enricher
            .apply(&mut batch, Clock::virtual_now(), &events, 4)
            .await
            .unwrap();
        let values = batch.values_mut().unwrap();
        assert_eq!(values[0]["items"][0]["sku"], "x");
        assert_eq!(values[1]["items"][0]["sku"], "x");
        assert_eq!(verdicts[0], None);
        assert_eq!(verdicts[1], None);
        assert!(
            matches!(&verdicts[2], Some(Verdict::DeadLetter(e)) if e.contains("404")),
            "{verdicts:?}"
        );
        assert!(matches!(&verdicts[3], Some(Verdict::DeadLetter(e)) if e.contains("500")));
        let calls = canned.calls();
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.ends_with("/orders/A/items"))
                .count(),
            1,
            "the repeated request is answered from the cache: {calls:?}"
        );
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.ends_with("/orders/C/items"))
                .count(),
            1,
            "a 404 is not retried: {calls:?}"
        );
        assert!(
            calls
                .iter()
                .filter(|c| c.ends_with("/orders/B/items"))
                .count()
                > 2,
            "a 500 is retried until the window closes: {calls:?}"
        );
        let metric = |outcome: &str| {
            observer.metrics().counter(
                &crate::metrics::catalog::ENRICHMENT_CALLS,
                &[("flow", "f"), ("enrichment", "items"), ("outcome", outcome)],
            )
        };
        assert_eq!(metric("cache_hit"), 1.0);
        assert_eq!(metric("failed"), 2.0);
    }

    #[tokio::test(start_paused = true)]
    async fn skip_and_continue() {
        let canned = canned();
        let events = Observer::default().flow("f");
        let mut skipped = batch(&["C"]);
        let verdicts = Enricher::canned(&plans("skip"), &canned)
            .apply(&mut skipped, Clock::virtual_now(), &events, 1)
            .await
            .unwrap();
        assert!(matches!(&verdicts[0], Some(Verdict::Skip(_))));
        let mut continued = batch(&["C"]);
        let verdicts = Enricher::canned(&plans("continue"), &canned)
            .apply(&mut continued, Clock::virtual_now(), &events, 1)
            .await
            .unwrap();
        assert_eq!(verdicts[0], None);
        assert!(continued.values_mut().unwrap()[0].get("items").is_none());
    }

    #[tokio::test]
    async fn raw_lines_are_refused() {
        let mut lines = Batch {
            records: BatchRecords::Lines {
                buf: b"{}".to_vec(),
                spans: vec![(0, 2)],
                first_line: 1,
            },
            position: Value::Null,
        };
        let enricher = Enricher::canned(&plans("skip"), &canned());
        let events = Observer::default().flow("f");
        let result = enricher.apply(&mut lines, Clock::System, &events, 1).await;
        assert!(matches!(result, Err(EnrichError::RawLines)));
    }
}
