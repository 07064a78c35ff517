//! The NATS JetStream bus backend against a real server.
//!
//! Skipped (with a note) unless `ECOM_TEST_BUS_URL` names a JetStream server,
//! e.g. `ECOM_TEST_BUS_URL=nats://127.0.0.1:4222 cargo test -p ecom-platform --test nats_backend`.
//! Each test uses streams of its own (a unique prefix) and deletes them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ecom_platform::bus::nats::NatsBus;
use ecom_platform::{Bus, Event, Rule};
use ecom_runtime::config::BusSettings;
use serde_json::json;
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ORDERS: &str = "ecommerce.orders";

fn settings() -> BusSettings {
    BusSettings {
        max_attempts: 3,
        max_age: Duration::from_secs(3600),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        retention: Duration::from_secs(3600),
        ..BusSettings::default()
    }
}

/// A bus on streams of its own, or `None` when no server is configured.
struct Harness {
    nats: Arc<NatsBus>,
    bus: Bus,
    url: String,
    prefix: String,
    shutdown: CancellationToken,
    running: Option<JoinHandle<()>>,
}

impl Harness {
    async fn new() -> Option<Harness> {
        let Ok(url) = std::env::var("ECOM_TEST_BUS_URL") else {
            eprintln!("skipped: set ECOM_TEST_BUS_URL=nats://127.0.0.1:4222 to test the NATS bus backend");
            return None;
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let nats = Arc::new(NatsBus::connect(&url, settings(), &prefix).await.ok()?);
        let bus = Bus::new(nats.clone());
        Some(Harness {
            nats,
            bus,
            url,
            prefix,
            shutdown: CancellationToken::new(),
            running: None,
        })
    }

    async fn start(&mut self) {
        self.running = Some(self.bus.start(self.shutdown.clone()).await.unwrap());
    }

    /// Stops the bus, letting handlers in flight finish.
    async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(10), running)
                .await
                .expect("the bus stops within 10 s")
                .unwrap();
        }
    }

    /// A new process on the same streams: a fresh connection and bus.
    async fn restart(mut self) -> Harness {
        self.stop().await;
        let nats = Arc::new(
            NatsBus::connect(&self.url, settings(), &self.prefix)
                .await
                .unwrap(),
        );
        Harness {
            bus: Bus::new(nats.clone()),
            nats,
            shutdown: CancellationToken::new(),
            running: None,
            ..self
        }
    }

    async fn finish(mut self) {
        self.stop().await;
        self.nats.delete_streams().await.unwrap();
    }
}

fn order_event(detail_type: &str, detail: serde_json::Value) -> Event {
    Event::new(ORDERS, detail_type, vec!["order-1".to_owned()], detail)
}

