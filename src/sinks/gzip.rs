//! gzip for request bodies: a whole body in memory, compressed fast at
//! zlib's level-1 ratio or better.
//!
//! It follows zlib's level 1 (`deflate_quick`): greedy matches found through
//! a hash table with one candidate per hash, and fixed Huffman codes. zlib-rs
//! runs that algorithm inside zlib's streaming design, which copies every
//! input byte into a 64 KB sliding window, rewrites its hash tables each
//! time the window slides by 32 KB, and handles input and output arriving in
//! pieces. A body that is already in memory needs none of it: candidates are
//! positions in the body itself (a check keeps distances inside deflate's
//! 32 KB window), the hash table is cleared once per body, and the whole body
//! is one block. The hash covers eight bytes where zlib's covers four, which
//! on log text finds longer matches. On HEC envelope bodies this is 1.2–1.5
//! times as fast as zlib-rs level 1 with 8 % smaller output (the
//! `splunk_hec` bench's `sls_gzip_only*` lines; BENCHMARKS.md).
//!
//! Output: one gzip member (RFC 1952) holding one final deflate block with
//! fixed codes (RFC 1951 §3.2.6), or stored blocks when fixed codes would
//! not make the body smaller (random bytes, say). Any gzip reader reads it;
//! the tests read every output back with flate2.

use std::cell::RefCell;

/// Deflate's window: the farthest back a match may point.
const WINDOW: usize = 32 * 1024;
const MAX_MATCH: usize = 258;
const HASH_BITS: u32 = 15;
/// Largest stored block.
const MAX_STORED: usize = 65_535;

thread_local! {
    /// The hash table of the thread's last body, reused (cleared) for the next.
    static POSITIONS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Compresses `input` into a new gzip member.
pub fn gzip(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 + 64);
    out.extend_from_slice(&HEADER);
    POSITIONS.with_borrow_mut(|positions| {
        positions.clear();
        positions.resize(1 << HASH_BITS, 0);
        deflate_fixed(input, positions, &mut out);
    });
    if out.len() - HEADER.len() > stored_size(input.len()) {
        out.truncate(HEADER.len());
        deflate_stored(input, &mut out);
    }
    let mut crc = flate2::Crc::new();
    crc.update(input);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1).
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    out
}

/// ID1 ID2, CM = deflate, no flags, no modification time, XFL = fastest
/// (4), OS = unknown (255).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

fn stored_size(length: usize) -> usize {
    length + 5 * length.div_ceil(MAX_STORED).max(1)
}

fn deflate_stored(input: &[u8], out: &mut Vec<u8>) {
    let mut chunks = input.chunks(MAX_STORED).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        return;
    }
    while let Some(chunk) = chunks.next() {
        // BFINAL on the last, BTYPE 00; the header bits end on a byte
        // boundary, then LEN and its complement.
        out.push(u8::from(chunks.peek().is_none()));
        let length = chunk.len() as u16;
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&(!length).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// One final block with fixed codes.
fn deflate_fixed(input: &[u8], positions: &mut [u32], out: &mut Vec<u8>) {
    let positions: &mut [u32; 1 << HASH_BITS] = positions.try_into().expect("a table of 2^HASH_BITS positions");
    let mut bits = BitWriter { out, buffer: 0, count: 0 };
    // BFINAL = 1, BTYPE = 01 (fixed codes), least significant bit first.
    bits.put(0b011, 3);
    let length = input.len();
    let mut at = 0;
    // The loop reads input through unchecked loads: the bounds checks of
    // slice reads cost a tenth of the loop's time (`sls_gzip_only`). The
    // last seven bytes go out as literals below.
    while at + 8 <= length {
        // SAFETY: `at + 8 <= length`.
        let (word, long) = unsafe { (load_u32(input, at), load_u64(input, at)) };
        // The hash covers eight bytes though a match needs four: positions
        // that share eight bytes tend to share many more in log text, so
        // matches come out longer and fewer. On HEC envelope bodies that is
        // a better ratio and a faster loop than a four-byte hash.
        let slot = (long.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - HASH_BITS)) as usize;
        let candidate = positions[slot] as usize;
        positions[slot] = at as u32;
        let distance = at.wrapping_sub(candidate);
        // SAFETY: a candidate is a position the loop passed before (`at`
        // only grows), so `candidate < at` and it has four bytes too.
        if (1..=WINDOW).contains(&distance) && unsafe { load_u32(input, candidate) } == word {
            // SAFETY: `candidate < at` and `at + limit <= length`.
            let matched = unsafe { match_length(input, candidate, at, (length - at).min(MAX_MATCH)) };
            let (length_bits, length_count) = LENGTH_CODES[matched];
            let (distance_bits, distance_count) = distance_code(distance);
            bits.put(
                u64::from(length_bits) | u64::from(distance_bits) << length_count,
                u32::from(length_count) + u32::from(distance_count),
            );
            at += matched;
        } else {
            bits.put_literal(input[at]);
            at += 1;
        }
        bits.flush();
    }
    for &byte in &input[at.min(length)..] {
        bits.put_literal(byte);
        bits.flush();
    }
    // End of block: symbol 256, seven zero bits.
    bits.put(0, 7);
    bits.finish();
}

