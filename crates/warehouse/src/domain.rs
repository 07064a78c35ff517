//! Packaging requests: their states, their lines, and the order images the
//! warehouse reads from order events.

use ecom_model::{Quantity, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Where a packaging request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for staff; still follows changes of its order.
    New,
    /// Being packed; its lines may be lowered.
    InProgress,
    /// Packed (or found impossible to pack); the outcome was emitted.
    Completed,
    /// Its order was deleted while it was new: kept only as a tombstone.
    Deleted,
    /// Its order was cancelled before packaging started (possibly before
    /// the request existed: then a tombstone, so a late `OrderCreated`
    /// cannot bring it back).
    Cancelled,
}

impl Status {
    /// Stored and shown text.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::InProgress => "IN_PROGRESS",
            Status::Completed => "COMPLETED",
            Status::Deleted => "DELETED",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// Parses stored text.
    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::New,
            Status::InProgress,
            Status::Completed,
            Status::Deleted,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One product of a packaging request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// The product.
    pub product_id: Uuid,
    /// How many to pack.
    pub quantity: i64,
}

/// A packaging request as staff see it (`PackagingRequest` in the GraphQL schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackagingRequest {
    /// The order to pack.
    pub order_id: Uuid,
    /// `NEW`, `IN_PROGRESS`, `COMPLETED` or `CANCELLED`.
    pub status: &'static str,
    /// Lines still to pack (removed lines are not shown).
    pub products: Vec<Line>,
}

/// The part of an order (an `OrderCreated` detail, or the `old` / `new` of
/// an `OrderModified`) the warehouse needs. Other fields are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderImage {
    /// The order.
    pub order_id: Uuid,
    /// Its products.
    pub products: Vec<OrderLine>,
    /// When the order last changed: decides which image is newer.
    pub modified_date: Timestamp,
}

/// A product line of an order.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// The product.
    pub product_id: Uuid,
    /// How many (default 1, as in orders).
    #[serde(default)]
    pub quantity: Quantity,
}

impl OrderImage {
    /// Quantity per product; a product listed twice counts once with the sum.
    pub fn quantities(&self) -> BTreeMap<Uuid, i64> {
        let mut out = BTreeMap::new();
        for line in &self.products {
            *out.entry(line.product_id).or_insert(0) += line.quantity.get();
        }
        out
    }
}

/// One step that turns the stored lines of a request into an order's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineChange {
    /// A product the request did not have.
    Added(Uuid, i64),
    /// A product whose quantity changed.
    Changed(Uuid, i64),
    /// A product no longer in the order.
    Removed(Uuid),
}

/// The changes that make `stored` equal to `wanted`, by product id.
pub fn diff(stored: &BTreeMap<Uuid, i64>, wanted: &BTreeMap<Uuid, i64>) -> Vec<LineChange> {
    let mut changes: Vec<LineChange> = wanted
        .iter()
        .filter_map(|(id, &q)| match stored.get(id) {
            None => Some(LineChange::Added(*id, q)),
            Some(&old) if old != q => Some(LineChange::Changed(*id, q)),
            Some(_) => None,
        })
        .collect();
    changes.extend(
        stored
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .map(|id| LineChange::Removed(*id)),
    );
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn diff_names_added_changed_and_removed_lines() {
        let stored = BTreeMap::from([(id(1), 1), (id(2), 2), (id(3), 3)]);
        let cases: &[(&str, BTreeMap<Uuid, i64>, Vec<LineChange>)] = &[
            ("same lines", stored.clone(), vec![]),
            (
                "one added",
                BTreeMap::from([(id(1), 1), (id(2), 2), (id(3), 3), (id(4), 4)]),
                vec![LineChange::Added(id(4), 4)],
            ),
            (
                "one changed",
                BTreeMap::from([(id(1), 1), (id(2), 5), (id(3), 3)]),
                vec![LineChange::Changed(id(2), 5)],
            ),
            (
                "one removed",
                BTreeMap::from([(id(1), 1), (id(3), 3)]),
                vec![LineChange::Removed(id(2))],
            ),
            (
                "all at once",
                BTreeMap::from([(id(1), 7), (id(9), 1)]),
                vec![
                    LineChange::Changed(id(1), 7),
                    LineChange::Added(id(9), 1),
                    LineChange::Removed(id(2)),
                    LineChange::Removed(id(3)),
                ],
            ),
        ];
        for (name, wanted, expected) in cases {
            assert_eq!(&diff(&stored, wanted), expected, "{name}");
        }
    }

    #[test]
    fn an_order_listing_a_product_twice_packs_the_sum() {
        let image: OrderImage = serde_json::from_value(serde_json::json!({
            "orderId": id(1), "modifiedDate": "2026-01-01T00:00:00Z", "total": 5,
            "products": [{"productId": id(2), "quantity": 2, "name": "x"}, {"productId": id(2)}]
        }))
        .unwrap();
        assert_eq!(image.quantities(), BTreeMap::from([(id(2), 3)]));
    }

    #[test]
    fn statuses_round_trip_through_their_text() {
        for s in [
            Status::New,
            Status::InProgress,
            Status::Completed,
            Status::Deleted,
            Status::Cancelled,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("new"), None);
    }
}
