//! Bodies of the `/backend/` calls one service makes to another, where
//! caller and callee used to keep a copy each. Bodies that only name an
//! order are [`crate::OrderRef`]; the order read from orders is
//! [`crate::orders::OneOrder`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /warehouse/backend/reservations` (orders, during createOrder):
/// hold the stock of the tracked products among `products` for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// The order the stock is held for (the hold expires unless its
    /// `OrderCreated` confirms it).
    pub order_id: Uuid,
    /// What it wants.
    pub products: Vec<StockLine>,
}

/// One line of a [`Reservation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockLine {
    /// The product.
    pub product_id: Uuid,
    /// Units wanted (at least 1; the warehouse refuses less with 400).
    pub quantity: i64,
}

/// The warehouse's answer to a [`Reservation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationAnswer {
    /// Whether every tracked line is held (nothing is held otherwise).
    pub ok: bool,
    /// The products short of stock, when not `ok`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_stock: Vec<Uuid>,
}
