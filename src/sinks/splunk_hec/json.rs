//! JSON text for event values, written straight into a byte buffer.
//!
//! Why not `serde_json::to_writer`: profiling the `splunk_hec` bench showed
//! over half the encoding time in serde_json's byte-at-a-time string
//! escaping. Log text rarely needs escaping, so this writer tests sixteen
//! bytes at a time (SSE2; eight with word arithmetic elsewhere), storing
//! each chunk into the output as it tests it.
//!
//! Guarantees: the output is byte for byte what `serde_json` writes for the
//! same `Value` (same escapes, lowercase `\u00XX` for other control
//! characters, non-finite floats as `null`, numbers through serde_json);
//! the tests compare the two on arbitrary input. Never fails, never
//! allocates except to grow `out` and the encodings `SharedRuns` keeps.

use crate::event::{FieldRef, KeyString, LogEvent, ObjectMap, Value, Visit};

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
        FieldRef::Text(bytes) => write_lossy_str(out, bytes),
        FieldRef::Integer(number) => out.extend_from_slice(itoa::Buffer::new().format(*number).as_bytes()),
    }
}

/// Appends the event's fields as a JSON object, leaving out the keys `skip`
/// selects. Deferred fields are read without being built; runs of fields
/// that events share are encoded once per `runs`.
pub fn write_event<'a>(
    out: &mut Vec<u8>,
    event: &'a LogEvent,
    runs: &mut SharedRuns<'a>,
    mut skip: impl FnMut(&str) -> bool,
) {
    let mut members = Members::open(out);
    event.visit_runs(&mut |step| match step {
        Visit::Field(key, field) => {
            if !skip(key) {
                write_field(members.member(key), &field);
            }
        }
        Visit::Shared(fields) => runs.write(&mut members, fields, &mut skip),
    });
    members.close();
}

/// A run of shared fields (`Visit::Shared`).
type Run<'a> = &'a [(KeyString, Value)];

/// How many encoded runs `SharedRuns` keeps: an SLS event has two (its
/// group's topic and source, then its tags), and the events of one group
/// come one after another.
const SHARED_RUN_SLOTS: usize = 4;