/// How far the bytes at `earlier` and `at` agree (at least 4, which the
/// caller checked), up to `limit`.
///
/// # Safety
/// `earlier < at` and `at + limit <= input.len()`.
#[inline]
unsafe fn match_length(input: &[u8], earlier: usize, at: usize, limit: usize) -> usize {
    debug_assert!(earlier < at && at + limit <= input.len());
    let mut length = 4;
    while length + 8 <= limit {
        // SAFETY: both reads end at or before `at + limit`.
        let difference = unsafe { load_u64(input, earlier + length) ^ load_u64(input, at + length) };
        if difference != 0 {
            return length + (difference.trailing_zeros() / 8) as usize;
        }
        length += 8;
    }
    while length < limit && input[earlier + length] == input[at + length] {
        length += 1;
    }
    length
}

/// # Safety
/// `at + 4 <= input.len()`.
#[inline]
unsafe fn load_u32(input: &[u8], at: usize) -> u32 {
    debug_assert!(at + 4 <= input.len());
    // SAFETY: the caller keeps the four bytes inside `input`.
    u32::from_le(unsafe { input.as_ptr().add(at).cast::<u32>().read_unaligned() })
}

/// # Safety
/// `at + 8 <= input.len()`.
#[inline]
unsafe fn load_u64(input: &[u8], at: usize) -> u64 {
    debug_assert!(at + 8 <= input.len());
    // SAFETY: the caller keeps the eight bytes inside `input`.
    u64::from_le(unsafe { input.as_ptr().add(at).cast::<u64>().read_unaligned() })
}

/// Bits go out least significant first (RFC 1951 §3.1.1), eight bytes at a
/// time into the vector's spare capacity.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    buffer: u64,
    /// Bits in `buffer`: at most 32 after `flush`, so a symbol of up to 31
    /// bits (a length and a distance with their extra bits) always fits.
    count: u32,
}

