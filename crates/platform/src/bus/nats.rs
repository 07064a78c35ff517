//! The NATS JetStream backend of the bus, for deployments past one machine.
//!
//! Layout (`P` is the stream prefix, empty in production, unique per test):
//!
//! - Connection: the bus URL names one server or several of one cluster
//!   (`nats://a:4222,nats://b:4222`); the client moves to another server
//!   when it loses one, and pings every [`PING_INTERVAL`].
//! - Both streams are created with `BusSettings::replicas` replicas (3 in a
//!   3-node cluster). A start brings an existing stream's settings up to date
//!   but never lowers its replicas, so a stream an operator raised stays
//!   raised. Creating a stream is retried for a few seconds (see
//!   [`ensure_stream`]).
//! - Stream `PECOM` (file storage, limits retention, `max_age` =
//!   `BusSettings::retention`, duplicate window [`DUPLICATE_WINDOW`]) holds
//!   every event on `Pecom.events.<source>.<detail-type>` and the re-sent
//!   events of redrive and replay on `Pecom.redrive.<rule>`. Events are
//!   published with `Nats-Msg-Id` = event id, so a second publish of one id
//!   inside the window is dropped by the server; past it, the inbox of each
//!   handler still de-duplicates.
//! - Stream `PECOM_DLQ` (file storage, no age limit: a dead letter waits for
//!   a person) holds dead letters on `Pecom.dlq.<rule>`. A letter's payload is
//!   the original message's bytes, unchanged; rule, attempts, last error and
//!   time of failure travel in `Ecom-*` headers. Keeping the raw bytes means a
//!   malformed message is dead-lettered and redriven losslessly too.
//! - Per rule, two durable pull consumers with explicit ack:
//!   `rule_<rule>` on the events, filtered by the narrowest subject the
//!   pattern allows (its one source and one detail-type, `*` for a level the
//!   pattern does not pin to one value, `events.>` when it pins neither; the
//!   whole pattern is matched client side), and `redrive_<rule>` on the
//!   rule's redrive subject. Redrive and replay go through that second
//!   consumer rather than calling the handler in the calling process, so they
//!   work from the CLI (which runs no handlers) as well as from the server,
//!   and get the same retry and dead-letter policy. A second consumer is
//!   needed because servers before 2.10 allow one filter subject per consumer.
//!   The event consumer's description is the rule's pattern (JSON), which is
//!   how `ecom events rules` lists rules from any process.
//! - Gauges: every 5 s, per rule, the backlog is what its two consumers have
//!   not delivered or not had acknowledged, and the lag the age (publish
//!   time) of the oldest of those: the first message on a consumer's filter
//!   after its ack floor, read from the stream.
//! - The feed is an ephemeral ordered consumer on `Pecom.events.>` from the
//!   time of `start`; `publish` does not touch the feed.
//! - `publish` weighs every event (payload and `Nats-Msg-Id` header) against
//!   the server's `max_payload` (1 MB by default) before sending any, and
//!   refuses the whole call with a [`super::Permanent`] error naming the
//!   first event too large: the server would never take it.
//!
//! Subject tokens and consumer names encode free text with [`token`]:
//! `[A-Za-z0-9_-]` stay, every other byte becomes `~XX` (upper-case hex), and
//! the empty string becomes `~`. So `ecommerce.orders` is
//! `ecommerce~2Eorders`; dots, spaces and wildcards in a source or
//! detail-type cannot add subject levels, and the mapping is one to one.
//! (Not `%XX`: nats-server 2.9 formats ack subjects with the consumer name
//! as part of a format string, so a `%` there corrupts every delivery.)
//!
//! Retries: a handler error is a NAK with the delay of [`super::backoff`]
//! (exponential, full jitter). The attempt that fails with `max_attempts`
//! deliveries behind it, any failure of an event older than `max_age`, and a
//! [`super::Permanent`] error are dead-lettered ([`super::exhausted`]) and
//! the original acked. The server does not cap deliveries (`max_deliver`
//! unset) because a capped message whose last attempt was lost (process
//! killed, DLQ unreachable) would vanish without a dead letter; a delivery
//! past `max_attempts` is dead-lettered without running the handler instead.
//!
//! A rule's consumer, when first created, starts at events published up to
//! `max_age` ago, so events published before a service's first start are
//! not missed. Replicas of a service starting together each try to create
//! it with their own start time; the server keeps the first and refuses to
//! change it (error 10012), and the others then read and use that one.
//!
//! Losing a node: `publish` sends a batch the cluster does not confirm
//! (timeout, no responders while a stream leader is elected) again with the
//! same message ids for up to [`PUBLISH_PATIENCE`], and the server drops the
//! copies it already stored. Pulls that fail are started again a second
//! later; acknowledgements lost with a node mean redeliveries after the ack
//! wait, which the handlers' inboxes absorb.
//!
//! Replay reads the events stream from `from` (publish time)
//! and re-sends those whose own `time` lies in `[from, to)` and that match
//! the rule, in batches of 256 (a long window is never held in
//! memory whole); it stops once publish times pass `to` by a minute (relays
//! publish late). Listing and redriving dead letters read the DLQ
//! stream one message at a time the same way. On
//! shutdown the consumers stop pulling and handlers in flight finish;
//! messages pulled but not started come back after the ack wait.

