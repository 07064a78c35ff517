//! Card numbers (with the test cards that decline), token states and the
//! operations that move them.

use serde::Deserialize;

/// A card number: exactly 16 digits. Only its last four are ever stored.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, pattern = "^[0-9]{16}$", example = "4242424242424242")]
pub struct CardNumber(String);

/// Declined for no stated reason (402 `card declined`).
pub const DECLINED_CARD: &str = "4000000000000002";
/// Declined for insufficient funds (402 `card declined: insufficient funds`).
pub const INSUFFICIENT_FUNDS_CARD: &str = "4000000000009995";

impl CardNumber {
    /// The last four digits.
    pub fn last4(&self) -> &str {
        &self.0[12..]
    }

    /// Why the issuer declines this card, for the test cards that decline;
    /// `None` for every other card (approved).
    pub fn declined(&self) -> Option<&'static str> {
        match self.0.as_str() {
            DECLINED_CARD => Some("card declined"),
            INSUFFICIENT_FUNDS_CARD => Some("card declined: insufficient funds"),
            _ => None,
        }
    }
}

impl TryFrom<String> for CardNumber {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let length = value.chars().count();
        if length != 16 {
            Err(format!("must be a string of 16 digits, got {length} characters"))
        } else if !value.bytes().all(|b| b.is_ascii_digit()) {
            // The number is not echoed: it may be a real card's.
            Err("must hold only digits (0-9)".to_owned())
        } else {
            Ok(CardNumber(value))
        }
    }
}

/// Where a token is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// Amount held; may be checked, lowered, processed or cancelled.
    Authorised,
    /// Captured; the token is consumed (refunds may follow).
    Processed,
    /// Released; the token is consumed.
    Cancelled,
}

impl TokenStatus {
    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Authorised => "AUTHORISED",
            TokenStatus::Processed => "PROCESSED",
            TokenStatus::Cancelled => "CANCELLED",
        }
    }

    /// The status stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<TokenStatus> {
        [
            TokenStatus::Authorised,
            TokenStatus::Processed,
            TokenStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What a merchant does with a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `updateAmount`: lowers what is held; the token stays live.
    UpdateAmount,
    /// `processPayment`: captures it.
    Process,
    /// `cancelPayment`: releases it.
    Cancel,
    /// `refund`: gives back part of a capture; the token stays processed.
    Refund,
}

impl Operation {
    /// The status a token must be in for the operation, and the status it
    /// leaves it in. The store's conditional updates are built from it;
    /// from any other status the merchant gets `{"ok": false}` (unless
    /// [`repeat_is_ok`] says the call is a repeat).
    pub fn moves(self) -> (TokenStatus, TokenStatus) {
        use TokenStatus::*;
        match self {
            Operation::UpdateAmount => (Authorised, Authorised),
            Operation::Process => (Authorised, Processed),
            Operation::Cancel => (Authorised, Cancelled),
            Operation::Refund => (Processed, Processed),
        }
    }
}

/// The status `op` leaves a token in `status` in; `None` when it is refused.
pub fn next(status: TokenStatus, op: Operation) -> Option<TokenStatus> {
    let (from, to) = op.moves();
    (status == from).then_some(to)
}

