//! JSON text for event values, written straight into a byte buffer.
//!
//! Why not `serde_json::to_writer`: profiling the `splunk_hec` bench showed
//! over half the encoding time in serde_json's byte-at-a-time string
//! escaping. Log text rarely needs escaping, so this writer tests sixteen
//! bytes at a time (SSE2; eight with word arithmetic elsewhere) and copies
//! clean runs whole.
//!
//! Guarantees: the output is byte for byte what `serde_json` writes for the
//! same `Value` (same escapes, lowercase `\u00XX` for other control
//! characters, non-finite floats as `null`, numbers through serde_json);
//! the tests compare the two on arbitrary input. Never fails, never
//! allocates except to grow `out`.

use crate::event::{FieldRef, LogEvent, ObjectMap, Value};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `value` as compact JSON.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Integer(number) => out.extend_from_slice(itoa::Buffer::new().format(*number).as_bytes()),
        Value::Float(number) if number.is_finite() => write_number(out, number),
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::String(text) => write_str(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map, |_| false),
    }
}

/// Appends `map` as a JSON object, leaving out the keys `skip` selects.
pub fn write_object(out: &mut Vec<u8>, map: &ObjectMap, skip: impl Fn(&str) -> bool) {
    let mut members = Members::open(out);
    for (key, value) in map {
        if !skip(key) {
            write_value(members.member(key), value);
        }
    }
    members.close();
}

/// Appends one field as `write_value` would write its `Value`.
pub fn write_field(out: &mut Vec<u8>, field: &FieldRef<'_>) {
    match field {
        FieldRef::Value(value) => write_value(out, value),
        FieldRef::Text(text) => write_str(out, text),
        FieldRef::Integer(number) => out.extend_from_slice(itoa::Buffer::new().format(*number).as_bytes()),
    }
}

/// Appends the event's fields as a JSON object, leaving out the keys `skip`
/// selects. Deferred fields are read without being built.
pub fn write_event(out: &mut Vec<u8>, event: &LogEvent, skip: impl Fn(&str) -> bool) {
    let mut members = Members::open(out);
    event.visit_fields(&mut |key, field| {
        if !skip(key) {
            write_field(members.member(key), &field);
        }
    });
    members.close();
}