/// The encodings of the shared field runs (`Visit::Shared`) written last,
/// each as `,"key":value` members. A slot holds the run it encodes, so the
/// run stays borrowed, and alive at its address, as long as its encoding
/// can be reused.
#[derive(Default)]
pub struct SharedRuns<'a> {
    slots: [Option<(Run<'a>, Vec<u8>)>; SHARED_RUN_SLOTS],
}

impl<'a> SharedRuns<'a> {
    fn write(&mut self, members: &mut Members<'_>, fields: Run<'a>, skip: &mut impl FnMut(&str) -> bool) {
        if fields.len() > 64 {
            for (key, value) in fields {
                if !skip(key) {
                    write_value(members.member(key), value);
                }
            }
            return;
        }
        // Which keys `skip` leaves out, each asked once and in order, as
        // for single fields. A run with a skipped key is written field by
        // field and not kept.
        let mut skipped = 0u64;
        for (position, (key, _)) in fields.iter().enumerate() {
            if skip(key) {
                skipped |= 1 << position;
            }
        }
        if skipped != 0 {
            for (position, (key, value)) in fields.iter().enumerate() {
                if skipped & 1 << position == 0 {
                    write_value(members.member(key), value);
                }
            }
            return;
        }
        let Some(first) = fields.first() else { return };
        // Entries are consecutive in memory, so the runs of one group
        // (slices of one vector) land in different slots.
        let slot =
            &mut self.slots[std::ptr::from_ref(first) as usize / size_of::<(KeyString, Value)>() % SHARED_RUN_SLOTS];
        match slot {
            Some((run, encoded)) if std::ptr::eq(*run, fields) => members.extend(encoded),
            _ => {
                let mut encoded = slot.take().map(|(_, encoded)| encoded).unwrap_or_default();
                encoded.clear();
                for (key, value) in fields {
                    write_quoted(&mut encoded, b",", key);
                    encoded.push(b':');
                    write_value(&mut encoded, value);
                }
                members.extend(&encoded);
                *slot = Some((fields, encoded));
            }
        }
    }
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
    #[inline]
    fn member(&mut self, key: &str) -> &mut Vec<u8> {
        let separator: &[u8] = if self.first { b"" } else { b"," };
        self.first = false;
        write_quoted(self.out, separator, key);
        self.out.push(b':');
        self.out
    }

    /// Appends members already written as `,"key":value,...` (not empty).
    fn extend(&mut self, members: &[u8]) {
        let members = if self.first { &members[1..] } else { members };
        self.first = false;
        self.out.extend_from_slice(members);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn write_number(out: &mut Vec<u8>, number: &impl serde::Serialize) {
    serde_json::to_writer(&mut *out, number).expect("serialising a number to memory cannot fail");
}

/// Appends `text` as a JSON string.
#[inline]
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    write_quoted(out, b"", text);
}

/// Appends `prefix` and `text` as a JSON string.
#[inline(always)]
fn write_quoted(out: &mut Vec<u8>, prefix: &[u8], text: &str) {
    if let Some(rest) = write_quoted_clean::<false>(out, prefix, text.as_bytes()) {
        write_escaped(out, rest);
        out.push(b'"');
    }
}

/// Appends `bytes` read as UTF-8, every invalid sequence replaced by U+FFFD
/// as `String::from_utf8_lossy` replaces it, as a JSON string: what
/// `write_str` writes for the lossy string, without making it first. ASCII
/// (nearly all log text) is checked by the same pass that copies it, so
/// wire bytes are read once instead of three times (UTF-8 check, escape
/// scan, copy).
#[inline]
pub fn write_lossy_str(out: &mut Vec<u8>, bytes: &[u8]) {
    if let Some(rest) = write_quoted_clean::<true>(out, b"", bytes) {
        write_lossy_rest(out, rest);
    }
}

/// Appends `prefix`, then `"` and the clean start of `bytes` (as
/// `copy_clean`). When that is all of `bytes`, closes the string and
/// returns `None`; otherwise returns the rest, from the first byte that
/// needs escaping (or, with `ASCII_ONLY`, is not ASCII). One capacity check
/// and no call for the common case: a short, clean key or value.
#[inline(always)]
fn write_quoted_clean<'a, const ASCII_ONLY: bool>(
    out: &mut Vec<u8>,
    prefix: &[u8],
    bytes: &'a [u8],
) -> Option<&'a [u8]> {
    out.reserve(prefix.len() + bytes.len() + 2);
    let start = out.len();
    // SAFETY: `reserve` made room for the prefix, both quotes and every byte
    // of `bytes` after `start`; each write below stays inside it, and the
    // length only grows over bytes written.
    unsafe {
        let to = out.as_mut_ptr().add(start);
        std::ptr::copy_nonoverlapping(prefix.as_ptr(), to, prefix.len());
        let to = to.add(prefix.len());
        to.write(b'"');
        let clean = copy_clean_into::<ASCII_ONLY>(bytes, to.add(1));
        if clean == bytes.len() {
            to.add(1 + clean).write(b'"');
            out.set_len(start + prefix.len() + clean + 2);
            return None;
        }
        out.set_len(start + prefix.len() + clean + 1);
        Some(&bytes[clean..])
    }
}

/// The rest of a lossy string from its first flagged byte, and the closing
/// quote.
fn write_lossy_rest(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut rest = bytes;
    loop {
        match rest.split_first() {
            None => break,
            Some((&byte, tail)) if byte.is_ascii() => {
                write_escape(out, byte);
                rest = &tail[copy_clean::<true>(out, tail)..];
            }
            Some(_) => {
                for chunk in rest.utf8_chunks() {
                    write_escaped(out, chunk.valid().as_bytes());
                    if !chunk.invalid().is_empty() {
                        out.extend_from_slice("\u{fffd}".as_bytes());
                    }
                }
                break;
            }
        }
    }
    out.push(b'"');
}

/// Appends `bytes` (valid UTF-8) escaped, without quotes.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut rest = bytes;
    loop {
        rest = &rest[copy_clean::<false>(out, rest)..];
        let Some((&byte, tail)) = rest.split_first() else { break };
        write_escape(out, byte);
        rest = tail;
    }
}

