//! Metrics for `/metrics`, in Prometheus text format, through the
//! `prometheus` crate (TiKV's client: counters, gauges and histograms with
//! labels, and the text encoder).
//!
//! Services ask for a metric by name, help and label pairs once and keep
//! the handle; counting is one atomic add. The same name and labels always
//! give the same metric, so two services (or two replicas of one rule) can
//! share it. One registry per process, read by [`render`].

use prometheus::core::Collector;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A monotonically increasing count.
#[derive(Debug, Clone)]
pub struct Counter(prometheus::IntCounter);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone)]
pub struct Gauge(prometheus::IntGauge);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.set(v);
    }
    /// Adds `v` (negative to take away).
    pub fn add(&self, v: i64) {
        self.0.add(v);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// A distribution of observed values (durations in seconds, by
/// convention), in cumulative buckets.
#[derive(Debug, Clone)]
pub struct Histogram(prometheus::Histogram);

impl Histogram {
    /// Records one value.
    pub fn observe(&self, v: f64) {
        self.0.observe(v);
    }
    /// Records a duration, in seconds.
    pub fn observe_duration(&self, d: std::time::Duration) {
        self.0.observe(d.as_secs_f64());
    }
    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.0.get_sample_count()
    }
}

/// Buckets for request and handler durations, in seconds: 0.5 ms to 10 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One family: the vector for a name, with its label names fixed by the
/// first caller.
enum Family {
    Counter(IntCounterVec),
    Gauge(IntGaugeVec),
    Histogram(HistogramVec),
    /// The registry refused the name or labels.
    Refused,
}

/// A family and its label names (the `prometheus` crate matches label
/// values by position only, so the names are checked here).
type Entry = (Family, Vec<String>);

struct Metrics {
    registry: Registry,
    families: Mutex<HashMap<String, Entry>>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        registry: Registry::new(),
        families: Mutex::new(HashMap::new()),
    })
}

fn names<'a>(labels: &'a [(&'a str, &'a str)]) -> Vec<&'a str> {
    labels.iter().map(|(k, _)| *k).collect()
}

fn owned(labels: &[(&str, &str)]) -> Vec<String> {
    labels.iter().map(|(k, _)| (*k).to_owned()).collect()
}

fn values<'a>(labels: &'a [(&'a str, &'a str)]) -> Vec<&'a str> {
    labels.iter().map(|(_, v)| *v).collect()
}

/// Registers a new family; a name the registry refuses (a clash, a bad
/// name) leaves the family unregistered: it still counts, it is only not
/// shown. Metrics never fail a request.
fn register(collector: impl Collector + Clone + 'static, name: &str) {
    if let Err(e) = metrics().registry.register(Box::new(collector)) {
        tracing::warn!(metric = name, error = %e, "metric not registered");
    }
}

