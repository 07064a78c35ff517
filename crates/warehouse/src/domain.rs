//! Packaging requests: their states, their lines, and what the warehouse
//! takes from the orders it reads in order events.

use ecom_contracts::orders::Order;
use ecom_runtime::ApiError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Display;
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

/// What staff do to a packaging request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Packing begins: NEW → IN_PROGRESS.
    Start,
    /// A line's quantity is lowered: only while IN_PROGRESS, which it stays.
    Update,
    /// Packed: IN_PROGRESS → COMPLETED (the outcome is emitted).
    Complete,
}

impl Action {
    /// The verb staff read in a refusal.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Update => "update",
            Action::Complete => "complete",
        }
    }

    /// The status a request must be in, and the one it moves to.
    pub fn moves(self) -> (Status, Status) {
        match self {
            Action::Start => (Status::New, Status::InProgress),
            Action::Update => (Status::InProgress, Status::InProgress),
            Action::Complete => (Status::InProgress, Status::Completed),
        }
    }
}

fn not_found(order_id: impl Display) -> ApiError {
    ApiError::not_found(format!("no packaging request for order {order_id}"))
}

/// The status `action` moves a request in `status` (`None`: there is none)
/// to: 404 when there is none or it was dropped with its order (a
/// tombstone staff never see), 409 naming both statuses from any other.
pub fn next(order_id: impl Display, status: Option<Status>, action: Action) -> Result<Status, ApiError> {
    let (from, to) = action.moves();
    match status {
        None | Some(Status::Deleted) => Err(not_found(order_id)),
        Some(s) if s == from => Ok(to),
        Some(s) => Err(ecom_runtime::staff::wrong_state(
            "packaging request",
            order_id,
            action.verb(),
            s.as_str(),
            from.as_str(),
        )),
    }
}

/// Whether cancelling an order's packaging finds a request in `status`
/// already cancelled: `Ok(true)` for one cancelled or dropped before (a
/// retried cancellation converges), `Ok(false)` for a NEW one (to move to
/// CANCELLED), and a 409 once packaging has started.
pub fn already_cancelled(order_id: impl Display, status: Status) -> Result<bool, ApiError> {
    match status {
        Status::Cancelled | Status::Deleted => Ok(true),
        Status::New => Ok(false),
        Status::InProgress | Status::Completed => Err(ApiError::conflict(format!(
            "cannot cancel the packaging of order {order_id}: packaging has started (it is {})",
            status.as_str()
        ))),
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

/// Quantity per product of an order (an `OrderCreated` or `OrderDeleted`
/// detail, or the `new` of an `OrderModified`); a product listed twice
/// counts once with the sum. The warehouse reads orders through the
/// contract's `Order` itself, so a renamed field of it fails to compile here.
pub fn quantities(order: &Order) -> BTreeMap<Uuid, i64> {
    let mut out = BTreeMap::new();
    for line in &order.products {
        *out.entry(line.product_id).or_insert(0) += line.quantity.get();
    }
    out
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
        let line = |quantity: serde_json::Value| {
            serde_json::json!({"productId": id(2), "name": "x", "price": 100, "quantity": quantity,
                               "package": {"width": 1, "length": 1, "height": 1, "weight": 1}})
        };
        let mut second = line(serde_json::Value::Null);
        // A line without a quantity is one unit, as in orders.
        second.as_object_mut().map(|l| l.remove("quantity"));
        let order: Order = serde_json::from_value(serde_json::json!({
            "orderId": id(1), "userId": "u", "status": "NEW",
            "createdDate": "2026-01-01T00:00:00Z", "modifiedDate": "2026-01-01T00:00:00Z",
            "products": [line(serde_json::json!(2)), second],
            "address": {"name": "Ada", "streetAddress": "1 Main St", "city": "Paris",
                        "country": "FR", "phoneNumber": "+33123456789"},
            "deliveryPrice": 0, "paymentToken": "t", "total": 300
        }))
        .unwrap();
        assert_eq!(quantities(&order), BTreeMap::from([(id(2), 3)]));
    }

    const ALL: [Status; 5] = [
        Status::New,
        Status::InProgress,
        Status::Completed,
        Status::Deleted,
        Status::Cancelled,
    ];

    /// Status code and message of a refusal.
    fn refusal(r: Result<impl std::fmt::Debug, ApiError>) -> Option<(u16, String)> {
        r.err().map(|e| (e.status().as_u16(), e.message().to_owned()))
    }

    #[test]
    fn each_action_moves_only_from_its_status_and_refuses_every_other() {
        use Status::*;
        let allowed = [
            (Action::Start, New, InProgress),
            (Action::Update, InProgress, InProgress),
            (Action::Complete, InProgress, Completed),
        ];
        let gone = (404, "no packaging request for order o-1".to_owned());
        for (action, from, to) in allowed {
            assert_eq!(next("o-1", Some(from), action).ok(), Some(to), "{action:?}");
            assert_eq!(refusal(next("o-1", None, action)), Some(gone.clone()));
            assert_eq!(refusal(next("o-1", Some(Deleted), action)), Some(gone.clone()));
            for other in ALL.into_iter().filter(|s| ![from, Deleted].contains(s)) {
                let message = format!(
                    "cannot {} the packaging request of order o-1: it is {}, and only a packaging request that is {} can be",
                    action.verb(),
                    other.as_str(),
                    from.as_str()
                );
                assert_eq!(refusal(next("o-1", Some(other), action)), Some((409, message)));
            }
        }
    }

    #[test]
    fn a_cancellation_moves_a_new_request_repeats_and_is_refused_once_packing_started() {
        assert_eq!(already_cancelled("o-1", Status::New).ok(), Some(false));
        assert_eq!(already_cancelled("o-1", Status::Cancelled).ok(), Some(true));
        assert_eq!(already_cancelled("o-1", Status::Deleted).ok(), Some(true));
        for started in [Status::InProgress, Status::Completed] {
            let message = format!(
                "cannot cancel the packaging of order o-1: packaging has started (it is {})",
                started.as_str()
            );
            assert_eq!(refusal(already_cancelled("o-1", started)), Some((409, message)));
        }
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
