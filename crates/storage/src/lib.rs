//! One storage interface over SQLite and PostgreSQL.
//!
//! Every service owns its own database: a SQLite file `<data-dir>/<service>.db`
//! by default, or its own schema in one PostgreSQL database. Queries go
//! through sqlx's `Any` driver and use `$1`-style placeholders, which both
//! SQLite and PostgreSQL understand, so each operation has exactly one query
//! text for both backends. Migrations are embedded in the service crates and
//! applied at start by [`Db::migrate`].

mod migrate;

pub use migrate::Migration;
pub use sqlx;

use anyhow::Context as _;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Transaction};
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

/// A transaction on a service's database.
pub type Tx = Transaction<'static, Any>;
/// A row from either backend.
pub type Row = AnyRow;

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file per service (WAL mode).
    Sqlite,
    /// A schema per service in one PostgreSQL database.
    Postgres,
}

/// Where the services keep their data.
#[derive(Debug, Clone)]
pub enum StorageTarget {
    /// One SQLite file per service in this directory.
    Sqlite {
        /// The data directory.
        dir: PathBuf,
    },
    /// One schema per service in this PostgreSQL database.
    Postgres {
        /// `postgres://…` connection URL.
        url: String,
        /// Prefix for schema names, so several platforms (or tests) can share
        /// one database without seeing each other's tables. Empty in production.
        schema_prefix: String,
        /// Connections per service pool.
        max_connections: u32,
    },
}

impl StorageTarget {
    /// Chooses the target from an optional `--database-url`: nothing or a
    /// `sqlite:` URL naming a directory means SQLite files, `postgres://`
    /// or `postgresql://` means PostgreSQL.
    pub fn from_url(database_url: Option<&str>, data_dir: PathBuf) -> anyhow::Result<StorageTarget> {
        match database_url {
            None | Some("") => Ok(StorageTarget::Sqlite { dir: data_dir }),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(StorageTarget::Postgres {
                    url: url.to_owned(),
                    schema_prefix: String::new(),
                    max_connections: 10,
                })
            }
            Some(url) => match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
                Some(dir) if !dir.is_empty() => Ok(StorageTarget::Sqlite { dir: dir.into() }),
                _ => anyhow::bail!(
                    "unsupported database URL '{url}': use postgres://… or sqlite:<directory>, or leave it unset for SQLite files in the data dir"
                ),
            },
        }
    }

    /// The backend this target uses.
    pub fn backend(&self) -> Backend {
        match self {
            StorageTarget::Sqlite { .. } => Backend::Sqlite,
            StorageTarget::Postgres { .. } => Backend::Postgres,
        }
    }
}

/// The database of one service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    /// Writes go through here. On SQLite this pool has one connection: SQLite
    /// allows one writer at a time anyway, and a single writer connection
    /// never meets `SQLITE_BUSY` from its own process.
    write: AnyPool,
    /// Reads go through here (the same pool on PostgreSQL).
    read: AnyPool,
}

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// The PostgreSQL schema (or SQLite file stem) of a service.
fn schema_name(prefix: &str, service: &str) -> String {
    format!("{prefix}{}", service.replace('-', "_"))
}

impl Db {
    /// Opens (creating if needed) the database of `service`.
    pub async fn open(target: &StorageTarget, service: &str) -> anyhow::Result<Db> {
        install_drivers();
        match target {
            StorageTarget::Sqlite { dir } => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("Failed to create data directory {}", dir.display()))?;
                let path = dir.join(format!("{}.db", schema_name("", service)));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let pool = |max: u32| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .min_connections(1)
                        // A SQLite file does not drop connections; pinging
                        // on every acquire would double each query's cost.
                        .test_before_acquire(false)
                        .acquire_timeout(Duration::from_secs(10))
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                                )
                                .await?;
                                Ok(())
                            })
                        })
                        .connect(&url)
                };
                let write = pool(1)
                    .await
                    .with_context(|| format!("Failed to open SQLite database {}", path.display()))?;
                let read = pool(4)
                    .await
                    .with_context(|| format!("Failed to open SQLite database {}", path.display()))?;
                Ok(Db {
                    backend: Backend::Sqlite,
                    write,
                    read,
                })
            }
            StorageTarget::Postgres {
                url,
                schema_prefix,
                max_connections,
            } => {
                let schema = schema_name(schema_prefix, service);
                let setup = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .context("Failed to connect to PostgreSQL (check --database-url / ECOM_DATABASE_URL)")?;
                setup
                    .execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
                    .await
                    .or_else(ignore_concurrent_create)
                    .with_context(|| format!("Failed to create schema {schema}"))?;
                setup.close().await;
                let search_path = format!("SET search_path TO \"{schema}\"");
                let pool = AnyPoolOptions::new()
                    .max_connections(*max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(move |conn, _| {
                        let search_path = search_path.clone();
                        Box::pin(async move {
                            conn.execute(search_path.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await
                    .context("Failed to connect to PostgreSQL")?;
                Ok(Db {
                    backend: Backend::Postgres,
                    write: pool.clone(),
                    read: pool,
                })
            }
        }
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for single-statement writes.
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes can
    /// never fail half-way with `SQLITE_BUSY` when another process writes.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.write.begin().await,
        }
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.read).await.map(|_| ())
    }

    /// Applies the migrations of `scope` not applied yet, in version order.
    pub async fn migrate(&self, scope: &str, migrations: &[Migration]) -> anyhow::Result<()> {
        migrate::apply(self, scope, migrations).await
    }

    /// Closes the pools, waiting for connections to be returned.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Two processes creating the same schema at once race inside PostgreSQL's
/// catalogue; the loser's error means the schema exists, which is all we want.
fn ignore_concurrent_create(err: sqlx::Error) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
    match &err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => Ok(Default::default()),
        _ => Err(err),
    }
}

/// True when `err` is a unique-key violation (on either backend), so
/// callers can turn it into a 409 or an idempotent no-op.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || matches!(db.code().as_deref(), Some("23505") | Some("2067") | Some("1555"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_picks_the_backend() {
        let dir = PathBuf::from("/tmp/x");
        let t = |u: Option<&str>| StorageTarget::from_url(u, dir.clone()).map(|t| t.backend()).ok();
        assert_eq!(t(None), Some(Backend::Sqlite));
        assert_eq!(t(Some("postgres://u@h/db")), Some(Backend::Postgres));
        assert_eq!(t(Some("postgresql://u@h/db")), Some(Backend::Postgres));
        assert_eq!(t(Some("sqlite:/var/ecom")), Some(Backend::Sqlite));
        assert_eq!(t(Some("mysql://h/db")), None);
    }
}
