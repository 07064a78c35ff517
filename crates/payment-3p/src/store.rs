//! The `payment_tokens` table. Every state change is one conditional
//! statement, so concurrent calls on one token cannot both win.

use crate::domain::TokenStatus;
use anyhow::Context as _;
use ecom_model::{Money, Timestamp};
use ecom_storage::sqlx::{self, Row as _};
use ecom_storage::Db;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Most pre-authorisations written by one statement.
const GROUP: usize = 64;

struct Pending {
    amount: Money,
    card_last4: String,
    done: oneshot::Sender<Result<Uuid, String>>,
}

/// Writes new pre-authorisations with group commit: requests that arrive
/// while a write is under way are stored together by the next multi-row
/// `INSERT`, one commit for all of them. A commit is the dearest part of a
/// pre-authorisation (SQLite has one writer), so under load this multiplies
/// throughput, while a lone request still goes out at once. Each caller gets
/// its token only after the commit that stored it. Cheap to clone.
#[derive(Clone)]
pub struct TokenWriter {
    queue: mpsc::Sender<Pending>,
}

impl TokenWriter {
    /// Starts the writer task for `db`; it ends when every handle is dropped.
    pub fn start(db: Db) -> TokenWriter {
        let (queue, rx) = mpsc::channel(GROUP * 16);
        tokio::spawn(write_groups(db, rx));
        TokenWriter { queue }
    }

    /// Stores a new pre-authorisation and returns its token.
    pub async fn create(&self, amount: Money, card_last4: &str) -> anyhow::Result<Uuid> {
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            amount,
            card_last4: card_last4.to_owned(),
            done,
        };
        self.queue
            .send(pending)
            .await
            .ok()
            .context("the token writer has stopped")?;
        answer
            .await
            .context("the token writer has stopped")?
            .map_err(anyhow::Error::msg)
    }
}

async fn write_groups(db: Db, mut rx: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(GROUP);
    while rx.recv_many(&mut group, GROUP).await > 0 {
        let tokens: Vec<Uuid> = group.iter().map(|_| Uuid::new_v4()).collect();
        let result = insert_group(&db, &group, &tokens).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, rows = group.len(), "failed to store pre-authorisations");
        }
        for (pending, token) in group.drain(..).zip(tokens) {
            let answer = result.as_ref().map(|_| token).map_err(|e| e.to_string());
            let _ = pending.done.send(answer);
        }
    }
}

async fn insert_group(db: &Db, group: &[Pending], tokens: &[Uuid]) -> Result<(), sqlx::Error> {
    let mut sql = String::from(
        "INSERT INTO payment_tokens (token, amount, card_last4, status, created_at, modified_at) VALUES ",
    );
    for i in 0..group.len() {
        let n = i * 5;
        let sep = if i == 0 { "" } else { ", " };
        sql.push_str(&format!(
            "{sep}(${}, ${}, ${}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 5
        ));
    }
    let now = Timestamp::now().to_string();
    let mut query = sqlx::query(&sql);
    for (pending, token) in group.iter().zip(tokens) {
        query = query
            .bind(token.to_string())
            .bind(pending.amount.cents())
            .bind(pending.card_last4.clone())
            .bind(TokenStatus::Authorised.as_str())
            .bind(now.clone());
    }
    query.execute(db.writer()).await.map(|_| ())
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
