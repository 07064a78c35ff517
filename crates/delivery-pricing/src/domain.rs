//! The pricing rule: boxes needed × fee per box for the destination.

use ecom_model::{CountryCode, Money, Package, Quantity};

/// Inner size of a shipping box: 500 × 500 × 500 mm.
pub const BOX_VOLUME_MM3: i128 = 500 * 500 * 500;
/// Most a box may weigh: 12 kg.
pub const BOX_WEIGHT_G: i128 = 12_000;

/// Fee per box for a destination country, in the smallest currency unit.
pub fn fee_per_box(country: CountryCode) -> Money {
    let cents = match country.as_str() {
        "DK" | "FI" | "NO" | "SE" => 0,
        "AT" | "BE" | "BG" | "CY" | "CZ" | "DE" | "EE" | "ES" | "FR" | "GR" | "HR" | "HU" | "IE" | "IT"
        | "LT" | "LU" | "LV" | "MT" | "NL" | "PL" | "PT" | "RO" | "SI" | "SK" => 1000,
        "CA" | "US" => 1500,
        _ => 2500,
    };
    Money::try_from(cents).unwrap_or(Money::ZERO)
}

/// Why a price cannot be computed.
#[derive(Debug, PartialEq, Eq)]
pub enum PricingError {
    /// Sizes so large the arithmetic would overflow.
    TooLarge,
}

/// Boxes needed for `items` (each package counted `quantity` times): enough
/// boxes for the total volume and for the total weight, whichever is more.
pub fn boxes(items: &[(Package, Quantity)]) -> Result<i128, PricingError> {
    let mut volume: i128 = 0;
    let mut weight: i128 = 0;
    for (package, quantity) in items {
        let q = i128::from(quantity.get());
        volume = package
            .volume()
            .and_then(|v| v.checked_mul(q))
            .and_then(|v| volume.checked_add(v))
            .ok_or(PricingError::TooLarge)?;
        weight = i128::from(package.weight.get())
            .checked_mul(q)
            .and_then(|w| weight.checked_add(w))
            .ok_or(PricingError::TooLarge)?;
    }
    let by_volume = (volume + BOX_VOLUME_MM3 - 1) / BOX_VOLUME_MM3;
    let by_weight = (weight + BOX_WEIGHT_G - 1) / BOX_WEIGHT_G;
    Ok(by_volume.max(by_weight))
}

/// The delivery price of `items` to `country`.
pub fn price(items: &[(Package, Quantity)], country: CountryCode) -> Result<Money, PricingError> {
    let total = boxes(items)?
        .checked_mul(i128::from(fee_per_box(country).cents()))
        .ok_or(PricingError::TooLarge)?;
    i64::try_from(total)
        .ok()
        .and_then(|t| Money::try_from(t).ok())
        .ok_or(PricingError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(w: i64, l: i64, h: i64, g: i64) -> Package {
        let n = |v: i64| v.try_into().unwrap();
        Package {
            width: n(w),
            length: n(l),
            height: n(h),
            weight: n(g),
        }
    }

    fn q(n: i64) -> Quantity {
        n.try_into().unwrap()
    }

    fn cc(s: &str) -> CountryCode {
        CountryCode::try_from(s).unwrap()
    }

    #[test]
    fn box_count_table() {
        let cases: &[(&[(Package, Quantity)], i128)] = &[
            (&[], 0),
            (&[(pkg(100, 100, 100, 100), q(1))], 1),
            (&[(pkg(500, 500, 500, 12_000), q(1))], 1),
            (&[(pkg(500, 500, 500, 12_001), q(1))], 2),
            (&[(pkg(500, 500, 501, 1), q(1))], 2),
            // quantity counts: three full boxes of volume
            (&[(pkg(500, 500, 500, 1), q(3))], 3),
            // weight dominates: 5 × 5 kg = 25 kg → 3 boxes
            (&[(pkg(10, 10, 10, 5_000), q(5))], 3),
            (&[(pkg(250, 500, 500, 0), q(1)), (pkg(250, 500, 500, 0), q(1))], 1),
            (&[(pkg(0, 0, 0, 0), q(7))], 0),
        ];
        for (items, want) in cases {
            assert_eq!(boxes(items), Ok(*want), "items {items:?}");
        }
    }

    #[test]
    fn fee_table_covers_every_zone() {
        for (country, fee) in [
            ("DK", 0),
            ("FI", 0),
            ("NO", 0),
            ("SE", 0),
            ("AT", 1000),
            ("BE", 1000),
            ("BG", 1000),
            ("CY", 1000),
            ("CZ", 1000),
            ("DE", 1000),
            ("EE", 1000),
            ("ES", 1000),
            ("FR", 1000),
            ("GR", 1000),
            ("HR", 1000),
            ("HU", 1000),
            ("IE", 1000),
            ("IT", 1000),
            ("LT", 1000),
            ("LU", 1000),
            ("LV", 1000),
            ("MT", 1000),
            ("NL", 1000),
            ("PL", 1000),
            ("PT", 1000),
            ("RO", 1000),
            ("SI", 1000),
            ("SK", 1000),
            ("CA", 1500),
            ("US", 1500),
            ("PO", 2500),
            ("GB", 2500),
            ("JP", 2500),
            ("BR", 2500),
        ] {
            assert_eq!(fee_per_box(cc(country)).cents(), fee, "country {country}");
        }
    }

    #[test]
    fn price_is_boxes_times_fee() {
        let items = [(pkg(500, 500, 500, 1), q(2))];
        assert_eq!(price(&items, cc("us")).map(Money::cents), Ok(3000));
        assert_eq!(price(&items, cc("SE")).map(Money::cents), Ok(0));
    }

    #[test]
    fn absurd_sizes_are_refused_not_overflowed() {
        let huge = pkg(i64::MAX, i64::MAX, i64::MAX, i64::MAX);
        assert_eq!(
            price(&[(huge, q(i64::MAX))], cc("US")),
            Err(PricingError::TooLarge)
        );
    }
}
