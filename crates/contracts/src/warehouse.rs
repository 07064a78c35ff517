//! What the warehouse emits: how packaging ended, and every change of a
//! tracked product's stock.

use crate::{contract, sources, AboutOrder, OrderRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `PackageCreated`: packaging completed with these lines (quantities as
/// packed, possibly lower than ordered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageCreated {
    /// The order packed.
    pub order_id: Uuid,
    /// What the parcel holds; never empty (an empty one is
    /// `PackagingFailed`).
    #[serde(default)]
    pub products: Vec<PackedLine>,
}

/// One line of a parcel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackedLine {
    /// The product.
    pub product_id: Uuid,
    /// How many were packed (at least 1).
    pub quantity: i64,
}

/// `StockChanged`: a tracked product's stock after any change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockChanged {
    /// The product.
    pub product_id: Uuid,
    /// Units in the warehouse, including those held for orders.
    pub on_hand: i64,
    /// Units held for orders not yet packed.
    pub reserved: i64,
    /// `onHand - reserved`: what new orders may still take.
    pub available: i64,
}

contract!(@impl PackageCreated, Self, sources::WAREHOUSE, "PackageCreated");
contract!(
    /// `PackagingFailed`: packaging completed with no line left.
    PackagingFailed = OrderRef, sources::WAREHOUSE, "PackagingFailed"
);
contract!(@impl StockChanged, Self, sources::WAREHOUSE, "StockChanged");

impl AboutOrder for PackageCreated {
    fn order_id(&self) -> Uuid {
        self.order_id
    }
}
