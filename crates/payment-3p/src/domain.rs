//! Card numbers and token states.

use serde::Deserialize;

/// A card number: exactly 16 digits. Only its last four are ever stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct CardNumber(String);

impl CardNumber {
    /// The last four digits.
    pub fn last4(&self) -> &str {
        &self.0[12..]
    }
}

impl TryFrom<String> for CardNumber {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.len() == 16 && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(CardNumber(value))
        } else {
            Err(format!(
                "must be a string of 16 digits, got {} characters",
                value.chars().count()
            ))
        }
    }
}

/// Where a token is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// Amount held; may be checked, lowered, processed or cancelled.
    Authorised,
    /// Charged; the token is consumed.
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
}
