//! The test harness: boots the real platform on a random port with a fresh
//! data directory (and, when `ECOM_TEST_DATABASE_URL` is set, a fresh set of
//! PostgreSQL schemas), and offers one helper per kind of call.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ecom::App;
use ecom_runtime::{Config, ConfigArgs, ConfigFile, ServiceKey};
use ecom_storage::StorageTarget;
use reqwest::StatusCode;
use serde_json::Value;
use std::future::Future;
use tokio::sync::oneshot;

/// Which storage a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Sqlite,
    Postgres,
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
        eprintln!("running on {storage:?}");
        let app = TestApp::spawn(storage).await;
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
    /// The app's bus (to publish or watch events in-process).
    pub bus: ecom_platform::Bus,
    schema_prefix: String,
    guard: Option<Guard>,
}

struct Guard {
    _dir: tempfile::TempDir,
    shutdown: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Boots every service on `storage`.
    pub async fn spawn(storage: Storage) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let args = ConfigArgs {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let config = Config::merge(&args, ConfigFile::default(), &[], |_| None).unwrap();
        let schema_prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let target = match storage {
            Storage::Sqlite => StorageTarget::Sqlite {
                dir: dir.path().to_path_buf(),
            },
            Storage::Postgres => StorageTarget::Postgres {
                url: postgres_url().expect("ECOM_TEST_DATABASE_URL"),
                schema_prefix: schema_prefix.clone(),
                max_connections: 5,
            },
        };
        let app = App::build_with(config, &[], target).await.unwrap();
        let base = format!("http://{}", app.addr().unwrap());
        let key = ServiceKey::load_or_create(None, dir.path()).unwrap();
        let bus = app.bus().clone();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        TestApp {
            base,
            http: reqwest::Client::new(),
            storage,
            key,
            data_dir: dir.path().to_path_buf(),
            bus,
            schema_prefix,
            guard: Some(Guard {
                _dir: dir,
                shutdown: tx,
                handle,
            }),
        }
    }

    fn clone_handle(&self) -> TestApp {
        TestApp {
            base: self.base.clone(),
            http: self.http.clone(),
            storage: self.storage,
            key: self.key.clone(),
            data_dir: self.data_dir.clone(),
            bus: self.bus.clone(),
            schema_prefix: self.schema_prefix.clone(),
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
        }
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

    pub async fn get_with_token(&self, path: &str, token: &str) -> (StatusCode, Value) {
        send(self.http.get(self.url(path)).bearer_auth(token)).await
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
    use ecom_storage::sqlx::{self, Row as _};
    let Some(url) = postgres_url() else { return };
    sqlx::any::install_default_drivers();
    let Ok(pool) = sqlx::AnyPool::connect(&url).await else {
        return;
    };
    let rows = sqlx::query("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname::text, $1)")
        .bind(prefix)
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
    for row in rows {
        if let Ok(name) = row.try_get::<String, _>(0) {
            let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&pool)
                .await;
        }
    }
    pool.close().await;
}