/// Appends the longest prefix of `bytes` that needs no escaping (and, with
/// `ASCII_ONLY`, holds no byte above 0x7f) and returns its length. The
/// bytes are copied as they are tested, a chunk at a time, straight into
/// `out`'s spare capacity: no `memcpy` call per string, whose fixed cost
/// outweighed the copy for the short keys and values logs are made of.
fn copy_clean<const ASCII_ONLY: bool>(out: &mut Vec<u8>, bytes: &[u8]) -> usize {
    out.reserve(bytes.len());
    let start = out.len();
    // SAFETY: `reserve` left room for `bytes.len()` more bytes after
    // `start`; `copy_clean_into` writes only inside it and reports how many
    // leading bytes it copied, which are therefore initialised.
    unsafe {
        let clean = copy_clean_into::<ASCII_ONLY>(bytes, out.as_mut_ptr().add(start));
        out.set_len(start + clean);
        clean
    }
}

/// Copies `bytes` to `to` up to the first flagged byte and returns how many
/// bytes before it are clean (`bytes.len()` when none is flagged). Bytes
/// after that count may be written too (whole chunks are stored as they are
/// loaded); the caller treats them as unwritten.
///
/// # Safety
/// `to` must be valid for writes of `bytes.len()` bytes and must not
/// overlap `bytes`.
#[inline]
unsafe fn copy_clean_into<const ASCII_ONLY: bool>(bytes: &[u8], to: *mut u8) -> usize {
    let length = bytes.len();
    let from = bytes.as_ptr();
    if length >= CHUNK {
        let mut position = 0;
        while position + CHUNK <= length {
            if let Some(offset) = copy_chunk::<ASCII_ONLY>(from.add(position), to.add(position), 0) {
                return position + offset;
            }
            position += CHUNK;
        }
        if position < length {
            // The last, partial chunk as the string's final CHUNK bytes: the
            // overlap was tested clean already, and storing it again writes
            // the same bytes.
            let last = length - CHUNK;
            if let Some(offset) = copy_chunk::<ASCII_ONLY>(from.add(last), to.add(last), position - last) {
                return last + offset;
            }
        }
        return length;
    }
    // Shorter than a chunk (most keys and values): one or two overlapping
    // words, so a clean string costs no loop.
    let flags = |word: u64| word_flags(word) | if ASCII_ONLY { word & HIGH_BITS } else { 0 };
    match length {
        8.. => {
            let (first, last) =
                (from.cast::<u64>().read_unaligned(), from.add(length - 8).cast::<u64>().read_unaligned());
            to.cast::<u64>().write_unaligned(first);
            to.add(length - 8).cast::<u64>().write_unaligned(last);
            let flagged = flags(u64::from_le(first));
            if flagged != 0 {
                return flagged.trailing_zeros() as usize / 8;
            }
            let flagged = flags(u64::from_le(last));
            if flagged != 0 {
                return length - 8 + flagged.trailing_zeros() as usize / 8;
            }
            length
        }
        4.. => {
            let (first, last) =
                (from.cast::<u32>().read_unaligned(), from.add(length - 4).cast::<u32>().read_unaligned());
            to.cast::<u32>().write_unaligned(first);
            to.add(length - 4).cast::<u32>().write_unaligned(last);
            // The upper half holds the last four bytes, overlapping the
            // first four when the string is shorter than eight.
            let flagged = flags(u64::from(u32::from_le(first)) | u64::from(u32::from_le(last)) << 32);
            match flagged.trailing_zeros() as usize / 8 {
                8 => length,
                at @ 0..4 => at,
                at => length + at - 8,
            }
        }
        1.. => {
            // The first, middle and last bytes cover all of one to three,
            // in order, so the lowest flag is the first flagged byte.
            let (first, middle, last) = (*from, *from.add(length / 2), *from.add(length - 1));
            to.write(first);
            to.add(length / 2).write(middle);
            to.add(length - 1).write(last);
            let word = u32::from_le_bytes([first, middle, last, b' ']);
            match flags(u64::from(word) | 0x2020_2020_0000_0000).trailing_zeros() / 8 {
                0 => 0,
                1 => length / 2,
                2 => length - 1,
                _ => length,
            }
        }
        0 => 0,
    }
}

const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `word` that is a control character, `"`
/// or `\`, with the classic "has a zero byte" and "has a byte below n"
/// word tricks. A flag may be raised falsely only above a true one (borrows
/// run upwards), so the lowest flag, and whether there is any, are exact.
fn word_flags(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let zero_bytes = |value: u64| value.wrapping_sub(ONES) & !value & HIGH_BITS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS;
    below_space | zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\')))
}