impl BitWriter<'_> {
    #[inline]
    fn put(&mut self, bits: u64, count: u32) {
        debug_assert!(self.count + count <= 64 && bits >> count == 0);
        self.buffer |= bits << self.count;
        self.count += count;
    }

    #[inline]
    fn put_literal(&mut self, byte: u8) {
        let (code, count) = LITERAL_CODES[usize::from(byte)];
        self.put(u64::from(code), u32::from(count));
    }

    /// Makes room for the next symbol (up to 31 bits).
    #[inline]
    fn flush(&mut self) {
        if self.count > 32 {
            self.drain();
        }
    }

    /// Moves the buffer's whole bytes to the output (draining only once
    /// there are more than four halves the stores).
    #[inline]
    fn drain(&mut self) {
        if self.out.capacity() - self.out.len() < 8 {
            self.out.reserve(self.out.len().max(64));
        }
        let length = self.out.len();
        let bytes = self.count / 8;
        // SAFETY: the check above left at least eight bytes of spare
        // capacity, which the unaligned store fills; the length then grows
        // only over the `bytes` (at most 7, as `count` < 64) holding output.
        unsafe {
            self.out.as_mut_ptr().add(length).cast::<u64>().write_unaligned(self.buffer.to_le());
            self.out.set_len(length + bytes as usize);
        }
        self.buffer >>= bytes * 8;
        self.count -= bytes * 8;
    }

    /// Flushes, padding the last byte with zero bits.
    fn finish(mut self) {
        self.count = self.count.next_multiple_of(8);
        debug_assert!(self.count < 64);
        self.drain();
    }
}

/// Fixed Huffman codes (RFC 1951 §3.2.6) of literal/length symbols, bit
/// reversed for least-significant-first output, with their lengths.
const fn fixed_code(symbol: u32) -> (u32, u8) {
    let (code, length) = match symbol {
        0..=143 => (0x30 + symbol, 8),
        144..=255 => (0x190 + symbol - 144, 9),
        256..=279 => (symbol - 256, 7),
        _ => (0xc0 + symbol - 280, 8),
    };
    (reverse(code, length), length as u8)
}

const fn reverse(code: u32, length: u32) -> u32 {
    let mut reversed = 0;
    let mut bit = 0;
    while bit < length {
        reversed = (reversed << 1) | ((code >> bit) & 1);
        bit += 1;
    }
    reversed
}

static LITERAL_CODES: [(u16, u8); 256] = {
    let mut table = [(0, 0); 256];
    let mut byte = 0;
    while byte < 256 {
        let (code, length) = fixed_code(byte as u32);
        table[byte] = (code as u16, length);
        byte += 1;
    }
    table
};

const LENGTH_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];

/// Each match length's symbol code followed by its extra bits, and the
/// total bit count (at most 8 + 5).
static LENGTH_CODES: [(u16, u8); MAX_MATCH + 1] = {
    let mut table = [(0, 0); MAX_MATCH + 1];
    let mut index = 0;
    // Later codes overwrite earlier ones: 258 is symbol 285, not 284 + 31.
    while index < 29 {
        let (code, code_length) = fixed_code(257 + index as u32);
        let mut extra = 0;
        while extra < 1 << LENGTH_EXTRA[index] {
            let length = LENGTH_BASE[index] as usize + extra;
            if length <= MAX_MATCH {
                table[length] = ((code | (extra as u32) << code_length) as u16, code_length + LENGTH_EXTRA[index]);
            }
            extra += 1;
        }
        index += 1;
    }
    table
};

const DISTANCE_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];
const DISTANCE_EXTRA: [u8; 30] =
    [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];

/// The distance symbol of `distance - 1` below 256, and of
/// `256 + (distance - 1) / 128` above (symbols from 16 on cover whole
/// multiples of 128), as zlib indexes it.
static DISTANCE_SYMBOLS: [u8; 512] = {
    let mut table = [0; 512];
    let mut symbol = 0;
    while symbol < 30 {
        let mut distance = DISTANCE_BASE[symbol] as usize;
        while distance < DISTANCE_BASE[symbol] as usize + (1 << DISTANCE_EXTRA[symbol]) {
            let index = if distance <= 256 { distance - 1 } else { 256 + ((distance - 1) >> 7) };
            table[index] = symbol as u8;
            distance += 1;
        }
        symbol += 1;
    }
    table
};

