//! What a product must be before the catalogue accepts it, and the page
//! tokens of catalogue listings.
//!
//! [`ProductInput`] is the body of a create or update (and one element of an
//! import file): parsing it is validating it, and every refusal names the
//! field (`price: must be a non-negative integer, got -1`). The dates are
//! the service's business: a caller's `createdDate` / `modifiedDate` are
//! ignored, so a product read from the API can be sent back as it is.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ecom_model::{Money, Package, Product, Timestamp};
use ecom_runtime::ApiError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest name, category or tag accepted, in characters: enough for any
/// real product, small enough that nobody stores a document in a name.
pub const MAX_TEXT: usize = 200;

/// Text that is not blank and at most [`MAX_TEXT`] characters, kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String)]
pub struct Text(String);

impl TryFrom<String> for Text {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.trim().is_empty() {
            Err("must not be empty".to_owned())
        } else if value.chars().count() > MAX_TEXT {
            Err(format!("must be at most {MAX_TEXT} characters"))
        } else {
            Ok(Text(value))
        }
    }
}

/// An absolute `http` or `https` URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String)]
pub struct PictureUrl(String);

impl TryFrom<String> for PictureUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match url::Url::parse(&value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(PictureUrl(value)),
            _ => Err(format!("must be an http or https URL, got '{value}'")),
        }
    }
}

/// A product as an administrator (or an import file) describes it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductInput {
    /// Generated on create when absent.
    #[serde(default)]
    pub product_id: Option<Uuid>,
    /// Name shown to shoppers.
    pub name: Text,
    /// Shipping box.
    pub package: Package,
    /// Unit price in cents.
    pub price: Money,
    /// Category, if any.
    #[serde(default)]
    pub category: Option<Text>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Text>,
    /// Picture URLs.
    #[serde(default)]
    pub pictures: Vec<PictureUrl>,
}

impl ProductInput {
    /// The catalogue product with this content, id and dates.
    pub fn into_product(self, product_id: Uuid, created: Timestamp, modified: Timestamp) -> Product {
        Product {
            product_id,
            name: self.name.0,
            package: self.package,
            price: self.price,
            category: self.category.map(|c| c.0),
            tags: self.tags.into_iter().map(|t| t.0).collect(),
            pictures: self.pictures.into_iter().map(|p| p.0).collect(),
            created_date: Some(created),
            modified_date: Some(modified),
        }
    }
}

/// True when two products differ in anything but their dates.
pub fn content_differs(a: &Product, b: &Product) -> bool {
    let strip = |p: &Product| Product {
        created_date: None,
        modified_date: None,
        ..p.clone()
    };
    strip(a) != strip(b)
}

/// Parses `value` as a `T`, naming the field at fault under `prefix`
/// (`products[2].price: …`).
pub fn parse_value<T: DeserializeOwned>(value: &serde_json::Value, prefix: &str) -> Result<T, String> {
    // Plainly first: tracking the path costs every field; only a value
    // that fails is read again with it, for the message.
    if let Ok(v) = T::deserialize(value) {
        return Ok(v);
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match (prefix.is_empty(), path == "." || path.is_empty()) {
            (true, true) => inner.to_string(),
            (true, false) => format!("{path}: {inner}"),
            (false, true) => format!("{prefix}: {inner}"),
            (false, false) => format!("{prefix}.{path}: {inner}"),
        }
    })
}

/// Page size when the caller gives none.
pub const DEFAULT_LIMIT: i64 = 20;
/// Largest page a caller may ask for.
pub const MAX_LIMIT: i64 = 100;

/// The query of a catalogue listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Only this category.
    pub category: Option<String>,
    /// Where the previous page stopped.
    pub next_token: Option<String>,
    /// Page size, 1 to [`MAX_LIMIT`].
    pub limit: Option<i64>,
}

/// A checked page request: where to start and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Only this category.
    pub category: Option<String>,
    /// Products after this id (ids are listed in order).
    pub after: Option<Uuid>,
    /// How many at most.
    pub limit: i64,
}

