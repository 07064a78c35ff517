//! Types several domains share: addresses, products, packages and the bare
//! `Response` of staff mutations. Output types deserialize straight from
//! the services' JSON (extra fields are ignored), input types serialize
//! straight into it: the services check the values and name what is wrong.

use async_graphql::{InputObject, SimpleObject, ID};
use serde::{Deserialize, Serialize};

/// A delivery address.
#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Recipient's name.
    pub name: String,
    /// Company, if any.
    pub company_name: Option<String>,
    /// Street and number.
    pub street_address: String,
    /// Postal code, if any.
    pub post_code: Option<String>,
    /// City.
    pub city: String,
    /// State or region, if any.
    pub state: Option<String>,
    /// Two-letter ISO 3166-1 country code.
    pub country: String,
    /// Phone number of the recipient.
    pub phone_number: String,
}

/// A delivery address, as given by a shopper.
#[derive(Debug, Clone, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressInput {
    /// Recipient's name.
    pub name: String,
    /// Company, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    /// Street and number.
    pub street_address: String,
    /// Postal code, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_code: Option<String>,
    /// City.
    pub city: String,
    /// State or region, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Two-letter ISO 3166-1 country code.
    pub country: String,
    /// Phone number of the recipient.
    pub phone_number: String,
}

/// Whether a staff operation succeeded. When it did not, `errors` of the
/// GraphQL response say why (code `CONFLICT`, `NOT_FOUND` or `BAD_USER_INPUT`).
#[derive(Debug, Clone, SimpleObject)]
pub struct Response {
    /// True when the operation was applied.
    pub success: bool,
}

/// Shipping box of a product: millimetres and grams.
#[derive(Debug, Clone, Default, SimpleObject, Deserialize)]
pub struct Package {
    /// Width in millimetres.
    pub width: Option<i64>,
    /// Length in millimetres.
    pub length: Option<i64>,
    /// Height in millimetres.
    pub height: Option<i64>,
    /// Weight in grams.
    pub weight: Option<i64>,
}

/// Shipping box of a product, as given by a caller.
#[derive(Debug, Clone, InputObject, Serialize)]
pub struct PackageInput {
    /// Width in millimetres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// Length in millimetres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<i64>,
    /// Height in millimetres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    /// Weight in grams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

/// A catalogue product, or a line of an order (with `quantity`).
#[derive(Debug, Clone, SimpleObject, Deserialize)]
#[graphql(complex)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Identifier (UUID).
    pub product_id: ID,
    /// When the catalogue first stored it (RFC 3339).
    pub created_date: Option<String>,
    /// When the catalogue last changed it (RFC 3339).
    pub modified_date: Option<String>,
    /// User-facing name.
    pub name: String,
    /// Shipping box.
    #[serde(default)]
    pub package: Package,
    /// Category, if any.
    pub category: Option<String>,
    /// Searchable tags.
    pub tags: Option<Vec<Option<String>>>,
    /// Picture URLs.
    pub pictures: Option<Vec<Option<String>>>,
    /// Unit price in the smallest currency unit.
    pub price: i64,
    /// How many, in an order line.
    pub quantity: Option<i64>,
}

#[async_graphql::ComplexObject]
impl Product {
    /// Units the shop can still sell now; null when the product's stock is
    /// not tracked (unlimited).
    async fn available(&self, ctx: &async_graphql::Context<'_>) -> async_graphql::Result<Option<i64>> {
        crate::stock::available(ctx, &self.product_id).await
    }
}

/// A product as given by a shopper (pricing request, order line).
#[derive(Debug, Clone, InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductInput {
    /// Identifier (UUID).
    pub product_id: ID,
    /// Ignored by the services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date: Option<String>,
    /// Ignored by the services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_date: Option<String>,
    /// Name as the shopper saw it.
    pub name: String,
    /// Shipping box.
    pub package: PackageInput,
    /// Category, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Option<String>>>,
    /// Picture URLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pictures: Option<Vec<Option<String>>>,
    /// Unit price as the shopper saw it.
    pub price: i64,
    /// How many (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
}