/// Waits up to 10 s for `check` to hold.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn a_failing_handler_is_retried_until_it_succeeds() {
    let Some(mut h) = Harness::new().await else { return };
    let calls = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (c, d) = (calls.clone(), done.clone());
    let rule = Rule::new("test.flaky", json!({"source": [ORDERS]}), move |_| {
        let (c, d) = (c.clone(), d.clone());
        async move {
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                anyhow::bail!("not yet");
            }
            d.store(true, Ordering::SeqCst);
            Ok(())
        }
    });
    h.bus.subscribe(rule.unwrap()).unwrap();
    h.start().await;
    h.bus
        .publish(&[order_event("OrderCreated", json!({}))])
        .await
        .unwrap();

    eventually("the third attempt succeeds", || async {
        done.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(h.bus.dead_letters(None).await.unwrap().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn an_event_failing_every_attempt_is_dead_lettered_and_redrive_delivers_it_again() {
    let Some(mut h) = Harness::new().await else { return };
    let failing = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicU32::new(0));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let (f, c, hd) = (failing.clone(), calls.clone(), handled.clone());
    let rule = Rule::new(
        "test.broken",
        json!({"detail-type": ["OrderCreated"]}),
        move |event| {
            let (f, c, hd) = (f.clone(), c.clone(), hd.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                if f.load(Ordering::SeqCst) {
                    anyhow::bail!("payment service unreachable");
                }
                hd.lock().unwrap().push(event.id);
                Ok(())
            }
        },
    );
    h.bus.subscribe(rule.unwrap()).unwrap();
    h.start().await;
    let event = order_event("OrderCreated", json!({"total": 1200}));
    h.bus.publish(std::slice::from_ref(&event)).await.unwrap();

    let bus = h.bus.clone();
    eventually("a dead letter", || async {
        !bus.dead_letters(Some("test.broken")).await.unwrap().is_empty()
    })
    .await;
    let letters = h.bus.dead_letters(Some("test.broken")).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].rule, "test.broken");
    assert_eq!(letters[0].event, event);
    assert_eq!(letters[0].attempts, 3);
    assert!(letters[0].last_error.contains("payment service unreachable"));
    assert_eq!(calls.load(Ordering::SeqCst), 3, "no attempt past max_attempts");
    assert_eq!(h.bus.dead_letters(None).await.unwrap().len(), 1);
    assert!(h.bus.dead_letters(Some("test.other")).await.unwrap().is_empty());

    failing.store(false, Ordering::SeqCst);
    assert_eq!(h.bus.redrive(Some("test.broken")).await.unwrap(), 1);
    eventually("the redriven event is handled", || async {
        !handled.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*handled.lock().unwrap(), vec![event.id]);
    assert!(
        h.bus.dead_letters(None).await.unwrap().is_empty(),
        "redrive empties the queue"
    );
    assert_eq!(h.bus.redrive(None).await.unwrap(), 0);
    h.finish().await;
}

#[tokio::test]
async fn an_event_published_twice_is_handled_once() {
    let Some(mut h) = Harness::new().await else { return };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let rule = Rule::new("test.count", json!({"source": [ORDERS]}), move |event| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(event.detail_type);
            Ok(())
        }
    });
    h.bus.subscribe(rule.unwrap()).unwrap();
    h.start().await;
    let event = order_event("OrderCreated", json!({}));
    h.bus.publish(&[event.clone(), event.clone()]).await.unwrap();
    h.bus.publish(std::slice::from_ref(&event)).await.unwrap();
    h.bus.publish(&[order_event("Marker", json!({}))]).await.unwrap();

    // The marker, published last, is the barrier: once handled, the rule
    // is past everything published before it.
    eventually("the marker", || async {
        seen.lock().unwrap().iter().any(|d| d == "Marker")
    })
    .await;
    let created = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|d| *d == "OrderCreated")
        .count();
    assert_eq!(created, 1);
    h.finish().await;
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_and_later_events_still_flow() {
    let Some(mut h) = Harness::new().await else { return };
    let handled = Arc::new(Mutex::new(Vec::new()));
    let hd = handled.clone();
    let rule = Rule::new(
        "test.robust",
        json!({"source": [ORDERS], "detail-type": ["OrderCreated"]}),
        move |e| {
            let hd = hd.clone();
            async move {
                hd.lock().unwrap().push(e.id);
                Ok(())
            }
        },
    );
    h.bus.subscribe(rule.unwrap()).unwrap();
    h.start().await;

    let client = async_nats::connect(&h.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let subject = h.nats.event_subject(ORDERS, "OrderCreated");
    js.publish(subject, "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let event = order_event("OrderCreated", json!({}));
    h.bus.publish(std::slice::from_ref(&event)).await.unwrap();

    eventually("the good event", || async {
        handled.lock().unwrap().contains(&event.id)
    })
    .await;
    let bus = h.bus.clone();
    eventually("the dead letter", || async {
        !bus.dead_letters(None).await.unwrap().is_empty()
    })
    .await;
    let letters = h.bus.dead_letters(Some("test.robust")).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.detail_type, "MalformedMessage");
    assert_eq!(letters[0].event.detail, json!({"payload": "{not json"}));
    assert!(
        letters[0].last_error.starts_with("malformed event"),
        "{}",
        letters[0].last_error
    );
    assert_eq!(letters[0].attempts, 1);
    h.finish().await;
}

#[tokio::test]
async fn a_pattern_on_the_detail_is_matched_by_the_consumer() {
    let Some(mut h) = Harness::new().await else { return };
    let handled = Arc::new(Mutex::new(Vec::new()));
    let hd = handled.clone();
    let pattern = json!({
        "source": [ORDERS],
        "detail-type": ["OrderModified"],
        "detail": {"changed": ["total"]}
    });
    let rule = Rule::new("test.totals", pattern, move |e| {
        let hd = hd.clone();
        async move {
            hd.lock().unwrap().push(e.id);
            Ok(())
        }
    });
    h.bus.subscribe(rule.unwrap()).unwrap();
    h.start().await;
    let status = order_event("OrderModified", json!({"changed": ["status"]}));
    let created = order_event("OrderCreated", json!({"changed": ["total"]}));
    let total = order_event("OrderModified", json!({"changed": ["status", "total"]}));
    h.bus.publish(&[status, created, total.clone()]).await.unwrap();

    // A later matching event is the barrier: once it is handled, the
    // consumer is past the three above, so a wrong match would show.
    let marker = order_event("OrderModified", json!({"changed": ["total"]}));
    h.bus.publish(std::slice::from_ref(&marker)).await.unwrap();
    eventually("the later matching event", || async {
        handled.lock().unwrap().contains(&marker.id)
    })
    .await;
    assert_eq!(*handled.lock().unwrap(), vec![total.id, marker.id]);
    h.finish().await;
}

#[tokio::test]
async fn replay_redelivers_a_window_and_an_idempotent_handler_applies_nothing_twice() {
    let Some(mut h) = Harness::new().await else { return };
    let applied = Arc::new(Mutex::new(HashSet::new()));
    let deliveries = Arc::new(AtomicU32::new(0));
    let effects = Arc::new(AtomicU32::new(0));
    let (a, d, e) = (applied.clone(), deliveries.clone(), effects.clone());
    // Like an inbox: remembers applied ids and applies each once.
    let rule = Rule::new("test.inbox", json!({"source": [ORDERS]}), move |event| {
        let (a, d, e) = (a.clone(), d.clone(), e.clone());
        async move {
            d.fetch_add(1, Ordering::SeqCst);
            if a.lock().unwrap().insert(event.id) {
                e.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
    });
    h.bus.subscribe(rule.unwrap()).unwrap();
    h.start().await;

    let before = order_event("OrderCreated", json!({}));
    h.bus.publish(&[before]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let from = ecom_model::Timestamp::now();
    let window: Vec<Event> = (0..3)
        .map(|i| order_event("OrderCreated", json!({"n": i})))
        .collect();
    h.bus.publish(&window).await.unwrap();
    let to = ecom_model::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    h.bus
        .publish(&[order_event("OrderCreated", json!({}))])
        .await
        .unwrap();
    eventually("first deliveries", || async {
        deliveries.load(Ordering::SeqCst) == 5
    })
    .await;

    assert_eq!(h.bus.replay("test.inbox", from, to).await.unwrap(), 3);
    eventually("replayed deliveries", || async {
        deliveries.load(Ordering::SeqCst) >= 8
    })
    .await;
    // A later event is the barrier: once it is delivered, anything the
    // replay over-delivered would have been too.
    h.bus
        .publish(&[order_event("OrderCreated", json!({"marker": true}))])
        .await
        .unwrap();
    eventually("the later event", || async {
        deliveries.load(Ordering::SeqCst) >= 9
    })
    .await;
    assert_eq!(
        deliveries.load(Ordering::SeqCst),
        9,
        "only the window is replayed"
    );
    assert_eq!(
        effects.load(Ordering::SeqCst),
        6,
        "nothing is applied twice (five events and the later one)"
    );
    assert!(h.bus.replay("test.unknown", from, to).await.is_err());
    h.finish().await;
}

#[tokio::test]
async fn the_feed_sees_published_events_once() {
    let Some(mut h) = Harness::new().await else { return };
    let mut feed = h.bus.feed();
    h.start().await;
    let event = order_event("OrderCreated", json!({"total": 5}));
    h.bus.publish(std::slice::from_ref(&event)).await.unwrap();

    let seen = tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*seen, event);
    let again = tokio::time::timeout(Duration::from_millis(300), feed.recv()).await;
    assert!(again.is_err(), "an event shows once on the feed");
    h.finish().await;
}

fn recording_rule(name: &str, seen: &Arc<Mutex<Vec<uuid::Uuid>>>) -> Rule {
    let seen = seen.clone();
    Rule::new(name, json!({"source": [ORDERS]}), move |event| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(event.id);
            Ok(())
        }
    })
    .unwrap()
}

#[tokio::test]
async fn a_restarted_bus_resumes_where_its_rules_stopped() {
    let Some(mut h) = Harness::new().await else { return };
    let seen = Arc::new(Mutex::new(Vec::new()));
    h.bus.subscribe(recording_rule("test.durable", &seen)).unwrap();
    h.start().await;
    let first = order_event("OrderCreated", json!({}));
    h.bus.publish(std::slice::from_ref(&first)).await.unwrap();
    eventually("the first event", || async { seen.lock().unwrap().len() == 1 }).await;

    let mut h = h.restart().await;
    // Published while no process runs the rule.
    let second = order_event("OrderCreated", json!({}));
    h.bus.publish(std::slice::from_ref(&second)).await.unwrap();
    h.bus.subscribe(recording_rule("test.durable", &seen)).unwrap();
    h.start().await;
    eventually("the second event", || async { seen.lock().unwrap().len() >= 2 }).await;
    // A third event is the barrier: a redelivery of the first two would
    // come before it.
    let third = order_event("OrderCreated", json!({}));
    h.bus.publish(std::slice::from_ref(&third)).await.unwrap();
    eventually("the third event", || async {
        seen.lock().unwrap().contains(&third.id)
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), vec![first.id, second.id, third.id]);
    h.finish().await;
}

#[tokio::test]
async fn a_failing_event_older_than_max_age_is_dead_lettered_without_more_retries() {
    let Some(mut h) = Harness::new().await else { return };
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let rule = Rule::new("test.stale", json!({"source": [ORDERS]}), move |_| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            anyhow::bail!("still failing")
        }
    });
    h.bus.subscribe(rule.unwrap()).unwrap();
    h.start().await;
    let mut event = order_event("OrderCreated", json!({}));
    let two_hours = 2 * 3600 * 1_000_000;
    event.time = ecom_model::Timestamp::from_unix_micros(event.time.unix_micros() - two_hours).unwrap();
    h.bus.publish(std::slice::from_ref(&event)).await.unwrap();

    let bus = h.bus.clone();
    eventually("a dead letter", || async {
        !bus.dead_letters(None).await.unwrap().is_empty()
    })
    .await;
    let letters = h.bus.dead_letters(Some("test.stale")).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    h.finish().await;
}