/// The counter `name{labels}`, created on first use. The same name and
/// labels always give the same counter. A name already used by another
/// kind of metric or with other label names, or not a valid metric name,
/// gives a detached counter (counted, never shown) rather than a panic.
pub fn counter(name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Counter> {
    let mut families = metrics().families.lock().unwrap_or_else(|e| e.into_inner());
    let (family, label_names) = families.entry(name.to_owned()).or_insert_with(|| {
        let family = IntCounterVec::new(Opts::new(name, help), &names(labels))
            .map(|vec| {
                register(vec.clone(), name);
                Family::Counter(vec)
            })
            .unwrap_or(Family::Refused);
        (family, owned(labels))
    });
    let counter = match family {
        Family::Counter(vec) if *label_names == owned(labels) => {
            vec.get_metric_with_label_values(&values(labels)).ok()
        }
        _ => None,
    };
    Arc::new(Counter(counter.unwrap_or_else(|| detached().counter.clone())))
}

/// The gauge `name{labels}`, created on first use (as [`counter`]).
pub fn gauge(name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Gauge> {
    let mut families = metrics().families.lock().unwrap_or_else(|e| e.into_inner());
    let (family, label_names) = families.entry(name.to_owned()).or_insert_with(|| {
        let family = IntGaugeVec::new(Opts::new(name, help), &names(labels))
            .map(|vec| {
                register(vec.clone(), name);
                Family::Gauge(vec)
            })
            .unwrap_or(Family::Refused);
        (family, owned(labels))
    });
    let gauge = match family {
        Family::Gauge(vec) if *label_names == owned(labels) => {
            vec.get_metric_with_label_values(&values(labels)).ok()
        }
        _ => None,
    };
    Arc::new(Gauge(gauge.unwrap_or_else(|| detached().gauge.clone())))
}

/// The histogram `name{labels}` with `buckets`, created on first use (as
/// [`counter`]; the first caller's buckets win).
pub fn histogram(name: &str, help: &str, labels: &[(&str, &str)], buckets: &[f64]) -> Histogram {
    let mut families = metrics().families.lock().unwrap_or_else(|e| e.into_inner());
    let (family, label_names) = families.entry(name.to_owned()).or_insert_with(|| {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let family = HistogramVec::new(opts, &names(labels))
            .map(|vec| {
                register(vec.clone(), name);
                Family::Histogram(vec)
            })
            .unwrap_or(Family::Refused);
        (family, owned(labels))
    });
    let histogram = match family {
        Family::Histogram(vec) if *label_names == owned(labels) => {
            vec.get_metric_with_label_values(&values(labels)).ok()
        }
        _ => None,
    };
    Histogram(histogram.unwrap_or_else(|| detached().histogram.clone()))
}

/// Metrics handed out when a name cannot be used: counted, never shown.
struct Detached {
    counter: prometheus::IntCounter,
    gauge: prometheus::IntGauge,
    histogram: prometheus::Histogram,
}

#[allow(clippy::expect_used)]
fn detached() -> &'static Detached {
    static DETACHED: OnceLock<Detached> = OnceLock::new();
    // Constant, valid names and options: these constructors cannot fail.
    DETACHED.get_or_init(|| Detached {
        counter: prometheus::IntCounter::new("detached", "detached").expect("a valid name"),
        gauge: prometheus::IntGauge::new("detached", "detached").expect("a valid name"),
        histogram: prometheus::Histogram::with_opts(HistogramOpts::new("detached", "detached"))
            .expect("valid options"),
    })
}

/// Every registered metric in Prometheus text exposition format.
pub fn render() -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&metrics().registry.gather(), &mut out) {
        tracing::warn!(error = %e, "cannot encode the metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_prometheus_text() {
        let c = counter("test_things_total", "Things seen.", &[("kind", "a\"b")]);
        c.add(3);
        counter("test_things_total", "Things seen.", &[("kind", "a\"b")]).inc();
        let text = render();
        assert!(text.contains("# TYPE test_things_total counter"), "{text}");
        assert!(text.contains("test_things_total{kind=\"a\\\"b\"} 4"), "{text}");
    }

    #[test]
    fn histograms_render_buckets_sum_and_count() {
        let h = histogram("test_wait_seconds", "Waits.", &[("rule", "r")], DURATION_BUCKETS);
        h.observe(0.003);
        h.observe(2.0);
        let text = render();
        assert!(text.contains("# TYPE test_wait_seconds histogram"), "{text}");
        assert!(
            text.contains("test_wait_seconds_bucket{rule=\"r\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("test_wait_seconds_count{rule=\"r\"} 2"), "{text}");
    }

    #[test]
    fn a_name_used_twice_with_other_labels_or_kinds_never_panics() {
        counter("test_clash_total", "x", &[("a", "1")]).inc();
        counter("test_clash_total", "x", &[("b", "1")]).inc();
        gauge("test_clash_total", "x", &[]).set(3);
        histogram("test_clash_total", "x", &[], DURATION_BUCKETS).observe(1.0);
        counter("not a valid name", "x", &[]).inc();
        let text = render();
        assert!(text.contains("test_clash_total{a=\"1\"} 1"), "{text}");
    }
}
