//! What payment emits: how an order's payment ended at the card processor.

use crate::{contract, sources, AboutOrder};
use ecom_model::Money;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `PaymentProcessed`: the processor captured `amount`, the order's final
/// total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentProcessed {
    /// The order paid.
    pub order_id: Uuid,
    /// What was captured.
    pub amount: Money,
}

/// `PaymentFailed`: the processor refused the capture, or the order's
/// token is another order's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    /// The order not paid.
    pub order_id: Uuid,
    /// Why, in words for staff.
    pub reason: String,
}

/// `PaymentRefunded`: `amount` (> 0) of a captured payment went back to
/// the card, under the refund id the caller chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    /// The order refunded.
    pub order_id: Uuid,
    /// What went back.
    pub amount: Money,
    /// The caller's id for this refund (a retry with it refunds once).
    pub refund_id: String,
}

contract!(@impl PaymentProcessed, Self, sources::PAYMENT, "PaymentProcessed");
contract!(@impl PaymentFailed, Self, sources::PAYMENT, "PaymentFailed");
contract!(@impl PaymentRefunded, Self, sources::PAYMENT, "PaymentRefunded");

impl AboutOrder for PaymentProcessed {
    fn order_id(&self) -> Uuid {
        self.order_id
    }
}

impl AboutOrder for PaymentFailed {
    fn order_id(&self) -> Uuid {
        self.order_id
    }
}

impl AboutOrder for PaymentRefunded {
    fn order_id(&self) -> Uuid {
        self.order_id
    }
}
