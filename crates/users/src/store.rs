//! The users tables: `users`, `user_groups`, `refresh_tokens` (and
//! `signing_keys`, in keys.rs). Nobody else reads them.

use crate::domain::Group;
use ecom_model::Timestamp;
use ecom_runtime::auth::Revocation;
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::{Db, Tx};
use serde::Serialize;

/// A user as the admin routes and other services see it (never its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Id.
    pub user_id: String,
    /// Normalised email.
    pub email: String,
    /// Staff groups, sorted.
    pub groups: Vec<String>,
    /// When created (RFC 3339 UTC).
    pub created_date: String,
    /// When last changed.
    pub modified_date: String,
}

/// Adds a user and their groups inside `tx`. A duplicate email is a unique
/// violation (see `ecom_storage::is_unique_violation`).
pub async fn insert(
    tx: &mut Tx,
    user_id: &str,
    email: &str,
    password_hash: &str,
    groups: &[Group],
    now: &Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (user_id, email, password_hash, created_at, modified_at) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(user_id)
    .bind(email)
    .bind(password_hash)
    .bind(now.to_string())
    .execute(&mut **tx)
    .await?;
    for group in groups {
        sqlx::query("INSERT INTO user_groups (user_id, group_name) VALUES ($1, $2)")
            .bind(user_id)
            .bind(group.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The id and password hash of the user with `email`.
pub async fn credentials(db: &Db, email: &str) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query("SELECT user_id, password_hash FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(db.reader())
        .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

const USER_COLUMNS: &str = "u.user_id, u.email, u.created_at, u.modified_at, g.group_name";

/// Folds rows of [`USER_COLUMNS`] (ordered by user) into users.
fn fold(rows: Vec<ecom_storage::Row>) -> Result<Vec<User>, sqlx::Error> {
    let mut users: Vec<User> = Vec::new();
    for row in rows {
        let id: String = row.try_get(0)?;
        let group: Option<String> = row.try_get(4)?;
        if users.last().map(|u| &u.user_id) != Some(&id) {
            users.push(User {
                user_id: id,
                email: row.try_get(1)?,
                groups: Vec::new(),
                created_date: row.try_get(2)?,
                modified_date: row.try_get(3)?,
            });
        }
        if let (Some(user), Some(group)) = (users.last_mut(), group) {
            user.groups.push(group);
        }
    }
    Ok(users)
}

/// One user with their groups.
pub async fn get(db: &Db, user_id: &str) -> Result<Option<User>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users u LEFT JOIN user_groups g ON g.user_id = u.user_id
         WHERE u.user_id = $1 ORDER BY g.group_name"
    ))
    .bind(user_id)
    .fetch_all(db.reader())
    .await?;
    Ok(fold(rows)?.pop())
}

/// Up to `limit` users with ids after `after`, by id.
pub async fn list(db: &Db, after: &str, limit: i64) -> Result<Vec<User>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM
           (SELECT user_id, email, created_at, modified_at FROM users WHERE user_id > $1
            ORDER BY user_id LIMIT $2) u
         LEFT JOIN user_groups g ON g.user_id = u.user_id
         ORDER BY u.user_id, g.group_name"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    fold(rows)
}

