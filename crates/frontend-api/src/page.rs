//! `nextToken`s the gateway hands out: the service's own token for the
//! next page, wrapped with the list it belongs to and signed (HMAC of the
//! service key), so a caller can neither forge a position nor carry a token
//! from one list to another. Services' tokens are only encoded positions;
//! this makes them tamper-proof at the public edge.
//!
//! Text form: hex of `list NUL extra NUL inner`, a dot, hex of the first 16
//! bytes of the MAC.

use crate::error::{self, error};
use ecom_runtime::{hex, BackendClient, ServiceKey};
use serde::de::DeserializeOwned;

/// Items per page.
pub const PAGE_SIZE: i64 = 20;

const PURPOSE: &str = "frontend-api page token";

/// Where a list continues: which list, a list-specific extra (the
/// category of a category listing) and the service's own token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Which list (`products`, `orders:<userId>`, …).
    pub list: String,
    /// More about the list (a category), empty when none.
    pub extra: String,
    /// The service's token.
    pub inner: String,
}

/// The public token for `position`.
pub fn wrap(key: &ServiceKey, position: &Position) -> String {
    let payload = format!("{}\0{}\0{}", position.list, position.extra, position.inner);
    let tag = key.mac(PURPOSE, payload.as_bytes());
    format!("{}.{}", hex::encode(payload.as_bytes()), hex::encode(&tag[..16]))
}

/// The position of a token made by [`wrap`]; `BAD_USER_INPUT` for anything
/// else.
pub fn unwrap(key: &ServiceKey, token: &str) -> async_graphql::Result<Position> {
    let refused = || error(error::BAD_USER_INPUT, "nextToken: not a token this API gave out");
    let (payload, tag) = token.split_once('.').ok_or_else(refused)?;
    let payload = hex::decode(payload).ok_or_else(refused)?;
    let tag = hex::decode(tag).ok_or_else(refused)?;
    let expected = key.mac(PURPOSE, &payload);
    if tag.len() != 16 || !same(&tag, &expected[..16]) {
        return Err(refused());
    }
    let text = String::from_utf8(payload).map_err(|_| refused())?;
    let mut parts = text.splitn(3, '\0');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(list), Some(extra), Some(inner)) => Ok(Position {
            list: list.to_owned(),
            extra: extra.to_owned(),
            inner: inner.to_owned(),
        }),
        _ => Err(refused()),
    }
}

/// The service token to continue `list` from, checking that `token` (if
/// any) was given out for that list.
pub fn inner_for(key: &ServiceKey, list: &str, token: Option<&str>) -> async_graphql::Result<Option<String>> {
    match token.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(token) => {
            let position = unwrap(key, token)?;
            if position.list != list {
                return Err(error(
                    error::BAD_USER_INPUT,
                    "nextToken: this token belongs to another list",
                ));
            }
            Ok(Some(position.inner))
        }
    }
}

/// A page as a service answers it, whose `nextToken` is the service's own
/// and must be wrapped before a caller sees it.
pub trait ServicePage: DeserializeOwned {
    /// The page's `nextToken`.
    fn next_token(&mut self) -> &mut Option<String>;
}

/// The page of `list` after the caller's `next_token` (checked to belong
/// to `list`): GETs `path` (a list route with its query, without a token)
/// from `client`, and wraps the service's next token for `list`.
pub async fn fetch<T: ServicePage>(
    key: &ServiceKey,
    client: BackendClient,
    list: &str,
    mut path: String,
    next_token: Option<&str>,
) -> async_graphql::Result<T> {
    if let Some(inner) = inner_for(key, list, next_token)? {
        path.push_str(&format!("&nextToken={}", encode(&inner)));
    }
    let mut found: T = client.get(&path).await.map_err(error::from_client)?;
    let next = found.next_token().take();
    *found.next_token() = next.map(|inner| {
        wrap(
            key,
            &Position {
                list: list.to_owned(),
                extra: String::new(),
                inner,
            },
        )
    });
    Ok(found)
}

/// Constant-time comparison, so the time taken does not tell how much of a
/// forged tag was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `id` as one percent-encoded path segment, or BAD_USER_INPUT naming
/// `field` when it is longer than any id: the services refuse such a path
/// parameter with a 400, and a very long one would not even fit in a URI
/// (the call would fail as if the service were down).
pub fn id_segment(field: &str, id: &str) -> Result<String, async_graphql::Error> {
    let chars = id.chars().count();
    let max = ecom_runtime::extract::MAX_PATH_PARAM_CHARS;
    if chars > max {
        return Err(error(
            error::BAD_USER_INPUT,
            format!("{field}: at most {max} characters, got {chars}"),
        ));
    }
    Ok(encode(id))
}

/// Percent-encodes one URL component (path segment or query value).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServiceKey {
        ServiceKey::from_secret(b"0123456789abcdef0123456789abcdef")
    }

    fn position() -> Position {
        Position {
            list: "products".into(),
            extra: "Shoes & socks".into(),
            inner: "abc123".into(),
        }
    }

    #[test]
    fn a_token_round_trips_to_its_position() {
        let token = wrap(&key(), &position());
        assert_eq!(unwrap(&key(), &token).ok(), Some(position()));
    }

    #[test]
    fn altered_forged_or_foreign_tokens_are_refused() {
        let token = wrap(&key(), &position());
        let (payload, tag) = token.split_once('.').unwrap_or_default();
        let mut altered = payload.to_owned();
        altered.replace_range(0..2, "71"); // 'p' → 'q'
        let other_key = ServiceKey::from_secret(b"fedcba9876543210fedcba9876543210");
        for bad in [
            format!("{altered}.{tag}"),
            format!("{payload}.{}", "0".repeat(32)),
            wrap(&other_key, &position()),
            payload.to_owned(),
            "garbage".to_owned(),
            String::new(),
        ] {
            assert!(unwrap(&key(), &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_of_one_list_does_not_continue_another() {
        let token = wrap(&key(), &position());
        assert!(inner_for(&key(), "orders:u1", Some(&token)).is_err());
        assert_eq!(
            inner_for(&key(), "products", Some(&token))
                .ok()
                .flatten()
                .as_deref(),
            Some("abc123")
        );
        assert_eq!(inner_for(&key(), "products", None).ok(), Some(None));
    }

    #[test]
    fn url_components_are_percent_encoded() {
        assert_eq!(encode("Shoes & socks/é"), "Shoes%20%26%20socks%2F%C3%A9");
        assert_eq!(encode("a-b_c.d~1"), "a-b_c.d~1");
    }
}