use super::{
    backoff, describe_error, exhausted, permanent, service_of, BusBackend, DeadLetter, Rule, RuleInfo,
    RuleMetrics,
};
use crate::{Encoded, Event};
use anyhow::Context as _;
use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::{
    ConsumerInfoError, ConsumerInfoErrorKind, CreateStreamErrorKind, GetStreamErrorKind,
};
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::{self, stream, AckKind};
use async_nats::HeaderMap;
use ecom_model::Timestamp;
use ecom_runtime::config::BusSettings;
use futures::{FutureExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the server remembers event ids to drop duplicate publishes (the
/// NATS default). Longer windows cost server memory per event; redeliveries
/// past it are caught by the inboxes.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Handler runs in flight per consumer.
const CONCURRENCY: usize = 64;

/// How long a delivery may stay unacknowledged before the server redelivers it.
const ACK_WAIT: Duration = Duration::from_secs(60);

/// Unacknowledged messages per consumer, including those waiting out a
/// retry delay; when reached, the server pauses delivery to that rule.
const MAX_ACK_PENDING: i64 = 20_000;

/// Replay looks this far past the window's end in publish time, because the
/// outbox relay publishes an event some time after the event's own `time`.
const REPLAY_GRACE: Duration = Duration::from_secs(60);

/// How often the backlog and lag gauges are refreshed (as on the embedded bus).
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// Longest consumer description the server takes (it stores the rule's pattern).
const MAX_DESCRIPTION: usize = 4096;

/// Events replay re-sends at a time (and so holds in memory).
const REPLAY_BATCH: usize = 256;

/// Longest wait for the next message while reading a known number of them.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the client pings its server: a server that stops answering
/// without closing the connection is left after two missed pings.
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// Tries at creating or updating a stream at start, 0.2 s apart and
/// doubling (about 6 s in all).
const STREAM_ATTEMPTS: u32 = 6;

/// Tries at creating or reusing a rule's consumer at start.
const CONSUMER_ATTEMPTS: u32 = 6;

/// How long `publish` keeps trying a batch the cluster does not confirm
/// (a node lost, a stream leader being elected) before it gives up and lets
/// the caller (the outbox relay) try again later.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(15);

const H_RULE: &str = "Ecom-Rule";
const H_ATTEMPTS: &str = "Ecom-Attempts";
const H_ERROR: &str = "Ecom-Last-Error";
const H_FAILED_AT: &str = "Ecom-Failed-At";

/// The JetStream bus. See the module documentation.
pub struct NatsBus {
    shared: Arc<Shared>,
    /// Rules started in this process, for replay's pattern check.
    rules: Mutex<HashMap<String, Arc<Rule>>>,
}

/// What the delivery tasks need.
struct Shared {
    js: jetstream::Context,
    settings: BusSettings,
    names: Names,
}

/// Stream names and subject roots under one prefix.
struct Names {
    events_stream: String,
    dlq_stream: String,
    /// `Pecom.events`
    events: String,
    /// `Pecom.redrive`
    redrive: String,
    /// `Pecom.dlq`
    dlq: String,
}

impl Names {
    fn new(prefix: &str) -> Names {
        Names {
            events_stream: format!("{prefix}ECOM"),
            dlq_stream: format!("{prefix}ECOM_DLQ"),
            events: format!("{prefix}ecom.events"),
            redrive: format!("{prefix}ecom.redrive"),
            dlq: format!("{prefix}ecom.dlq"),
        }
    }

    fn event_subject(&self, source: &str, detail_type: &str) -> String {
        format!("{}.{}.{}", self.events, token(source), token(detail_type))
    }

    fn redrive_subject(&self, rule: &str) -> String {
        format!("{}.{}", self.redrive, token(rule))
    }

    fn dlq_subject(&self, rule: &str) -> String {
        format!("{}.{}", self.dlq, token(rule))
    }
}

/// Encodes free text as one subject token (or consumer name part): see the
/// module documentation.
pub fn token(text: &str) -> String {
    if text.is_empty() {
        return "~".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("~{byte:02X}"));
        }
    }
    out
}

