//! The test harness: boots the real platform on a random port with a fresh
//! data directory, and offers one helper per kind of call.
//!
//! Backend pairs: SQLite + the embedded bus always; PostgreSQL (fresh
//! schemas) when `ECOM_TEST_DATABASE_URL` is set, with NATS JetStream (fresh
//! streams) as its bus when `ECOM_TEST_BUS_URL` is set too — the two pairs
//! the platform is deployed with.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ecom::App;
use ecom_platform::{Bus, Event};
use ecom_runtime::{Config, ConfigArgs, ConfigFile, ServiceKey};
use ecom_storage::StorageTarget;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Which storage a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Sqlite,
    Postgres,
}

impl Storage {
    /// Where this storage keeps a test's data: SQLite files in `dir`, or
    /// the schemas with `schema_prefix` in the test database.
    pub fn target(self, dir: &std::path::Path, schema_prefix: &str) -> StorageTarget {
        match self {
            Storage::Sqlite => StorageTarget::Sqlite {
                dir: dir.to_path_buf(),
            },
            Storage::Postgres => StorageTarget::Postgres {
                url: postgres_url().expect("ECOM_TEST_DATABASE_URL"),
                schema_prefix: schema_prefix.to_owned(),
                max_connections: 5,
            },
        }
    }
}

/// The storages to test: SQLite always, PostgreSQL when
/// `ECOM_TEST_DATABASE_URL` is set (a note says when it was skipped).
pub fn storages() -> Vec<Storage> {
    let mut out = vec![Storage::Sqlite];
    if postgres_url().is_some() {
        out.push(Storage::Postgres);
    } else {
        eprintln!("note: ECOM_TEST_DATABASE_URL is not set: PostgreSQL variant skipped");
    }
    out
}

fn nats_url() -> Option<String> {
    std::env::var("ECOM_TEST_BUS_URL").ok().filter(|u| !u.is_empty())
}

fn postgres_url() -> Option<String> {
    std::env::var("ECOM_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Runs `test` once per storage backend, each on a fresh app.
pub async fn on_each_storage<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    for storage in storages() {
        let bus = if storage == Storage::Postgres && nats_url().is_some() {
            "NATS"
        } else {
            "embedded bus"
        };
        eprintln!("running on {storage:?} + {bus}");
        let app = TestApp::spawn(storage).await;
        test(app.clone_handle()).await;
        app.stop().await;
    }
}

/// Like [`on_each_storage`], running only `services`, reaching the others
/// at `service_urls`.
pub async fn on_each_storage_with<F, Fut>(services: &[&str], service_urls: &[(&str, &str)], test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    for storage in storages() {
        eprintln!("running on {storage:?}");
        let app = TestApp::spawn_with(storage, services, service_urls).await;
        test(app.clone_handle()).await;
        app.stop().await;
    }
}

/// A running platform.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub storage: Storage,
    pub key: ServiceKey,
    pub data_dir: std::path::PathBuf,
    schema_prefix: String,
    /// The platform's bus: publish events to it directly.
    pub bus: Bus,
    /// Every event the bus carried since the app started.
    seen: Arc<Mutex<Vec<Event>>>,
    guard: Option<Guard>,
}

/// A replica started by [`TestApp::spawn_replica`].
pub struct Replica {
    /// Its base URL.
    pub base: String,
    shutdown: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    /// Stops it, letting requests finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.handle.await.unwrap().unwrap();
    }
}

struct Guard {
    _dir: tempfile::TempDir,
    shutdown: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Boots every service on `storage`.
    pub async fn spawn(storage: Storage) -> TestApp {
        TestApp::spawn_with(storage, &[], &[]).await
    }

    /// Boots the named services (all when empty) on `storage`, reaching
    /// other services at `service_urls` (`("orders", "http://…")`).
    pub async fn spawn_with(storage: Storage, services: &[&str], service_urls: &[(&str, &str)]) -> TestApp {
        TestApp::spawn_configured(storage, services, service_urls, |_| {}).await
    }

    /// Boots every service on `storage` with `configure` applied to the
    /// configuration first (server limits, users limits, the listener…).
    pub async fn spawn_with_config(storage: Storage, configure: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::spawn_configured(storage, &[], &[], configure).await
    }