/// Deletes a user (their groups and refresh tokens go with them) and
/// revokes their ID tokens; the revocation when there was such a user.
pub async fn delete(db: &Db, user_id: &str) -> Result<Option<Revocation>, sqlx::Error> {
    let mut tx = db.begin().await?;
    // Explicit rather than ON DELETE CASCADE alone: SQLite enforces
    // foreign keys only when the connection asked for it.
    for table in ["user_groups", "refresh_tokens"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    }
    let done = sqlx::query("DELETE FROM users WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    let revocation = revoke(&mut tx, user_id).await?;
    tx.commit().await?;
    Ok(Some(revocation))
}

/// Raises `user_id`'s token version inside `tx`: their ID tokens issued
/// so far are refused from now on.
async fn revoke(tx: &mut Tx, user_id: &str) -> Result<Revocation, sqlx::Error> {
    let now = Timestamp::now().unix_micros();
    let row = sqlx::query(
        "INSERT INTO token_revocations (user_id, version, revoked_at) VALUES ($1, 1, $2)
         ON CONFLICT (user_id) DO UPDATE SET version = token_revocations.version + 1, revoked_at = $2
         RETURNING version",
    )
    .bind(user_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let version: i64 = row.try_get(0)?;
    Ok(Revocation {
        user_id: user_id.to_owned(),
        version: u64::try_from(version).unwrap_or(0),
        revoked_at: now,
    })
}

/// The token version a new ID token of `user_id` carries (0 when never revoked).
pub async fn token_version(db: &Db, user_id: &str) -> Result<u64, sqlx::Error> {
    let row = sqlx::query("SELECT version FROM token_revocations WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(db.reader())
        .await?;
    let version: i64 = match row {
        Some(row) => row.try_get(0)?,
        None => 0,
    };
    Ok(u64::try_from(version).unwrap_or(0))
}

/// Revocations made at or after `since` (Unix µs), oldest first.
pub async fn revocations_since(db: &Db, since: i64) -> Result<Vec<Revocation>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, version, revoked_at FROM token_revocations WHERE revoked_at >= $1
         ORDER BY revoked_at",
    )
    .bind(since)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            let version: i64 = row.try_get(1)?;
            Ok(Revocation {
                user_id: row.try_get(0)?,
                version: u64::try_from(version).unwrap_or(0),
                revoked_at: row.try_get(2)?,
            })
        })
        .collect()
}

/// Replaces a user's password hash and signs them out everywhere (their
/// refresh tokens are deleted). False when there is no such user.
pub async fn set_password(db: &Db, user_id: &str, password_hash: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("UPDATE users SET password_hash = $2, modified_at = $3 WHERE user_id = $1")
        .bind(user_id)
        .bind(password_hash)
        .bind(Timestamp::now().to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// What [`set_group`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// No such user.
    NoUser,
    /// Done; no token had to be revoked (a group added, or not a member).
    Done,
    /// A group was removed and the user's tokens revoked.
    Revoked(Revocation),
}

/// Adds (`member` true) or removes a group; idempotent. Removing a group
/// the user had revokes their ID tokens (they still carry it).
pub async fn set_group(
    db: &Db,
    user_id: &str,
    group: Group,
    member: bool,
) -> Result<GroupChange, sqlx::Error> {
    let mut tx = db.begin().await?;
    let exists = sqlx::query("UPDATE users SET modified_at = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(Timestamp::now().to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if !exists {
        return Ok(GroupChange::NoUser);
    }
    let sql = if member {
        "INSERT INTO user_groups (user_id, group_name) SELECT $1, $2
         WHERE NOT EXISTS (SELECT 1 FROM user_groups WHERE user_id = $1 AND group_name = $2)"
    } else {
        "DELETE FROM user_groups WHERE user_id = $1 AND group_name = $2"
    };
    let changed = sqlx::query(sql)
        .bind(user_id)
        .bind(group.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    let change = if changed && !member {
        GroupChange::Revoked(revoke(&mut tx, user_id).await?)
    } else {
        GroupChange::Done
    };
    tx.commit().await?;
    Ok(change)
}

/// Stores a refresh token's hash for `user_id` until `expires_at` (Unix µs).
pub async fn add_refresh_token(
    db: &Db,
    token_hash: &str,
    user_id: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(expires_at)
    .bind(Timestamp::now().unix_micros())
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Deletes a refresh token and returns its user when it was live: of two
/// concurrent uses of one token, exactly one gets the user.
pub async fn take_refresh_token(db: &Db, token_hash: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("DELETE FROM refresh_tokens WHERE token_hash = $1 RETURNING user_id, expires_at")
        .bind(token_hash)
        .fetch_optional(db.writer())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let expires_at: i64 = row.try_get(1)?;
    if expires_at <= Timestamp::now().unix_micros() {
        return Ok(None);
    }
    Ok(Some(row.try_get(0)?))
}