#[tokio::test]
async fn a_batch_larger_than_the_clients_ack_window_is_published_and_delivered_whole() {
    let Some(mut h) = Harness::new().await else { return };
    let seen = Arc::new(Mutex::new(Vec::new()));
    h.bus.subscribe(recording_rule("test.bulk", &seen)).unwrap();
    h.start().await;
    let events: Vec<Event> = (0..12_000)
        .map(|i| order_event("OrderCreated", json!({"n": i})))
        .collect();
    tokio::time::timeout(Duration::from_secs(60), h.bus.publish(&events))
        .await
        .expect("publishing does not stall")
        .unwrap();

    eventually("every event handled", || async {
        seen.lock().unwrap().len() >= events.len()
    })
    .await;
    let distinct: HashSet<uuid::Uuid> = seen.lock().unwrap().iter().copied().collect();
    assert_eq!(distinct.len(), events.len());
    h.finish().await;
}

#[tokio::test]
async fn a_rule_consumer_made_before_patterns_were_recorded_gets_its_pattern_at_the_next_start() {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let Some(mut h) = Harness::new().await else { return };
    // What an older version left: the rule's consumer, without description.
    let js = async_nats::jetstream::new(async_nats::connect(&h.url).await.unwrap());
    let stream = js.get_stream(format!("{}ECOM", h.prefix)).await.unwrap();
    let filter = format!(
        "{}ecom.events.{}.OrderCreated",
        h.prefix,
        ecom_platform::bus::nats::token(ORDERS)
    );
    stream
        .create_consumer(pull::Config {
            durable_name: Some(format!("rule_{}", ecom_platform::bus::nats::token("test.old"))),
            filter_subject: filter.clone(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let rules = h.bus.known_rules().await.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].name, "test.old");
    assert_eq!(rules[0].pattern, format!("(subject {filter})"));

    let pattern = json!({"source": [ORDERS], "detail-type": ["OrderCreated"]});
    let rule = Rule::new("test.old", pattern.clone(), |_| async { Ok(()) }).unwrap();
    h.bus.subscribe(rule).unwrap();
    h.start().await;
    let rules = h.bus.known_rules().await.unwrap();
    assert_eq!(rules.len(), 1);
    let listed: serde_json::Value = serde_json::from_str(&rules[0].pattern).unwrap();
    assert_eq!(listed, pattern);
    h.finish().await;
}

/// An event whose message — its JSON and the `Nats-Msg-Id` header block
/// (`NATS/1.0\r\n`, `Nats-Msg-Id: <id>\r\n`, `\r\n`) — is `size` bytes.
fn event_of_size(size: usize) -> Event {
    let mut event = order_event("OrderCreated", json!({"pad": ""}));
    let headers = "NATS/1.0\r\nNats-Msg-Id: \r\n\r\n".len() + event.id.to_string().len();
    let base = serde_json::to_vec(&event).unwrap().len() + headers;
    event.detail = json!({"pad": "x".repeat(size - base)}).into();
    assert_eq!(serde_json::to_vec(&event).unwrap().len() + headers, size);
    event
}

/// The `max_payload` the server announces.
async fn max_payload(url: &str) -> usize {
    let client = async_nats::connect(url).await.unwrap();
    let max = client.server_info().max_payload;
    assert!(max > 0, "the server announces its max_payload");
    max
}

#[tokio::test]
async fn an_event_larger_than_the_servers_max_payload_is_refused_for_good_and_nothing_of_its_call_is_sent() {
    let Some(mut h) = Harness::new().await else { return };
    let seen = Arc::new(Mutex::new(Vec::new()));
    h.bus.subscribe(recording_rule("test.sizes", &seen)).unwrap();
    h.start().await;
    let max = max_payload(&h.url).await;

    let companion = order_event("OrderCreated", json!({}));
    // One byte over once the header is counted, though its JSON alone fits.
    let too_large = event_of_size(max + 1);
    let err = h
        .bus
        .publish(&[companion.clone(), too_large.clone()])
        .await
        .unwrap_err();
    assert!(ecom_platform::bus::is_permanent(&err), "{err:#}");
    let message = format!("{err:#}");
    for part in [too_large.id.to_string(), (max + 1).to_string(), max.to_string()] {
        assert!(message.contains(&part), "{message} names {part}");
    }

    // What fits exactly goes, and so does a normal event after the refusal.
    let largest = event_of_size(max);
    let normal = order_event("OrderCreated", json!({"n": 1}));
    h.bus.publish(std::slice::from_ref(&largest)).await.unwrap();
    h.bus.publish(std::slice::from_ref(&normal)).await.unwrap();
    eventually("the largest and the normal event", || async {
        let seen = seen.lock().unwrap();
        seen.contains(&largest.id) && seen.contains(&normal.id)
    })
    .await;
    // `normal` was published after the refused call and has been handled:
    // had any of that call been sent, it would have been handled first.
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.contains(&companion.id) && !seen.contains(&too_large.id),
        "nothing of the refused call was sent"
    );
    h.finish().await;
}

