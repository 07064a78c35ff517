//! Creating accounts: one path for sign-up, the admin route and the CLI, so
//! every new user is hashed the same way and emits `UserCreated`.

use crate::domain::{Email, Group, NewPassword};
use crate::passwords::{Gate, GateError};
use crate::{events, store};
use ecom_model::Timestamp;
use ecom_platform::Outbox;
use ecom_storage::Db;

/// Why an account was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Another account has this email.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Too many passwords are being hashed: try again shortly.
    #[error("too many password hashes at once")]
    Busy,
    /// Storage or hashing failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Creates a user with `groups` and queues `UserCreated` in the same
/// transaction; returns the new user id.
pub async fn create(
    db: &Db,
    outbox: &Outbox,
    gate: &Gate,
    email: &Email,
    password: &NewPassword,
    groups: &[Group],
) -> Result<String, CreateError> {
    let hash = match gate.hash(password.as_str()).await {
        Ok(hash) => hash,
        Err(GateError::Busy(_)) => return Err(CreateError::Busy),
        Err(GateError::Internal(e)) => return Err(CreateError::Internal(e)),
    };
    let user_id = uuid::Uuid::new_v4().to_string();
    let now = Timestamp::now();
    let event = events::user_created(&user_id, email.as_str(), &now)?;
    let mut groups = groups.to_vec();
    groups.sort();
    groups.dedup();
    let result = async {
        let mut tx = db.begin().await?;
        store::insert(&mut tx, &user_id, email.as_str(), &hash, &groups, &now).await?;
        Ok::<_, ecom_storage::sqlx::Error>(tx)
    }
    .await;
    let mut tx = match result {
        Ok(tx) => tx,
        Err(e) if ecom_storage::is_unique_violation(&e) => return Err(CreateError::EmailTaken),
        Err(e) => return Err(CreateError::Internal(e.into())),
    };
    outbox.push(&mut tx, &event).await?;
    outbox.commit(tx).await?;
    Ok(user_id)
}
