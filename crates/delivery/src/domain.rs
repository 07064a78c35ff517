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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The order delivered.
    pub order_id: Uuid,
    /// Where to.
    pub address: Address,
    /// `NEW`, `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub status: &'static str,
    /// Given when the delivery starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
}

/// Characters of a tracking id: Crockford's base 32 (digits and capitals
/// without I, L, O and U), so an id read over the phone is not misheard.
const TRACKING_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Length of a tracking id: 12 characters of 5 bits, 60 random bits, so
/// ids cannot be guessed or enumerated.
pub const TRACKING_ID_LEN: usize = 12;

/// A fresh random tracking id.
pub fn tracking_id() -> String {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    (0..TRACKING_ID_LEN)
        .map(|_| char::from(TRACKING_ALPHABET[rng.gen_range(0..TRACKING_ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_ids_are_twelve_unambiguous_characters_and_differ() {
        let a = tracking_id();
        assert_eq!(a.len(), TRACKING_ID_LEN);
        assert!(a.bytes().all(|b| TRACKING_ALPHABET.contains(&b)), "{a}");
        let many: std::collections::BTreeSet<String> = (0..1000).map(|_| tracking_id()).collect();
        assert_eq!(many.len(), 1000);
    }

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
