//! Delivery metrics per rule, shared by the backends so that `/metrics`
//! reads the same whichever carries the events.

use ecom_runtime::metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, DURATION_BUCKETS};
use std::sync::Arc;

/// The counters and gauges of one rule.
#[derive(Clone)]
pub struct RuleMetrics {
    /// Events its handler completed.
    pub delivered: Arc<Counter>,
    /// Failed attempts that will be tried again.
    pub retried: Arc<Counter>,
    /// Events moved to its dead-letter queue.
    pub dead_lettered: Arc<Counter>,
    /// Deliveries waiting (due now or later).
    pub backlog: Arc<Gauge>,
    /// Age in milliseconds of the oldest waiting delivery (0 when none).
    pub lag_ms: Arc<Gauge>,
}

impl RuleMetrics {
    /// The metrics of `rule`, created on first use.
    pub fn new(rule: &str) -> RuleMetrics {
        let labels = [("rule", rule)];
        RuleMetrics {
            delivered: counter(
                "ecom_bus_delivered_total",
                "Events a rule's handler completed.",
                &labels,
            ),
            retried: counter(
                "ecom_bus_retried_total",
                "Failed deliveries scheduled for another attempt.",
                &labels,
            ),
            dead_lettered: counter(
                "ecom_bus_dead_lettered_total",
                "Events moved to a rule's dead-letter queue.",
                &labels,
            ),
            backlog: gauge("ecom_bus_backlog", "Deliveries waiting for a rule.", &labels),
            lag_ms: gauge(
                "ecom_bus_lag_milliseconds",
                "Age of the oldest delivery waiting for a rule.",
                &labels,
            ),
        }
    }
}

/// How long a rule's events wait to be handled and how long its handler
/// takes, as histograms (`ecom_bus_delivery_latency_seconds{rule}`: from
/// the event's time to the start of an attempt; `ecom_bus_handler_duration_seconds{rule, outcome}`).
pub struct HandlerTiming {
    latency: Histogram,
    ok: Histogram,
    failed: Histogram,
}

impl HandlerTiming {
    /// The histograms of `rule`.
    pub fn new(rule: &str) -> HandlerTiming {
        let duration = |outcome: &str| {
            histogram(
                "ecom_bus_handler_duration_seconds",
                "Time a rule's handler took for one attempt, by outcome (ok or error).",
                &[("rule", rule), ("outcome", outcome)],
                DURATION_BUCKETS,
            )
        };
        HandlerTiming {
            latency: histogram(
                "ecom_bus_delivery_latency_seconds",
                "Time from an event's publication to the start of an attempt to handle it, per rule.",
                &[("rule", rule)],
                LATENCY_BUCKETS,
            ),
            ok: duration("ok"),
            failed: duration("error"),
        }
    }

    /// An attempt at `event` starts.
    pub fn started(&self, event: &crate::Event) {
        let waited = ecom_model::Timestamp::now().unix_micros() - event.time.unix_micros();
        // A clock step between processes can make it negative: count it as 0.
        self.latency.observe(waited.max(0) as f64 / 1_000_000.0);
    }

    /// The attempt ended after `took`.
    pub fn finished(&self, took: std::time::Duration, ok: bool) {
        if ok {
            self.ok.observe_duration(took);
        } else {
            self.failed.observe_duration(took);
        }
    }
}

/// Delivery latency buckets, in seconds: 1 ms to 10 minutes (retries wait).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];
