//! What users emits: `UserCreated` with the new user (`userId`, `email`,
//! `createdDate`, `modifiedDate`), however the user was created (sign-up,
//! admin, CLI). Users handles no events.

use ecom_contracts::users::UserCreated;
use ecom_model::Timestamp;
use ecom_platform::Event;

/// `UserCreated` for a user created at `now`.
pub fn user_created(user_id: &str, email: &str, now: &Timestamp) -> anyhow::Result<Event> {
    let user = UserCreated {
        user_id: user_id.to_owned(),
        email: email.to_owned(),
        created_date: *now,
        modified_date: *now,
    };
    ecom_platform::outbox::created::<UserCreated>(user_id, &user)
}