/// The text [`token`] encoded, or `None` for a string it cannot produce.
pub fn untoken(encoded: &str) -> Option<String> {
    if encoded == "~" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'~' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = tail.get(2..)?;
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The servers of a bus URL: one `nats://host:port`, or several of one
/// cluster separated by commas (`nats://a:4222,nats://b:4222`). The client
/// connects to one of them and moves to another when it is lost (it also
/// learns the cluster's other servers from the one it reaches).
pub fn server_addrs(url: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            anyhow::ensure!(
                part.starts_with("nats://") || part.starts_with("tls://"),
                "bus URL '{part}' is not nats://host:port (or tls://host:port)"
            );
            part.parse::<async_nats::ServerAddr>()
                .map_err(|e| anyhow::anyhow!("bus URL '{part}': {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!servers.is_empty(), "the bus URL names no server");
    Ok(servers)
}

/// JetStream error codes that no retry can change: a stream whose replicas
/// a single server cannot hold, a configuration the server refuses. Not
/// "subjects overlap" (10065): a cluster answers it to a create racing with
/// another process's create of the same stream.
const PERMANENT_STREAM_ERRORS: [u64; 2] = [10074, 10052];

/// Creates the stream, or updates an existing one to `config` keeping its
/// replicas where it has more (raised by an operator, or created by a
/// process configured with more): a start never lowers them. Retries for a
/// few seconds, because replicas starting together race to create it, a
/// cluster electing a leader answers nothing for a moment, and nats-server
/// 2.9 removes an account's store directory when its last stream is
/// deleted, failing a create that races with that (codes 10077, 10049).
async fn ensure_stream(js: &jetstream::Context, config: stream::Config) -> anyhow::Result<()> {
    let name = config.name.clone();
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        let (result, code) = match js.get_stream(&name).await {
            Ok(existing) => {
                let current = existing.cached_info().config.num_replicas;
                let wanted = stream::Config {
                    num_replicas: config.num_replicas.max(current),
                    ..config.clone()
                };
                if current > config.num_replicas && attempt == 1 {
                    tracing::info!(
                        stream = name,
                        replicas = current,
                        configured = config.num_replicas,
                        "the stream has more replicas than configured; keeping them"
                    );
                }
                match js.update_stream(wanted).await {
                    Ok(_) => (Ok(()), None),
                    Err(e) => {
                        let code = create_error_code(e.kind());
                        (Err(anyhow::Error::from(e)), code)
                    }
                }
            }
            Err(e)
                if matches!(e.kind(), GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                match js.create_stream(config.clone()).await {
                    Ok(_) => (Ok(()), None),
                    Err(e) => {
                        let code = create_error_code(e.kind());
                        (Err(anyhow::Error::from(e)), code)
                    }
                }
            }
            Err(e) => (Err(anyhow::Error::from(e)), None),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e)
                if attempt < STREAM_ATTEMPTS
                    && !code.is_some_and(|c| PERMANENT_STREAM_ERRORS.contains(&c)) =>
            {
                tracing::warn!(stream = name, attempt, error = %format!("{e:#}"), "cannot create or update the stream yet; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => {
                let hint = if code == Some(10074) {
                    " (a single server holds one replica: set [bus] replicas / --bus-replicas to 1, or run a cluster)"
                } else {
                    ""
                };
                return Err(e.context(format!("cannot create the stream {name}{hint}")));
            }
        }
    }
}

/// The JetStream error code of a failed stream create or update.
fn create_error_code(kind: CreateStreamErrorKind) -> Option<u64> {
    match kind {
        CreateStreamErrorKind::JetStream(e) => Some(e.error_code().0),
        _ => None,
    }
}

/// The narrowest single subject (servers before 2.10 take one per consumer)
/// that holds every event `rule` can match, under `events`: exact source and
/// detail-type when the pattern pins each to one value, `*` for a level it
/// does not, and `events.>` when neither is pinned. Matching the whole
/// pattern still happens client side.
fn filter_subject(events: &str, rule: &Rule) -> String {
    let one = |field: &str| match rule.pattern.exact_values(field) {
        Some(values) if values.len() == 1 => values.into_iter().next(),
        _ => None,
    };
    match (one("source"), one("detail-type")) {
        (None, None) => format!("{events}.>"),
        (source, detail_type) => format!(
            "{events}.{}.{}",
            source.map_or_else(|| "*".to_owned(), |s| token(&s)),
            detail_type.map_or_else(|| "*".to_owned(), |d| token(&d)),
        ),
    }
}

impl NatsBus {
    /// Connects to `url` (one server, or several of one cluster separated
    /// by commas) and creates the event and dead-letter streams named with
    /// `stream_prefix` ("" in production), or brings existing ones up to
    /// date without lowering their replicas.
    pub async fn connect(url: &str, settings: BusSettings, stream_prefix: &str) -> anyhow::Result<NatsBus> {
        let servers = server_addrs(url)?;
        let client = async_nats::ConnectOptions::new()
            // A server that stops answering without closing the connection
            // (a partition, a frozen host) is noticed within two pings.
            .ping_interval(PING_INTERVAL)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("connected to NATS"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("lost the NATS connection; reconnecting")
                    }
                    other => tracing::debug!(event = %other, "NATS client event"),
                }
            })
            .connect(servers.as_slice())
            .await
            .with_context(|| format!("cannot connect to NATS at {url}"))?;
        let js = jetstream::new(client);
        let names = Names::new(stream_prefix);
        let retention = settings.retention;
        let replicas = settings.replicas;
        ensure_stream(
            &js,
            stream::Config {
                name: names.events_stream.clone(),
                subjects: vec![format!("{}.>", names.events), format!("{}.>", names.redrive)],
                retention: stream::RetentionPolicy::Limits,
                max_age: retention,
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW.min(retention),
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        ensure_stream(
            &js,
            stream::Config {
                name: names.dlq_stream.clone(),
                subjects: vec![format!("{}.>", names.dlq)],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        Ok(NatsBus {
            shared: Arc::new(Shared { js, settings, names }),
            rules: Mutex::default(),
        })
    }

    /// Deletes this bus's streams, with every event and dead letter in them
    /// (for tests, which use a prefix of their own).
    pub async fn delete_streams(&self) -> anyhow::Result<()> {
        let names = &self.shared.names;
        for name in [&names.events_stream, &names.dlq_stream] {
            self.shared
                .js
                .delete_stream(name)
                .await
                .with_context(|| format!("cannot delete the stream {name}"))?;
        }
        Ok(())
    }

    /// The subject an event is published on, for tools that publish raw
    /// messages.
    pub fn event_subject(&self, source: &str, detail_type: &str) -> String {
        self.shared.names.event_subject(source, detail_type)
    }

    /// The rule's pattern if it runs in this process.
    fn local_rule(&self, name: &str) -> Option<Arc<Rule>> {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// A reader of the dead letters of one rule, or of all, oldest first.
    async fn letters(&self, rule: Option<&str>) -> anyhow::Result<Reader> {
        let names = &self.shared.names;
        let filter = match rule {
            Some(rule) => names.dlq_subject(rule),
            None => format!("{}.>", names.dlq),
        };
        Reader::open(&self.shared.js, &names.dlq_stream, filter, DeliverPolicy::All).await
    }

    /// The consumer of `rule`'s events, or an error naming the known rules.
    async fn rule_consumer(&self, rule: &str) -> anyhow::Result<PullConsumer> {
        let stream = self
            .shared
            .js
            .get_stream_no_info(&self.shared.names.events_stream)
            .await?;
        match stream.get_consumer(&rule_consumer_name(rule)).await {
            Ok(consumer) => Ok(consumer),
            Err(_) => {
                let known: Vec<String> = self.list_rules().await?.into_iter().map(|r| r.name).collect();
                anyhow::bail!(
                    "unknown rule '{rule}'; the rules are: {} (a rule is known once a server has started it)",
                    if known.is_empty() {
                        "none yet".to_owned()
                    } else {
                        known.join(", ")
                    }
                )
            }
        }
    }
}

impl NatsBus {
    /// Deletes the consumers of rules of the services among `rules` (the
    /// part of a name before its first dot) that `rules` does not contain:
    /// rules removed from the code, which `ecom events rules` would list
    /// forever. Their dead letters stay for a person to look at (`ecom
    /// events dlq purge`). Rules of services this process does not run are
    /// left alone, as on the embedded bus.
    async fn remove_stale(&self, stream: &stream::Stream<()>, rules: &[Arc<Rule>]) -> anyhow::Result<()> {
        let current: HashSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        let services: HashSet<&str> = rules.iter().filter_map(|r| service_of(&r.name)).collect();
        if services.is_empty() {
            return Ok(());
        }
        for stale in self.list_rules().await? {
            let name = stale.name;
            if current.contains(name.as_str()) || !service_of(&name).is_some_and(|s| services.contains(s)) {
                continue;
            }
            for consumer in [rule_consumer_name(&name), redrive_consumer_name(&name)] {
                match stream.delete_consumer(&consumer).await {
                    Ok(_) => {}
                    // Gone already (another replica removed it).
                    Err(e)
                        if matches!(e.kind(), ConsumerErrorKind::JetStream(js)
                            if js.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) => {}
                    Err(e) => {
                        return Err(anyhow::anyhow!(
                            "cannot remove the consumer {consumer} of the stale rule {name}: {e}"
                        ))
                    }
                }
            }
            tracing::info!(
                rule = name,
                "removed a rule its service no longer registers (its dead letters stay)"
            );
        }
        Ok(())
    }

    /// The rules started on this stream: the event consumers, with the
    /// pattern each was last started with (recorded as its description; a
    /// consumer from before that shows its filter subject).
    async fn list_rules(&self) -> anyhow::Result<Vec<RuleInfo>> {
        let names = &self.shared.names;
        let stream = self.shared.js.get_stream_no_info(&names.events_stream).await?;
        let mut consumers = stream.consumers();
        let mut rules = Vec::new();
        while let Some(info) = consumers.next().await {
            let info = info
                .map_err(|e| anyhow::anyhow!("cannot list the consumers of {}: {e}", names.events_stream))?;
            let Some(name) = info.name.strip_prefix(RULE_CONSUMER).and_then(untoken) else {
                continue;
            };
            let pattern = info
                .config
                .description
                .clone()
                .unwrap_or_else(|| format!("(subject {})", info.config.filter_subject));
            rules.push(RuleInfo { name, pattern });
        }
        rules.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rules)
    }
}

/// The durable consumer of a rule's events.
fn rule_consumer_name(rule: &str) -> String {
    format!("{RULE_CONSUMER}{}", token(rule))
}

/// The durable consumer of a rule's redriven and replayed events.
fn redrive_consumer_name(rule: &str) -> String {
    format!("redrive_{}", token(rule))
}

/// Name prefix of the rules' event consumers.
const RULE_CONSUMER: &str = "rule_";

/// Reads a stream in order through an ephemeral ordered consumer on
/// `filter`, from `policy` on, one message at a time, up to the end of the
/// stream as the consumer last saw it: callers hold only what they keep.
struct Reader {
    stream_name: String,
    messages: Option<pull::Ordered>,
    remaining: u64,
}

impl Reader {
    async fn open(
        js: &jetstream::Context,
        stream_name: &str,
        filter: String,
        policy: DeliverPolicy,
    ) -> anyhow::Result<Reader> {
        let stream = js
            .get_stream_no_info(stream_name)
            .await
            .with_context(|| format!("cannot open the stream {stream_name}"))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter,
                deliver_policy: policy,
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot read the stream {stream_name}"))?;
        let remaining = consumer.cached_info().num_pending;
        let messages = if remaining == 0 {
            None
        } else {
            Some(
                consumer
                    .messages()
                    .await
                    .with_context(|| format!("cannot read the stream {stream_name}"))?,
            )
        };
        Ok(Reader {
            stream_name: stream_name.to_owned(),
            messages,
            remaining,
        })
    }

    /// The next message and its stream sequence; `None` at the end.
    async fn next(&mut self) -> anyhow::Result<Option<(jetstream::Message, u64)>> {
        let stream_name = &self.stream_name;
        let Some(messages) = self.messages.as_mut().filter(|_| self.remaining > 0) else {
            self.messages = None;
            return Ok(None);
        };
        let next = tokio::time::timeout(READ_TIMEOUT, messages.next())
            .await
            .with_context(|| format!("timed out reading the stream {stream_name}"))?;
        let Some(message) = next else {
            self.messages = None;
            return Ok(None);
        };
        let message = message.map_err(|e| anyhow::anyhow!("reading the stream {stream_name}: {e}"))?;
        let (sequence, pending) = {
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            (info.stream_sequence, info.pending)
        };
        self.remaining = pending;
        Ok(Some((message, sequence)))
    }
}

/// A dead letter as stored in the DLQ stream.
struct StoredLetter {
    sequence: u64,
    rule: String,
    payload: Vec<u8>,
    letter: DeadLetter,
}

impl StoredLetter {
    /// `None` for a message on the DLQ subjects that this backend did not
    /// write (no rule header).
    fn parse(message: jetstream::Message, sequence: u64) -> Option<StoredLetter> {
        let headers = message.headers.as_ref()?;
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let rule = header(H_RULE)?;
        let attempts = header(H_ATTEMPTS).and_then(|a| a.parse().ok()).unwrap_or(0);
        let last_error = header(H_ERROR).unwrap_or_default();
        let failed_at = header(H_FAILED_AT)
            .and_then(|t| Timestamp::parse(&t).ok())
            .unwrap_or_else(Timestamp::now);
        let payload = message.payload.to_vec();
        // A malformed message is listed as a stand-in event that shows its
        // bytes; redrive still re-sends the original bytes.
        let event = serde_json::from_slice::<Event>(&payload).unwrap_or_else(|_| Event {
            version: "0".to_owned(),
            id: uuid::Uuid::nil(),
            source: "ecom.bus".to_owned(),
            detail_type: "MalformedMessage".to_owned(),
            time: failed_at,
            resources: Vec::new(),
            detail: serde_json::json!({ "payload": String::from_utf8_lossy(&payload) }).into(),
            traceparent: None,
        });
        Some(StoredLetter {
            sequence,
            rule: rule.clone(),
            payload,
            letter: DeadLetter {
                rule,
                event,
                attempts,
                last_error,
                failed_at,
            },
        })
    }
}

#[async_trait::async_trait]
impl BusBackend for NatsBus {
    async fn publish(&self, events: &[Event]) -> anyhow::Result<()> {
        self.publish_encoded(&Encoded::all(events)?).await
    }

    async fn publish_encoded(&self, events: &[Encoded]) -> anyhow::Result<()> {
        let names = &self.shared.names;
        // Every event is measured before any is sent, so that a refusal
        // sends nothing of this call (see `BusBackend::publish`). The
        // client's copy of the server's `max_payload` (from its INFO),
        // which it checks every publish against, rather than
        // `server_info().max_payload`, which reads 0 before an INFO arrives
        // and would refuse everything.
        let max_payload = self.shared.js.client().max_payload();
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            let id = event.id.to_string();
            let size = message_size(event.payload.len(), &id);
            if size > max_payload {
                return Err(permanent(format!(
                    "event {} is {size} bytes with its headers, more than the NATS server's \
                     max_payload of {max_payload} bytes",
                    event.id
                )));
            }
            let publish = Publish::build()
                .payload(event.payload.clone().into_bytes().into())
                .message_id(id);
            messages.push((names.event_subject(&event.source, &event.detail_type), publish));
        }
        // A node lost or a stream leader being elected leaves publishes
        // unconfirmed for a moment: the batch is sent again with the same
        // message ids (the server drops what it already stored) until it
        // is confirmed or the patience runs out.
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let attempt = messages.iter().cloned().map(Ok);
            match publish_pipelined(&self.shared.js, attempt).await {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() + delay < PUBLISH_PATIENCE => {
                    tracing::warn!(error = %format!("{e:#}"), events = events.len(), "NATS did not confirm a publish; sending again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn ready(&self) -> anyhow::Result<()> {
        let client = self.shared.js.client();
        anyhow::ensure!(
            client.connection_state() == async_nats::connection::State::Connected,
            "not connected to NATS"
        );
        // A round trip to the events stream's leader: connected is not
        // enough when the cluster has lost its quorum.
        let name = &self.shared.names.events_stream;
        self.shared
            .js
            .get_stream(name)
            .await
            .map_err(|e| anyhow::anyhow!("the stream {name} does not answer: {e}"))?;
        Ok(())
    }

    async fn start(
        &self,
        rules: Vec<Arc<Rule>>,
        feed: broadcast::Sender<Arc<Event>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        let shared = &self.shared;
        let names = &shared.names;
        let stream = shared.js.get_stream_no_info(&names.events_stream).await?;
        let mut tasks = Vec::new();
        // The feed first, so nothing published after `start` returns is missed.
        let feed_consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{}.>", names.events),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .context("cannot create the feed consumer")?;
        tasks.push(tokio::spawn(run_feed(feed_consumer, feed, shutdown.clone())));
        self.remove_stale(&stream, &rules).await?;
        for rule in rules {
            self.rules
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(rule.name.clone(), rule.clone());
            let main = durable(
                &stream,
                rule_consumer_name(&rule.name),
                Some(rule.pattern_json.to_string()).filter(|p| p.len() <= MAX_DESCRIPTION),
                filter_subject(&names.events, &rule),
                // A new rule picks up events still young enough to be
                // retried, so events published before a service's first
                // start (outbox relays start early) are not missed.
                DeliverPolicy::ByStartTime {
                    start_time: Timestamp::now().as_offset_date_time() - shared.settings.max_age,
                },
            )
            .await?;
            let redrive = durable(
                &stream,
                redrive_consumer_name(&rule.name),
                None,
                names.redrive_subject(&rule.name),
                DeliverPolicy::All,
            )
            .await?;
            let metrics = RuleMetrics::new(&rule.name);
            tasks.push(tokio::spawn(watch_backlog(
                stream.clone(),
                vec![main.clone(), redrive.clone()],
                metrics.clone(),
                shutdown.clone(),
            )));
            for consumer in [main, redrive] {
                let worker = Worker {
                    shared: shared.clone(),
                    rule: rule.clone(),
                    metrics: metrics.clone(),
                };
                tasks.push(tokio::spawn(worker.run(consumer, shutdown.clone())));
            }
        }
        Ok(tokio::spawn(async move {
            futures::future::join_all(tasks).await;
        }))
    }

    async fn publish_raw(&self, source: &str, detail_type: &str, payload: &[u8]) -> anyhow::Result<()> {
        let subject = self.shared.names.event_subject(source, detail_type);
        self.shared
            .js
            .publish(subject, payload.to_vec().into())
            .await?
            .await
            .context("the event stream did not confirm a publish")?;
        Ok(())
    }

    async fn dead_letters(&self, rule: Option<&str>, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        let mut letters = Vec::new();
        if limit == 0 {
            return Ok(letters);
        }
        let mut reader = self.letters(rule).await?;
        while let Some((message, sequence)) = reader.next().await? {
            if let Some(stored) = StoredLetter::parse(message, sequence) {
                letters.push(stored.letter);
                if letters.len() >= limit {
                    break;
                }
            }
        }
        Ok(letters)
    }

    async fn redrive(&self, rule: Option<&str>) -> anyhow::Result<u64> {
        let shared = &self.shared;
        let dlq = shared.js.get_stream_no_info(&shared.names.dlq_stream).await?;
        let mut count = 0;
        // One letter in memory at a time.
        let mut reader = self.letters(rule).await?;
        while let Some((message, sequence)) = reader.next().await? {
            let Some(stored) = StoredLetter::parse(message, sequence) else {
                continue;
            };
            // The message id makes a redrive that is interrupted and run
            // again re-send each letter once.
            let publish = Publish::build()
                .payload(stored.payload.into())
                .message_id(format!("redrive-{}", stored.sequence));
            shared
                .js
                .send_publish(shared.names.redrive_subject(&stored.rule), publish)
                .await?
                .await
                .context("cannot re-send a dead letter")?;
            dlq.delete_message(stored.sequence)
                .await
                .context("cannot remove a redriven dead letter")?;
            count += 1;
        }
        Ok(count)
    }

    async fn purge(&self, rule: Option<&str>) -> anyhow::Result<u64> {
        let shared = &self.shared;
        let names = &shared.names;
        let dlq = shared.js.get_stream_no_info(&names.dlq_stream).await?;
        let filter = match rule {
            Some(rule) => names.dlq_subject(rule),
            None => format!("{}.>", names.dlq),
        };
        let purged = dlq
            .purge()
            .filter(filter)
            .await
            .map_err(|e| anyhow::anyhow!("cannot purge dead letters: {e}"))?
            .purged;
        if let (Some(rule), 0) = (rule, purged) {
            // Nothing deleted: tell a typo from an empty queue.
            self.rule_consumer(rule).await?;
        }
        Ok(purged)
    }

    async fn rules(&self) -> anyhow::Result<Vec<RuleInfo>> {
        self.list_rules().await
    }

    async fn replay(&self, rule: &str, from: Timestamp, to: Timestamp) -> anyhow::Result<u64> {
        let shared = &self.shared;
        let names = &shared.names;
        // Where the rule does not run in this process (the CLI), its filter
        // subject comes from its consumer and the full pattern is applied by
        // the rule's own process; the count is then of events in the filter.
        let local = self.local_rule(rule);
        let filter = match &local {
            Some(rule) => filter_subject(&names.events, rule),
            None => self
                .rule_consumer(rule)
                .await?
                .cached_info()
                .config
                .filter_subject
                .clone(),
        };
        let stop_after = to.as_offset_date_time() + REPLAY_GRACE;
        let subject = names.redrive_subject(rule);
        let mut reader = Reader::open(
            &shared.js,
            &names.events_stream,
            filter,
            DeliverPolicy::ByStartTime {
                start_time: from.as_offset_date_time(),
            },
        )
        .await?;
        // Read and re-sent in batches, so a long window is never held whole.
        let mut count = 0;
        let mut batch = Vec::with_capacity(REPLAY_BATCH);
        loop {
            let next = reader.next().await?;
            let done = match &next {
                None => true,
                Some((message, _)) => !message.info().is_ok_and(|info| info.published <= stop_after),
            };
            if let Some((message, _)) = next.filter(|_| !done) {
                let replayed = serde_json::from_slice::<Event>(&message.payload).is_ok_and(|event| {
                    event.time >= from
                        && event.time < to
                        && local
                            .as_ref()
                            .is_none_or(|r| r.pattern.matches(&event.to_value()))
                });
                if replayed {
                    batch.push(Publish::build().payload(message.payload.clone()));
                }
            }
            if batch.len() >= REPLAY_BATCH || (done && !batch.is_empty()) {
                let messages = batch.drain(..).map(|publish| Ok((subject.clone(), publish)));
                count += publish_pipelined(&shared.js, messages).await?;
            }
            if done {
                return Ok(count);
            }
        }
    }
}

/// The size the server weighs against its `max_payload` for an event
/// message: the payload and the header block carrying `Nats-Msg-Id`
/// (`NATS/1.0\r\n`, `Nats-Msg-Id: <id>\r\n`, `\r\n`), as the client counts it
/// before sending.
fn message_size(payload_len: usize, message_id: &str) -> usize {
    let headers = "NATS/1.0\r\n".len() + "Nats-Msg-Id: ".len() + message_id.len() + "\r\n\r\n".len();
    payload_len + headers
}

/// Publishes `messages` with many acks in flight (a batch costs about one
/// round trip, not one per message) and returns how many were stored.
///
/// Acks are awaited by a second future polled alongside the sender: the
/// client caps acks in flight and frees a slot only when its ack is awaited,
/// so sending everything before awaiting anything would stall on large
/// batches.
async fn publish_pipelined(
    js: &jetstream::Context,
    messages: impl Iterator<Item = anyhow::Result<(String, Publish)>>,
) -> anyhow::Result<u64> {
    let (acks, mut pending) = tokio::sync::mpsc::unbounded_channel();
    let send = async move {
        for message in messages {
            let (subject, publish) = message?;
            let ack = js
                .send_publish(subject, publish)
                .await
                .context("cannot publish to the event stream")?;
            // Fails only if the awaiting side stopped on an error, which it reports.
            if acks.send(ack).is_err() {
                break;
            }
        }
        anyhow::Ok(())
    };
    let confirm = async move {
        let mut count = 0;
        while let Some(ack) = pending.recv().await {
            ack.await.context("the event stream did not confirm a publish")?;
            count += 1;
        }
        anyhow::Ok(count)
    };
    let (sent, confirmed) = tokio::join!(send, confirm);
    let count = confirmed?;
    sent?;
    Ok(count)
}

/// Creates the durable consumer `name`, or reuses it when it exists with the
/// same filter (its position is kept; delivery settings are brought up to
/// date where the server allows). A changed filter means a changed rule: the
/// old consumer is replaced.
///
/// Safe when any number of replicas start at once: each one's new consumer
/// would start at its own `policy` time, and the server refuses to change a
/// start time (error 10012), so a create that fails is followed by reading
/// the consumer again and using the one another replica created.
async fn durable(
    stream: &stream::Stream<()>,
    name: String,
    description: Option<String>,
    filter: String,
    policy: DeliverPolicy,
) -> anyhow::Result<PullConsumer> {
    let config = pull::Config {
        durable_name: Some(name.clone()),
        description,
        filter_subject: filter.clone(),
        deliver_policy: policy,
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    };
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        let error = match stream.get_consumer::<pull::Config>(&name).await {
            Ok(existing) => {
                let current = existing.cached_info().config.clone();
                if current.filter_subject == filter {
                    let wanted = pull::Config {
                        deliver_policy: current.deliver_policy,
                        ..config
                    };
                    return match stream.create_consumer(wanted).await {
                        Ok(updated) => Ok(updated),
                        Err(e) => {
                            tracing::warn!(consumer = name, error = %e, "cannot update the consumer; keeping it as it is");
                            Ok(existing)
                        }
                    };
                }
                tracing::info!(
                    consumer = name,
                    old = current.filter_subject,
                    new = filter,
                    "rule changed: replacing its consumer"
                );
                match stream.delete_consumer(&name).await {
                    Ok(_) => None,
                    // Another replica replaced it first.
                    Err(e)
                        if matches!(e.kind(), ConsumerErrorKind::JetStream(js)
                            if js.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) =>
                    {
                        None
                    }
                    Err(e) => Some(anyhow::Error::from(e)),
                }
            }
            Err(e)
                if e.downcast_ref::<ConsumerInfoError>()
                    .is_some_and(|e| e.kind() == ConsumerInfoErrorKind::NotFound) =>
            {
                None
            }
            Err(e) => Some(anyhow::anyhow!(e)),
        };
        let error = match error {
            Some(error) => error,
            None => match stream.create_consumer(config.clone()).await {
                Ok(created) => return Ok(created),
                // Most often another replica created it with its own start
                // time between the read above and this create: the next
                // round reads and uses that one.
                Err(e) => anyhow::Error::from(e),
            },
        };
        if attempt >= CONSUMER_ATTEMPTS {
            return Err(error.context(format!("cannot create the consumer {name}")));
        }
        tracing::debug!(consumer = name, attempt, error = %format!("{error:#}"), "consumer not ready yet; reading it again");
        // The first retry is at once (the usual case: another replica won
        // the race); later ones wait out an election or a lost node.
        if attempt > 1 {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        attempt += 1;
    }
}

/// Sends every event on the stream to the feed until shutdown.
async fn run_feed(
    consumer: consumer::Consumer<pull::OrderedConfig>,
    feed: broadcast::Sender<Arc<Event>>,
    shutdown: CancellationToken,
) {
    let mut messages = match consumer.messages().await {
        Ok(messages) => messages,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the feed; the listener will see no events");
            return;
        }
    };
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = messages.next() => next,
        };
        match next {
            None => return,
            Some(Ok(message)) => {
                if let Ok(event) = serde_json::from_slice::<Event>(&message.payload) {
                    // No receivers is fine: nobody is listening.
                    let _ = feed.send(Arc::new(event));
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "feed consumer error"),
        }
    }
}

/// Delivers one consumer's messages to one rule.
#[derive(Clone)]
struct Worker {
    shared: Arc<Shared>,
    rule: Arc<Rule>,
    metrics: RuleMetrics,
}

impl Worker {
    /// Pulls until shutdown, with at most [`CONCURRENCY`] handlers running;
    /// then waits for those in flight. Messages pulled but not started are
    /// redelivered by the server after the ack wait.
    async fn run(self, consumer: PullConsumer, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        'pull: while !shutdown.is_cancelled() {
            let messages = consumer
                .stream()
                .max_messages_per_batch(CONCURRENCY * 4)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(rule = self.rule.name, error = %e, "cannot pull; retrying");
                    pause(&shutdown).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => break 'pull,
                    next = messages.next() => next,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::warn!(rule = self.rule.name, error = %e, "pull failed; pulling again");
                        pause(&shutdown).await;
                        continue 'pull;
                    }
                    None => continue 'pull,
                };
                let permit = tokio::select! {
                    () = shutdown.cancelled() => break 'pull,
                    permit = permits.clone().acquire_owned() => permit,
                };
                let worker = self.clone();
                tracker.spawn(async move {
                    worker.deliver(message).await;
                    drop(permit);
                });
            }
        }
        tracker.close();
        tracker.wait().await;
    }

    /// Runs the handler on one message and settles it: ack, NAK with a
    /// delay, or dead letter.
    async fn deliver(&self, message: jetstream::Message) {
        let settings = &self.shared.settings;
        let (attempt, sequence) = match message.info() {
            Ok(info) => (
                u32::try_from(info.delivered).unwrap_or(u32::MAX),
                info.stream_sequence,
            ),
            Err(_) => (1, 0),
        };
        let event = match serde_json::from_slice::<Event>(&message.payload) {
            Ok(event) => event,
            Err(e) => {
                let error = format!("malformed event (not an EventBridge event): {e}");
                return self.dead_letter(&message, attempt, sequence, &error).await;
            }
        };
        if !self.rule.pattern.matches(&event.to_value()) {
            return settle(&message, AckKind::Ack).await;
        }
        if attempt > settings.max_attempts {
            let error = format!("attempt {} ended without an outcome", attempt - 1);
            return self.dead_letter(&message, attempt - 1, sequence, &error).await;
        }
        let outcome = std::panic::AssertUnwindSafe((self.rule.handler)(event.clone()))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the handler panicked")));
        let Err(error) = outcome else {
            self.metrics.delivered.inc();
            return settle(&message, AckKind::Ack).await;
        };
        let age_micros = Timestamp::now()
            .unix_micros()
            .saturating_sub(event.time.unix_micros());
        let age = Duration::from_micros(u64::try_from(age_micros).unwrap_or(0));
        let error_text = describe_error(&error);
        if exhausted(settings, attempt, age, &error) {
            return self.dead_letter(&message, attempt, sequence, &error_text).await;
        }
        tracing::debug!(rule = self.rule.name, event = %event.id, attempt, error = error_text, "handler failed; will retry");
        self.metrics.retried.inc();
        settle(&message, AckKind::Nak(Some(backoff(settings, attempt)))).await;
    }

    /// Moves the message to the rule's dead-letter queue and acks it; if the
    /// queue cannot take it, NAKs it so the dead-lettering is tried again.
    async fn dead_letter(&self, message: &jetstream::Message, attempts: u32, sequence: u64, error: &str) {
        let shared = &self.shared;
        let mut headers = HeaderMap::new();
        headers.insert(H_RULE, self.rule.name.as_str());
        headers.insert(H_ATTEMPTS, attempts.to_string());
        headers.insert(H_ERROR, header_text(error));
        headers.insert(H_FAILED_AT, Timestamp::now().to_string());
        // One letter per stored message and rule, even if the ack below is
        // lost and the message comes back.
        let publish = Publish::build()
            .payload(message.payload.clone())
            .headers(headers)
            .message_id(format!("{}-{sequence}", token(&self.rule.name)));
        let sent = match shared
            .js
            .send_publish(shared.names.dlq_subject(&self.rule.name), publish)
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match sent {
            Ok(()) => {
                tracing::warn!(rule = self.rule.name, attempts, error, "event dead-lettered");
                self.metrics.dead_lettered.inc();
                settle(message, AckKind::Ack).await;
            }
            Err(e) => {
                tracing::error!(rule = self.rule.name, error = %e, "cannot dead-letter; will try again");
                settle(message, AckKind::Nak(Some(shared.settings.max_backoff))).await;
            }
        }
    }
}

