//! JSON Schemas of the model's wire shapes (feature `schemars`), for the
//! event catalogue `ecom-contracts` generates. The newtypes serialise
//! through `try_from`/`into`, which the derive cannot see through, so they
//! say by hand what they look like on the wire; the structs derive theirs
//! (`cfg_attr` on each), which follows their serde attributes.

use crate::{CountryCode, Money, NonNegative, Quantity, Timestamp};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

macro_rules! integer_schema {
    ($ty:ty, $name:literal, $minimum:literal, $description:literal) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "integer",
                    "format": "int64",
                    "minimum": $minimum,
                    "description": $description
                })
            }
        }
    };
}

integer_schema!(
    Money,
    "Money",
    0,
    "An amount in the smallest currency unit (cents)."
);
integer_schema!(
    NonNegative,
    "NonNegative",
    0,
    "A measure in millimetres or grams."
);
integer_schema!(Quantity, "Quantity", 1, "How many of a product.");

impl JsonSchema for CountryCode {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("CountryCode")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[A-Z]{2}$",
            "description": "ISO 3166-1 alpha-2 code, upper case."
        })
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339, UTC, microseconds."
        })
    }
}
