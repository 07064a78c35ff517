//! Card numbers (with the test cards that decline) and token states.

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

#[cfg(test)]
mod tests {
    use super::*;

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
