//! Lower-case hex text of bytes, and back: the one encoder behind page
//! tokens, the service key file, the gateway's signed tokens and the
//! SHA-256 digests services store (request fingerprints, refresh tokens).
//! A crate for two short functions was not worth a dependency.

/// `bytes` as lower-case hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The bytes of hex text (either case); `None` unless every pair of
/// characters is a hex byte, so text nobody encoded is refused, not guessed.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    // Digits only: `from_str_radix` alone would also take a sign ("+1").
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_text_that_is_not_hex_is_refused() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xab, 0xff];
        assert_eq!(encode(&bytes), "00017f80abff");
        assert_eq!(decode("00017f80abff").as_deref(), Some(&bytes[..]));
        assert_eq!(decode("00017F80ABFF").as_deref(), Some(&bytes[..]));
        assert_eq!(decode("").as_deref(), Some(&[][..]));
        for bad in ["0", "abc", "zz", "+1", "é1", "1é", "0x"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
