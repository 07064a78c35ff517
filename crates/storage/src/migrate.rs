//! Embedded, versioned, append-only migrations.
//!
//! Versions are counted per scope: a service's own tables are one scope,
//! the platform's tables in the same database (outbox, inbox) another.
//!
//! A migration is plain SQL that both engines accept. Three placeholders
//! cover what they spell differently: `{{serial}}` (an auto-increment
//! integer primary key), `{{blob}}` (a byte string) and
//! `{{without_rowid}}`, written after a table's closing parenthesis:
//! SQLite's `WITHOUT ROWID` (the table is one b-tree ordered by its primary
//! key, instead of rows by rowid plus an index of the key), nothing on
//! PostgreSQL.

use crate::{Backend, Db};
use anyhow::Context as _;
use sqlx::Row as _;

/// One schema change of a service.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing version, starting at 1.
    pub version: i64,
    /// Short description, recorded when applied.
    pub name: &'static str,
    /// The SQL, possibly several statements.
    pub sql: &'static str,
}

impl Migration {
    /// Declares a migration (usually with `include_str!`).
    pub const fn new(version: i64, name: &'static str, sql: &'static str) -> Migration {
        Migration { version, name, sql }
    }
}

fn render(sql: &str, backend: Backend) -> String {
    let (serial, blob, without_rowid) = match backend {
        Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "WITHOUT ROWID"),
        Backend::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA", ""),
    };
    sql.replace("{{serial}}", serial)
        .replace("{{blob}}", blob)
        .replace("{{without_rowid}}", without_rowid)
}

pub(crate) async fn apply(db: &Db, scope: &str, migrations: &[Migration]) -> anyhow::Result<()> {
    let mut tx = db
        .begin()
        .await
        .context("Failed to start the migration transaction")?;
    if db.backend() == Backend::Postgres {
        // Replicas starting together on one database take turns here.
        sqlx::query("SELECT pg_advisory_xact_lock(7419130)")
            .execute(&mut *tx)
            .await
            .context("Failed to take the migration lock")?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS _migrations (
            scope TEXT NOT NULL,
            version BIGINT NOT NULL,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL,
            PRIMARY KEY (scope, version)
        )",
    )
    .execute(&mut *tx)
    .await
    .context("Failed to create the migrations table")?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM _migrations WHERE scope = $1 ORDER BY version")
        .bind(scope)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    let mut sorted: Vec<&Migration> = migrations.iter().collect();
    sorted.sort_by_key(|m| m.version);
    for m in sorted {
        if applied.contains(&m.version) {
            continue;
        }
        tracing::debug!(scope, version = m.version, name = m.name, "applying migration");
        sqlx::raw_sql(&render(m.sql, db.backend()))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("Failed to apply migration {scope} {} ({})", m.version, m.name))?;
        sqlx::query("INSERT INTO _migrations (scope, version, name, applied_at) VALUES ($1, $2, $3, $4)")
            .bind(scope)
            .bind(m.version)
            .bind(m.name)
            .bind(now_unix())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await.context("Failed to commit migrations")?;
    Ok(())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_per_backend() {
        let sql = "CREATE TABLE t (id {{serial}}, b {{blob}}) {{without_rowid}};";
        assert_eq!(
            render(sql, Backend::Sqlite),
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, b BLOB) WITHOUT ROWID;"
        );
        assert_eq!(
            render(sql, Backend::Postgres),
            "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, b BYTEA) ;"
        );
    }
}
