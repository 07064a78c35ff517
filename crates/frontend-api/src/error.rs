//! How the gateway refuses: GraphQL errors with a stable code in
//! `extensions.code`, never a transport failure.
//!
//! A service that answers a refusal with its own `code` (orders'
//! `IDEMPOTENCY_KEY_REUSED`) has it passed on as is.
//!
//! Codes: `UNAUTHENTICATED` (no or bad token), `FORBIDDEN` (not in a group
//! the operation needs), `BAD_USER_INPUT` (the request is wrong; the message
//! says which field), `NOT_FOUND`, `CONFLICT` (wrong state for the
//! operation), `SERVICE_UNAVAILABLE` (a service behind the gateway does not
//! answer), `TOO_MANY_SUBSCRIPTIONS` (a cap on live subscriptions is
//! reached), `INTERNAL` (a fault on our side: logged, not shown), and for
//! documents that cannot run at all `GRAPHQL_PARSE_FAILED` and
//! `GRAPHQL_VALIDATION_FAILED` (unknown fields, wrong variable types, too
//! deep or too complex).

use async_graphql::{Error, ErrorExtensions as _};
use axum::http::StatusCode;
use ecom_runtime::{ApiError, ClientError};

/// The caller sent no valid token.
pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
/// The caller's groups do not allow the operation.
pub const FORBIDDEN: &str = "FORBIDDEN";
/// The request is wrong.
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
/// What the request names does not exist.
pub const NOT_FOUND: &str = "NOT_FOUND";
/// The operation does not fit the current state.
pub const CONFLICT: &str = "CONFLICT";
/// A service behind the gateway could not be reached.
pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
/// A cap on subscriptions (per connection or per server) is reached.
pub const TOO_MANY_SUBSCRIPTIONS: &str = "TOO_MANY_SUBSCRIPTIONS";
/// Our fault.
pub const INTERNAL: &str = "INTERNAL";
/// The document is not GraphQL.
pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// The document does not fit the schema or the limits.
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

/// An error with a message for the caller and a code.
pub fn error(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, ext| ext.set("code", code))
}

/// A fault on our side: the cause is logged, the caller sees "internal error".
pub fn internal(cause: impl std::fmt::Display) -> Error {
    tracing::error!(error = %cause, "internal error in the GraphQL gateway");
    error(INTERNAL, "internal error")
}

/// The code for an HTTP status a service answered.
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 422 => BAD_USER_INPUT,
        401 => UNAUTHENTICATED,
        403 => FORBIDDEN,
        404 => NOT_FOUND,
        409 => CONFLICT,
        _ => INTERNAL,
    }
}

/// A failed call to a service, as the caller should see it: the service's
/// own message for refusals (4xx), a generic one for faults.
pub fn from_client(err: ClientError) -> Error {
    match &err {
        // A service's own stable code (e.g. IDEMPOTENCY_KEY_REUSED) says
        // more than the status.
        ClientError::Status {
            status,
            message,
            code: Some(code),
            ..
        } if status.is_client_error() => {
            Error::new(message.clone()).extend_with(|_, ext| ext.set("code", code.as_str()))
        }
        ClientError::Status { status, message, .. } if status.is_client_error() => {
            error(code_of(*status), message.clone())
        }
        // The service is up but something it needs is not (e.g. orders
        // cannot reach the warehouse to cancel): its message says what to do.
        ClientError::Status { status, message, .. } if status.as_u16() == 503 => {
            error(SERVICE_UNAVAILABLE, message.clone())
        }
        ClientError::Unreachable { service, .. } => {
            tracing::warn!(error = %err, "a service behind the gateway is unreachable");
            error(
                SERVICE_UNAVAILABLE,
                format!("the {service} service is unavailable"),
            )
        }
        _ => internal(err),
    }
}

/// An [`ApiError`] (from the token verifier) as a GraphQL error.
pub fn from_api(err: ApiError) -> Error {
    if err.status().is_server_error() {
        internal(err)
    } else {
        error(code_of(err.status()), err.message())
    }
}

/// Whether a service's refusal is the caller's to fix (wrong input, absent,
/// wrong state) rather than a matter of rights or a fault.
pub fn is_refusal(err: &ClientError) -> bool {
    matches!(err.status().map(|s| s.as_u16()), Some(400 | 404 | 409 | 422))
}