/// Distance symbols' fixed five-bit codes, bit reversed.
static DISTANCE_SYMBOL_CODES: [u8; 30] = {
    let mut table = [0; 30];
    let mut symbol = 0;
    while symbol < 30 {
        table[symbol] = reverse(symbol as u32, 5) as u8;
        symbol += 1;
    }
    table
};

/// A distance's five-bit symbol code (reversed) followed by its extra bits,
/// and the total bit count (at most 5 + 13).
#[inline]
fn distance_code(distance: usize) -> (u32, u8) {
    let index = if distance <= 256 { distance - 1 } else { 256 + ((distance - 1) >> 7) };
    let symbol = usize::from(DISTANCE_SYMBOLS[index]);
    let code = u32::from(DISTANCE_SYMBOL_CODES[symbol]) | ((distance - usize::from(DISTANCE_BASE[symbol])) as u32) << 5;
    (code, 5 + DISTANCE_EXTRA[symbol])
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use proptest::prelude::*;

    use super::*;

    fn gunzip(compressed: &[u8]) -> Vec<u8> {
        let mut decoder = flate2::read::GzDecoder::new(compressed);
        let mut out = Vec::new();
        decoder.read_to_end(&mut out).expect("a valid gzip member");
        assert!(decoder.into_inner().is_empty(), "one member, nothing after it");
        out
    }

    /// Log-like text: repeated keys, varying values, long runs.
    fn envelopes(count: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for index in 0..count {
            body.extend_from_slice(
                format!(
                    r#"{{"time":1700000000.{index:09},"index":"main","event":{{"level":"INFO","seq":"{index}","message":"request {} took {} ms"}}}}"#,
                    index * 7919 % 1000,
                    index % 97
                )
                .as_bytes(),
            );
        }
        body
    }

    #[test]
    fn bodies_read_back_exactly_and_shrink() {
        for body in [envelopes(1), envelopes(50), envelopes(20_000), vec![b'a'; 100_000], b"abc".to_vec(), Vec::new()] {
            let compressed = gzip(&body);
            assert_eq!(gunzip(&compressed), body);
            if body.len() > 1000 {
                assert!(compressed.len() < body.len() / 4, "{} -> {}", body.len(), compressed.len());
            }
        }
    }

    #[test]
    fn matches_reach_across_the_whole_window_and_no_further() {
        // A block repeated at distance 32 768 (the farthest deflate allows)
        // and at 32 769 (one too far: it must be sent again, not pointed at).
        let block: Vec<u8> = (0..1000u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        for gap in [WINDOW - block.len(), WINDOW + 1 - block.len()] {
            let mut body = block.clone();
            body.extend((0..gap).map(|index| (index % 7) as u8));
            body.extend_from_slice(&block);
            assert_eq!(gunzip(&gzip(&body)), body, "gap {gap}");
        }
    }

    #[test]
    fn incompressible_bodies_go_out_stored() {
        let mut state = 0x1234_5678_u32;
        let random: Vec<u8> = (0..200_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let compressed = gzip(&random);
        assert_eq!(gunzip(&compressed), random);
        assert_eq!(compressed.len(), HEADER.len() + stored_size(random.len()) + 8, "stored blocks, not fixed codes");
    }

    #[test]
    fn the_trailer_holds_the_crc_and_length() {
        let compressed = gzip(b"hello hello hello");
        let trailer = &compressed[compressed.len() - 8..];
        assert_eq!(trailer[..4], 0xe5f9_8880_u32.to_le_bytes(), "CRC-32 of the input");
        assert_eq!(trailer[4..], 17u32.to_le_bytes());
    }

    proptest! {
        #[test]
        fn any_body_reads_back_exactly(
            body in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..3000),
                prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c')], 0..3000),
                (prop::collection::vec(any::<u8>(), 1..40), 1usize..400)
                    .prop_map(|(unit, times)| unit.repeat(times)),
            ],
        ) {
            prop_assert_eq!(gunzip(&gzip(&body)), body);
        }
    }
}
