//! Counters and gauges in Prometheus text format, for `/metrics`.
//!
//! A deliberately small registry: a metric is a name, a help text and label
//! pairs; counting is one atomic add. Services register their counters once
//! and keep the `Arc` handle.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
}

type Key = (String, Vec<(String, String)>);

#[derive(Default)]
struct Registry {
    help: BTreeMap<String, String>,
    metrics: BTreeMap<Key, Metric>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// The counter `name{labels}`, created on first use. The same name and
/// labels always give the same counter.
pub fn counter(name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Counter> {
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    reg.help
        .entry(name.to_owned())
        .or_insert_with(|| format!("counter|{help}"));
    match reg
        .metrics
        .entry(key(name, labels))
        .or_insert_with(|| Metric::Counter(Arc::default()))
    {
        Metric::Counter(c) => c.clone(),
        // A name registered as a gauge cannot also be a counter; hand out a
        // detached counter rather than panic.
        Metric::Gauge(_) => Arc::default(),
    }
}

/// The gauge `name{labels}`, created on first use.
pub fn gauge(name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Gauge> {
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    reg.help
        .entry(name.to_owned())
        .or_insert_with(|| format!("gauge|{help}"));
    match reg
        .metrics
        .entry(key(name, labels))
        .or_insert_with(|| Metric::Gauge(Arc::default()))
    {
        Metric::Gauge(g) => g.clone(),
        Metric::Counter(_) => Arc::default(),
    }
}

/// Every metric in Prometheus text exposition format.
pub fn render() -> String {
    let reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    let mut last = "";
    for ((name, labels), metric) in &reg.metrics {
        if name != last {
            let (kind, help) = reg
                .help
                .get(name)
                .and_then(|h| h.split_once('|'))
                .unwrap_or(("untyped", ""));
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            last = name;
        }
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(out, "{k}=\"{v}\"");
            }
            out.push('}');
        }
        let value = match metric {
            Metric::Counter(c) => c.get() as i64,
            Metric::Gauge(g) => g.get(),
        };
        let _ = writeln!(out, " {value}");
    }
    out
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
        assert!(text.contains("# TYPE test_things_total counter"));
        assert!(text.contains("test_things_total{kind=\"a\\\"b\"} 4"));
    }
}
