//! The one error type of the HTTP layer.
//!
//! Every error answers `{"message": "…"}` with a fitting status (plus a
//! stable `code` where a caller must tell one refusal from another). Internal
//! causes (database, bugs) are logged with their whole chain and shown to
//! the caller only as "internal error".

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::fmt;

/// An error answered to an HTTP caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    code: Option<&'static str>,
    source: Option<anyhow::Error>,
}

impl ApiError {
    /// Any status with a message for the caller.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            code: None,
            source: None,
        }
    }
    /// The same error with a stable machine-readable `code` in its body
    /// (`{"message": …, "code": "IDEMPOTENCY_KEY_REUSED"}`); the GraphQL
    /// gateway passes it on as `extensions.code`.
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }
    /// 400: the request is malformed; say which field and why.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// 401: no or invalid credentials.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
    /// 403: valid credentials, not allowed.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    /// 409: the request conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    /// 500: something broke on our side; the cause is logged, not shown.
    pub fn internal(source: impl Into<anyhow::Error>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error".to_owned(),
            code: None,
            source: Some(source.into()),
        }
    }
    /// 503: a dependency is down.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The message answered.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The stable code answered, if any.
    pub fn code(&self) -> Option<&'static str> {
        self.code
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> ApiError {
        ApiError::internal(err)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> ApiError {
        ApiError::internal(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            tracing::error!(error = ?source, "internal error");
        }
        match self.code {
            Some(code) => (
                self.status,
                axum::Json(serde_json::json!({ "message": self.message, "code": code })),
            )
                .into_response(),
            None => message_response(self.status, &self.message),
        }
    }
}

/// `{"message": …}` with a status.
pub fn message_response(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": message }))).into_response()
}
