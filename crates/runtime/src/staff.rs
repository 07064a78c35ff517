//! What the staff routes of the services that move one order's work through
//! states share (the warehouse's packaging requests, delivery's
//! deliveries): the `{orderId}` body of an operation, its `{success: true}`
//! answer and the 409 a move from the wrong state gets. Each service still
//! owns its routes, tables and states; only the conventions live here, so
//! that the two answer alike.

use crate::{ApiError, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt::Display;
use uuid::Uuid;

/// The body of a staff operation on one order's work: `{"orderId": …}`.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderInput {
    /// The order whose packaging request or delivery is meant.
    pub order_id: Uuid,
}

/// The answer of a staff operation that did what it was asked.
pub fn success() -> Json<Value> {
    Json(json!({ "success": true }))
}

/// The 409 of a move from the wrong state, telling the staff member the
/// state the `thing` is in and the one the move needs:
/// `cannot start the delivery of order …: it is COMPLETED, and only a
/// delivery that is NEW can be`.
pub fn wrong_state(thing: &str, order_id: impl Display, action: &str, is: &str, needs: &str) -> ApiError {
    ApiError::conflict(format!(
        "cannot {action} the {thing} of order {order_id}: it is {is}, and only a {thing} that is {needs} can be"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_from_the_wrong_state_is_a_409_naming_both_states() {
        let e = wrong_state("delivery", "o-1", "complete", "NEW", "IN_PROGRESS");
        assert_eq!(e.status().as_u16(), 409);
        assert_eq!(
            e.message(),
            "cannot complete the delivery of order o-1: it is NEW, and only a delivery that is IN_PROGRESS can be"
        );
    }
}