impl TryFrom<PageQuery> for PageRequest {
    type Error = ApiError;
    fn try_from(q: PageQuery) -> Result<Self, ApiError> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit: must be between 1 and {MAX_LIMIT}, got {limit}"
            )));
        }
        let after =
            match q.next_token.as_deref() {
                None | Some("") => None,
                Some(token) => Some(decode_token(token).ok_or_else(|| {
                    ApiError::bad_request("nextToken: not a page token given by this service")
                })?),
            };
        Ok(PageRequest {
            category: q.category,
            after,
            limit,
        })
    }
}

/// One page of products and the token of the next, if there is one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// The products, in id order.
    pub products: Vec<Product>,
    /// Pass as `nextToken` for the next page; null on the last.
    pub next_token: Option<String>,
}

// Tokens are opaque to callers: the versioned last id, base64url. The
// version lets the ordering change later without misreading old tokens.
const TOKEN_PREFIX: &str = "p1:";

/// The token that continues after `last`.
pub fn encode_token(last: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{last}"))
}

/// The id a token continues after, or `None` for anything we did not issue.
pub fn decode_token(token: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    Uuid::parse_str(text.strip_prefix(TOKEN_PREFIX)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(body: serde_json::Value) -> String {
        parse_value::<ProductInput>(&body, "").err().unwrap_or_default()
    }

    fn valid() -> serde_json::Value {
        json!({
            "name": "Shoe", "price": 100,
            "package": {"width": 1, "length": 2, "height": 3, "weight": 4},
            "pictures": ["https://example.com/shoe.jpg"]
        })
    }

    #[test]
    fn each_refusal_names_the_field_at_fault() {
        let cases = [
            ("name", json!(""), "name: must not be empty"),
            ("name", json!("   "), "name: must not be empty"),
            (
                "price",
                json!(-1),
                "price: must be a non-negative integer, got -1",
            ),
            (
                "price",
                json!(12.5),
                "price: invalid type: floating point `12.5`, expected i64",
            ),
            ("productId", json!("nope"), "productId: UUID parsing failed"),
            (
                "pictures",
                json!(["ftp://x/y.jpg"]),
                "pictures[0]: must be an http or https URL, got 'ftp://x/y.jpg'",
            ),
            (
                "pictures",
                json!(["not a url"]),
                "pictures[0]: must be an http or https URL",
            ),
            ("category", json!(""), "category: must not be empty"),
            ("tags", json!(["ok", ""]), "tags[1]: must not be empty"),
            (
                "package",
                json!({"width": -1, "length": 2, "height": 3, "weight": 4}),
                "package.width: must be a non-negative integer, got -1",
            ),
            (
                "package",
                json!({"width": 1, "length": 2, "height": 3}),
                "package: missing field `weight`",
            ),
        ];
        for (field, value, expected) in cases {
            let mut body = valid();
            body[field] = value.clone();
            let got = refusal(body);
            assert!(
                got.starts_with(expected),
                "{field} = {value}: got '{got}', want '{expected}…'"
            );
        }
        let mut body = valid();
        body.as_object_mut().map(|o| o.remove("price"));
        assert_eq!(refusal(body), "missing field `price`");
    }

    #[test]
    fn a_valid_input_becomes_a_product_with_the_given_dates() {
        let input = parse_value::<ProductInput>(&valid(), "");
        let now = Timestamp::now();
        let id = Uuid::new_v4();
        let product = input.map(|i| i.into_product(id, now, now));
        assert_eq!(product.as_ref().map(|p| p.product_id), Ok(id));
        assert_eq!(product.map(|p| p.created_date), Ok(Some(now)));
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let id = Uuid::new_v4();
        assert_eq!(decode_token(&encode_token(id)), Some(id));
        for garbage in [
            "",
            "x",
            "!!!",
            &URL_SAFE_NO_PAD.encode("p1:not-a-uuid"),
            &URL_SAFE_NO_PAD.encode(id.to_string()),
        ] {
            assert_eq!(decode_token(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn page_size_is_bounded() {
        let page = |limit| {
            PageRequest::try_from(PageQuery {
                limit,
                ..Default::default()
            })
            .map(|p| p.limit)
            .map_err(|e| e.message().to_owned())
        };
        assert_eq!(page(None), Ok(DEFAULT_LIMIT));
        assert_eq!(page(Some(100)), Ok(100));
        assert!(page(Some(0)).is_err());
        assert!(page(Some(101)).is_err());
    }
}
