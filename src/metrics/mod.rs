//! The metric registry: counters, gauges and fixed-bucket histograms keyed by metric and
//! label values, rendered in the Prometheus text exposition format. The metrics themselves
//! are declared once in [`catalog`]; the registry renders every one of them, in that order.
//!
//! Counters and histograms are atomics behind handles ([`Metrics::counter_handle`],
//! [`Metrics::histogram_handle`]): a run resolves its handles once, so counting a record on
//! the hot path is an atomic add, never a lock or an allocation.

pub mod catalog;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;

pub use self::catalog::{Kind, Metric};

/// Label pairs, in the order they are rendered.
pub type Labels = Vec<(&'static str, String)>;

/// Bucket upper bounds (seconds) of every histogram: 1 ms to 5 min.
pub const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The metric registry; shared behind an `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Registry>,
}

/// A counter series: add to it without touching the registry.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

/// A histogram series: observe into it without touching the registry.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<AtomicHistogram>);

#[derive(Debug, Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), Counter>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

#[derive(Debug)]
struct AtomicHistogram {
    /// Count per bucket (not cumulative); the last slot is `+Inf`.
    buckets: Vec<AtomicU64>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl Counter {
    /// Adds `value`.
    pub fn add(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Histogram {
    fn new() -> Self {
        Self(Arc::new(AtomicHistogram {
            buckets: (0..=BUCKETS.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Records one observation (seconds).
    pub fn observe(&self, value: f64) {
        let slot = BUCKETS
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(BUCKETS.len());
        if let Some(bucket) = self.0.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        // Never fails: the closure always returns a value.
        let _ = self
            .0
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

impl Metrics {
    /// The counter series of `metric` with `labels`, created at 0 if new.
    pub fn counter_handle(&self, metric: &'static Metric, labels: Labels) -> Counter {
        debug_assert_eq!(metric.kind, Kind::Counter, "{}", metric.name);
        self.lock()
            .counters
            .entry((metric.name, labels))
            .or_default()
            .clone()
    }

    /// The histogram series of `metric` with `labels`, created empty if new.
    pub fn histogram_handle(&self, metric: &'static Metric, labels: Labels) -> Histogram {
        debug_assert_eq!(metric.kind, Kind::Histogram, "{}", metric.name);
        self.lock()
            .histograms
            .entry((metric.name, labels))
            .or_insert_with(Histogram::new)
            .clone()
    }

    /// Adds `value` to a counter.
    pub fn count(&self, metric: &'static Metric, labels: Labels, value: u64) {
        self.counter_handle(metric, labels).add(value);
    }

    /// Sets a gauge.
    pub fn set(&self, metric: &'static Metric, labels: Labels, value: f64) {
        debug_assert_eq!(metric.kind, Kind::Gauge, "{}", metric.name);
        self.lock().gauges.insert((metric.name, labels), value);
    }

    /// Removes every series of a gauge (before setting it afresh from the store).
    pub fn clear_gauge(&self, metric: &'static Metric) {
        self.lock().gauges.retain(|(n, _), _| *n != metric.name);
    }

    /// Removes the series of a gauge whose label `label` is `value` (one flow's series, set
    /// afresh by its next run, so a series the run no longer has does not linger).
    pub fn clear_gauge_where(&self, metric: &'static Metric, label: &str, value: &str) {
        self.lock().gauges.retain(|(n, labels), _| {
            *n != metric.name || !labels.iter().any(|(k, v)| *k == label && v == value)
        });
    }

    /// Records one observation (seconds) in a histogram.
    pub fn observe(&self, metric: &'static Metric, labels: Labels, value: f64) {
        self.histogram_handle(metric, labels).observe(value);
    }

    /// The value of a counter series (0 when never counted).
    pub fn counter(&self, metric: &Metric, labels: &[(&str, &str)]) -> f64 {
        self.lock()
            .counters
            .iter()
            .find(|((n, l), _)| *n == metric.name && same_labels(l, labels))
            .map(|(_, v)| v.get() as f64)
            .unwrap_or(0.0)
    }

    /// The label sets a counter has been counted under.
    pub fn counter_series(&self, metric: &Metric) -> Vec<(Labels, f64)> {
        self.lock()
            .counters
            .iter()
            .filter(|((n, _), _)| *n == metric.name)
            .map(|((_, l), v)| (l.clone(), v.get() as f64))
            .collect()
    }

    /// Renders every metric of the [catalog](catalog::ALL) in the Prometheus text exposition
    /// format (version 0.0.4).
    pub fn render(&self) -> String {
        let registry = self.lock();
        let mut out = String::new();
        for metric in catalog::ALL {
            let name = metric.name;
            let _ = writeln!(out, "# HELP {name} {}", metric.help);
            let _ = writeln!(out, "# TYPE {name} {}", metric.kind.as_str());
            match metric.kind {
                Kind::Counter => {
                    for ((_, labels), value) in series(&registry.counters, name) {
                        let _ =
                            writeln!(out, "{name}{} {}", render_labels(labels, None), value.get());
                    }
                }
                Kind::Gauge => {
                    for ((_, labels), value) in series(&registry.gauges, name) {
                        let _ = writeln!(
                            out,
                            "{name}{} {}",
                            render_labels(labels, None),
                            number(*value)
                        );
                    }
                }
                Kind::Histogram => {
                    for ((_, labels), histogram) in series(&registry.histograms, name) {
                        render_histogram(&mut out, name, labels, histogram);
                    }
                }
            }
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Counters stay meaningful after a panic elsewhere; keep serving them.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A router serving `GET /metrics` from `metrics` alone (what `switchyard run
/// --metrics-listen` exposes; the daemon adds its store-derived gauges on top).
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(metrics)
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    exposition(metrics.render())
}

