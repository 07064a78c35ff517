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

pub mod embedded;
mod metrics;

pub use metrics::RuleMetrics;
pub mod nats;

use crate::pattern::Pattern;
use crate::{Encoded, Event};
use anyhow::Context as _;
use ecom_contracts::Contract;
use ecom_model::Timestamp;
use ecom_runtime::config::BusSettings;
use futures::future::BoxFuture;
use rand::Rng as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
    /// The pattern as given, kept so that a backend can store the rule and
    /// route events published by other processes (such as the CLI) to it.
    pub pattern_json: serde_json::Value,
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
        let compiled = Pattern::parse(&pattern).map_err(|e| anyhow::anyhow!("rule {name}: {e}"))?;
        let timing = Arc::new(metrics::HandlerTiming::new(name));
        let handler = Arc::new(handler);
        let rule: Arc<str> = Arc::from(name);
        Ok(Rule {
            name: name.to_owned(),
            pattern: compiled,
            pattern_json: pattern,
            // Every backend calls the handler through here, so the timings
            // read alike on the embedded bus and on NATS.
            // So do the handler's spans, children of the span that wrote
            // the event (see `handler_span`).
            handler: Arc::new(move |e: Event| {
                let (handler, timing) = (handler.clone(), timing.clone());
                let span = handler_span(&rule, &e);
                Box::pin(tracing::Instrument::instrument(
                    async move {
                        timing.started(&e);
                        let began = std::time::Instant::now();
                        let outcome = handler(e).await;
                        timing.finished(began.elapsed(), outcome.is_ok());
                        outcome
                    },
                    span,
                ))
            }),
        })
    }
}

impl Rule {
    /// A rule for every event of contract `E`: its pattern is `E`'s source
    /// and detail-type, and `handler` gets the event with its detail
    /// decoded as `E`'s payload. A detail that does not decode is a
    /// [`permanent`] failure (dead-lettered at once, never retried).
    pub fn typed<E, F, Fut>(name: &str, handler: F) -> anyhow::Result<Rule>
    where
        E: Contract,
        F: Fn(Event, E::Detail) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Rule::typed_where::<E, F, Fut>(name, None, handler)
    }

    /// [`Rule::typed`], narrowed to the events whose detail also matches
    /// the EventBridge pattern `detail` (for example
    /// `{"changed": ["total"]}` for an `OrderModified`).
    pub fn typed_where<E, F, Fut>(
        name: &str,
        detail: Option<serde_json::Value>,
        handler: F,
    ) -> anyhow::Result<Rule>
    where
        E: Contract,
        F: Fn(Event, E::Detail) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let mut pattern = serde_json::json!({ "source": [E::SOURCE], "detail-type": [E::DETAIL_TYPE] });
        if let Some(detail) = detail {
            pattern["detail"] = detail;
        }
        let handler = Arc::new(handler);
        Rule::new(name, pattern, move |event: Event| {
            let handler = handler.clone();
            async move {
                let detail = event.detail_as::<E>()?;
                handler(event, detail).await
            }
        })
    }
}

/// With traces on, the span of one attempt of `rule` at `event`: a
/// consumer span named `<rule> <detail-type>`, the child of the span that
/// wrote the event (its `traceparent`), or the root of a trace when the
/// event carries none (put by the CLI, or written with traces off). With
/// traces off, no span at all: event delivery pays nothing for them.
fn handler_span(rule: &str, event: &Event) -> tracing::Span {
    if !ecom_runtime::telemetry::tracing_enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "handle",
        otel.name = %format_args!("{rule} {}", event.detail_type),
        otel.kind = "consumer",
        rule,
        event.id = %event.id,
        event.source = %event.source,
        event.detail_type = %event.detail_type,
    );
    ecom_runtime::telemetry::follow(&span, event.traceparent.as_deref());
    span
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

/// A rule as the bus stores it, for `ecom events rules`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleInfo {
    /// `<service>.<what>`.
    pub name: String,
    /// Its EventBridge pattern as JSON text (on NATS, for a consumer created
    /// before patterns were recorded, its filter subject instead).
    pub pattern: String,
}

