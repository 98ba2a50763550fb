//! Splitting a file's bytes into complete lines, chunk by chunk.
//!
//! Owns the bytes of the line that is still unterminated at the end of the
//! last chunk. Guarantees: only lines ending in `\n` are produced (a trailing
//! `\r` is removed too); each line knows its raw length in the file and the
//! file offset just past it, which is what a checkpoint may store. Memory is
//! bounded: at most `max_line_bytes` of any line are kept, the rest is skipped
//! and the line is reported as truncated. Never reads files itself.

/// One complete line.
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line's bytes without its terminator, cut to `max_line_bytes`.
    pub bytes: &'a [u8],
    /// Bytes the line occupies in the file, terminator included.
    pub raw_length: u64,
    /// File offset just past the line's `\n`.
    pub end_offset: u64,
    /// The line was longer than `max_line_bytes`.
    pub truncated: bool,
}

#[derive(Debug)]
pub struct LineAssembler {
    max_line_bytes: usize,
    /// Kept bytes of the unterminated line (at most `max_line_bytes`).
    unterminated: Vec<u8>,
    /// Bytes the unterminated line occupies in the file so far.
    unterminated_raw_length: u64,
}

impl LineAssembler {
    pub fn new(max_line_bytes: usize) -> LineAssembler {
        debug_assert!(max_line_bytes > 0);
        LineAssembler { max_line_bytes, unterminated: Vec::new(), unterminated_raw_length: 0 }
    }

    /// Feeds the bytes read at `chunk_offset`; calls `on_line` for every line
    /// the chunk completes, in order.
    pub fn feed(&mut self, chunk: &[u8], chunk_offset: u64, mut on_line: impl FnMut(Line<'_>)) {
        let mut position = 0;
        while position < chunk.len() {
            let rest = &chunk[position..];
            let Some(newline) = rest.iter().position(|&byte| byte == b'\n') else {
                self.keep_unterminated(rest);
                return;
            };
            let content = &rest[..newline];
            let raw_length = self.unterminated_raw_length + newline as u64 + 1;
            let end_offset = chunk_offset + (position + newline + 1) as u64;
            let truncated = raw_length - 1 > self.max_line_bytes as u64;
            if self.unterminated_raw_length == 0 {
                let kept = &content[..content.len().min(self.max_line_bytes)];
                on_line(Line { bytes: strip_carriage_return(kept, truncated), raw_length, end_offset, truncated });
            } else {
                self.keep_unterminated(content);
                on_line(Line {
                    bytes: strip_carriage_return(&self.unterminated, truncated),
                    raw_length,
                    end_offset,
                    truncated,
                });
                self.clear();
            }
            position += newline + 1;
        }
    }

    /// Bytes of the current unterminated line already read from the file.
    pub fn unterminated_raw_length(&self) -> u64 {
        self.unterminated_raw_length
    }

    /// Hands out the unterminated line as if it were complete (for a file
    /// that will never be written again) and forgets it.
    pub fn finish_unterminated(&mut self, end_offset: u64, on_line: impl FnOnce(Line<'_>)) {
        if self.unterminated_raw_length == 0 {
            return;
        }
        let truncated = self.unterminated_raw_length > self.max_line_bytes as u64;
        on_line(Line { bytes: &self.unterminated, raw_length: self.unterminated_raw_length, end_offset, truncated });
        self.clear();
    }

    /// Forgets the unterminated line (the reader moved to another offset).
    pub fn clear(&mut self) {
        self.unterminated.clear();
        self.unterminated_raw_length = 0;
    }

    fn keep_unterminated(&mut self, bytes: &[u8]) {
        let room = self.max_line_bytes - self.unterminated.len();
        self.unterminated.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.unterminated_raw_length += bytes.len() as u64;
    }
}

/// A cut line keeps whatever it ends with: its `\r` was not its terminator.
fn strip_carriage_return(bytes: &[u8], truncated: bool) -> &[u8] {
    match bytes {
        [rest @ .., b'\r'] if !truncated => rest,
        _ => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(assembler: &mut LineAssembler, chunks: &[&[u8]]) -> Vec<(String, u64, u64, bool)> {
        let mut lines = Vec::new();
        let mut offset = 0;
        for chunk in chunks {
            assembler.feed(chunk, offset, |line| {
                lines.push((
                    String::from_utf8_lossy(line.bytes).into_owned(),
                    line.raw_length,
                    line.end_offset,
                    line.truncated,
                ))
            });
            offset += chunk.len() as u64;
        }
        lines
    }

    #[test]
    fn lines_split_across_chunks_are_joined_and_offsets_are_exact() {
        let mut assembler = LineAssembler::new(100);
        let lines = feed_all(&mut assembler, &[b"one\ntw", b"o\r\nthr", b"ee", b"\nfour"]);
        assert_eq!(lines, [("one".into(), 4, 4, false), ("two".into(), 5, 9, false), ("three".into(), 6, 15, false)]);
        assert_eq!(assembler.unterminated_raw_length(), 4, "\"four\" waits for its newline");
    }

    #[test]
    fn long_lines_are_cut_but_their_raw_length_and_offset_stay_exact() {
        let mut assembler = LineAssembler::new(4);
        let lines = feed_all(&mut assembler, &[b"abcdefgh\nab", b"cdefgh", b"ij\nxy\n"]);
        assert_eq!(lines, [("abcd".into(), 9, 9, true), ("abcd".into(), 11, 20, true), ("xy".into(), 3, 23, false)]);
    }

    #[test]
    fn an_unterminated_line_can_be_finished_explicitly() {
        let mut assembler = LineAssembler::new(100);
        let mut lines = feed_all(&mut assembler, &[b"a\nlast"]);
        assembler.finish_unterminated(6, |line| {
            lines.push((
                String::from_utf8_lossy(line.bytes).into_owned(),
                line.raw_length,
                line.end_offset,
                line.truncated,
            ))
        });
        assert_eq!(lines, [("a".into(), 2, 2, false), ("last".into(), 4, 6, false)]);
        assert_eq!(assembler.unterminated_raw_length(), 0);
    }

    #[test]
    fn empty_lines_are_lines() {
        let mut assembler = LineAssembler::new(100);
        let lines = feed_all(&mut assembler, &[b"\n\r\n"]);
        assert_eq!(lines, [(String::new(), 1, 1, false), (String::new(), 2, 3, false)]);
    }
}