/// `text` as a Prometheus exposition response.
pub fn exposition(text: String) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
}

fn series<'a, V>(
    map: &'a BTreeMap<(&'static str, Labels), V>,
    name: &'a str,
) -> impl Iterator<Item = (&'a (&'static str, Labels), &'a V)> {
    map.iter().filter(move |((n, _), _)| *n == name)
}

fn render_histogram(out: &mut String, name: &str, labels: &Labels, histogram: &Histogram) {
    let mut cumulative = 0;
    for (index, count) in histogram.0.buckets.iter().enumerate() {
        cumulative += count.load(Ordering::Relaxed);
        let le = BUCKETS
            .get(index)
            .map(|b| number(*b))
            .unwrap_or_else(|| "+Inf".into());
        let _ = writeln!(
            out,
            "{name}_bucket{} {cumulative}",
            render_labels(labels, Some(&le))
        );
    }
    let plain = render_labels(labels, None);
    let sum = f64::from_bits(histogram.0.sum.load(Ordering::Relaxed));
    let _ = writeln!(out, "{name}_sum{plain} {}", number(sum));
    let _ = writeln!(out, "{name}_count{plain} {cumulative}");
}

fn same_labels(labels: &Labels, wanted: &[(&str, &str)]) -> bool {
    labels.len() == wanted.len()
        && labels
            .iter()
            .zip(wanted)
            .all(|((k, v), (wk, wv))| k == wk && v == wv)
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::catalog::{DEAD_LETTERS_OPEN, RECORDS_RECEIVED, RUN_DURATION};
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let metrics = Metrics::default();
        let flow = || vec![("flow", "offers".to_owned())];
        metrics.count(&RECORDS_RECEIVED, flow(), 3);
        metrics.counter_handle(&RECORDS_RECEIVED, flow()).add(2);
        let labels = vec![
            ("flow", "a\"b".into()),
            ("failure", "x".into()),
            ("owner", "o".into()),
        ];
        metrics.set(&DEAD_LETTERS_OPEN, labels, 1.5);
        metrics.observe(&RUN_DURATION, flow(), 0.003);
        metrics
            .histogram_handle(&RUN_DURATION, flow())
            .observe(400.0);
        let text = metrics.render();
        let received = "# HELP switchyard_records_received_total Records read by a flow.\n\
             # TYPE switchyard_records_received_total counter\n\
             switchyard_records_received_total{flow=\"offers\"} 5\n";
        assert!(text.contains(received), "{text}");
        assert!(
            text.contains(
                "switchyard_dead_letters_open{flow=\"a\\\"b\",failure=\"x\",owner=\"o\"} 1.5\n"
            ),
            "{text}"
        );
        let run = "switchyard_run_duration_seconds";
        assert!(
            text.contains(&format!("# TYPE {run} histogram\n")),
            "{text}"
        );
        for (le, count) in [("0.001", 0), ("0.005", 1), ("300", 1), ("+Inf", 2)] {
            let line = format!("{run}_bucket{{flow=\"offers\",le=\"{le}\"}} {count}\n");
            assert!(text.contains(&line), "{line}: {text}");
        }
        assert!(
            text.contains(&format!("{run}_count{{flow=\"offers\"}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{run}_sum{{flow=\"offers\"}} 400.003\n")),
            "{text}"
        );
        assert_eq!(
            metrics.counter(&RECORDS_RECEIVED, &[("flow", "offers")]),
            5.0
        );
    }

    #[test]
    fn every_defined_metric_is_listed_before_its_first_series() {
        let text = Metrics::default().render();
        for metric in catalog::ALL {
            let line = format!("# TYPE {} {}\n", metric.name, metric.kind.as_str());
            assert!(text.contains(&line), "{line}");
        }
    }

    #[test]
    fn cleared_gauges_disappear() {
        let metrics = Metrics::default();
        metrics.set(&DEAD_LETTERS_OPEN, vec![("flow", "x".into())], 1.0);
        metrics.clear_gauge(&DEAD_LETTERS_OPEN);
        assert!(
            !metrics
                .render()
                .contains("switchyard_dead_letters_open{flow")
        );
        metrics.set(&DEAD_LETTERS_OPEN, vec![("flow", "x".into())], 1.0);
        metrics.set(&DEAD_LETTERS_OPEN, vec![("flow", "y".into())], 2.0);
        metrics.clear_gauge_where(&DEAD_LETTERS_OPEN, "flow", "x");
        let text = metrics.render();
        assert!(!text.contains("{flow=\"x\"}"), "{text}");
        assert!(
            text.contains("switchyard_dead_letters_open{flow=\"y\"} 2\n"),
            "{text}"
        );
    }
}
