//! One conformance suite for every bus backend: each case is a function of
//! a fresh [`Env`], run on the embedded bus over SQLite always, over
//! PostgreSQL when `ECOM_TEST_DATABASE_URL` is set, and on NATS JetStream
//! when `ECOM_TEST_BUS_URL` is set (a note says which were skipped).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ecom_model::Timestamp;
use ecom_platform::bus::embedded::EmbeddedBus;
use ecom_platform::bus::BusBackend;
use ecom_platform::{inbox, Bus, Event, Rule};
use ecom_runtime::config::BusSettings;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, StorageTarget};
use serde_json::json;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    EmbeddedSqlite,
    EmbeddedPostgres,
    Nats,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn kinds() -> Vec<Kind> {
    let mut kinds = vec![Kind::EmbeddedSqlite];
    match env_var("ECOM_TEST_DATABASE_URL") {
        Some(_) => kinds.push(Kind::EmbeddedPostgres),
        None => eprintln!("note: ECOM_TEST_DATABASE_URL is not set: embedded bus on PostgreSQL skipped"),
    }
    match env_var("ECOM_TEST_BUS_URL") {
        Some(_) => kinds.push(Kind::Nats),
        None => eprintln!("note: ECOM_TEST_BUS_URL is not set: NATS JetStream backend skipped"),
    }
    kinds
}

/// Small delays so that retries happen within a test's patience.
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

/// A fresh place for one backend: its own data dir, schemas or streams.
struct Env {
    kind: Kind,
    dir: tempfile::TempDir,
    prefix: String,
    dbs: Mutex<Vec<Db>>,
}

impl Env {
    fn new(kind: Kind) -> Env {
        Env {
            kind,
            dir: tempfile::tempdir().unwrap(),
            prefix: format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..10]),
            dbs: Mutex::default(),
        }
    }

    fn target(&self) -> StorageTarget {
        match (self.kind, env_var("ECOM_TEST_DATABASE_URL")) {
            (Kind::EmbeddedPostgres, Some(url)) => StorageTarget::Postgres {
                url,
                schema_prefix: self.prefix.clone(),
                max_connections: 5,
            },
            _ => StorageTarget::Sqlite {
                dir: self.dir.path().to_path_buf(),
            },
        }
    }

    async fn open(&self, name: &str) -> Db {
        let db = Db::open(&self.target(), name).await.unwrap();
        self.dbs.lock().unwrap().push(db.clone());
        db
    }

    /// A bus on this env's backend. Calling it again gives a new handle on
    /// the same durable state, as a restarted process would have.
    async fn bus(&self) -> Bus {
        let backend: Arc<dyn BusBackend> = match self.kind {
            Kind::EmbeddedSqlite | Kind::EmbeddedPostgres => Arc::new(
                EmbeddedBus::open(self.open("platform").await, settings())
                    .await
                    .unwrap(),
            ),
            Kind::Nats => nats::connect(&self.prefix).await,
        };
        Bus::new(backend)
    }

    /// A service database with the outbox and inbox tables, and a table of
    /// effects for handlers to write.
    async fn service_db(&self) -> Db {
        let db = self.open("svc").await;
        db.migrate(ecom_platform::outbox::SCOPE, ecom_platform::outbox::MIGRATIONS)
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS effects (event_id TEXT NOT NULL)")
            .execute(db.writer())
            .await
            .unwrap();
        db
    }

    /// Puts bytes that are not an event on the bus, as a foreign producer could.
    async fn publish_raw(&self, bus: &Bus, source: &str, detail_type: &str, payload: &[u8]) {
        match self.kind {
            Kind::Nats => nats::publish_raw(&self.prefix, source, detail_type, payload).await,
            _ => bus
                .backend()
                .publish_raw(source, detail_type, payload)
                .await
                .unwrap(),
        }
    }

    async fn cleanup(self) {
        let dbs: Vec<_> = self.dbs.lock().unwrap().drain(..).collect();
        for db in dbs {
            db.close().await;
        }
        match self.kind {
            Kind::EmbeddedPostgres => drop_schemas(&self.prefix).await,
            Kind::Nats => nats::cleanup(&self.prefix).await,
            Kind::EmbeddedSqlite => {}
        }
    }
}

