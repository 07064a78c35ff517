//! Extractors whose refusals use the platform's error format and name the
//! offending field (`amount: must be a non-negative integer, got -5`).

use crate::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A JSON body in, or a JSON body out. Unlike axum's, it does not insist on
/// a `Content-Type` header (many clients forget it), and its errors say
/// which field is wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// Parses `bytes` as JSON into `T`, with a message naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty: expected a JSON object",
        ));
    }
    // Most bodies are fine: parsed plainly first, since tracking the path
    // wraps every field on the way (a third of the parse); only a body
    // that fails is parsed again with it, for the message.
    if let Ok(value) = T::deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let text = strip_position(&inner.to_string());
        let message = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("request body is not valid JSON: {text}")
            }
            _ if path == "." || path.is_empty() => text,
            _ => format!("{path}: {text}"),
        };
        ApiError::bad_request(message)
    })
}

/// serde_json appends "at line 1 column 17"; the field path says more.
fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Longest path parameter accepted, in characters. Every id of the
/// platform (UUIDs, user ids, group names) is far shorter; a longer one
/// names nothing and is refused before any handler or database sees it.
pub const MAX_PATH_PARAM_CHARS: usize = 128;

/// Path parameters; a malformed one is a 400 (or 404 for an id that cannot
/// exist), and so is one longer than [`MAX_PATH_PARAM_CHARS`].
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        for (name, value) in &raw {
            let chars = value.chars().count();
            if chars > MAX_PATH_PARAM_CHARS {
                // The value is not echoed: it may be huge.
                return Err(ApiError::bad_request(format!(
                    "{name}: at most {MAX_PATH_PARAM_CHARS} characters, got {chars}"
                )));
            }
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// Query-string parameters with the platform's error format.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt as _;

    async fn get_id(id: &str) -> (u16, String) {
        async fn echo(Path(id): Path<String>) -> String {
            id
        }
        let app = axum::Router::new().route("/things/{id}", get(echo));
        let req = axum::http::Request::get(format!("/things/{id}"))
            .body(axum::body::Body::empty())
            .unwrap_or_default();
        let Ok(resp) = app.oneshot(req).await;
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_path_parameter_longer_than_any_id_is_a_400() {
        let longest = "x".repeat(MAX_PATH_PARAM_CHARS);
        assert_eq!(get_id(&longest).await, (200, longest.clone()));
        let (status, body) = get_id(&format!("{longest}x")).await;
        assert_eq!(status, 400);
        assert_eq!(body, r#"{"message":"id: at most 128 characters, got 129"}"#);
        // Counted after percent-decoding, in characters.
        let (status, _) = get_id(&"%C3%A4".repeat(MAX_PATH_PARAM_CHARS)).await;
        assert_eq!(status, 200);
        // Near the longest URI the http crate accepts (65,534 bytes).
        let (status, _) = get_id(&"y".repeat(65_000)).await;
        assert_eq!(status, 400);
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        amount: u32,
        inner: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
    }

    fn message(body: &str) -> String {
        parse_json::<Body>(body.as_bytes())
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        assert_eq!(message(r#"{"inner":{"name":"x"}}"#), "missing field `amount`");
        assert!(message(r#"{"amount":"5","inner":{"name":"x"}}"#).starts_with("amount: invalid type"));
        assert_eq!(
            message(r#"{"amount":5,"inner":{}}"#),
            "inner: missing field `name`"
        );
        assert!(message("{not json").starts_with("request body is not valid JSON"));
        assert_eq!(message(""), "request body is empty: expected a JSON object");
    }
}
