//! Creating accounts: one path for sign-up, the admin route and the CLI, so
//! every new user is hashed the same way and emits `UserCreated`.

use crate::domain::{Email, Group, NewPassword};
use crate::{events, passwords, store};
use ecom_model::Timestamp;
use ecom_platform::Outbox;
use ecom_storage::Db;

/// Why an account was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Another account has this email.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Storage or hashing failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Creates a user with `groups` and queues `UserCreated` in the same
/// transaction; returns the new user id.
pub async fn create(
    db: &Db,
    outbox: &Outbox,
    email: &Email,
    password: &NewPassword,
    groups: &[Group],
) -> Result<String, CreateError> {
    let hash = passwords::hash(password.as_str()).await?;
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