#[cfg(target_arch = "x86_64")]
const CHUNK: usize = 16;

/// Copies the sixteen bytes at `from` to `to` and returns the offset of the
/// first flagged byte at or after `skip` (control character, `"`, `\`, and
/// with `ASCII_ONLY` any byte above 0x7f). SSE2 is part of every x86-64
/// CPU, so there is no feature detection. Each byte's flag is exact.
///
/// # Safety
/// `from` must be valid for reads and `to` for writes of sixteen bytes.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn copy_chunk<const ASCII_ONLY: bool>(from: *const u8, to: *mut u8, skip: usize) -> Option<usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_storeu_si128,
    };
    let data = _mm_loadu_si128(from.cast());
    _mm_storeu_si128(to.cast(), data);
    // `min(byte, 0x1f) == byte` exactly when the byte is below 0x20.
    let control = _mm_cmpeq_epi8(_mm_min_epu8(data, _mm_set1_epi8(0x1f)), data);
    let quote = _mm_cmpeq_epi8(data, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(data, _mm_set1_epi8(b'\\' as i8));
    let mut mask = _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash))) as u32;
    if ASCII_ONLY {
        // The high bit of each byte is set exactly above 0x7f.
        mask |= _mm_movemask_epi8(data) as u32;
    }
    mask &= u32::MAX << skip;
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

#[cfg(not(target_arch = "x86_64"))]
const CHUNK: usize = 8;

/// Copies the eight bytes at `from` to `to` and returns the offset of the
/// first flagged byte at or after `skip`, with `word_flags`. The bytes
/// below `skip` are clean (tested before), so they raise no false flags.
///
/// # Safety
/// `from` must be valid for reads and `to` for writes of eight bytes.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
unsafe fn copy_chunk<const ASCII_ONLY: bool>(from: *const u8, to: *mut u8, skip: usize) -> Option<usize> {
    let word = from.cast::<u64>().read_unaligned();
    to.cast::<u64>().write_unaligned(word);
    let word = u64::from_le(word);
    let mask = (word_flags(word) | if ASCII_ONLY { word & HIGH_BITS } else { 0 }) & (u64::MAX << (skip * 8));
    (mask != 0).then(|| mask.trailing_zeros() as usize / 8)
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
    fn lossy_bytes_of_every_length_and_flag_position_match_serde_json() {
        // Each length through two chunks, with one flagged byte (a quote, a
        // control character, a non-ASCII letter, an invalid byte, the first
        // byte of a cut-off sequence) at each position: every branch of
        // `copy_clean_into`, at each offset.
        for length in 0..=40 {
            for flagged in [&b"\""[..], b"\n", "\u{e9}".as_bytes(), b"\xff", b"\xe2\x82"] {
                for at in 0..=length {
                    let mut bytes = vec![b'a'; length];
                    bytes.splice(at..at, flagged.iter().copied());
                    let mut out = Vec::new();
                    write_lossy_str(&mut out, &bytes);
                    let expected = serde_json::to_string(&String::from_utf8_lossy(&bytes)).unwrap();
                    assert_eq!(String::from_utf8(out).unwrap(), expected, "{bytes:?}");
                }
            }
            let clean = vec![b'a'; length];
            let mut out = Vec::new();
            write_lossy_str(&mut out, &clean);
            assert_eq!(out.len(), length + 2);
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
        fn lossy_bytes_are_written_as_serde_json_writes_their_lossy_string(
            prefix in "[a-z]{0,3}",
            bytes in prop::collection::vec(prop_oneof![4 => 0x20u8..0x7f, 1 => any::<u8>(), 1 => 0x80u8..], 0..70),
        ) {
            // After other output, as in an envelope: what is there stays.
            let mut out = prefix.clone().into_bytes();
            write_lossy_str(&mut out, &bytes);
            let expected = prefix + &serde_json::to_string(&String::from_utf8_lossy(&bytes)).unwrap();
            prop_assert_eq!(String::from_utf8(out).unwrap(), expected);
        }

        #[test]
        fn control_heavy_strings_are_written_as_serde_json_writes_them(text in "[\\x00-\\x7f\"\\\\]{0,40}") {
            prop_assert_eq!(written(&Value::from(text.as_str())), serde_json::to_string(&text).unwrap());
        }
    }
}
