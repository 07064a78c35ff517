//! A bus that lives only in memory: each published event goes to the feed
//! and once to every matching rule, with no retry and no archive. A
//! stand-in while the durable backends are built; not for production.

use super::{BusBackend, DeadLetter, Rule};
use crate::Event;
use ecom_model::Timestamp;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Rules and feed, known once delivery starts.
type Started = (Vec<Arc<Rule>>, broadcast::Sender<Arc<Event>>);

/// See the module documentation.
#[derive(Default)]
pub struct MemoryBus {
    state: Mutex<Option<Started>>,
}

#[async_trait::async_trait]
impl BusBackend for MemoryBus {
    async fn publish(&self, events: &[Event]) -> anyhow::Result<()> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some((rules, feed)) = state else { return Ok(()) };
        for event in events {
            let _ = feed.send(Arc::new(event.clone()));
            let value = event.to_value();
            for rule in rules.iter().filter(|r| r.pattern.matches(&value)) {
                let handler = rule.handler.clone();
                let (event, name) = (event.clone(), rule.name.clone());
                tokio::spawn(async move {
                    if let Err(e) = handler(event).await {
                        tracing::warn!(rule = name, error = %e, "handler failed (memory bus: not retried)");
                    }
                });
            }
        }
        Ok(())
    }

    async fn start(
        &self,
        rules: Vec<Arc<Rule>>,
        feed: broadcast::Sender<Arc<Event>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some((rules, feed));
        Ok(tokio::spawn(async move { shutdown.cancelled().await }))
    }

    async fn dead_letters(&self, _: Option<&str>) -> anyhow::Result<Vec<DeadLetter>> {
        Ok(Vec::new())
    }

    async fn redrive(&self, _: Option<&str>) -> anyhow::Result<u64> {
        Ok(0)
    }

    async fn replay(&self, _: &str, _: Timestamp, _: Timestamp) -> anyhow::Result<u64> {
        anyhow::bail!("the memory bus keeps no archive")
    }
}
