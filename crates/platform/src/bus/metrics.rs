//! Delivery metrics per rule, shared by the backends so that `/metrics`
//! reads the same whichever carries the events.

use ecom_runtime::metrics::{counter, gauge, Counter, Gauge};
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