/// A JSON object being written: `{`, members separated by commas, `}`.
struct Members<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Members<'a> {
    fn open(out: &'a mut Vec<u8>) -> Members<'a> {
        out.push(b'{');
        Members { out, first: true }
    }

    /// Writes the separator and `"key":`; the caller writes the value into
    /// the returned buffer.
    fn member(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn write_number(out: &mut Vec<u8>, number: &impl serde::Serialize) {
    serde_json::to_writer(&mut *out, number).expect("serialising a number to memory cannot fail");
}

/// Appends `text` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut clean_from = 0;
    while let Some(escape_at) = find_escape(bytes, clean_from) {
        out.extend_from_slice(&bytes[clean_from..escape_at]);
        write_escape(out, bytes[escape_at]);
        clean_from = escape_at + 1;
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

/// The first byte at or after `from` that needs escaping. Whole chunks are
/// tested at once; the last partial chunk of a string at least a chunk long
/// is tested as the string's final chunk (overlapping bytes already known
/// to be clean or handled), and the rest of a shorter string, most keys and
/// values, as one or two overlapping words, searched byte by byte only when
/// they flag something. Neither copies the tail into a padded buffer, which
/// cost a `memcpy` call per string.
fn find_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut position = from;
    while position + CHUNK <= bytes.len() {
        let chunk: &[u8; CHUNK] = bytes[position..position + CHUNK].try_into().expect("the slice is one chunk");
        if let Some(offset) = first_flagged(chunk, 0) {
            return Some(position + offset);
        }
        position += CHUNK;
    }
    if position == bytes.len() {
        return None;
    }
    if OVERLAPPING_TAIL && bytes.len() >= CHUNK {
        let start = bytes.len() - CHUNK;
        let chunk: &[u8; CHUNK] = bytes[start..].try_into().expect("the slice is one chunk");
        return first_flagged(chunk, position - start).map(|offset| start + offset);
    }
    let rest = &bytes[position..];
    if !short_has_escape(rest) {
        return None;
    }
    rest.iter().position(|&byte| NEEDS_ESCAPE[usize::from(byte)]).map(|offset| position + offset)
}

/// Whether `bytes` (shorter than a chunk) holds a byte that needs escaping,
/// tested as one or two overlapping words: a clean short string, the common
/// case, costs no loop.
fn short_has_escape(bytes: &[u8]) -> bool {
    let word_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    let half_at = |at: usize| u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes")));
    match bytes.len() {
        8.. => word_flags(word_at(0)) | word_flags(word_at(bytes.len() - 8)) != 0,
        // The upper half holds the last four bytes, overlapping the first
        // four when the string is shorter than eight.
        4.. => word_flags(half_at(0) | half_at(bytes.len() - 4) << 32) != 0,
        _ => bytes.iter().any(|&byte| NEEDS_ESCAPE[usize::from(byte)]),
    }
}

/// The high bit of every byte of `word` that is a control character, `"`
/// or `\`, with the classic "has a zero byte" and "has a byte below n"
/// word tricks. A flag may be raised falsely only above a true one (borrows
/// run upwards), so the lowest flag, and whether there is any, are exact.
fn word_flags(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |value: u64| value.wrapping_sub(ONES) & !value & HIGH_BITS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS;
    below_space | zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\')))
}

/// Control characters, `"` and `\`.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

#[cfg(target_arch = "x86_64")]
const CHUNK: usize = 16;
/// Whether a flag below a chunk's `skip` offset leaves the flags above it
/// exact, so a string's final chunk may overlap bytes already handled.
#[cfg(target_arch = "x86_64")]
const OVERLAPPING_TAIL: bool = true;

/// The first control character, `"` or `\` in `chunk` at or after offset
/// `skip`, sixteen bytes per test with SSE2 (part of every x86-64 CPU, so
/// no feature detection). Each byte's flag is exact.
#[cfg(target_arch = "x86_64")]
fn first_flagged(chunk: &[u8; CHUNK], skip: usize) -> Option<usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is in the x86-64 baseline; the load is unaligned and reads
    // exactly the sixteen bytes of `chunk`.
    let mask = unsafe {
        let data = _mm_loadu_si128(chunk.as_ptr().cast());
        // `min(byte, 0x1f) == byte` exactly when the byte is below 0x20.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(data, _mm_set1_epi8(0x1f)), data);
        let quote = _mm_cmpeq_epi8(data, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(data, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash)))
    } & (u32::MAX << skip) as i32;
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

#[cfg(not(target_arch = "x86_64"))]
const CHUNK: usize = 8;
/// A true flag's borrow can raise false flags above it, so the final
/// partial chunk is tested byte by byte instead.
#[cfg(not(target_arch = "x86_64"))]
const OVERLAPPING_TAIL: bool = false;

/// The first control character, `"` or `\` in `chunk`, eight bytes per
/// test (`word_flags`).
#[cfg(not(target_arch = "x86_64"))]
fn first_flagged(chunk: &[u8; CHUNK], skip: usize) -> Option<usize> {
    debug_assert_eq!(skip, 0, "chunks never overlap without SSE2");
    let mask = word_flags(u64::from_le_bytes(*chunk));
    (mask != 0).then(|| (mask.trailing_zeros() / 8) as usize)
}

fn write_escape(out: &mut Vec<u8>, byte: u8) {
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            out.extend_from_slice(b"\\u00");
            out.push(HEX_DIGITS[usize::from(byte >> 4)]);
            out.push(HEX_DIGITS[usize::from(byte & 0x0f)]);
            return;
        }
    };
    out.push(b'\\');
    out.push(short);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(value: &Value) -> String {
        let mut out = Vec::new();
        write_value(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_like_serde_json() {
        for text in [
            "",
            "plain",
            "a\"b\\c",
            "\u{0}\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}",
            "exactly8",
            "éléphant 🐘 ünïcödé",
            "x\"yyyyyyyyyyyyyyyyy\n",
        ] {
            assert_eq!(written(&Value::from(text)), serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn values_match_serde_json() {
        let value: Value =
            serde_json::from_str(r#"{"a":[1,-2,3.5,true,false,null,"x"],"b":{"c":"d\ne"},"e":1e300}"#).unwrap();
        assert_eq!(written(&value), serde_json::to_string(&value).unwrap());
        assert_eq!(written(&Value::Float(f64::INFINITY)), "null");
    }

    #[test]
    fn skipped_keys_are_left_out() {
        let Value::Object(map) = serde_json::from_str::<Value>(r#"{"a":1,"b":2,"c":3}"#).unwrap() else { panic!() };
        let mut out = Vec::new();
        write_object(&mut out, &map, |key| key == "a" || key == "c");
        assert_eq!(out, br#"{"b":2}"#);
        out.clear();
        write_object(&mut out, &map, |_| true);
        assert_eq!(out, b"{}");
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(text in any::<String>()) {
            prop_assert_eq!(written(&Value::from(text.as_str())), serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn control_heavy_strings_are_written_as_serde_json_writes_them(text in "[\\x00-\\x7f\"\\\\]{0,40}") {
            prop_assert_eq!(written(&Value::from(text.as_str())), serde_json::to_string(&text).unwrap());
        }
    }
}
