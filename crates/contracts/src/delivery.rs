//! What delivery emits: a delivery started, completed or failed.

use crate::{contract, sources, AboutOrder};
use ecom_model::Address;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `DeliveryStarted`: staff took the parcel out, under a tracking id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStarted {
    /// The order delivered.
    pub order_id: Uuid,
    /// 12 random characters the shopper can quote.
    pub tracking_id: String,
}

/// The detail of `DeliveryCompleted` and `DeliveryFailed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOutcome {
    /// The order delivered (or not).
    pub order_id: Uuid,
    /// Where it went.
    pub address: Address,
}

contract!(@impl DeliveryStarted, Self, sources::DELIVERY, "DeliveryStarted");
contract!(
    /// `DeliveryCompleted`: the parcel reached the address (payment then
    /// captures the order's total).
    DeliveryCompleted = DeliveryOutcome, sources::DELIVERY, "DeliveryCompleted"
);
contract!(
    /// `DeliveryFailed`: the parcel did not reach the address, or staff
    /// deleted an unfinished delivery.
    DeliveryFailed = DeliveryOutcome, sources::DELIVERY, "DeliveryFailed"
);

impl AboutOrder for DeliveryStarted {
    fn order_id(&self) -> Uuid {
        self.order_id
    }
}

impl AboutOrder for DeliveryOutcome {
    fn order_id(&self) -> Uuid {
        self.order_id
    }
}