#[tokio::test]
async fn the_relay_sets_aside_an_event_too_large_for_nats_and_relays_the_rest() {
    use ecom_storage::sqlx::{self, Row as _};
    let Some(mut h) = Harness::new().await else { return };
    let seen = Arc::new(Mutex::new(Vec::new()));
    h.bus.subscribe(recording_rule("test.relayed", &seen)).unwrap();
    h.start().await;
    let max = max_payload(&h.url).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = ecom_storage::Db::open(
        &ecom_storage::StorageTarget::Sqlite {
            dir: dir.path().to_path_buf(),
        },
        "svc",
    )
    .await
    .unwrap();
    svc.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
        .await
        .unwrap();
    let (before, too_large, after) = (
        order_event("OrderCreated", json!({"n": 1})),
        event_of_size(max + 100),
        order_event("OrderCreated", json!({"n": 2})),
    );
    let outbox = ecom_platform::Outbox::new();
    let mut tx = svc.begin().await.unwrap();
    outbox
        .push_all(&mut tx, &[before.clone(), too_large.clone(), after.clone()])
        .await
        .unwrap();
    outbox.commit(tx).await.unwrap();

    let relayed = ecom_platform::relay::relay_batch("nats-relay", &svc, &h.bus)
        .await
        .unwrap();
    assert_eq!(relayed, 3);
    eventually("the events around the large one", || async {
        let seen = seen.lock().unwrap();
        seen.contains(&before.id) && seen.contains(&after.id)
    })
    .await;
    let row = sqlx::query("SELECT event_id, error FROM _outbox_rejected")
        .fetch_all(svc.reader())
        .await
        .unwrap();
    assert_eq!(row.len(), 1);
    assert_eq!(row[0].try_get::<String, _>(0).unwrap(), too_large.id.to_string());
    let error: String = row[0].try_get(1).unwrap();
    assert!(error.contains("max_payload"), "{error}");
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM _outbox")
        .fetch_one(svc.reader())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(left, 0);
    svc.close().await;
    h.finish().await;
}

