//! Delivery addresses, and the rules a new order's address must follow.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Two letters, ISO 3166-1 alpha-2, stored upper-case (`"se"` parses as `SE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "SE")]
pub struct CountryCode([u8; 2]);

/// The 249 ISO 3166-1 alpha-2 codes officially assigned (ISO 3166
/// Maintenance Agency, as Debian's iso-codes lists them), sorted. User-assigned
/// codes (`AA`, `QM`–`QZ`, `XA`–`XZ`, `ZZ`, so also `XK`) and reserved ones
/// (`UK`, `EU`, …) are not countries.
const ASSIGNED: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA",
    "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV",
    "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU",
    "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES",
    "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM",
    "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE",
    "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM",
    "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY",
    "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT",
    "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU",
    "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA",
    "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM",
    "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL",
    "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE",
    "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

impl CountryCode {
    /// The code as upper-case text.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// Whether the code names a country (is officially assigned). Parsing
    /// only checks the shape, so that addresses stored before this rule
    /// still read; new orders check this too ([`Address::problems`]).
    pub fn is_assigned(&self) -> bool {
        ASSIGNED.binary_search(&self.as_str()).is_ok()
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
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Most characters in one address field.
pub const MAX_FIELD_CHARS: usize = 200;

impl Address {
    /// What is wrong with this address for a new order, one message per
    /// problem, each naming its field (`name: must not be empty`): `name`,
    /// `streetAddress`, `city` and `phoneNumber` must hold more than
    /// blanks; no field may be longer than [`MAX_FIELD_CHARS`] characters
    /// or hold a control character (NUL, newline, …); `country` must be an
    /// assigned code. Empty when the address is good.
    ///
    /// A check rather than a parse: orders and deliveries stored before
    /// these rules must still read.
    pub fn problems(&self) -> Vec<String> {
        let fields: [(&str, Option<&str>, bool); 7] = [
            ("name", Some(&self.name), true),
            ("companyName", self.company_name.as_deref(), false),
            ("streetAddress", Some(&self.street_address), true),
            ("postCode", self.post_code.as_deref(), false),
            ("city", Some(&self.city), true),
            ("state", self.state.as_deref(), false),
            ("phoneNumber", Some(&self.phone_number), true),
        ];
        let mut problems = Vec::new();
        for (field, value, required) in fields {
            let Some(value) = value else { continue };
            let chars = value.chars().count();
            if required && value.trim().is_empty() {
                problems.push(format!("{field}: must not be empty"));
            } else if chars > MAX_FIELD_CHARS {
                problems.push(format!(
                    "{field}: at most {MAX_FIELD_CHARS} characters, got {chars}"
                ));
            } else if value.chars().any(char::is_control) {
                problems.push(format!("{field}: must not contain control characters"));
            }
        }
        if !self.country.is_assigned() {
            problems.push(format!(
                "country: '{}' is not an ISO 3166-1 country code",
                self.country
            ));
        }
        problems
    }
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
    fn only_assigned_country_codes_name_countries() {
        let code = |c: &str| CountryCode::try_from(c).map(|c| c.is_assigned());
        for assigned in ["SE", "se", "DE", "US", "AX", "ZW", "AD"] {
            assert_eq!(code(assigned), Ok(true), "{assigned}");
        }
        for unassigned in ["XX", "XK", "UK", "EU", "AA", "ZZ", "QM"] {
            assert_eq!(code(unassigned), Ok(false), "{unassigned}");
        }
        assert!(ASSIGNED.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    }

    fn good() -> Address {
        Address {
            name: "Ada Lovelace".into(),
            company_name: None,
            street_address: "Storgatan 1".into(),
            post_code: Some("903 26".into()),
            city: "Umeå".into(),
            state: None,
            country: CountryCode::try_from("SE").unwrap_or(CountryCode(*b"SE")),
            phone_number: "+46 90 123 45".into(),
        }
    }

    #[test]
    fn address_problems_name_each_field_at_fault() {
        let long = "x".repeat(MAX_FIELD_CHARS + 1);
        let at_most = "ä".repeat(MAX_FIELD_CHARS);
        type Set = fn(&mut Address, &str);
        let cases: Vec<(&str, Set, &str, Option<&str>)> = vec![
            ("good", |a, v| a.name = v.into(), "Ada", None),
            (
                "name",
                |a, v| a.name = v.into(),
                "",
                Some("name: must not be empty"),
            ),
            (
                "name",
                |a, v| a.name = v.into(),
                "  \t",
                Some("name: must not be empty"),
            ),
            (
                "city",
                |a, v| a.city = v.into(),
                "",
                Some("city: must not be empty"),
            ),
            (
                "street",
                |a, v| a.street_address = v.into(),
                " ",
                Some("streetAddress: must not be empty"),
            ),
            (
                "phone",
                |a, v| a.phone_number = v.into(),
                "",
                Some("phoneNumber: must not be empty"),
            ),
            (
                "nul",
                |a, v| a.name = v.into(),
                "Ada\0",
                Some("name: must not contain control characters"),
            ),
            (
                "newline",
                |a, v| a.city = v.into(),
                "Umeå\nX",
                Some("city: must not contain control characters"),
            ),
            (
                "c1",
                |a, v| a.street_address = v.into(),
                "A\u{85}B",
                Some("streetAddress: must not contain control characters"),
            ),
            ("optional blank", |a, v| a.company_name = Some(v.into()), "", None),
            (
                "optional nul",
                |a, v| a.post_code = Some(v.into()),
                "1\0-2",
                Some("postCode: must not contain control characters"),
            ),
            (
                "optional state",
                |a, v| a.state = Some(v.into()),
                "\u{7f}",
                Some("state: must not contain control characters"),
            ),
            (
                "country",
                |a, v| a.country = CountryCode::try_from(v).unwrap_or(CountryCode(*b"SE")),
                "XX",
                Some("country: 'XX' is not an ISO 3166-1 country code"),
            ),
        ];
        for (what, set, value, want) in cases {
            let mut address = good();
            set(&mut address, value);
            let problems = address.problems();
            match want {
                None => assert!(problems.is_empty(), "{what}: {problems:?}"),
                Some(want) => assert_eq!(problems, vec![want.to_owned()], "{what}"),
            }
        }
        let mut address = good();
        address.name = at_most;
        assert!(
            address.problems().is_empty(),
            "200 characters (not bytes) are fine"
        );
        for field in 0..7 {
            let mut address = good();
            let slot = match field {
                0 => &mut address.name,
                1 => address.company_name.insert(String::new()),
                2 => &mut address.street_address,
                3 => address.post_code.insert(String::new()),
                4 => &mut address.city,
                5 => address.state.insert(String::new()),
                _ => &mut address.phone_number,
            };
            slot.clone_from(&long);
            let problems = address.problems();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].ends_with(": at most 200 characters, got 201"),
                "{problems:?}"
            );
        }
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
