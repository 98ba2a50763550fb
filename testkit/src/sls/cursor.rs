//! Shard cursors: standard base64 (with `=` padding on output, optional on
//! input) of an ASCII decimal int64; one log group occupies exactly one cursor
//! position (reference §2.2).
//!
//! A shard's cursors are `cursor_base + index`, where `index` counts log
//! groups from the start of the shard. Bases are 19-digit numbers like real
//! ones and differ between shards, so a cursor of one shard is out of range on
//! another and a client bug that mixes them up gets `InvalidCursor`.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::error::SlsError;

/// Standard alphabet that accepts input with or without padding, because
/// documentation examples show both.
const LENIENT_DECODER: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Cursor text for `value`.
pub fn encode_cursor(value: i64) -> String {
    STANDARD.encode(value.to_string())
}

/// The integer behind cursor text; `ParameterInvalid` when it is not base64
/// of a decimal integer (what the real service answers for a mangled cursor).
pub fn decode_cursor(text: &str) -> Result<i64, SlsError> {
    let malformed =
        || SlsError::parameter(format!("cursor {text:?} is not a valid cursor (base64 of a decimal integer)"));
    let decoded = LENIENT_DECODER.decode(text.trim()).map_err(|_| malformed())?;
    let digits = std::str::from_utf8(&decoded).map_err(|_| malformed())?;
    digits.parse::<i64>().map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_documented_example() {
        assert_eq!(decode_cursor("MTQ0NzI5OTYwNjg5NjYzMjM1Ng==").unwrap(), 1_447_299_606_896_632_356);
        assert_eq!(encode_cursor(1_447_299_606_896_632_356), "MTQ0NzI5OTYwNjg5NjYzMjM1Ng==");
    }

    #[test]
    fn accepts_missing_padding() {
        assert_eq!(decode_cursor("MTQ0NzI5OTYwNjg5NjYzMjM1Ng").unwrap(), 1_447_299_606_896_632_356);
    }

    #[test]
    fn rejects_garbage_as_parameter_invalid() {
        for text in ["not base64!", "aGVsbG8=", ""] {
            let error = decode_cursor(text).unwrap_err();
            assert_eq!(error.code(), "ParameterInvalid", "{text}");
        }
    }
}
