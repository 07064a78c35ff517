//! Opaque page tokens for paginated lists (`nextToken`).
//!
//! A token is the position of the last item of a page — a sort key (e.g.
//! creation time in µs) and an id to break ties — hex-encoded so callers
//! treat it as opaque. Decoding a token that this module did not make is a
//! 400, never a 500.

use crate::ApiError;
use serde::Deserialize;

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

/// The query of a list route: `?nextToken=&limit=`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// The `nextToken` of the previous page; none for the first.
    pub next_token: Option<String>,
    /// Items wanted (see [`limit`]).
    pub limit: Option<i64>,
}

/// What a caller's `nextToken` and `limit` ask a keyset query for: the
/// position to continue after (`None` for the first page) and the page
/// size; 400 for a token or a limit this module would not give out.
pub fn request(next_token: Option<&str>, wanted: Option<i64>) -> Result<(Option<Position>, i64), ApiError> {
    Ok((next_token.map(position).transpose()?, limit(wanted)?))
}

/// The position before every other one of an ascending keyset list, for
/// its first page.
pub fn start() -> Position {
    (i64::MIN, String::new())
}

/// Splits the rows of a keyset query that asked for `limit + 1` (one more
/// than the page tells whether another page exists) into the page and
/// the position to continue after: that of the page's last row, or `None`
/// on the last page. `position` reads a row's sort key and id.
pub fn split<T, E>(
    mut rows: Vec<T>,
    limit: i64,
    position: impl Fn(&T) -> Result<Position, E>,
) -> Result<(Vec<T>, Option<Position>), E> {
    let limit = usize::try_from(limit).unwrap_or(0);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = match rows.last() {
        Some(last) if more => Some(position(last)?),
        _ => None,
    };
    Ok((rows, next))
}

fn invalid() -> ApiError {
    ApiError::bad_request("nextToken: not a token this list gave out")
}

/// Encodes a position as an opaque token.
fn encode(position: &str) -> String {
    crate::hex::encode(position.as_bytes())
}

/// Decodes a token made by [`encode`]; 400 naming `nextToken` otherwise.
fn decode(token: &str) -> Result<String, ApiError> {
    let bytes = crate::hex::decode(token).ok_or_else(invalid)?;
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
    fn a_keyset_page_continues_after_its_last_row_only_when_more_were_found() {
        let rows = |n: i64| (1..=n).map(|i| (i * 10, format!("id{i}"))).collect::<Vec<_>>();
        let at = |r: &Position| Ok::<_, ()>(r.clone());
        // Three asked, four found (limit + 1): a page of three, then more.
        assert_eq!(split(rows(4), 3, at), Ok((rows(3), Some((30, "id3".to_owned())))));
        // Exactly three found: the last page.
        assert_eq!(split(rows(3), 3, at), Ok((rows(3), None)));
        assert_eq!(split(rows(0), 3, at), Ok((vec![], None)));
        // A failing read of the last row's position is the caller's error.
        assert_eq!(
            split(rows(2), 1, |_: &Position| Err::<Position, _>("bad row")),
            Err("bad row")
        );
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(limit(Some(5)).ok(), Some(5));
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
    }
}