/// The error a handler returns when retrying cannot help (the event can
/// never be applied): the event goes to the dead-letter queue at once.
/// Build it with [`permanent`]; any other error is retried. A backend's
/// [`BusBackend::publish`] returns it too, for an event it can never carry.
#[derive(Debug)]
pub struct Permanent(pub String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

/// A handler error that is not retried (see [`Permanent`]).
pub fn permanent(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Permanent(message.into()))
}

/// True when `err` (or its cause chain) is [`Permanent`].
pub fn is_permanent(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<Permanent>())
}

/// The delay before retry number `attempt` (1 = first retry): exponential
/// backoff from `initial_backoff`, capped at `max_backoff`, with full jitter
/// (a uniform delay between zero and that bound), so that many failed
/// deliveries do not retry in lock-step.
pub fn backoff(settings: &BusSettings, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let bound = settings
        .initial_backoff
        .saturating_mul(1u32 << exp)
        .min(settings.max_backoff);
    let micros = bound.as_micros().min(u128::from(u64::MAX)) as u64;
    if micros == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(rand::thread_rng().gen_range(0..=micros))
}

/// Whether a delivery that has just failed for the `attempts`-th time, first
/// tried `age` ago, goes to the dead-letter queue rather than being retried.
pub fn exhausted(settings: &BusSettings, attempts: u32, age: Duration, err: &anyhow::Error) -> bool {
    attempts >= settings.max_attempts || age >= settings.max_age || is_permanent(err)
}

