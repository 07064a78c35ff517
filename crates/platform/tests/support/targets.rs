//! The storage targets a platform test runs on: SQLite always, and
//! PostgreSQL (a schema prefix of its own) when `ECOM_TEST_DATABASE_URL` is
//! set; the test says it skipped PostgreSQL otherwise.

use ecom_storage::StorageTarget;

/// SQLite files in `dir`, then PostgreSQL when configured; `what` names
/// the test in the note printed when PostgreSQL is skipped.
pub fn storage_targets(dir: &std::path::Path, what: &str) -> Vec<StorageTarget> {
    let mut targets = vec![StorageTarget::Sqlite {
        dir: dir.to_path_buf(),
    }];
    match std::env::var("ECOM_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(url) => targets.push(StorageTarget::Postgres {
            url,
            schema_prefix: format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..10]),
            max_connections: 5,
        }),
        None => eprintln!("note: ECOM_TEST_DATABASE_URL is not set: {what} on PostgreSQL skipped"),
    }
    targets
}

/// Drops what a test left on PostgreSQL (nothing to do for SQLite, whose
/// files go with the test's temporary directory).
pub async fn clean_up(target: &StorageTarget) {
    if let StorageTarget::Postgres {
        url, schema_prefix, ..
    } = target
    {
        if let Err(e) = ecom_storage::drop_schemas(url, schema_prefix).await {
            panic!("could not drop the test's schemas: {e:#}");
        }
    }
}