/// Keeps the rule's gauges up to date from its consumers' state, every
/// [`GAUGES_EVERY`]: the backlog (events not yet delivered plus deliveries
/// awaiting an outcome or a retry) and the lag, the age of the oldest of
/// them. That one is the first message on the consumer's filter after its
/// ack floor (everything up to the floor is acknowledged, and the first
/// message past it is not): its publish time is read from the stream.
async fn watch_backlog(
    stream: stream::Stream<()>,
    mut consumers: Vec<PullConsumer>,
    metrics: RuleMetrics,
    shutdown: CancellationToken,
) {
    loop {
        let mut waiting = 0u64;
        // Publish time of the oldest pending message, in Unix nanoseconds.
        let mut oldest: Option<i128> = None;
        for consumer in &mut consumers {
            let Ok(info) = consumer.info().await else {
                continue;
            };
            let pending = info.num_pending.saturating_add(info.num_ack_pending as u64);
            waiting = waiting.saturating_add(pending);
            if pending == 0 {
                continue;
            }
            let floor = info.ack_floor.stream_sequence;
            let filter = info.config.filter_subject.clone();
            match stream
                .raw_message_builder()
                .sequence(floor.saturating_add(1))
                .next_by_subject(filter)
                .send()
                .await
            {
                Ok(message) => {
                    let at = message.time.unix_timestamp_nanos();
                    oldest = Some(oldest.map_or(at, |t| t.min(at)));
                }
                Err(e) => tracing::debug!(error = %e, "cannot read the oldest pending message"),
            }
        }
        metrics.backlog.set(i64::try_from(waiting).unwrap_or(i64::MAX));
        let now = i128::from(Timestamp::now().unix_micros()) * 1000;
        let lag = oldest.map_or(0, |t| {
            i64::try_from((now - t) / 1_000_000).unwrap_or(i64::MAX).max(0)
        });
        metrics.lag_ms.set(lag);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(GAUGES_EVERY) => {}
        }
    }
}

