//! Deliveries and their states.

use ecom_model::Address;
use ecom_runtime::ApiError;
use serde::Serialize;
use std::fmt::Display;
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

/// What staff do to a delivery; each moves it from one status to the next.
/// (Deleting is not one: it is allowed from every status.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A driver takes it: NEW → IN_PROGRESS.
    Start,
    /// Delivered: IN_PROGRESS → COMPLETED.
    Complete,
    /// Could not be delivered: IN_PROGRESS → FAILED.
    Fail,
}

impl Action {
    /// The verb staff read in a refusal.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Complete => "complete",
            Action::Fail => "fail",
        }
    }

    /// The status a delivery must be in, and the one it moves to.
    pub fn moves(self) -> (Status, Status) {
        match self {
            Action::Start => (Status::New, Status::InProgress),
            Action::Complete => (Status::InProgress, Status::Completed),
            Action::Fail => (Status::InProgress, Status::Failed),
        }
    }
}

/// The status `action` moves a delivery in `status` to; from any other
/// status the 409 the staff member sees, naming both.
pub fn next(order_id: impl Display, status: Status, action: Action) -> Result<Status, ApiError> {
    let (from, to) = action.moves();
    if status == from {
        Ok(to)
    } else {
        Err(ecom_runtime::staff::wrong_state(
            "delivery",
            order_id,
            action.verb(),
            status.as_str(),
            from.as_str(),
        ))
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

    const ALL: [Status; 4] = [Status::New, Status::InProgress, Status::Completed, Status::Failed];

    #[test]
    fn each_action_moves_only_from_its_status_and_refuses_every_other_with_a_409() {
        use Status::*;
        let allowed = [
            (Action::Start, New, InProgress),
            (Action::Complete, InProgress, Completed),
            (Action::Fail, InProgress, Failed),
        ];
        for (action, from, to) in allowed {
            assert_eq!(
                next("o-1", from, action).ok(),
                Some(to),
                "{action:?} from {from:?}"
            );
            for other in ALL.into_iter().filter(|s| *s != from) {
                let refused = next("o-1", other, action).err();
                assert_eq!(refused.as_ref().map(|e| e.status().as_u16()), Some(409));
                assert_eq!(
                    refused.as_ref().map(|e| e.message().to_owned()),
                    Some(format!(
                        "cannot {} the delivery of order o-1: it is {}, and only a delivery that is {} can be",
                        action.verb(),
                        other.as_str(),
                        from.as_str()
                    )),
                );
            }
        }
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
