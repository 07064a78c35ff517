//! Bodies of the `/backend/` calls one service makes to another, where
//! caller and callee used to keep a copy each. Both sides use these types,
//! so a renamed field fails to compile on both; the tests of this crate pin
//! each body's JSON to the bytes the callers and callees wrote before.
//!
//! | call | caller | body | answer |
//! |---|---|---|---|
//! | `POST /products/backend/validate` | orders (createOrder) | [`ProductsCheck`] | [`ProductsAnswer`] |
//! | `POST /delivery-pricing/backend/pricing` | orders (createOrder), the gateway | [`PricingCheck`] | [`PricingAnswer`] |
//! | `POST /payment/backend/validate` | orders (createOrder) | [`PaymentClaim`] | [`PaymentClaimAnswer`] |
//! | `POST /payment/backend/release` | orders (a refused order) | [`PaymentRelease`] | [`Ack`] |
//! | `POST /payment/backend/refunds` | the gateway (refundOrder) | [`Refund`] | [`RefundAnswer`] |
//! | `POST /warehouse/backend/reservations` | orders (createOrder) | [`Reservation`] | [`ReservationAnswer`] |
//! | `POST /warehouse/backend/reservations/release` | orders (a refused order) | [`crate::OrderRef`] | [`Ack`] |
//! | `POST /warehouse/backend/cancellations` | orders (cancelOrder) | [`crate::OrderRef`] | [`Ack`] |
//! | `POST /warehouse/backend/availability` | the gateway (`Product.available`) | [`AvailabilityQuery`] | [`Availability`] |
//! | `POST /orders/backend/orders` | the gateway (createOrder) | [`CreateOrder`] | (built by orders) |
//! | `POST /orders/backend/{orderId}/cancel` | the gateway (cancelOrder) | [`CancelOrder`] | (built by orders) |
//! | `GET /orders/backend/{orderId}` | payment, delivery | — | [`crate::orders::OneOrder`] |
//!
//! Field order matters: a body is written straight from its struct, so the
//! fields are declared in the order the bytes had (a struct's order where
//! the caller wrote a struct, sorted where it wrote `json!`).
//!
//! Some bodies take type parameters for what one side holds in another
//! form: orders lends its checked lines to products and pricing, the
//! gateway forwards the shopper's unchecked input, and products and orders
//! read some parts as raw JSON to answer each wrong field by name. The
//! field names are still written once, here; the defaults are what the
//! callee reads, and the tests check that what callers send reads as that.

use ecom_model::{Address, Money, Package, Quantity};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// `POST /products/backend/validate` (orders, during createOrder): does
/// what the caller believes about some products match the catalogue?
// `P` is the list as each side holds it: orders lends its order's lines
// (`&Vec<ProductLine>`); products reads each product as raw JSON (the
// default), so that it can send an unknown one back exactly as it came and
// name the field of a malformed one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductsCheck<P = Vec<Value>> {
    /// The products as the caller believes they are: lines of an order.
    /// Products compares `productId`, `name`, `package` and `price`, in
    /// that order; the other fields (`quantity`, `category`, …) are ignored.
    pub products: P,
}

/// Products' answer to a [`ProductsCheck`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductsAnswer {
    /// `All products are valid`, or one reason per wrong product, in the
    /// order of the request, joined with ". " (orders shows it to the
    /// shopper as is).
    #[serde(default)]
    pub message: String,
    /// The wrong products: the catalogue's version of each, or the caller's
    /// own when the catalogue does not know it. Empty (and absent from the
    /// JSON) when every product is right.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub products: Vec<Value>,
}

/// `POST /delivery-pricing/backend/pricing` (orders during createOrder, to
/// check the price the shopper was shown; the gateway's
/// `getDeliveryPricing`): what delivering `products` to `address` costs.
// `P` and `A` are the lines and the address as each side holds them: orders
// lends its checked ones (`&Vec<ProductLine>`, `&Address`), the gateway
// forwards the shopper's input unchecked, and delivery-pricing reads the
// defaults (`Parcel`s and an `Address`), answering 400 for a malformed one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PricingCheck<P = Vec<Parcel>, A = Address> {
    /// What is delivered: product lines, of which pricing reads the box
    /// and how many.
    pub products: P,
    /// Where to: the fee depends on its country.
    pub address: A,
}

/// What delivery-pricing reads of each line of a [`PricingCheck`]: an order
/// line's box and quantity (its other fields are ignored, so a whole line
/// reads as a parcel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Parcel {
    /// The product's shipping box.
    pub package: Package,
    /// How many of them (default 1).
    #[serde(default)]
    pub quantity: Quantity,
}

/// Delivery-pricing's answer to a [`PricingCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PricingAnswer {
    /// The delivery price, in the smallest currency unit: boxes × the fee
    /// of the destination country.
    pub pricing: i64,
}

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

/// `POST /payment/backend/refunds` (the gateway's `refundOrder`, for
/// admins): refund `amount` of the order's captured payment at the card
/// processor under `refundId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    /// In the smallest currency unit, more than 0 and at most what is left
    /// to refund. A plain integer, so that 0 and negative amounts get
    /// payment's own message (400) rather than a decoding error.
    pub amount: i64,
    /// The order whose payment is refunded.
    pub order_id: Uuid,
    /// The caller's name for this refund (1 to 200 characters): the same id
    /// again with the same amount answers ok without refunding twice, with
    /// another amount 409.
    pub refund_id: String,
}

/// Payment's answer to a [`Refund`] it made (or had made under that id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefundAnswer {
    /// Always `true`: a refusal is an HTTP error.
    pub ok: bool,
    /// The sum refunded so far for the order, in the smallest currency unit.
    pub refunded: i64,
}

/// `POST /warehouse/backend/availability` (the gateway, for
/// `Product.available`, batched across the products of one answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityQuery {
    /// The products asked about (at most 1000; the warehouse refuses more
    /// with 400).
    pub product_ids: Vec<Uuid>,
}

/// The warehouse's answer to an [`AvailabilityQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Availability {
    /// Units available now (on hand less reserved) per tracked product;
    /// untracked products (never out of stock) are absent.
    pub available: BTreeMap<Uuid, i64>,
}

/// `POST /orders/backend/orders` (the gateway's `createOrder`): create
/// `order` for `userId`.
// `O` is the order as each side holds it: the gateway forwards the shopper's
// input unchecked; orders reads raw JSON (the default) and checks it field
// by field, so that every problem is reported, not only the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrder<O = Value> {
    /// The shopper (the gateway passes the signed-in user's id).
    pub user_id: String,
    /// What they order: `products` (lines), `address`, `deliveryPrice` (as
    /// delivery-pricing gave it) and `paymentToken` (one token pays for one
    /// order).
    pub order: O,
    /// The `Idempotency-Key` the gateway received (at most 200 characters):
    /// the same key and order from the same user return the first order;
    /// the same key with another order is a 409.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `POST /orders/backend/{orderId}/cancel` (the gateway's `cancelOrder`):
/// cancel the order while it is NEW and its packaging has not started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelOrder {
    /// The shopper asking: another user's order is answered as absent
    /// (404). `None` (or empty): any order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}