    /// [`TestApp::spawn_with`] with `configure` applied to the configuration.
    /// Tests sign up many users from 127.0.0.1, so the per-address sign-up
    /// limit is off unless `configure` sets one.
    pub async fn spawn_configured(
        storage: Storage,
        services: &[&str],
        service_urls: &[(&str, &str)],
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let schema_prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let args = ConfigArgs {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().to_path_buf()),
            bus_url: nats_url().filter(|_| storage == Storage::Postgres),
            bus_prefix: Some(schema_prefix.clone()),
            service_urls: service_urls.iter().map(|(n, u)| format!("{n}={u}")).collect(),
            ..Default::default()
        };
        let mut config = Config::merge(&args, ConfigFile::default(), &[], |_| None).unwrap();
        config.users.sign_ups_per_hour = 0;
        configure(&mut config);
        let target = storage.target(dir.path(), &schema_prefix);
        let key = ServiceKey::load_or_create(config.service_key.as_deref(), dir.path()).unwrap();
        let names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
        let app = App::build_with(config, &names, target).await.unwrap();
        let base = format!("http://{}", app.addr().unwrap());
        let bus = app.bus().clone();
        let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
        let mut feed = bus.feed();
        let sink = seen.clone();
        tokio::spawn(async move {
            loop {
                match feed.recv().await {
                    Ok(event) => sink.lock().unwrap().push((*event).clone()),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
        });
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        let app = TestApp {
            base,
            // Shorter than the server's idle (header) timeout.
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            storage,
            key,
            data_dir: dir.path().to_path_buf(),
            schema_prefix,
            bus,
            seen,
            guard: Some(Guard {
                _dir: dir,
                shutdown: tx,
                handle,
            }),
        };
        // `run` serves only once event delivery has started (the bus has
        // stored its rules): an event published before would match no rule.
        app.eventually("the app to serve", || async {
            app.http
                .get(app.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        app
    }

    /// Another process's worth of `services` on this app's PostgreSQL
    /// schemas and NATS streams (a replica), reaching the other services at
    /// this app. PostgreSQL only: replicas of a SQLite deployment do not
    /// exist (one process owns the files).
    pub async fn spawn_replica(&self, services: &[&str]) -> Replica {
        assert_eq!(self.storage, Storage::Postgres, "replicas need PostgreSQL");
        let others: Vec<String> = ecom::app::service_names()
            .into_iter()
            .filter(|n| !services.contains(n))
            .map(|n| format!("{n}={}", self.base))
            .collect();
        let args = ConfigArgs {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(self.data_dir.clone()),
            bus_url: nats_url(),
            bus_prefix: Some(self.schema_prefix.clone()),
            service_urls: others,
            ..Default::default()
        };
        let config = Config::merge(&args, ConfigFile::default(), &[], |_| None).unwrap();
        let target = StorageTarget::Postgres {
            url: postgres_url().expect("ECOM_TEST_DATABASE_URL"),
            schema_prefix: self.schema_prefix.clone(),
            max_connections: 5,
        };
        let names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
        let app = App::build_with(config, &names, target).await.unwrap();
        let base = format!("http://{}", app.addr().unwrap());
        let (shutdown, rx) = oneshot::channel();
        let handle = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        Replica {
            base,
            shutdown,
            handle,
        }
    }

    fn clone_handle(&self) -> TestApp {
        TestApp {
            base: self.base.clone(),
            http: self.http.clone(),
            storage: self.storage,
            key: self.key.clone(),
            data_dir: self.data_dir.clone(),
            schema_prefix: self.schema_prefix.clone(),
            bus: self.bus.clone(),
            seen: self.seen.clone(),
            guard: None,
        }
    }

    /// Stops the server (letting requests finish) and drops its PostgreSQL schemas.
    pub async fn stop(mut self) {
        if let Some(guard) = self.guard.take() {
            let _ = guard.shutdown.send(());
            guard.handle.await.unwrap().unwrap();
        }
        if self.storage == Storage::Postgres {
            drop_schemas(&self.schema_prefix).await;
            if let Some(url) = nats_url() {
                let settings = ecom_runtime::config::BusSettings::default();
                if let Ok(nats) =
                    ecom_platform::bus::nats::NatsBus::connect(&url, settings, &self.schema_prefix).await
                {
                    let _ = nats.delete_streams().await;
                }
            }
        }
    }

    /// Every event seen on the bus so far.
    pub fn events(&self) -> Vec<Event> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) for an event matching `pred` and returns it.
    pub async fn wait_for_event(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.seen.lock().unwrap().iter().find(|e| pred(e)) {
                return e.clone();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no event {what} within 10 s; seen: {:#?}", self.events());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (up to 10 s) until `check` holds, polling; for state that
    /// follows events.
    pub async fn eventually<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check().await {
            if tokio::time::Instant::now() > deadline {
                panic!("{what} did not happen within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes events straight onto the bus, as another service would.
    pub async fn publish(&self, events: &[Event]) {
        self.bus.publish(events).await.unwrap();
    }

    /// Opens the (already migrated) database of `service`.
    pub async fn open_db(&self, service: &str) -> ecom_storage::Db {
        ecom_storage::Db::open(&self.storage_target(), service)
            .await
            .unwrap()
    }

    /// Pre-authorises `amount` on a test card at payment-3p; the token.
    pub async fn preauth(&self, amount: i64) -> String {
        let (status, body) = self
            .post(
                "/payment-3p/preauth",
                &serde_json::json!({"cardNumber": "1234567890123456", "amount": amount}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["paymentToken"].as_str().unwrap().to_owned()
    }

    /// Asks payment-3p (as the merchant) whether `token` holds at least `amount`.
    pub async fn payment_holds(&self, token: &str, amount: i64) -> bool {
        let (status, body) = self
            .post_as_service(
                "/payment-3p/check",
                &serde_json::json!({"paymentToken": token, "amount": amount}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["ok"].as_bool().unwrap()
    }

    /// What payment-3p did with `token` (its merchant `/status`):
    /// `{status, authorisedAmount, capturedAmount, refundedAmount, orderId}`.
    pub async fn processor_status(&self, token: &str) -> Value {
        let (status, body) = self
            .post_as_service("/payment-3p/status", &serde_json::json!({"paymentToken": token}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A service credential, as `ecom token --service NAME` prints.
    pub fn service_token(&self, service: &str) -> String {
        self.key.issue(service).unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> (StatusCode, Value) {
        send(self.http.post(self.url(path)).body(body.to_owned())).await
    }

    pub async fn post_as_service(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        send(
            self.http
                .post(self.url(path))
                .bearer_auth(self.service_token("tests"))
                .json(body),
        )
        .await
    }

    pub async fn post_with_token(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        send(self.http.post(self.url(path)).bearer_auth(token).json(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.http.get(self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        send(self.http.delete(self.url(path))).await
    }

    /// A second handle on the database of `service` (the app keeps its own).
    pub async fn db(&self, service: &str) -> ecom_storage::Db {
        ecom_storage::Db::open(&self.storage_target(), service)
            .await
            .unwrap()
    }

    /// `event` again under a fresh id, as a late or replayed copy that the
    /// inbox does not recognise: a consumer applies it (so [`Self::handled`]
    /// can wait for it), and only the consumer's own rules can make it
    /// change nothing.
    pub fn fresh_copy(event: &Event) -> Event {
        Event {
            id: uuid::Uuid::now_v7(),
            ..event.clone()
        }
    }

    /// Waits until `consumer` (a rule name) of `service` has applied `event`.
    pub async fn handled(&self, service: &str, consumer: &str, event: &Event) {
        use ecom_storage::sqlx;
        let db = self.db(service).await;
        let id = event.id.to_string();
        self.eventually(&format!("{consumer} to apply {}", event.detail_type), || async {
            sqlx::query("SELECT 1 FROM _inbox WHERE consumer = $1 AND event_id = $2")
                .bind(consumer)
                .bind(&id)
                .fetch_optional(db.reader())
                .await
                .unwrap()
                .is_some()
        })
        .await;
        db.close().await;
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> (StatusCode, Value) {
        send(self.http.get(self.url(path)).bearer_auth(token)).await
    }
}

impl TestApp {
    pub async fn put_with_token(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        send(self.http.put(self.url(path)).bearer_auth(token).json(body)).await
    }

    pub async fn delete_with_token(&self, path: &str, token: &str) -> (StatusCode, Value) {
        send(self.http.delete(self.url(path)).bearer_auth(token)).await
    }

    /// Where this app keeps its data, for opening a service database or
    /// running a CLI command beside it.
    pub fn storage_target(&self) -> StorageTarget {
        match self.storage {
            Storage::Sqlite => StorageTarget::Sqlite {
                dir: self.data_dir.clone(),
            },
            Storage::Postgres => StorageTarget::Postgres {
                url: postgres_url().expect("ECOM_TEST_DATABASE_URL"),
                schema_prefix: self.schema_prefix.clone(),
                max_connections: 2,
            },
        }
    }
}

impl TestApp {
    /// The value of one series on `/metrics`, e.g.
    /// `ecom_deliveries_total{event="created"}` (0 when absent). Metrics are
    /// per process, shared by the tests running in it: compare before and
    /// after, and expect at least the change a test made.
    pub async fn metric(&self, series: &str) -> u64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Password of the users the helpers below make.
pub const PASSWORD: &str = "Sup3r-secret";

impl TestApp {
    /// Signs `email` in; its ID token.
    pub async fn sign_in(&self, email: &str) -> String {
        let (status, body) = self
            .post(
                "/users/sign-in",
                &serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["idToken"].as_str().unwrap().to_owned()
    }

    /// The ID token of a new user in `groups` (a shopper when empty): the
    /// user signs up, an admin (made with `ecom users add`) adds each
    /// group, the user signs in. Needs the users service.
    pub async fn user_token(&self, groups: &[&str]) -> String {
        let email = |who: &str| format!("{who}-{}@example.com", uuid::Uuid::new_v4().simple());
        let user = email("user");
        let (status, body) = self
            .post(
                "/users/sign-up",
                &serde_json::json!({"email": user, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let user_id = body["userId"].as_str().unwrap().to_owned();
        if !groups.is_empty() {
            let admin = email("admin");
            ecom::cli::users::add(&self.storage_target(), &admin, PASSWORD, &["admin".into()])
                .await
                .unwrap();
            let admin = self.sign_in(&admin).await;
            for group in groups {
                let path = format!("/users/admin/users/{user_id}/groups/{group}");
                let (status, body) = send(self.http.put(self.url(&path)).bearer_auth(&admin)).await;
                assert!(status.is_success(), "adding {group}: {status} {body}");
            }
        }
        self.sign_in(&user).await
    }
}

/// Sends and decodes the JSON answer (`Value::Null` when the body is not JSON).
pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn drop_schemas(prefix: &str) {
    if let Some(url) = postgres_url() {
        let _ = ecom_storage::drop_schemas(&url, prefix).await;
    }
}

/// An HTTP client whose connections come from `ip` (any 127.x.y.z reaches
/// the server on 127.0.0.1 on Linux): a second client address for tests.
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Runs `test` once per storage backend on an app built with `configure`.
pub async fn on_each_storage_configured<C, F, Fut>(configure: C, test: F)
where
    C: Fn(&mut Config),
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    for storage in storages() {
        eprintln!("running on {storage:?}");
        let app = TestApp::spawn_configured(storage, &[], &[], &configure).await;
        test(app.clone_handle()).await;
        app.stop().await;
    }
}

/// A whole order as orders writes it in its events and backend answers
/// (consumers decode the full `ecom_contracts::orders::Order`), with
/// `fields` put over the defaults: a NEW order of nothing, shipping to
/// Paris.
#[allow(dead_code)]
pub fn order_json(order_id: Uuid, fields: Value) -> Value {
    let mut order = json!({
        "orderId": order_id,
        "userId": "test-user",
        "createdDate": "2026-01-01T00:00:00Z",
        "modifiedDate": "2026-01-01T00:00:00Z",
        "status": "NEW",
        "products": [],
        "address": {
            "name": "Ada", "streetAddress": "1 Main St", "city": "Paris",
            "country": "FR", "phoneNumber": "+33123456789",
        },
        "deliveryPrice": 0,
        "paymentToken": "test-token",
        "total": 0,
    });
    if let (Some(order), Value::Object(fields)) = (order.as_object_mut(), fields) {
        order.extend(fields);
    }
    order
}
