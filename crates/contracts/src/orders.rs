//! Orders on the wire: the order as its events and `/backend/` routes carry
//! it, and the events of its life.
//!
//! The order is defined here, not in the orders crate, because its whole
//! image is the payload of `OrderCreated`, `OrderModified` and
//! `OrderDeleted`: the warehouse and payment read it, and a field renamed
//! here must fail to compile there. Orders' rules (the total, packaging,
//! refunds) stay in the orders crate, as an extension trait.

use crate::{contract, sources, AboutOrder, Modified, OrderRef};
use ecom_model::{Address, Money, ProductLine, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Created, waiting for the warehouse.
    New,
    /// The warehouse packed it.
    Packaged,
    /// The warehouse could pack nothing.
    PackagingFailed,
    /// Delivered and paid its total (the card processor confirmed the
    /// capture: `PaymentProcessed`).
    Fulfilled,
    /// The delivery failed.
    DeliveryFailed,
    /// The card processor refused the capture, or the payment token was
    /// another order's (`PaymentFailed`). Terminal: nothing moves it after.
    PaymentFailed,
    /// Cancelled by its shopper (or staff) while NEW and before packaging
    /// started. Terminal, and reached only through a cancellation, never
    /// through an event.
    Cancelled,
}

impl OrderStatus {
    /// How far along the life this status is. Events carry no global order,
    /// so a late event must never move an order back. PAYMENT_FAILED and
    /// CANCELLED are the last stage: the order is over, whatever arrives
    /// later (and neither replaces the other).
    fn stage(self) -> u8 {
        match self {
            OrderStatus::New => 0,
            OrderStatus::Packaged | OrderStatus::PackagingFailed => 1,
            OrderStatus::Fulfilled | OrderStatus::DeliveryFailed => 2,
            OrderStatus::PaymentFailed | OrderStatus::Cancelled => 3,
        }
    }

    /// The stored and shown text (`NEW`, `PACKAGED`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "NEW",
            OrderStatus::Packaged => "PACKAGED",
            OrderStatus::PackagingFailed => "PACKAGING_FAILED",
            OrderStatus::Fulfilled => "FULFILLED",
            OrderStatus::DeliveryFailed => "DELIVERY_FAILED",
            OrderStatus::PaymentFailed => "PAYMENT_FAILED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    /// The status after an event saying `to`: `to` when it is further along,
    /// otherwise unchanged.
    pub fn advance(self, to: OrderStatus) -> OrderStatus {
        if to.stage() > self.stage() {
            to
        } else {
            self
        }
    }

    /// Whether nothing may change the order any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, OrderStatus::PaymentFailed | OrderStatus::Cancelled)
    }
}

/// An order: what was bought, at which prices, for where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Identifier.
    pub order_id: Uuid,
    /// Who ordered.
    pub user_id: String,
    /// When it was created.
    pub created_date: Timestamp,
    /// When it last changed.
    pub modified_date: Timestamp,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// The lines, with the catalogue details of the time of the order.
    pub products: Vec<ProductLine>,
    /// Where it goes.
    pub address: Address,
    /// Delivery fee agreed at creation.
    pub delivery_price: Money,
    /// Pre-authorisation at the card processor.
    pub payment_token: String,
    /// Σ price × quantity + delivery price.
    pub total: Money,
    /// The delivery's tracking id, once the delivery started
    /// (`DeliveryStarted`). Absent from orders that have none, so the
    /// events of orders without one keep their former shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
    /// The sum refunded so far (`PaymentRefunded`), at most what was
    /// captured. Orders stored before refunds existed read as 0.
    #[serde(default)]
    pub refunded: Money,
}

impl AboutOrder for Order {
    fn order_id(&self) -> Uuid {
        self.order_id
    }
}

/// The answer of `GET /orders/backend/{orderId}` (delivery reads the
/// address, payment the total, the gateway all of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OneOrder {
    /// The order.
    pub order: Order,
}

contract!(
    /// `OrderCreated`: the order as stored.
    OrderCreated = Order, sources::ORDERS, "OrderCreated"
);
contract!(
    /// `OrderModified`: `{old, new, changed}`, on any visible change (its
    /// status, lines, total, `trackingId`, `refunded`).
    OrderModified = Modified<Order>, sources::ORDERS, "OrderModified"
);
contract!(
    /// `OrderDeleted`: the order as it was. No API deletes orders today.
    OrderDeleted = Order, sources::ORDERS, "OrderDeleted"
);
contract!(
    /// `OrderCancelled`: the shopper (or an admin) cancelled a NEW order
    /// before packaging started; besides its `OrderModified`.
    OrderCancelled = OrderRef, sources::ORDERS, "OrderCancelled"
);
