//! The `payment_tokens` table. Every state change is one conditional
//! statement, so concurrent calls on one token cannot both win.

use crate::domain::TokenStatus;
use ecom_model::{Money, Timestamp};
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::Db;
use uuid::Uuid;

/// Stores a new pre-authorisation and returns its token.
pub async fn create(db: &Db, amount: Money, card_last4: &str) -> Result<Uuid, sqlx::Error> {
    let token = Uuid::new_v4();
    let now = Timestamp::now().to_string();
    sqlx::query(
        "INSERT INTO payment_tokens (token, amount, card_last4, status, created_at, modified_at)
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(token.to_string())
    .bind(amount.cents())
    .bind(card_last4)
    .bind(TokenStatus::Authorised.as_str())
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(token)
}

/// The amount held by a live token, if the token is live.
pub async fn authorised_amount(db: &Db, token: &str) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query("SELECT amount FROM payment_tokens WHERE token = $1 AND status = $2")
        .bind(token)
        .bind(TokenStatus::Authorised.as_str())
        .fetch_optional(db.reader())
        .await?;
    row.map(|r| r.try_get::<i64, _>(0)).transpose()
}

/// Lowers (or keeps) the held amount; false when the token is not live or
/// `amount` is above what is held.
pub async fn update_amount(db: &Db, token: &str, amount: Money) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE payment_tokens SET amount = $2, modified_at = $3
         WHERE token = $1 AND status = $4 AND amount >= $2",
    )
    .bind(token)
    .bind(amount.cents())
    .bind(Timestamp::now().to_string())
    .bind(TokenStatus::Authorised.as_str())
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves a live token to `to` (processed or cancelled); false when it was
/// not live. Exactly one of several concurrent callers gets true.
pub async fn consume(db: &Db, token: &str, to: TokenStatus) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE payment_tokens SET status = $2, modified_at = $3 WHERE token = $1 AND status = $4",
    )
    .bind(token)
    .bind(to.as_str())
    .bind(Timestamp::now().to_string())
    .bind(TokenStatus::Authorised.as_str())
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected() == 1)
}
