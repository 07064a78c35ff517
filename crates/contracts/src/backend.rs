//! Bodies of the `/backend/` calls one service makes to another, where
//! caller and callee used to keep a copy each. Both sides use these types,
//! so a renamed field fails to compile on both; the tests of this crate pin
//! each body's JSON to the bytes the callers and callees wrote before.
//!
//! | call | caller | body | answer |
//! |---|---|---|---|
//! | `POST /payment/backend/validate` | orders (createOrder) | [`PaymentClaim`] | [`PaymentClaimAnswer`] |
//! | `POST /payment/backend/release` | orders (a refused order) | [`PaymentRelease`] | [`Ack`] |
//! | `POST /warehouse/backend/reservations` | orders (createOrder) | [`Reservation`] | [`ReservationAnswer`] |
//! | `POST /warehouse/backend/reservations/release` | orders (a refused order) | [`crate::OrderRef`] | [`Ack`] |
//! | `POST /warehouse/backend/cancellations` | orders (cancelOrder) | [`crate::OrderRef`] | [`Ack`] |
//! | `GET /orders/backend/{orderId}` | payment, delivery, the gateway | — | [`crate::orders::OneOrder`] |
//!
//! Field order matters: a body is written straight from its struct, so the
//! fields are declared in the order the bytes had (a struct's order where
//! the caller wrote a struct, sorted where it wrote `json!`).

use ecom_model::Money;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /payment/backend/validate`: check that `payment_token` covers
/// `total` at the card processor and claim the token for `order_id` (one
/// token pays for one order; the order's `OrderCreated` confirms the
/// claim, an unconfirmed one expires).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentClaim {
    /// The pre-authorisation at the card processor.
    pub payment_token: String,
    /// The order's total, which the token must cover.
    pub total: Money,
    /// The order that claims the token (not stored yet).
    pub order_id: Uuid,
}

/// Payment's answer to a [`PaymentClaim`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentClaimAnswer {
    /// Whether the token covers the total and the order now holds it.
    pub ok: bool,
    /// Why not, when payment says: `Payment token already used` when
    /// another order holds the token (orders shows it to the shopper as
    /// is). Absent when the processor does not cover the total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /payment/backend/release`: drop `order_id`'s unconfirmed claim on
/// `payment_token` (orders refused the order for another reason), so the
/// shopper can retry with the same token at once. A confirmed claim stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRelease {
    /// The order whose claim is dropped.
    pub order_id: Uuid,
    /// The token it claimed.
    pub payment_token: String,
}

/// `{ok}`: the answer of a call whose only news is whether it did
/// something (payment's release: whether there was a claim to drop; the
/// warehouse's release and cancellation: always `true`, a refusal is an
/// HTTP error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ack {
    /// Whether it did.
    pub ok: bool,
}

/// `POST /warehouse/backend/reservations` (orders, during createOrder):
/// hold the stock of the tracked products among `products` for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// The order the stock is held for (the hold expires unless its
    /// `OrderCreated` confirms it).
    pub order_id: Uuid,
    /// What it wants.
    pub products: Vec<StockLine>,
}

/// One line of a [`Reservation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockLine {
    /// The product.
    pub product_id: Uuid,
    /// Units wanted (at least 1; the warehouse refuses less with 400).
    pub quantity: i64,
}

/// The warehouse's answer to a [`Reservation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationAnswer {
    /// Whether every tracked line is held (nothing is held otherwise).
    pub ok: bool,
    /// The products short of stock, when not `ok` (never empty then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_stock: Vec<Uuid>,
}
