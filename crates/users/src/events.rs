//! What users emits: `UserCreated` with the new user (`userId`, `email`,
//! `createdDate`, `modifiedDate`), however the user was created (sign-up,
//! admin, CLI). Users handles no events.

use ecom_model::Timestamp;
use ecom_platform::event::sources::USERS;
use ecom_platform::Event;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserResource<'a> {
    user_id: &'a str,
    email: &'a str,
    created_date: String,
    modified_date: String,
}

/// `UserCreated` for a user created at `now`.
pub fn user_created(user_id: &str, email: &str, now: &Timestamp) -> anyhow::Result<Event> {
    let user = UserResource {
        user_id,
        email,
        created_date: now.to_string(),
        modified_date: now.to_string(),
    };
    ecom_platform::outbox::created(USERS, "User", user_id, &user)
}