/// Whether a capture or cancellation refused by its status (the token is
/// consumed) is a repeat of the call that consumed it, answered `ok: true`
/// so that a merchant that crashed after it may ask again: the same
/// operation's status, for the same named order, and for a capture the
/// same amount (when one is named).
pub fn repeat_is_ok(
    op: Operation,
    status: TokenStatus,
    consumed_for: Option<&str>,
    captured: Option<i64>,
    order_id: Option<&str>,
    amount: Option<i64>,
) -> bool {
    let same_order = order_id.is_some() && consumed_for == order_id;
    match op {
        Operation::Process => {
            status == TokenStatus::Processed && same_order && amount.is_none_or(|a| captured == Some(a))
        }
        Operation::Cancel => status == TokenStatus::Cancelled && same_order,
        Operation::UpdateAmount | Operation::Refund => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [TokenStatus; 3] = [
        TokenStatus::Authorised,
        TokenStatus::Processed,
        TokenStatus::Cancelled,
    ];

    #[test]
    fn each_operation_moves_only_from_its_status_and_is_refused_from_every_other() {
        use TokenStatus::*;
        let allowed = [
            (Operation::UpdateAmount, Authorised, Authorised),
            (Operation::Process, Authorised, Processed),
            (Operation::Cancel, Authorised, Cancelled),
            (Operation::Refund, Processed, Processed),
        ];
        for (op, from, to) in allowed {
            assert_eq!(next(from, op), Some(to), "{op:?} from {from:?}");
            for other in ALL.into_iter().filter(|s| *s != from) {
                assert_eq!(next(other, op), None, "{op:?} from {other:?} is refused");
            }
        }
    }

    #[test]
    fn only_a_repeat_of_the_consuming_call_for_the_same_order_answers_ok() {
        use Operation::*;
        use TokenStatus::*;
        let o1 = Some("o-1");
        // A capture repeated: same order, same (or unnamed) amount.
        assert!(repeat_is_ok(Process, Processed, o1, Some(500), o1, Some(500)));
        assert!(repeat_is_ok(Process, Processed, o1, Some(500), o1, None));
        assert!(!repeat_is_ok(Process, Processed, o1, Some(500), o1, Some(400)));
        assert!(!repeat_is_ok(
            Process,
            Processed,
            o1,
            Some(500),
            Some("o-2"),
            Some(500)
        ));
        assert!(!repeat_is_ok(
            Process,
            Processed,
            None,
            Some(500),
            None,
            Some(500)
        ));
        assert!(!repeat_is_ok(Process, Cancelled, o1, None, o1, None));
        // A cancellation repeated for the same order.
        assert!(repeat_is_ok(Cancel, Cancelled, o1, None, o1, None));
        assert!(!repeat_is_ok(Cancel, Cancelled, o1, None, Some("o-2"), None));
        assert!(!repeat_is_ok(Cancel, Cancelled, None, None, None, None));
        assert!(!repeat_is_ok(Cancel, Processed, o1, Some(500), o1, None));
        // Lowering and refunding have no "repeat" answer of this kind.
        for status in ALL {
            assert!(!repeat_is_ok(UpdateAmount, status, o1, None, o1, None));
            assert!(!repeat_is_ok(Refund, status, o1, Some(500), o1, Some(500)));
        }
    }

    #[test]
    fn card_numbers_are_sixteen_digits() {
        assert!(CardNumber::try_from("1234567890123456".to_owned()).is_ok());
        assert!(CardNumber::try_from("123456789012345".to_owned()).is_err());
        assert!(CardNumber::try_from("12345678901234567".to_owned()).is_err());
        assert!(CardNumber::try_from("1234-56789012345".to_owned()).is_err());
        assert!(CardNumber::try_from("１２３４５６７８９０１２３４５６".to_owned()).is_err());
    }

    #[test]
    fn sixteen_characters_that_are_not_all_digits_say_so() {
        for number in [
            "1234-56789012345",
            "abcdefghijklmnop",
            "１２３４５６７８９０１２３４５６",
        ] {
            let err = CardNumber::try_from(number.to_owned()).err();
            assert_eq!(err.as_deref(), Some("must hold only digits (0-9)"), "{number}");
        }
        let err = CardNumber::try_from("123".to_owned()).err();
        assert_eq!(
            err.as_deref(),
            Some("must be a string of 16 digits, got 3 characters")
        );
    }

    #[test]
    fn only_the_test_cards_decline() {
        let card = |n: &str| CardNumber::try_from(n.to_owned()).ok();
        assert_eq!(
            card(DECLINED_CARD).and_then(|c| c.declined()),
            Some("card declined")
        );
        assert_eq!(
            card(INSUFFICIENT_FUNDS_CARD).and_then(|c| c.declined()),
            Some("card declined: insufficient funds")
        );
        assert_eq!(card("4242424242424242").map(|c| c.declined()), Some(None));
    }
}