/// The NATS half of the suite (stays "skipped" until the backend is in
/// this build).
mod nats {
    use super::*;
    use ecom_platform::bus::nats::NatsBus;

    async fn open(prefix: &str) -> NatsBus {
        let url = env_var("ECOM_TEST_BUS_URL").expect("ECOM_TEST_BUS_URL");
        NatsBus::connect(&url, settings(), prefix).await.unwrap()
    }

    pub async fn connect(prefix: &str) -> std::sync::Arc<dyn BusBackend> {
        std::sync::Arc::new(open(prefix).await)
    }

    pub async fn publish_raw(prefix: &str, source: &str, detail_type: &str, payload: &[u8]) {
        open(prefix)
            .await
            .publish_raw(source, detail_type, payload)
            .await
            .unwrap();
    }

    pub async fn cleanup(prefix: &str) {
        let _ = open(prefix).await.delete_streams().await;
    }
}

async fn drop_schemas(prefix: &str) {
    if let Some(url) = env_var("ECOM_TEST_DATABASE_URL") {
        let _ = ecom_storage::drop_schemas(&url, prefix).await;
    }
}

/// Runs `case` once per backend, each on a fresh env.
async fn on_each_backend<F, Fut>(case: F)
where
    F: Fn(Arc<Env>) -> Fut,
    Fut: Future<Output = ()>,
{
    for kind in kinds() {
        eprintln!("running on {kind:?}");
        let env = Arc::new(Env::new(kind));
        case(env.clone()).await;
        if let Ok(env) = Arc::try_unwrap(env) {
            env.cleanup().await;
        }
    }
}

/// Starts delivery; cancel the token to stop it.
async fn start(bus: &Bus) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let handle = bus.start(stop.clone()).await.unwrap();
    (stop, handle)
}

async fn stop((token, handle): (CancellationToken, tokio::task::JoinHandle<()>)) {
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
}

/// Waits until `check` holds (or fails the test after 15 s).
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn order_event(detail: serde_json::Value) -> Event {
    Event::new("ecommerce.orders", "OrderCreated", vec!["o-1".into()], detail)
}

fn counting_rule(name: &str, pattern: serde_json::Value, calls: Arc<AtomicUsize>) -> Rule {
    Rule::new(name, pattern, move |_event| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    })
    .unwrap()
}

async fn effects(db: &Db) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM effects")
        .fetch_one(db.reader())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// An idempotent handler: the effect and the inbox record commit together.
