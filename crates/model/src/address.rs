//! Delivery addresses.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Two letters, ISO 3166-1 alpha-2, stored upper-case (`"se"` parses as `SE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// The code as upper-case text.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl TryFrom<String> for CountryCode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CountryCode::try_from(value.as_str())
    }
}

impl TryFrom<&str> for CountryCode {
    type Error = String;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        match value.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Ok(CountryCode([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => Err(format!("must be a two-letter country code, got '{value}'")),
        }
    }
}

impl From<CountryCode> for String {
    fn from(c: CountryCode) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery address. Phone number is required because carriers need one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Recipient's name.
    pub name: String,
    /// Company, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    /// Street and number.
    pub street_address: String,
    /// Postal code, if the country uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_code: Option<String>,
    /// City.
    pub city: String,
    /// State or region, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Destination country.
    pub country: CountryCode,
    /// Phone number of the recipient.
    pub phone_number: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_are_two_letters_normalised_to_upper_case() {
        assert_eq!(CountryCode::try_from("se").map(String::from), Ok("SE".to_owned()));
        assert!(CountryCode::try_from("SWE").is_err());
        assert!(CountryCode::try_from("S1").is_err());
        assert!(CountryCode::try_from("").is_err());
        assert!(CountryCode::try_from("éé").is_err());
    }

    #[test]
    fn address_requires_its_mandatory_fields() {
        let missing_phone = r#"{"name":"A","streetAddress":"B","city":"C","country":"SE"}"#;
        let err = serde_json::from_str::<Address>(missing_phone)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("phoneNumber")));
    }
}