#[tokio::test]
async fn replicas_starting_together_all_start_and_share_the_events() {
    let Some(h) = Harness::new().await else { return };
    // Eight processes of one service: each connects and starts the same
    // rules on the same streams at the same moment, as replicas started
    // together by an orchestrator do. Each would create the rules'
    // consumers with its own start time.
    const REPLICAS: usize = 8;
    const RULES: [&str; 6] = ["test.a", "test.b", "test.c", "test.d", "test.e", "test.f"];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connected =
        futures::future::join_all((0..REPLICAS).map(|_| NatsBus::connect(&h.url, settings(), &h.prefix)))
            .await;
    let mut buses = Vec::new();
    for bus in connected {
        let bus = Bus::new(Arc::new(bus.expect("every replica connects")));
        for rule in RULES {
            bus.subscribe(recording_rule(rule, &seen)).unwrap();
        }
        buses.push(bus);
    }
    let shutdown = CancellationToken::new();
    let started = futures::future::join_all(buses.iter().map(|bus| bus.start(shutdown.clone()))).await;
    let mut running = Vec::new();
    for (i, result) in started.into_iter().enumerate() {
        match result {
            Ok(handle) => running.push(handle),
            Err(e) => panic!("replica {i} failed to start: {e:#}"),
        }
    }
    let rules = h.bus.known_rules().await.unwrap();
    assert_eq!(rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), RULES);

    // The replicas share each rule's work: every event reaches each rule.
    let events: Vec<Event> = (0..20).map(|_| order_event("OrderCreated", json!({}))).collect();
    h.bus.publish(&events).await.unwrap();
    eventually("every event at each rule", || async {
        let seen = seen.lock().unwrap();
        events
            .iter()
            .all(|e| seen.iter().filter(|id| **id == e.id).count() >= RULES.len())
    })
    .await;
    shutdown.cancel();
    for handle in running {
        handle.await.unwrap();
    }
    h.finish().await;
}