fn inbox_rule(name: &'static str, db: Db, calls: Arc<AtomicUsize>) -> Rule {
    Rule::new(
        name,
        json!({"source": ["ecommerce.orders"]}),
        move |event: Event| {
            let (db, calls) = (db.clone(), calls.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let Some(mut tx) = inbox::begin(&db, name, event.id).await? else {
                    return Ok(());
                };
                sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                    .bind(event.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_fails_twice_then_succeeds_receives_the_event_three_times_and_nothing_is_dead_lettered(
) {
    on_each_backend(|env| async move {
        let bus = env.bus().await;
        // Which events (by their `n`) the handler was called with, in order.
        let calls: Arc<Mutex<Vec<i64>>> = Arc::default();
        let c = calls.clone();
        bus.subscribe(
            Rule::new(
                "test.flaky",
                json!({"source": ["ecommerce.orders"]}),
                move |e: Event| {
                    let n = e.detail.value()["n"].as_i64().unwrap_or(0);
                    let attempt = {
                        let mut calls = c.lock().unwrap();
                        calls.push(n);
                        calls.iter().filter(|&&m| m == n).count()
                    };
                    async move {
                        // Event 1 fails twice; any other event succeeds at once.
                        anyhow::ensure!(n != 1 || attempt > 2, "failure number {attempt}");
                        Ok(())
                    }
                },
            )
            .unwrap(),
        )
        .unwrap();
        let running = start(&bus).await;
        bus.publish(&[order_event(json!({"n": 1}))]).await.unwrap();
        let count = |n: i64| calls.lock().unwrap().iter().filter(|&&m| m == n).count();
        eventually("the third attempt ran", || async { count(1) >= 3 }).await;
        // A later event on the same rule is the barrier: once it has been
        // handled, the rule is past event 1, so a redelivery after its
        // success would have shown by now.
        bus.publish(&[order_event(json!({"n": 2}))]).await.unwrap();
        eventually("the later event is handled", || async { count(2) >= 1 }).await;
        assert_eq!(
            count(1),
            3,
            "delivered again after success: {:?}",
            calls.lock().unwrap()
        );
        assert_eq!(count(2), 1, "{:?}", calls.lock().unwrap());
        assert!(bus.dead_letters(Some("test.flaky")).await.unwrap().is_empty());
        stop(running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_failing_every_attempt_is_dead_lettered_with_its_error_and_redrive_delivers_it() {
    on_each_backend(|env| async move {
        let bus = env.bus().await;
        let broken = Arc::new(AtomicBool::new(true));
        let delivered = Arc::new(AtomicUsize::new(0));
        let (b, d) = (broken.clone(), delivered.clone());
        bus.subscribe(
            Rule::new(
                "test.strict",
                json!({"detail-type": ["OrderCreated"]}),
                move |_| {
                    let (b, d) = (b.clone(), d.clone());
                    async move {
                        anyhow::ensure!(!b.load(Ordering::SeqCst), "payment service unreachable");
                        d.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                },
            )
            .unwrap(),
        )
        .unwrap();
        let running = start(&bus).await;
        let event = order_event(json!({"orderId": "o-1"}));
        bus.publish(std::slice::from_ref(&event)).await.unwrap();
        eventually("the event is dead-lettered", || async {
            !bus.dead_letters(Some("test.strict")).await.unwrap().is_empty()
        })
        .await;
        let letters = bus.dead_letters(None).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].rule, "test.strict");
        assert_eq!(letters[0].event, event);
        assert_eq!(letters[0].attempts, 3);
        assert!(
            letters[0].last_error.contains("payment service unreachable"),
            "{}",
            letters[0].last_error
        );
        assert!(bus.dead_letters(Some("test.other")).await.unwrap().is_empty());

        broken.store(false, Ordering::SeqCst);
        assert_eq!(bus.redrive(Some("test.strict")).await.unwrap(), 1);
        eventually("the redriven event is delivered", || async {
            delivered.load(Ordering::SeqCst) == 1
        })
        .await;
        eventually("the dead-letter queue is empty", || async {
            bus.dead_letters(None).await.unwrap().is_empty()
        })
        .await;
        stop(running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_one_event_id_twice_has_one_effect() {
    on_each_backend(|env| async move {
        let bus = env.bus().await;
        let calls = Arc::new(AtomicUsize::new(0));
        bus.subscribe(counting_rule(
            "test.once",
            json!({"source": ["ecommerce.orders"]}),
            calls.clone(),
        ))
        .unwrap();
        let running = start(&bus).await;
        let event = order_event(json!({"n": 1}));
        bus.publish(&[event.clone(), event.clone()]).await.unwrap();
        bus.publish(std::slice::from_ref(&event)).await.unwrap();
        eventually("the event is delivered", || async {
            calls.load(Ordering::SeqCst) >= 1
        })
        .await;
        // A later event (another id) is the barrier: once it has been
        // handled, the copies published before it would have been too.
        bus.publish(&[order_event(json!({"n": 2}))]).await.unwrap();
        eventually("the later event is delivered", || async {
            calls.load(Ordering::SeqCst) >= 2
        })
        .await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one call for the id published three times, one for the later event"
        );
        // A batch with an id published before between two new ones: the new
        // ones are delivered, the old one not again.
        bus.publish(&[
            order_event(json!({"n": 3})),
            event.clone(),
            order_event(json!({"n": 4})),
        ])
        .await
        .unwrap();
        eventually("the new events of a mixed batch are delivered", || async {
            calls.load(Ordering::SeqCst) >= 4
        })
        .await;
        bus.publish(&[order_event(json!({"n": 5}))]).await.unwrap();
        eventually("the barrier after it is delivered", || async {
            calls.load(Ordering::SeqCst) >= 5
        })
        .await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            5,
            "both new ids of the mixed batch delivered, the old one not again"
        );
        stop(running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_window_redelivers_archived_events_and_an_inbox_handler_changes_nothing_twice() {
    on_each_backend(|env| async move {
        let bus = env.bus().await;
        let db = env.service_db().await;
        let calls = Arc::new(AtomicUsize::new(0));
        bus.subscribe(inbox_rule("test.replayed", db.clone(), calls.clone()))
            .unwrap();
        // A rule the replay must not touch.
        let bystander = Arc::new(AtomicUsize::new(0));
        bus.subscribe(counting_rule(
            "test.bystander",
            json!({"source": ["ecommerce.orders"]}),
            bystander.clone(),
        ))
        .unwrap();
        let running = start(&bus).await;
        let from = Timestamp::now();
        let events: Vec<Event> = (0..3).map(|n| order_event(json!({"n": n}))).collect();
        bus.publish(&events).await.unwrap();
        bus.publish(&[Event::new("ecommerce.users", "UserCreated", vec![], json!({}))])
            .await
            .unwrap();
        eventually("three effects", || async { effects(&db).await == 3 }).await;
        eventually("the bystander saw them", || async {
            bystander.load(Ordering::SeqCst) == 3
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let to = Timestamp::now();

        let replayed = bus.replay("test.replayed", from, to).await.unwrap();
        assert_eq!(replayed, 3, "the three order events, not the user event");
        eventually("the replay is delivered", || async {
            calls.load(Ordering::SeqCst) == 6
        })
        .await;
        assert_eq!(effects(&db).await, 3);
        // Replaying again is just as harmless.
        bus.replay("test.replayed", from, to).await.unwrap();
        eventually("the second replay is delivered", || async {
            calls.load(Ordering::SeqCst) == 9
        })
        .await;
        assert_eq!(effects(&db).await, 3);
        assert_eq!(bystander.load(Ordering::SeqCst), 3);
        assert!(bus.replay("test.nobody", from, to).await.is_err());
        stop(running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_goes_to_the_dead_letter_queue_and_later_events_still_flow() {
    on_each_backend(|env| async move {
        let bus = env.bus().await;
        let calls = Arc::new(AtomicUsize::new(0));
        bus.subscribe(counting_rule(
            "test.robust",
            json!({"source": ["ecommerce.orders"]}),
            calls.clone(),
        ))
        .unwrap();
        let running = start(&bus).await;
        env.publish_raw(
            &bus,
            "ecommerce.orders",
            "OrderCreated",
            b"{\"id\": \"not an event\"",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        bus.publish(&[order_event(json!({"n": 1}))]).await.unwrap();
        eventually("the good event is delivered", || async {
            calls.load(Ordering::SeqCst) == 1
        })
        .await;
        eventually("the bad one is dead-lettered", || async {
            bus.dead_letters(Some("test.robust")).await.unwrap().len() == 1
        })
        .await;
        let letters = bus.dead_letters(Some("test.robust")).await.unwrap();
        assert!(
            letters[0].last_error.contains("malformed"),
            "{}",
            letters[0].last_error
        );
        stop(running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_receives_only_the_events_its_pattern_matches() {
    on_each_backend(|env| async move {
        let bus = env.bus().await;
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let rule = |name: &'static str, pattern| {
            let seen = seen.clone();
            Rule::new(name, pattern, move |e: Event| {
                let seen = seen.clone();
                async move {
                    let what = match e.detail.value()["marker"].as_bool() {
                        Some(true) => format!("{} marker", e.detail_type),
                        _ => e.detail_type,
                    };
                    seen.lock().unwrap().push((name.to_owned(), what));
                    Ok(())
                }
            })
            .unwrap()
        };
        bus.subscribe(rule(
            "test.created",
            json!({"source": ["ecommerce.orders"], "detail-type": ["OrderCreated"]}),
        ))
        .unwrap();
        bus.subscribe(rule(
            "test.total-changed",
            json!({"detail-type": ["OrderModified"], "detail": {"changed": ["total"]}}),
        ))
        .unwrap();
        bus.subscribe(rule(
            "test.big",
            json!({"detail": {"total": [{"numeric": [">=", 1000]}]}}),
        ))
        .unwrap();
        let running = start(&bus).await;
        let ev = |dt: &str, detail| Event::new("ecommerce.orders", dt, vec![], detail);
        bus.publish(&[
            ev("OrderCreated", json!({"total": 10})),
            ev("OrderModified", json!({"changed": ["status"]})),
            ev(
                "OrderModified",
                json!({"changed": ["products", "total"], "total": 5000}),
            ),
            ev("OrderDeleted", json!({"total": 1})),
            Event::new("ecommerce.users", "OrderCreated", vec![], json!({})),
        ])
        .await
        .unwrap();
        eventually("three deliveries", || async { seen.lock().unwrap().len() >= 3 }).await;
        // Later markers that every rule matches are the barrier: once each
        // rule has handled its marker, it is past the events above, so a
        // delivery its pattern should have refused would have shown.
        bus.publish(&[
            ev("OrderCreated", json!({"total": 1000, "marker": true})),
            ev(
                "OrderModified",
                json!({"changed": ["total"], "total": 1000, "marker": true}),
            ),
        ])
        .await
        .unwrap();
        let markers = |rule: &str| {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|(name, marker)| name == rule && marker.ends_with("marker"))
                .count()
        };
        eventually("every rule handled its markers", || async {
            markers("test.created") == 1 && markers("test.total-changed") == 1 && markers("test.big") == 2
        })
        .await;
        let mut got: Vec<(String, String)> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, what)| !what.ends_with("marker"))
            .cloned()
            .collect();
        got.sort();
        let want = [
            ("test.big", "OrderModified"),
            ("test.created", "OrderCreated"),
            ("test.total-changed", "OrderModified"),
        ];
        let want: Vec<(String, String)> = want.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect();
        assert_eq!(got, want);
        stop(running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_no_consumer_runs_are_delivered_after_a_restart() {
    on_each_backend(|env| async move {
        // First "process": registers its rule, then stops.
        let calls = Arc::new(AtomicUsize::new(0));
        let first = env.bus().await;
        first
            .subscribe(counting_rule(
                "test.durable",
                json!({"source": ["ecommerce.orders"]}),
                calls.clone(),
            ))
            .unwrap();
        stop(start(&first).await).await;
        // Meanwhile someone else publishes (the CLI, another service).
        let publisher = env.bus().await;
        publisher
            .publish(&[order_event(json!({"n": 1})), order_event(json!({"n": 2}))])
            .await
            .unwrap();
        // `stop` has joined the first consumer: nothing can have run them.
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // The consumer comes back.
        let second = env.bus().await;
        second
            .subscribe(counting_rule(
                "test.durable",
                json!({"source": ["ecommerce.orders"]}),
                calls.clone(),
            ))
            .unwrap();
        let running = start(&second).await;
        eventually("both events are delivered", || async {
            calls.load(Ordering::SeqCst) >= 2
        })
        .await;
        // And each once: a later event is the barrier (handled after them).
        second.publish(&[order_event(json!({"n": 3}))]).await.unwrap();
        eventually("the later event is delivered", || async {
            calls.load(Ordering::SeqCst) >= 3
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "each event once");
        stop(running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_shows_every_published_event() {
    on_each_backend(|env| async move {
        let bus = env.bus().await;
        let running = start(&bus).await;
        let mut feed = bus.feed();
        let events: Vec<Event> = (0..3)
            .map(|n| Event::new("ecommerce.delivery", "DeliveryCompleted", vec![], json!({"n": n})))
            .collect();
        bus.publish(&events[..2]).await.unwrap();
        bus.publish(&events[2..]).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let event = tokio::time::timeout(Duration::from_secs(10), feed.recv())
                .await
                .expect("an event on the feed")
                .unwrap();
            got.push((*event).clone());
        }
        got.sort_by_key(|e| e.detail.value()["n"].as_i64());
        assert_eq!(got, events);
        stop(running).await;
    })
    .await;
}

/// A rule whose handler waits while `blocked` holds, then succeeds.
fn blocking_rule(name: &str, blocked: Arc<AtomicBool>) -> Rule {
    Rule::new(name, json!({"source": ["ecommerce.orders"]}), move |_| {
        let blocked = blocked.clone();
        async move {
            while blocked.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        }
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_gauge_shows_the_age_of_the_oldest_undelivered_event_and_returns_to_zero() {
    on_each_backend(|env| async move {
        let bus = env.bus().await;
        let blocked = Arc::new(AtomicBool::new(true));
        bus.subscribe(blocking_rule("test.lagging", blocked.clone()))
            .unwrap();
        let metrics = ecom_platform::bus::RuleMetrics::new("test.lagging");
        let running = start(&bus).await;
        bus.publish(&[order_event(json!({"n": 1}))]).await.unwrap();
        // Gauges are refreshed every 5 s; `eventually` waits up to 15.
        eventually("the lag shows the blocked event", || async {
            metrics.lag_ms.get() > 0 && metrics.backlog.get() > 0
        })
        .await;
        blocked.store(false, Ordering::SeqCst);
        eventually("the lag is back to zero", || async {
            metrics.lag_ms.get() == 0 && metrics.backlog.get() == 0
        })
        .await;
        stop(running).await;
    })
    .await;
}

/// A rule whose handler fails for good on every event.
fn refusing_rule(name: &str) -> Rule {
    Rule::new(name, json!({"source": ["ecommerce.orders"]}), |_| async {
        Err(ecom_platform::bus::permanent("refused"))
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_oldest_first_up_to_a_limit_and_purged_per_rule_or_all() {
    on_each_backend(|env| async move {
        let bus = env.bus().await;
        bus.subscribe(refusing_rule("test.purged")).unwrap();
        bus.subscribe(refusing_rule("test.kept")).unwrap();
        let running = start(&bus).await;
        let first = order_event(json!({"n": 1}));
        let second = order_event(json!({"n": 2}));
        for (event, n) in [(&first, 1), (&second, 2)] {
            bus.publish(std::slice::from_ref(event)).await.unwrap();
            eventually("both rules dead-lettered the event", || async {
                bus.dead_letters(Some("test.purged")).await.unwrap().len() == n
                    && bus.dead_letters(Some("test.kept")).await.unwrap().len() == n
            })
            .await;
        }
        let oldest = bus.first_dead_letters(Some("test.kept"), 1).await.unwrap();
        assert_eq!(oldest.len(), 1);
        assert_eq!(oldest[0].event.id, first.id, "the oldest comes first");
        assert_eq!(bus.first_dead_letters(None, 3).await.unwrap().len(), 3);
        assert!(bus.first_dead_letters(None, 0).await.unwrap().is_empty());

        assert_eq!(bus.purge(Some("test.purged")).await.unwrap(), 2);
        assert!(bus.dead_letters(Some("test.purged")).await.unwrap().is_empty());
        assert_eq!(bus.dead_letters(Some("test.kept")).await.unwrap().len(), 2);
        assert_eq!(
            bus.purge(Some("test.purged")).await.unwrap(),
            0,
            "a known rule, nothing left"
        );
        let err = bus.purge(Some("test.nobody")).await.unwrap_err().to_string();
        assert!(err.contains("unknown rule 'test.nobody'"), "{err}");
        assert!(err.contains("test.kept"), "names the known rules: {err}");
        assert_eq!(bus.purge(None).await.unwrap(), 2);
        assert!(bus.dead_letters(None).await.unwrap().is_empty());
        stop(running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_lists_the_rules_every_process_registered_with_their_patterns() {
    on_each_backend(|env| async move {
        let pattern = json!({"source": ["ecommerce.orders"], "detail-type": ["OrderCreated"]});
        let server = env.bus().await;
        server
            .subscribe(counting_rule("test.listed", pattern.clone(), Arc::default()))
            .unwrap();
        server
            .subscribe(counting_rule(
                "other.listed",
                json!({"source": ["ecommerce.users"]}),
                Arc::default(),
            ))
            .unwrap();
        let running = start(&server).await;
        // Another process (the CLI) sees them.
        let cli = env.bus().await;
        let rules = cli.known_rules().await.unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["other.listed", "test.listed"]);
        let listed: serde_json::Value = serde_json::from_str(&rules[1].pattern).unwrap();
        assert_eq!(listed, pattern);
        stop(running).await;
    })
    .await;
}

async fn pending(db: &Db, rule: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM bus_deliveries WHERE rule = $1")
        .bind(rule.to_owned())
        .fetch_one(db.reader())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_removes_the_stored_rules_its_services_no_longer_register_and_no_others() {
    on_each_backend(|env| async move {
        // How many deliveries wait for a rule (the embedded bus's table;
        // NATS keeps no per-rule copies, so there only the rule list counts).
        let embedded = env.kind != Kind::Nats;
        let db = env.open("platform").await;
        let pending = |rule: &'static str| {
            let db = db.clone();
            async move {
                if embedded {
                    Some(pending(&db, rule).await)
                } else {
                    None
                }
            }
        };
        let source = json!({"source": ["ecommerce.orders"]});
        // An older version of the service: three rules, and another
        // service's rule, served by another process.
        let old = env.bus().await;
        for name in ["svc.kept", "svc.removed", "other.rule"] {
            old.subscribe(counting_rule(name, source.clone(), Arc::default()))
                .unwrap();
        }
        stop(start(&old).await).await;
        old.publish(&[order_event(json!({"n": 1}))]).await.unwrap();
        assert_ne!(pending("svc.removed").await, Some(0));

        // The new version no longer has `svc.removed`.
        let calls = Arc::new(AtomicUsize::new(0));
        let new = env.bus().await;
        new.subscribe(counting_rule("svc.kept", source.clone(), calls.clone()))
            .unwrap();
        let running = start(&new).await;
        let names: Vec<String> = new
            .known_rules()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["other.rule", "svc.kept"]);
        if embedded {
            assert_eq!(pending("svc.removed").await, Some(0), "its deliveries are gone");
            assert_eq!(
                pending("other.rule").await,
                Some(1),
                "another service's rule is untouched"
            );
        }
        new.publish(&[order_event(json!({"n": 2}))]).await.unwrap();
        eventually("the kept rule got both events", || async {
            calls.load(Ordering::SeqCst) == 2
        })
        .await;
        if embedded {
            assert_eq!(
                pending("svc.removed").await,
                Some(0),
                "nothing queued for it any more"
            );
            assert_eq!(pending("other.rule").await, Some(2));
        }
        stop(running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_window_of_many_batches_re_sends_each_matching_event_once() {
    on_each_backend(|env| async move {
        let bus = env.bus().await;
        let calls = Arc::new(AtomicUsize::new(0));
        bus.subscribe(counting_rule(
            "test.bulk",
            json!({"source": ["ecommerce.orders"]}),
            calls.clone(),
        ))
        .unwrap();
        let running = start(&bus).await;
        let from = Timestamp::now();
        // More than a replay batch on either backend, with events of another
        // source in between that the replay must skip.
        let events: Vec<Event> = (0..1100)
            .map(|n| match n % 10 {
                0 => Event::new("ecommerce.users", "UserCreated", vec![], json!({"n": n})),
                _ => order_event(json!({"n": n})),
            })
            .collect();
        for chunk in events.chunks(250) {
            bus.publish(chunk).await.unwrap();
        }
        eventually("every order event is delivered", || async {
            calls.load(Ordering::SeqCst) == 990
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let to = Timestamp::now();
        assert_eq!(bus.replay("test.bulk", from, to).await.unwrap(), 990);
        eventually("every replayed event is delivered", || async {
            calls.load(Ordering::SeqCst) == 1980
        })
        .await;
        stop(running).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_handled_while_delivery_stops_is_not_delivered_again_after_a_restart() {
    on_each_backend(|env| async move {
        // First "process": its handler is still running when the stop comes.
        let calls = Arc::new(AtomicUsize::new(0));
        let blocked = Arc::new(AtomicBool::new(true));
        let first = env.bus().await;
        let (c, b) = (calls.clone(), blocked.clone());
        first
            .subscribe(
                Rule::new(
                    "test.stopping",
                    json!({"source": ["ecommerce.orders"]}),
                    move |_| {
                        let (calls, blocked) = (c.clone(), b.clone());
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            while blocked.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            Ok(())
                        }
                    },
                )
                .unwrap(),
            )
            .unwrap();
        let (token, handle) = start(&first).await;
        first.publish(&[order_event(json!({"n": 1}))]).await.unwrap();
        eventually("the handler runs", || async { calls.load(Ordering::SeqCst) == 1 }).await;
        token.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // It succeeds after the stop was asked for; delivery ends after it.
        blocked.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("delivery stops")
            .unwrap();
        // The next process gets only what comes next.
        let second = env.bus().await;
        second
            .subscribe(counting_rule(
                "test.stopping",
                json!({"source": ["ecommerce.orders"]}),
                calls.clone(),
            ))
            .unwrap();
        let running = start(&second).await;
        second.publish(&[order_event(json!({"n": 2}))]).await.unwrap();
        eventually("the later event is delivered", || async {
            calls.load(Ordering::SeqCst) >= 2
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the first event once");
        stop(running).await;
    })
    .await;
}