/// Sends an acknowledgement; a lost one only means a redelivery.
async fn settle(message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        tracing::warn!(error = %e, "cannot acknowledge a message; it will be redelivered");
    }
}

/// Header values are one line of text.
fn header_text(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    line.chars().take(2000).collect()
}

/// A short wait before pulling again, cut short by shutdown.
async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_names_and_escape_everything_that_could_split_a_subject() {
        let cases = [
            ("OrderCreated", "OrderCreated"),
            ("ecommerce.orders", "ecommerce~2Eorders"),
            ("a b*c>", "a~20b~2Ac~3E"),
            ("under_score-dash", "under_score-dash"),
            ("~2E", "~7E2E"),
            ("%", "~25"),
            ("", "~"),
            ("é", "~C3~A9"),
        ];
        for (text, expected) in cases {
            assert_eq!(token(text), expected, "{text}");
            assert_eq!(untoken(expected).as_deref(), Some(text), "{expected}");
        }
        assert_eq!(untoken("~4"), None);
        assert_eq!(untoken("~ZZ"), None);
    }

    #[test]
    fn filter_subjects_are_as_narrow_as_the_pattern_allows() {
        let cases = [
            (
                serde_json::json!({"source": ["ecommerce.orders"], "detail-type": ["OrderCreated"]}),
                "ecom.events.ecommerce~2Eorders.OrderCreated",
            ),
            (
                serde_json::json!({"source": ["ecommerce.orders"]}),
                "ecom.events.ecommerce~2Eorders.*",
            ),
            (
                serde_json::json!({"detail-type": ["OrderCreated"], "detail": {"x": [1]}}),
                "ecom.events.*.OrderCreated",
            ),
            (
                serde_json::json!({"source": ["a", "b"], "detail-type": ["X"]}),
                "ecom.events.*.X",
            ),
            (
                serde_json::json!({"source": [{"prefix": "ecommerce."}]}),
                "ecom.events.>",
            ),
        ];
        for (pattern, expected) in cases {
            let rule = Rule::new("r", pattern.clone(), |_| async { Ok(()) });
            let rule = rule.map_err(|e| e.to_string());
            assert_eq!(
                rule.map(|r| filter_subject("ecom.events", &r)),
                Ok(expected.to_owned()),
                "{pattern}"
            );
        }
    }
}
