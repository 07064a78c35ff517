//! Deliveries and their states.

use ecom_model::Address;
use serde::Serialize;
use uuid::Uuid;

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Packaged, waiting for a driver.
    New,
    /// On its way.
    InProgress,
    /// Delivered.
    Completed,
    /// Could not be delivered.
    Failed,
}

impl Status {
    /// Stored and shown text.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::InProgress => "IN_PROGRESS",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
        }
    }

    /// Parses stored text.
    pub fn parse(text: &str) -> Option<Status> {
        [Status::New, Status::InProgress, Status::Completed, Status::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// True once the delivery has an outcome.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed)
    }
}

/// A delivery as staff see it (`Delivery` in the GraphQL schema, plus its status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The order delivered.
    pub order_id: Uuid,
    /// Where to.
    pub address: Address,
    /// `NEW`, `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_only_outcomes_are_final() {
        for (s, last) in [
            (Status::New, false),
            (Status::InProgress, false),
            (Status::Completed, true),
            (Status::Failed, true),
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(s.is_final(), last, "{s:?}");
        }
    }
}
