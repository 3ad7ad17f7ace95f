//! A small Prometheus registry: counters, gauges and fixed-bucket histograms keyed by metric
//! name and label values, rendered in the text exposition format. It owns no metric names:
//! those are constants in [`super::events`], and labels are bounded by construction (flow,
//! failure mode, owner, outcome; never a record ID).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

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

#[derive(Debug, Default)]
struct Registry {
    help: BTreeMap<&'static str, (&'static str, Kind)>,
    counters: BTreeMap<(&'static str, Labels), f64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Count per bucket (not cumulative); the last slot is `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Metrics {
    /// Adds `value` to a counter.
    pub fn count(&self, name: &'static str, help: &'static str, labels: Labels, value: u64) {
        let mut registry = self.lock();
        registry.help.insert(name, (help, Kind::Counter));
        *registry.counters.entry((name, labels)).or_default() += value as f64;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        let mut registry = self.lock();
        registry.help.insert(name, (help, Kind::Gauge));
        registry.gauges.insert((name, labels), value);
    }

    /// Declares a gauge so it is listed (with `HELP` and `TYPE`) even without series.
    pub fn declare_gauge(&self, name: &'static str, help: &'static str) {
        self.lock().help.insert(name, (help, Kind::Gauge));
    }

    /// Removes every series of a gauge (before setting it afresh from the store).
    pub fn clear_gauge(&self, name: &'static str) {
        self.lock().gauges.retain(|(n, _), _| *n != name);
    }

    /// Records one observation (seconds) in a histogram.
    pub fn observe(&self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        let mut registry = self.lock();
        registry.help.insert(name, (help, Kind::Histogram));
        let histogram = registry
            .histograms
            .entry((name, labels))
            .or_insert_with(|| Histogram {
                buckets: vec![0; BUCKETS.len() + 1],
                ..Histogram::default()
            });
        let slot = BUCKETS
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(BUCKETS.len());
        histogram.buckets[slot] += 1;
        histogram.sum += value;
        histogram.count += 1;
    }

    /// The value of a counter series (0 when never counted).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.lock()
            .counters
            .iter()
            .find(|((n, l), _)| *n == name && same_labels(l, labels))
            .map(|(_, v)| *v)
            .unwrap_or(0.0)
    }

    /// The label sets a counter has been counted under.
    pub fn counter_series(&self, name: &str) -> Vec<(Labels, f64)> {
        self.lock()
            .counters
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|((_, l), v)| (l.clone(), *v))
            .collect()
    }

    /// Renders every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let registry = self.lock();
        let mut out = String::new();
        for (name, (help, kind)) in &registry.help {
            let kind_name = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind_name}");
            match kind {
                Kind::Counter | Kind::Gauge => {
                    let series = if *kind == Kind::Counter {
                        &registry.counters
                    } else {
                        &registry.gauges
                    };
                    for ((_, labels), value) in series.iter().filter(|((n, _), _)| n == name) {
                        let _ = writeln!(
                            out,
                            "{name}{} {}",
                            render_labels(labels, None),
                            number(*value)
                        );
                    }
                }
                Kind::Histogram => {
                    for ((_, labels), histogram) in
                        registry.histograms.iter().filter(|((n, _), _)| n == name)
                    {
                        let mut cumulative = 0;
                        for (index, count) in histogram.buckets.iter().enumerate() {
                            cumulative += count;
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
                        let _ = writeln!(out, "{name}_sum{plain} {}", number(histogram.sum));
                        let _ = writeln!(out, "{name}_count{plain} {}", histogram.count);
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
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let metrics = Metrics::default();
        let flow = || vec![("flow", "offers".to_owned())];
        metrics.count("sy_received_total", "Records read.", flow(), 3);
        metrics.count("sy_received_total", "Records read.", flow(), 2);
        metrics.set(
            "sy_open",
            "Open letters.",
            vec![("flow", "a\"b".into())],
            1.5,
        );
        metrics.observe("sy_seconds", "Run time.", flow(), 0.003);
        metrics.observe("sy_seconds", "Run time.", flow(), 400.0);
        let text = metrics.render();
        assert!(
            text.contains(
                "# TYPE sy_received_total counter\nsy_received_total{flow=\"offers\"} 5\n"
            ),
            "{text}"
        );
        assert!(text.contains("sy_open{flow=\"a\\\"b\"} 1.5\n"), "{text}");
        assert!(text.contains("# TYPE sy_seconds histogram\n"), "{text}");
        assert!(
            text.contains("sy_seconds_bucket{flow=\"offers\",le=\"0.001\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("sy_seconds_bucket{flow=\"offers\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("sy_seconds_bucket{flow=\"offers\",le=\"300\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("sy_seconds_bucket{flow=\"offers\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("sy_seconds_count{flow=\"offers\"} 2\n"),
            "{text}"
        );
        assert_eq!(
            metrics.counter("sy_received_total", &[("flow", "offers")]),
            5.0
        );
    }

    #[test]
    fn cleared_gauges_disappear() {
        let metrics = Metrics::default();
        metrics.set("g", "A gauge.", vec![("flow", "x".into())], 1.0);
        metrics.clear_gauge("g");
        assert!(!metrics.render().contains("g{flow"));
    }
}
