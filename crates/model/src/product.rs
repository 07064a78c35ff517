//! Products as the catalogue knows them, and as lines of an order.

use crate::{Money, NonNegative, Quantity, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Shipping box of one product: millimetres and grams.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Package {
    /// Width in millimetres.
    pub width: NonNegative,
    /// Length in millimetres.
    pub length: NonNegative,
    /// Height in millimetres.
    pub height: NonNegative,
    /// Weight in grams.
    pub weight: NonNegative,
}

impl Package {
    /// Volume in cubic millimetres; `None` when absurd sizes would overflow.
    pub fn volume(&self) -> Option<i128> {
        i128::from(self.width.get())
            .checked_mul(i128::from(self.length.get()))?
            .checked_mul(i128::from(self.height.get()))
    }
}

/// A catalogue product.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Identifier.
    pub product_id: Uuid,
    /// User-facing name.
    pub name: String,
    /// Shipping box.
    pub package: Package,
    /// Unit price in the smallest currency unit.
    pub price: Money,
    /// Category, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Searchable tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Picture URLs.
    #[serde(default)]
    pub pictures: Vec<String>,
    /// When the catalogue first stored it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date: Option<Timestamp>,
    /// When the catalogue last changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_date: Option<Timestamp>,
}

/// A product as a line of an order or a pricing request: what the product
/// was, plus how many. Extra catalogue fields are accepted and ignored.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductLine {
    /// Identifier.
    pub product_id: Uuid,
    /// Name at the time of the order.
    pub name: String,
    /// Shipping box.
    pub package: Package,
    /// Unit price at the time of the order.
    pub price: Money,
    /// How many (default 1).
    #[serde(default)]
    pub quantity: Quantity,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_line_quantity_defaults_to_one() {
        let json = r#"{"productId":"f380305b-99fe-45ba-b1ab-ba6349d141a2","name":"Shoe","package":{"width":1,"length":2,"height":3,"weight":4},"price":100}"#;
        let line: Result<ProductLine, _> = serde_json::from_str(json);
        assert_eq!(line.ok().map(|l| l.quantity), Some(Quantity::ONE));
    }

    #[test]
    fn package_refuses_negative_dimensions() {
        let json = r#"{"width":-1,"length":2,"height":3,"weight":4}"#;
        assert!(serde_json::from_str::<Package>(json).is_err());
    }
}