/// A carrier of events. Implemented by the embedded and NATS backends.
#[async_trait::async_trait]
pub trait BusBackend: Send + Sync {
    /// Stores `events` durably (de-duplicated by id) and routes them to
    /// every rule they match, including rules of services in other
    /// processes.
    ///
    /// An event the backend can never carry (on NATS, one larger than the
    /// server's `max_payload`) is refused with a [`Permanent`] error (see
    /// [`permanent`], [`is_permanent`]) naming it, and then nothing of this
    /// call is sent, so the caller can publish the others alone (the outbox
    /// relay does, and sets the refused one aside). Any other error is
    /// transient: the same call may succeed later, and parts of it may
    /// already be stored (publishing again is harmless, by id).
    async fn publish(&self, events: &[Event]) -> anyhow::Result<()>;
    /// [`BusBackend::publish`] of events already encoded (the outbox
    /// relay's), sent as they are. The default decodes them and publishes
    /// the events.
    async fn publish_encoded(&self, events: &[Encoded]) -> anyhow::Result<()> {
        let decoded = events
            .iter()
            .map(Encoded::decode)
            .collect::<Result<Vec<_>, _>>()
            .context("Failed to decode an encoded event")?;
        self.publish(&decoded).await
    }
    /// Starts delivering to `rules` until `shutdown`; every event seen is
    /// also sent to `feed` (for the listener and `ecom events tail`).
    async fn start(
        &self,
        rules: Vec<Arc<Rule>>,
        feed: broadcast::Sender<Arc<Event>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>>;
    /// The oldest `limit` dead letters of one rule, or of all, oldest first.
    /// Reads no more than `limit` of them.
    async fn dead_letters(&self, rule: Option<&str>, limit: usize) -> anyhow::Result<Vec<DeadLetter>>;
    /// Sends dead letters (of one rule, or all) back for delivery; returns how many.
    async fn redrive(&self, rule: Option<&str>) -> anyhow::Result<u64>;
    /// Deletes dead letters (of one rule, or all); returns how many. A rule
    /// that is neither known to the bus nor has dead letters is refused.
    async fn purge(&self, rule: Option<&str>) -> anyhow::Result<u64>;
    /// The rules the bus knows (registered by any process), by name.
    async fn rules(&self) -> anyhow::Result<Vec<RuleInfo>>;
    /// Re-delivers archived events of `[from, to)` matching `rule`; returns how many.
    async fn replay(&self, rule: &str, from: Timestamp, to: Timestamp) -> anyhow::Result<u64>;
    /// Whether the bus can take and deliver events now, for `/readyz`; the
    /// error says why not. The embedded bus lives in the platform
    /// database, which is checked on its own.
    async fn ready(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Puts bytes on the bus as a foreign producer would, without checking
    /// that they are an event: they reach the rules whose `source` and
    /// `detail-type` filters admit `source` / `detail_type`, which must
    /// dead-letter them (and keep delivering what follows) when they do not
    /// decode. Exists so the conformance suite can prove exactly that.
    async fn publish_raw(&self, source: &str, detail_type: &str, payload: &[u8]) -> anyhow::Result<()> {
        let _ = (source, detail_type, payload);
        anyhow::bail!("this bus backend cannot publish raw bytes")
    }
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
    /// use this; services write to their outbox instead). Fails as
    /// [`BusBackend::publish`] does.
    pub async fn publish(&self, events: &[Event]) -> anyhow::Result<()> {
        self.backend.publish(events).await
    }

    /// [`Bus::publish`] of events already encoded, passed on as they are.
    pub async fn publish_encoded(&self, events: &[Encoded]) -> anyhow::Result<()> {
        self.backend.publish_encoded(events).await
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

    /// Every dead letter of one rule, or of all, oldest first (tests and
    /// small queues; see [`Bus::first_dead_letters`] to bound the read).
    pub async fn dead_letters(&self, rule: Option<&str>) -> anyhow::Result<Vec<DeadLetter>> {
        self.backend.dead_letters(rule, usize::MAX).await
    }

    /// The oldest `limit` dead letters of one rule, or of all.
    pub async fn first_dead_letters(
        &self,
        rule: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Vec<DeadLetter>> {
        self.backend.dead_letters(rule, limit).await
    }

    /// Deletes dead letters of one rule, or of all; returns how many.
    pub async fn purge(&self, rule: Option<&str>) -> anyhow::Result<u64> {
        self.backend.purge(rule).await
    }

    /// The rules the bus knows, from every process.
    pub async fn known_rules(&self) -> anyhow::Result<Vec<RuleInfo>> {
        self.backend.rules().await
    }

    /// Sends dead letters back for delivery.
    pub async fn redrive(&self, rule: Option<&str>) -> anyhow::Result<u64> {
        self.backend.redrive(rule).await
    }

    /// Re-delivers archived events of a time window to a rule.
    pub async fn replay(&self, rule: &str, from: Timestamp, to: Timestamp) -> anyhow::Result<u64> {
        self.backend.replay(rule, from, to).await
    }

    /// Whether the bus can take and deliver events now ([`BusBackend::ready`]).
    pub async fn ready(&self) -> anyhow::Result<()> {
        self.backend.ready().await
    }

    /// The backend (tests use [`BusBackend::publish_raw`]).
    pub fn backend(&self) -> &Arc<dyn BusBackend> {
        &self.backend
    }
}

/// The service part of a rule name `<service>.<what>`: starting a bus
/// removes the rules of its own services that it no longer registers.
pub(crate) fn service_of(rule: &str) -> Option<&str> {
    rule.split_once('.')
        .map(|(service, _)| service)
        .filter(|s| !s.is_empty())
}

/// What a handler error becomes in logs and dead letters: the whole cause
/// chain on one line.
pub fn describe_error(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BusSettings {
        BusSettings {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..BusSettings::default()
        }
    }

    #[test]
    fn backoff_doubles_within_the_cap_and_is_jittered_below_the_bound() {
        let s = settings();
        for (attempt, bound_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000)] {
            let delays: Vec<Duration> = (0..200).map(|_| backoff(&s, attempt)).collect();
            assert!(
                delays.iter().all(|d| *d <= Duration::from_millis(bound_ms)),
                "attempt {attempt}"
            );
            assert!(
                delays.iter().any(|d| *d != delays[0]),
                "attempt {attempt} is not jittered"
            );
        }
    }

    #[test]
    fn a_delivery_is_exhausted_by_attempts_age_or_a_permanent_error() {
        let s = BusSettings {
            max_attempts: 3,
            max_age: Duration::from_secs(60),
            ..settings()
        };
        let transient = anyhow::anyhow!("timeout");
        assert!(!exhausted(&s, 2, Duration::from_secs(1), &transient));
        assert!(exhausted(&s, 3, Duration::from_secs(1), &transient));
        assert!(exhausted(&s, 1, Duration::from_secs(60), &transient));
        let perm = permanent("unknown order").context("handler failed");
        assert!(exhausted(&s, 1, Duration::from_secs(1), &perm));
    }
}
