//! The event bus: rules (an EventBridge pattern and a handler), publishing,
//! delivery with retries and dead letters, archive and replay.
//!
//! Services see only [`Bus`]. Which backend carries the events — the
//! embedded one (durable tables in the platform's own database) or NATS
//! JetStream — is chosen by `--bus-url` and hidden behind [`BusBackend`].
//!
//! Guarantees (see `docs/events.md`): publishing is durable once `publish`
//! returns; each rule receives each matching event at least once; there is
//! no global order; handlers make themselves idempotent with
//! [`crate::inbox`].

pub mod memory;
pub mod nats;

use crate::pattern::Pattern;
use crate::Event;
use ecom_model::Timestamp;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a rule runs for each matching event. An `Err` means "retry later";
/// after the last attempt the event goes to the rule's dead-letter queue.
pub type Handler = Arc<dyn Fn(Event) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// A subscription: every event matching `pattern` is delivered to `handler`.
pub struct Rule {
    /// Unique name, `<service>.<what>`, e.g. `payment.on-delivery-completed`.
    pub name: String,
    /// Which events it wants.
    pub pattern: Pattern,
    /// What it does with them.
    pub handler: Handler,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .finish()
    }
}

impl Rule {
    /// A rule from a JSON pattern and an async handler.
    pub fn new<F, Fut>(name: &str, pattern: serde_json::Value, handler: F) -> anyhow::Result<Rule>
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let pattern = Pattern::parse(&pattern).map_err(|e| anyhow::anyhow!("rule {name}: {e}"))?;
        Ok(Rule {
            name: name.to_owned(),
            pattern,
            handler: Arc::new(move |e| Box::pin(handler(e))),
        })
    }
}

/// An event that exhausted its attempts for one rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The rule that failed.
    pub rule: String,
    /// The event.
    pub event: Event,
    /// Attempts made.
    pub attempts: u32,
    /// The last handler error.
    pub last_error: String,
    /// When it was dead-lettered.
    pub failed_at: Timestamp,
}

/// A carrier of events. Implemented by the embedded and NATS backends.
#[async_trait::async_trait]
pub trait BusBackend: Send + Sync {
    /// Stores `events` durably (de-duplicated by id) and routes them to
    /// every rule they match, including rules of services in other
    /// processes.
    async fn publish(&self, events: &[Event]) -> anyhow::Result<()>;
    /// Starts delivering to `rules` until `shutdown`; every event seen is
    /// also sent to `feed` (for the listener and `ecom events tail`).
    async fn start(
        &self,
        rules: Vec<Arc<Rule>>,
        feed: broadcast::Sender<Arc<Event>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>>;
    /// Dead letters of one rule, or of all.
    async fn dead_letters(&self, rule: Option<&str>) -> anyhow::Result<Vec<DeadLetter>>;
    /// Sends dead letters (of one rule, or all) back for delivery; returns how many.
    async fn redrive(&self, rule: Option<&str>) -> anyhow::Result<u64>;
    /// Re-delivers archived events of `[from, to)` matching `rule`; returns how many.
    async fn replay(&self, rule: &str, from: Timestamp, to: Timestamp) -> anyhow::Result<u64>;
}

/// The bus a service publishes to and subscribes on. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    backend: Arc<dyn BusBackend>,
    rules: Arc<Mutex<Vec<Arc<Rule>>>>,
    feed: broadcast::Sender<Arc<Event>>,
}

impl Bus {
    /// A bus over `backend`.
    pub fn new(backend: Arc<dyn BusBackend>) -> Bus {
        let (feed, _) = broadcast::channel(4096);
        Bus {
            backend,
            rules: Arc::default(),
            feed,
        }
    }

    /// Registers a rule; delivery begins with [`Bus::start`]. Names are unique.
    pub fn subscribe(&self, rule: Rule) -> anyhow::Result<()> {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        anyhow::ensure!(
            rules.iter().all(|r| r.name != rule.name),
            "rule {} is registered twice",
            rule.name
        );
        rules.push(Arc::new(rule));
        Ok(())
    }

    /// Publishes events directly (the outbox relay and `ecom events put`
    /// use this; services write to their outbox instead).
    pub async fn publish(&self, events: &[Event]) -> anyhow::Result<()> {
        self.backend.publish(events).await
    }

    /// Every event the bus carries from now on, as it is seen.
    pub fn feed(&self) -> broadcast::Receiver<Arc<Event>> {
        self.feed.subscribe()
    }

    /// Starts delivering to every registered rule until `shutdown`.
    pub async fn start(&self, shutdown: CancellationToken) -> anyhow::Result<JoinHandle<()>> {
        let rules = self.rules.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.backend.start(rules, self.feed.clone(), shutdown).await
    }

    /// Names of the registered rules.
    pub fn rule_names(&self) -> Vec<String> {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// Dead letters of one rule, or of all.
    pub async fn dead_letters(&self, rule: Option<&str>) -> anyhow::Result<Vec<DeadLetter>> {
        self.backend.dead_letters(rule).await
    }

    /// Sends dead letters back for delivery.
    pub async fn redrive(&self, rule: Option<&str>) -> anyhow::Result<u64> {
        self.backend.redrive(rule).await
    }

    /// Re-delivers archived events of a time window to a rule.
    pub async fn replay(&self, rule: &str, from: Timestamp, to: Timestamp) -> anyhow::Result<u64> {
        self.backend.replay(rule, from, to).await
    }
}
