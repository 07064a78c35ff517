//! Emails, new passwords and staff groups: types that cannot hold an
//! invalid value.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An email address, trimmed and lower-cased, so that one address has one
/// spelling (and one account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let email = value.trim().to_lowercase();
        let bad = || format!("'{}' is not an email address like name@example.com", value.trim());
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = email.split_once('@').ok_or_else(bad)?;
        let domain_ok =
            domain.contains('.') && !domain.contains('@') && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad());
        }
        Ok(Email(email))
    }
}

impl From<Email> for String {
    fn from(email: Email) -> String {
        email.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a new password must be, as told to whoever chose a weak one.
pub const PASSWORD_POLICY: &str =
    "must be 8 to 256 characters and mix at least two kinds: lower-case letters, upper-case letters, digits, other characters";

/// A password that meets [`PASSWORD_POLICY`] (for sign-up and password
/// changes; sign-in takes any text, so the policy says nothing about
/// existing accounts).
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct NewPassword(String);

impl NewPassword {
    /// The password text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(…)")
    }
}

impl TryFrom<String> for NewPassword {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let length = value.chars().count();
        let kinds = [
            value.chars().any(|c| c.is_lowercase()),
            value.chars().any(|c| c.is_uppercase()),
            value.chars().any(|c| c.is_ascii_digit()),
            value.chars().any(|c| !c.is_alphanumeric()),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if (8..=256).contains(&length) && kinds >= 2 {
            Ok(NewPassword(value))
        } else {
            Err(PASSWORD_POLICY.to_owned())
        }
    }
}

/// A staff group: defined with the contracts, since every service checks
/// them (`require_group`) and the gateway names them.
pub use ecom_contracts::Group;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lower_cased_and_checked() {
        let table = [
            ("  Ada@Example.COM ", Some("ada@example.com")),
            ("a@b.co", Some("a@b.co")),
            (
                "first.last+tag@sub.example.org",
                Some("first.last+tag@sub.example.org"),
            ),
            ("no-at-sign", None),
            ("@example.com", None),
            ("ada@", None),
            ("ada@localhost", None),
            ("ada@example..com", None),
            ("ada@@example.com", None),
            ("a da@example.com", None),
            ("", None),
        ];
        for (input, expected) in table {
            let got = Email::try_from(input.to_owned()).ok();
            assert_eq!(got.as_ref().map(Email::as_str), expected, "{input:?}");
        }
    }

    #[test]
    fn new_passwords_need_eight_characters_of_two_kinds() {
        let table = [
            ("Passw0rd", true),
            ("password1", true),
            ("correct horse", true),
            ("ÉCOLEécole", true),
            ("password", false),
            ("12345678", false),
            ("PASSWORD", false),
            ("Pass1", false),
            ("", false),
        ];
        for (input, ok) in table {
            assert_eq!(NewPassword::try_from(input.to_owned()).is_ok(), ok, "{input:?}");
        }
        assert!(NewPassword::try_from("aA".repeat(129)).is_err());
    }

    #[test]
    fn groups_are_the_three_staff_groups() {
        assert_eq!("warehouse".parse::<Group>(), Ok(Group::Warehouse));
        assert!("Admin".parse::<Group>().is_err());
        assert!("shopper".parse::<Group>().is_err());
    }
}
