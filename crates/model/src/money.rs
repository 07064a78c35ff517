//! Integer amounts: money in the smallest currency unit, counts and quantities.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;

/// The OpenAPI schema of an integer newtype: its lower bound is what its
/// parser enforces, so the reference states the rule the server applies.
fn integer_schema(minimum: i64, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .description(Some(description))
        .into()
}

macro_rules! integer_schema {
    ($type:ty, $minimum:expr, $description:expr) => {
        impl utoipa::PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                integer_schema($minimum, $description)
            }
        }
        impl utoipa::ToSchema for $type {}
    };
}

integer_schema!(
    Money,
    0,
    "An amount in the smallest currency unit (cents); never a float."
);
integer_schema!(NonNegative, 0, "Millimetres or grams.");
integer_schema!(Quantity, 1, "How many items (default 1 in an order line).");

/// An amount of money in the smallest currency unit (cents). Never negative,
/// never a float: JSON `12.5` or `-1` is refused when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Money(i64);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// The amount in the smallest currency unit.
    pub fn cents(self) -> i64 {
        self.0
    }

    /// `self × n`, or `None` on overflow.
    pub fn checked_mul(self, n: i64) -> Option<Money> {
        self.0.checked_mul(n).and_then(|v| Money::try_from(v).ok())
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }
}

impl TryFrom<i64> for Money {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if value < 0 {
            Err(format!("must be a non-negative integer, got {value}"))
        } else {
            Ok(Money(value))
        }
    }
}

impl From<Money> for i64 {
    fn from(m: Money) -> i64 {
        m.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A non-negative integer measure (millimetres, grams).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct NonNegative(i64);

impl NonNegative {
    /// The value.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for NonNegative {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if value < 0 {
            Err(format!("must be a non-negative integer, got {value}"))
        } else {
            Ok(NonNegative(value))
        }
    }
}

impl From<NonNegative> for i64 {
    fn from(v: NonNegative) -> i64 {
        v.0
    }
}

/// How many of a product: an integer ≥ 1 (default 1 in an order line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(i64);

impl Quantity {
    /// One item.
    pub const ONE: Quantity = Quantity(1);

    /// The count.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl Default for Quantity {
    fn default() -> Self {
        Quantity::ONE
    }
}

impl TryFrom<i64> for Quantity {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if value < 1 {
            Err(format!("must be an integer of at least 1, got {value}"))
        } else {
            Ok(Quantity(value))
        }
    }
}

impl From<Quantity> for i64 {
    fn from(q: Quantity) -> i64 {
        q.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_refuses_negative_and_fractional_amounts() {
        assert!(serde_json::from_str::<Money>("-1").is_err());
        assert!(serde_json::from_str::<Money>("12.5").is_err());
        assert!(serde_json::from_str::<Money>("\"12\"").is_err());
        assert_eq!(serde_json::from_str::<Money>("0").ok(), Some(Money::ZERO));
    }

    #[test]
    fn quantity_must_be_at_least_one() {
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Quantity>("-3").is_err());
        assert_eq!(
            serde_json::from_str::<Quantity>("2").ok().map(Quantity::get),
            Some(2)
        );
    }

    #[test]
    fn money_multiplication_reports_overflow() {
        let big = Money::try_from(i64::MAX / 2 + 1).ok();
        assert_eq!(big.and_then(|m| m.checked_mul(2)), None);
    }
}
