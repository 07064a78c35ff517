//! End-user authentication: verifying the JWTs the users service signs.
//!
//! PLACEHOLDER: the interface is final, the implementation lands with the
//! users service (issue 4). Until then every token is refused.

use crate::ApiError;
use serde::{Deserialize, Serialize};

/// The claims of a verified end-user ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's email.
    pub email: String,
    /// Staff groups: `admin`, `warehouse`, `delivery`.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Claims {
    /// Ok when the user belongs to at least one of `groups`; 403 otherwise.
    pub fn require_group(&self, groups: &[&str]) -> Result<(), ApiError> {
        if self.groups.iter().any(|g| groups.contains(&g.as_str())) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this operation needs one of the groups: {}",
                groups.join(", ")
            )))
        }
    }
}

/// Checks end-user tokens. Cheap to clone.
#[derive(Clone, Default)]
pub struct Verifier {}

impl Verifier {
    /// The claims of a valid token; 401 otherwise.
    pub async fn verify(&self, _token: &str) -> Result<Claims, ApiError> {
        Err(ApiError::unauthorized("user authentication is not available yet"))
    }
}
