//! What users emits: `UserCreated`, however the user was created (sign-up,
//! an admin, the CLI).

use crate::{contract, sources};
use ecom_model::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `UserCreated`: a new account, without its groups or password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserCreated {
    /// The account's id (the `sub` of its tokens).
    pub user_id: String,
    /// Its sign-in address, trimmed and lower-cased.
    pub email: String,
    /// When it was created.
    pub created_date: Timestamp,
    /// Equal to `createdDate`: a new account has not changed yet.
    pub modified_date: Timestamp,
}

contract!(@impl UserCreated, Self, sources::USERS, "UserCreated");
