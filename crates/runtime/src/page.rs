//! Opaque page tokens for paginated lists (`nextToken`).
//!
//! A token is the position of the last item of a page — a sort key (e.g.
//! creation time in µs) and an id to break ties — hex-encoded so callers
//! treat it as opaque. Decoding a token that this module did not make is a
//! 400, never a 500.

use crate::ApiError;

/// Items per page when the caller does not say.
pub const DEFAULT_LIMIT: i64 = 20;
/// Most items a caller may ask for in one page.
pub const MAX_LIMIT: i64 = 100;

/// The position of the last item of a page: sort key, then id.
pub type Position = (i64, String);

/// The token of the page after `position`.
pub fn next_token(position: &Position) -> String {
    encode(&format!("{}:{}", position.0, position.1))
}

/// The position a token made by [`next_token`] stands for; 400 otherwise.
pub fn position(token: &str) -> Result<Position, ApiError> {
    decode(token)?
        .split_once(':')
        .and_then(|(key, id)| Some((key.parse().ok()?, id.to_owned())))
        .ok_or_else(invalid)
}

fn invalid() -> ApiError {
    ApiError::bad_request("nextToken: not a token this list gave out")
}

/// Encodes a position as an opaque token.
fn encode(position: &str) -> String {
    position.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a token made by [`encode`]; 400 naming `nextToken` otherwise.
fn decode(token: &str) -> Result<String, ApiError> {
    let bytes = crate::credentials::decode_hex(token).ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// The page size: `limit` when given (1 to [`MAX_LIMIT`]), else [`DEFAULT_LIMIT`].
pub fn limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit: must be between 1 and {MAX_LIMIT}, got {n}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_foreign_tokens_are_refused() {
        let position = (-17, "b2d0c356-f92b-4629-a87f-786331c2842f".to_owned());
        assert_eq!(super::position(&next_token(&position)).ok(), Some(position));
        for bad in ["abc", "zz", "é1", "ff", &encode("12"), &encode("x:1")] {
            assert_eq!(
                super::position(bad).err().map(|e| e.status().as_u16()),
                Some(400),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(limit(Some(5)).ok(), Some(5));
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
    }
}
