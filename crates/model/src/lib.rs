//! Shared data types of the ecom services.
//!
//! Every type here is built by parsing: once a value exists it is valid.
//! The JSON shapes follow `shared/contracts/shared.schemas.yaml` (camelCase),
//! with the fixes of the spec (money as integers, quantity ≥ 1).

mod address;
mod money;
mod product;
mod time;

pub use address::{Address, CountryCode};
pub use money::{Money, NonNegative, Quantity};
pub use product::{Package, Product, ProductLine};
pub use time::Timestamp;

/// Parses a UUID, giving a message that can be shown to a caller.
pub fn parse_uuid(value: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(value).map_err(|_| format!("'{value}' is not a UUID"))
}

#[cfg(feature = "schemars")]
mod schema;
