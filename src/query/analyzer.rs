//! Text analysis: the tokeniser that stands in for Elasticsearch's `standard`
//! analyzer, plus the fast substring search that lets the matcher skip
//! tokenising fields that cannot match.
//!
//! Owns: splitting a string into lower-cased tokens (`for_each_token`,
//! `collect_tokens`), the wildcard glob (`wildcard_matches`), and
//! `LiteralFinder`, an ASCII-case-insensitive substring search (memchr on the
//! literal's rarest byte, then a verify) whose hits are
//! confirmed by tokenising only the whitespace-delimited window around them.
//!
//! Guarantees:
//! - Tokens follow the Unicode word-break rules of UAX #29, simplified (see
//!   `WordClass`): letters, digits and `_` join; `.` and `'` join letters on
//!   both sides and digits on both sides (`java.io.ioexception`, `don't`,
//!   `10.0.3.7`); `:` joins letters on both sides (`s:t`); `,` and `;` join
//!   digits (`1,000`); everything else breaks (`wallet-qa-01` gives `wallet`,
//!   `qa`, `01`). Han and Hiragana characters are one token each, as Lucene
//!   emits them. Tokens without a letter or digit (`__`) are dropped.
//! - Tokens are lower-cased character by character (`char::to_lowercase`),
//!   as Lucene's `LowerCaseFilter` does per code point.
//! - Any character that is neither a word character, a joiner nor a combining
//!   mark is a hard break: tokens to its right do not depend on the text to
//!   its left. The fast path relies on this for ASCII whitespace.
//! - `LiteralFinder::any_token` gives exactly the same answer as tokenising
//!   the whole string and testing every token (property-tested below).
//!
//! Never: stems, removes stop words (the `standard` analyzer has none by
//! default), splits tokens longer than 255 characters (`max_token_length` is
//! not emulated), or emits emoji tokens.

use std::cell::RefCell;

/// The UAX #29 word-break classes the tokeniser distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WordClass {
    Letter,
    Numeric,
    Katakana,
    /// Han and Hiragana: every character is a token of its own.
    Ideograph,
    /// `_` and other connector punctuation: joins word characters on either side.
    ExtendNumLet,
    /// Joins two letters (`:`, `·`).
    MidLetter,
    /// Joins two digits (`,`, `;`).
    MidNum,
    /// Joins two letters or two digits (`.`, `'`, `’`).
    MidNumLet,
    /// Combining marks and format characters: attach to what precedes them.
    Extend,
    Other,
}

fn classify(character: char) -> WordClass {
    if character.is_ascii() {
        return match character {
            'a'..='z' | 'A'..='Z' => WordClass::Letter,
            '0'..='9' => WordClass::Numeric,
            '_' => WordClass::ExtendNumLet,
            ':' => WordClass::MidLetter,
            '.' | '\'' => WordClass::MidNumLet,
            ',' | ';' => WordClass::MidNum,
            _ => WordClass::Other,
        };
    }
    match character as u32 {
        0x2018 | 0x2019 | 0x2024 | 0xFE52 | 0xFF07 | 0xFF0E => WordClass::MidNumLet,
        0x00B7 | 0x0387 | 0x055F | 0x05F4 | 0x2027 | 0xFE13 | 0xFE55 | 0xFF1A => WordClass::MidLetter,
        0x037E | 0x0589 | 0x060C | 0x060D | 0x066C | 0x07F8 | 0x2044 | 0xFE10 | 0xFE14 | 0xFE50 | 0xFE54 | 0xFF0C
        | 0xFF1B => WordClass::MidNum,
        0x203F | 0x2040 | 0x2054 | 0xFE33 | 0xFE34 | 0xFE4D..=0xFE4F | 0xFF3F => WordClass::ExtendNumLet,
        0x0300..=0x036F
        | 0x0483..=0x0489
        | 0x0591..=0x05BD
        | 0x1AB0..=0x1AFF
        | 0x1DC0..=0x1DFF
        | 0x200C
        | 0x200D
        | 0x20D0..=0x20F0
        | 0xFE00..=0xFE0F
        | 0xFE20..=0xFE2F
        | 0x00AD
        | 0x200E
        | 0x200F
        | 0x2060..=0x2064
        | 0xFEFF => WordClass::Extend,
        0x30A0..=0x30FA | 0x30FC..=0x30FF | 0x31F0..=0x31FF | 0x32D0..=0x32FE | 0x3300..=0x3357 | 0xFF66..=0xFF9D => {
            WordClass::Katakana
        }
        0x2E80..=0x2FDF
        | 0x3005..=0x3007
        | 0x3021..=0x3029
        | 0x3038..=0x303B
        | 0x3040..=0x309F
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xF900..=0xFAFF
        | 0x20000..=0x3134F => WordClass::Ideograph,
        _ if character.is_alphabetic() => WordClass::Letter,
        _ if character.is_numeric() => WordClass::Numeric,
        _ => WordClass::Other,
    }
}

fn starts_token(class: WordClass) -> bool {
    matches!(
        class,
        WordClass::Letter | WordClass::Numeric | WordClass::Katakana | WordClass::ExtendNumLet | WordClass::Ideograph
    )
}

/// Whether `next` continues a token whose last significant character was `last`
/// (WB5, WB8–WB10, WB13–WB13b).
fn joins_directly(last: WordClass, next: WordClass) -> bool {
    use WordClass::*;
    match next {
        Letter | Numeric => matches!(last, Letter | Numeric | ExtendNumLet),
        Katakana => matches!(last, Katakana | ExtendNumLet),
        ExtendNumLet => matches!(last, Letter | Numeric | Katakana | ExtendNumLet),
        _ => false,
    }
}

/// Whether the joiner `middle` keeps a token going between `last` and `after`
/// (WB6/WB7 for letters, WB11/WB12 for digits).
fn joins_across(last: WordClass, middle: WordClass, after: WordClass) -> bool {
    use WordClass::*;
    match middle {
        MidLetter => last == Letter && after == Letter,
        MidNum => last == Numeric && after == Numeric,
        MidNumLet => (last == Letter && after == Letter) || (last == Numeric && after == Numeric),
        _ => false,
    }
}

/// Calls `visit` with the byte range of every token of `text`, in order, until
/// it returns `true`. Returns whether it did.
pub(crate) fn any_token_span(text: &str, mut visit: impl FnMut(usize, usize) -> bool) -> bool {
    let mut characters = text.char_indices().peekable();
    while let Some((start, first)) = characters.next() {
        let first_class = classify(first);
        if !starts_token(first_class) {
            continue;
        }
        let mut end = start + first.len_utf8();
        if first_class == WordClass::Ideograph {
            while let Some(&(index, character)) = characters.peek() {
                if classify(character) != WordClass::Extend {
                    break;
                }
                end = index + character.len_utf8();
                characters.next();
            }
            if visit(start, end) {
                return true;
            }
            continue;
        }
        let mut last = first_class;
        let mut has_word_character = first_class != WordClass::ExtendNumLet;
        while let Some(&(index, character)) = characters.peek() {
            let class = classify(character);
            if class == WordClass::Extend {
                end = index + character.len_utf8();
                characters.next();
                continue;
            }
            if joins_directly(last, class) {
                end = index + character.len_utf8();
                last = class;
                has_word_character |= class != WordClass::ExtendNumLet;
                characters.next();
                continue;
            }
            if matches!(class, WordClass::MidLetter | WordClass::MidNum | WordClass::MidNumLet) {
                let after = text[index + character.len_utf8()..]
                    .chars()
                    .map(classify)
                    .find(|class| *class != WordClass::Extend)
                    .unwrap_or(WordClass::Other);
                if joins_across(last, class, after) {
                    end = index + character.len_utf8();
                    characters.next();
                    continue;
                }
            }
            break;
        }
        if has_word_character && visit(start, end) {
            return true;
        }
    }
    false
}

/// Appends the lower-case form of `text` to `out`, character by character.
pub(crate) fn push_lowercase(text: &str, out: &mut String) {
    if text.is_ascii() {
        let start = out.len();
        out.push_str(text);
        out[start..].make_ascii_lowercase();
    } else {
        for character in text.chars() {
            out.extend(character.to_lowercase());
        }
    }
}

/// The lower-case form of `text`, as analysis produces it.
pub(crate) fn lowercase(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_lowercase(text, &mut out);
    out
}

/// Calls `accept` with every lower-cased token of `text` until it returns `true`.
pub(crate) fn any_token(text: &str, mut accept: impl FnMut(&str) -> bool) -> bool {
    let mut buffer = String::new();
    any_token_span(text, |start, end| {
        buffer.clear();
        push_lowercase(&text[start..end], &mut buffer);
        accept(&buffer)
    })
}

/// The lower-cased tokens of `text`, the reference form of analysis.
pub(crate) fn collect_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    any_token_span(text, |start, end| {
        tokens.push(lowercase(&text[start..end]));
        false
    });
    tokens
}

/// Lucene wildcard matching over a whole token or value: `*` is any run of
/// characters, `?` exactly one character (escaped wildcard characters arrive
/// as `GlobPiece::Literal`).
pub(crate) fn wildcard_matches(pattern: &[GlobPiece], text: &str) -> bool {
    // Iterative matching with one backtrack point, the last `*` seen: linear
    // in practice, never exponential, and free of allocation. Indices into
    // `text` are byte offsets that always sit on character boundaries.
    let next_character = |index: usize| text[index..].chars().next();
    let (mut pattern_index, mut text_index) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while let Some(character) = next_character(text_index) {
        match pattern.get(pattern_index) {
            Some(GlobPiece::AnyRun) => {
                backtrack = Some((pattern_index, text_index));
                pattern_index += 1;
                continue;
            }
            Some(GlobPiece::AnyOne) => {
                pattern_index += 1;
                text_index += character.len_utf8();
                continue;
            }
            Some(GlobPiece::Literal(expected)) if *expected == character => {
                pattern_index += 1;
                text_index += character.len_utf8();
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((star_index, star_text_index)) => {
                let resume = star_text_index + next_character(star_text_index).map_or(1, char::len_utf8);
                backtrack = Some((star_index, resume));
                pattern_index = star_index + 1;
                text_index = resume;
            }
            None => return false,
        }
    }
    pattern[pattern_index..].iter().all(|piece| *piece == GlobPiece::AnyRun)
}

/// One element of a parsed wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GlobPiece {
    Literal(char),
    /// `?`
    AnyOne,
    /// `*`
    AnyRun,
}

/// The literal runs of a wildcard pattern, each at least one character long.
pub(crate) fn glob_literals(pattern: &[GlobPiece]) -> Vec<String> {
    let mut literals = Vec::new();
    let mut current = String::new();
    for piece in pattern {
        match piece {
            GlobPiece::Literal(character) => current.push(*character),
            _ if !current.is_empty() => literals.push(std::mem::take(&mut current)),
            _ => {}
        }
    }
    if !current.is_empty() {
        literals.push(current);
    }
    literals
}

thread_local! {
    /// Reused by the non-ASCII path so lower-casing a field allocates once per thread.
    static LOWERCASE_BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
    /// Reused for the lower-cased token under test.
    static TOKEN_BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Like `any_token`, with the token buffer reused across calls on this thread.
fn any_token_reusing_buffer(text: &str, accept: &mut dyn FnMut(&str) -> bool) -> bool {
    TOKEN_BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut buffer) => any_token_span(text, |start, end| {
            buffer.clear();
            push_lowercase(&text[start..end], &mut buffer);
            accept(&buffer)
        }),
        Err(_) => any_token(text, accept),
    })
}

/// How common a byte is in log text; the search anchors on the rarest byte
/// of the literal. Letters rank by English frequency, which also fits
/// identifiers and stack traces; separators and digits count as common.
fn byte_commonness(byte: u8) -> u8 {
    const LETTERS_BY_FREQUENCY: &[u8] = b"etaoinsrhldcumfpgwybvkxjqz";
    match byte.to_ascii_lowercase() {
        b' ' | b'.' | b'/' | b'-' | b'_' | b':' | b'=' | b',' | b'"' | b'\n' => 255,
        b'0'..=b'9' => 200,
        letter @ b'a'..=b'z' => {
            let rank = LETTERS_BY_FREQUENCY.iter().position(|candidate| *candidate == letter).unwrap_or(0) as u8;
            230 - rank * 8
        }
        other if other.is_ascii() => 40,
        _ => 20,
    }
}

/// A necessary-substring prefilter for token tests on text fields.
///
/// A token is the lower-case form of a substring of the field, and lower-casing
/// works character by character, so a token containing `literal` implies the
/// lower-cased field contains `literal`. `any_token` searches for the literal
/// and tokenises only around the hits.
#[derive(Debug, Clone)]
pub(crate) struct LiteralFinder {
    /// Lower-case, non-empty.
    literal: String,
    /// Offset of the rarest byte in `literal`, and that byte in both ASCII cases.
    anchor_offset: usize,
    anchor_lower: u8,
    anchor_upper: u8,
    /// Non-ASCII characters lower-case to ASCII only as KELVIN SIGN to `k`
    /// and DOTTED CAPITAL I to `i` (plus a combining dot). For an ASCII
    /// literal without `k` or `i`, an ASCII-case-insensitive search of the raw
    /// bytes therefore finds every occurrence in the lower-cased text.
    raw_search_always_complete: bool,
}

impl LiteralFinder {
    /// `literal` must be lower-case and non-empty.
    pub(crate) fn new(literal: &str) -> LiteralFinder {
        debug_assert!(!literal.is_empty());
        let bytes = literal.as_bytes();
        let anchor_offset = (0..bytes.len()).min_by_key(|index| byte_commonness(bytes[*index])).unwrap_or(0);
        let anchor = bytes.get(anchor_offset).copied().unwrap_or(0);
        LiteralFinder {
            literal: literal.to_string(),
            anchor_offset,
            anchor_lower: anchor.to_ascii_lowercase(),
            anchor_upper: anchor.to_ascii_uppercase(),
            raw_search_always_complete: literal.is_ascii() && !literal.contains(['k', 'i']),
        }
    }

    /// Whether some token of `text` satisfies `accept`; exactly
    /// `any_token(text, accept)`, usually without tokenising, provided that
    /// `accept` only accepts tokens containing the literal (the caller's
    /// precondition: an equality test on the literal, or a wildcard pattern
    /// the literal was taken from).
    pub(crate) fn any_token(&self, text: &str, accept: &mut dyn FnMut(&str) -> bool) -> bool {
        if self.literal.is_ascii() {
            // A confirmed hit is always a real token, whatever the text holds.
            if self.any_token_near_hits(text, accept) {
                return true;
            }
            // 0xC4 and 0xE2 lead the UTF-8 forms of DOTTED CAPITAL I and
            // KELVIN SIGN; without them the raw search missed nothing.
            if self.raw_search_always_complete || memchr::memchr2(0xC4, 0xE2, text.as_bytes()).is_none() {
                return false;
            }
        } else if text.is_ascii() {
            return false;
        }
        let found = LOWERCASE_BUFFER.with(|buffer| {
            let Ok(mut buffer) = buffer.try_borrow_mut() else {
                return memchr::memmem::find(lowercase(text).as_bytes(), self.literal.as_bytes()).is_some();
            };
            buffer.clear();
            push_lowercase(text, &mut buffer);
            memchr::memmem::find(buffer.as_bytes(), self.literal.as_bytes()).is_some()
        });
        found && any_token_reusing_buffer(text, accept)
    }

    /// The next ASCII-case-insensitive occurrence of the literal at or after `from`.
    fn find_ascii_case_insensitive(&self, haystack: &[u8], from: usize) -> Option<usize> {
        let length = self.literal.len();
        let mut anchor_from = from + self.anchor_offset;
        while anchor_from < haystack.len() {
            let anchor = anchor_from + memchr::memchr2(self.anchor_lower, self.anchor_upper, &haystack[anchor_from..])?;
            let start = anchor - self.anchor_offset;
            if haystack
                .get(start..start + length)
                .is_some_and(|candidate| candidate.eq_ignore_ascii_case(self.literal.as_bytes()))
            {
                return Some(start);
            }
            anchor_from = anchor + 1;
        }
        None
    }

    /// The hit-and-window search. Windows are delimited by ASCII whitespace,
    /// a hard token break, so tokenising a window gives exactly the tokens the
    /// whole string has there. A literal hit lies inside one window unless the
    /// literal itself holds whitespace, in which case no token can contain it
    /// and the window test correctly fails.
    fn any_token_near_hits(&self, text: &str, accept: &mut dyn FnMut(&str) -> bool) -> bool {
        let bytes = text.as_bytes();
        let mut search_from = 0;
        while let Some(hit_start) = self.find_ascii_case_insensitive(bytes, search_from) {
            let hit_end = hit_start + self.literal.len();
            let window_start = bytes[search_from..hit_start]
                .iter()
                .rposition(u8::is_ascii_whitespace)
                .map_or(search_from, |offset| search_from + offset + 1);
            let window_end = bytes[hit_end..]
                .iter()
                .position(u8::is_ascii_whitespace)
                .map_or(bytes.len(), |offset| hit_end + offset);
            // Both ends sit next to ASCII bytes or at the ends of the string,
            // so they are character boundaries.
            if any_token_reusing_buffer(&text[window_start..window_end], accept) {
                return true;
            }
            search_from = window_end.max(hit_start + 1);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tokens(text: &str) -> Vec<String> {
        collect_tokens(text)
    }

    fn glob(pattern: &str) -> Vec<GlobPiece> {
        pattern
            .chars()
            .map(|character| match character {
                '*' => GlobPiece::AnyRun,
                '?' => GlobPiece::AnyOne,
                other => GlobPiece::Literal(other),
            })
            .collect()
    }

    #[test]
    fn standard_analyzer_examples() {
        assert_eq!(
            tokens("The 2 QUICK Brown-Foxes jumped over the lazy dog's bone."),
            ["the", "2", "quick", "brown", "foxes", "jumped", "over", "the", "lazy", "dog's", "bone"]
        );
        assert_eq!(tokens("'Traceback'"), ["traceback"]);
        assert_eq!(tokens("java.io.IOException: Connection reset"), ["java.io.ioexception", "connection", "reset"]);
        assert_eq!(tokens("wallet-qa-01"), ["wallet", "qa", "01"]);
        assert_eq!(tokens("10.0.3.7 1,000 3.14"), ["10.0.3.7", "1,000", "3.14"]);
        assert_eq!(tokens("KeyError: 'user_id'"), ["keyerror", "user_id"]);
        assert_eq!(tokens("/opt/DefendAgent/logs/DefendAgent.log"), ["opt", "defendagent", "logs", "defendagent.log"]);
        assert_eq!(tokens("__topic__ __ a_b"), ["__topic__", "a_b"]);
        assert_eq!(tokens("end. Start"), ["end", "start"]);
        assert_eq!(tokens("a:b 10:30"), ["a:b", "10", "30"]);
    }

    #[test]
    fn unicode_text() {
        assert_eq!(tokens("日志告警 ok"), ["日", "志", "告", "警", "ok"]);
        assert_eq!(tokens("Ünïcödé ÉCOLE"), ["ünïcödé", "école"]);
        assert_eq!(tokens("cafe\u{301} x"), ["cafe\u{301}", "x"]);
        assert_eq!(tokens("カタカナ語"), ["カタカナ", "語"]);
        assert_eq!(tokens("\u{212A}elvin"), ["kelvin"]);
    }

    #[test]
    fn wildcard_glob() {
        assert!(wildcard_matches(&glob("*exception*"), "java.io.ioexception"));
        assert!(wildcard_matches(&glob("*exception*"), "exception"));
        assert!(!wildcard_matches(&glob("*exception*"), "exceptio"));
        assert!(wildcard_matches(&glob("a?c"), "abc"));
        assert!(wildcard_matches(&glob("a?c"), "aéc"));
        assert!(!wildcard_matches(&glob("a?c"), "ac"));
        assert!(wildcard_matches(&glob("*"), ""));
        assert!(wildcard_matches(&glob("a*b*c"), "aXbYbZc"));
        assert!(!wildcard_matches(&glob("a*b*c"), "aXbYbZ"));
        assert!(wildcard_matches(&[GlobPiece::Literal('*')], "*"));
        assert!(!wildcard_matches(&[GlobPiece::Literal('*')], "x"));
    }

    #[test]
    fn finder_confirms_token_boundaries() {
        let finder = LiteralFinder::new("exception");
        let mut equals = |token: &str| token == "exception";
        assert!(finder.any_token("Exception in thread", &mut equals));
        assert!(!finder.any_token("java.io.IOException: reset", &mut equals));
        let mut contains = |token: &str| token.contains("exception");
        assert!(finder.any_token("java.io.IOException: reset", &mut contains));
        let kelvin = LiteralFinder::new("kelvin");
        assert!(kelvin.any_token("temp in \u{212A}ELVIN", &mut |token: &str| token == "kelvin"));
    }

    fn reference(text: &str, accept: &dyn Fn(&str) -> bool) -> bool {
        collect_tokens(text).iter().any(|token| accept(token))
    }

    fn alphabet() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "a",
            "b",
            "k",
            "i",
            "x",
            "A",
            "K",
            "I",
            "X",
            ".",
            "'",
            ":",
            ",",
            "_",
            "-",
            " ",
            "\n",
            "1",
            "2",
            "é",
            "É",
            "\u{212A}",
            "\u{130}",
            "\u{301}",
            "日",
            "カ",
            "\u{3000}",
            "/",
            "exception",
            "Exception",
            "EXCEPTION",
            "\u{2019}",
        ]);
        prop::collection::vec(pieces, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fast_path_equals_reference_for_equality(text in alphabet(), needle in prop::sample::select(vec![
            "a", "k", "i", "ab", "a.b", "x1", "exception", "ka", "ik", "é", "a'b", "1,2", "_a", "日", "カ", "a b", "k\u{307}",
        ])) {
            let finder = LiteralFinder::new(needle);
            let fast = finder.any_token(&text, &mut |token: &str| token == needle);
            prop_assert_eq!(fast, reference(&text, &|token| token == needle), "text {:?}", text);
        }

        #[test]
        fn fast_path_equals_reference_for_wildcards(text in alphabet(), literal in prop::sample::select(vec![
            "a", "k", "i", "x", "exception", "é", ".", "1",
        ])) {
            let pattern = glob(&format!("*{literal}*"));
            let finder = LiteralFinder::new(literal);
            let fast = finder.any_token(&text, &mut |token: &str| wildcard_matches(&pattern, token));
            prop_assert_eq!(fast, reference(&text, &|token| wildcard_matches(&pattern, token)), "text {:?}", text);
        }

        #[test]
        fn glob_equals_a_regex_reference(
            pattern in prop::collection::vec(prop::sample::select(vec!['a', 'b', 'é', '*', '?']), 0..8),
            text in prop::collection::vec(prop::sample::select(vec!['a', 'b', 'é', '日']), 0..10),
        ) {
            let pieces = glob(&pattern.iter().collect::<String>());
            let text: String = text.into_iter().collect();
            let mut expression = String::from("(?s)^");
            for piece in &pieces {
                match piece {
                    GlobPiece::AnyRun => expression.push_str(".*"),
                    GlobPiece::AnyOne => expression.push('.'),
                    GlobPiece::Literal(character) => expression.push_str(&regex::escape(&character.to_string())),
                }
            }
            expression.push('$');
            let reference = regex::Regex::new(&expression).unwrap().is_match(&text);
            prop_assert_eq!(wildcard_matches(&pieces, &text), reference, "pattern {:?} text {:?}", pieces, text);
        }

        #[test]
        fn tokens_never_hold_whitespace_and_are_lowercase(text in alphabet()) {
            for token in collect_tokens(&text) {
                prop_assert!(!token.chars().any(char::is_whitespace));
                prop_assert_eq!(lowercase(&token), token.clone());
            }
        }

        #[test]
        fn whitespace_is_a_hard_break(left in alphabet(), right in alphabet()) {
            let joined = format!("{left} {right}");
            let mut expected = collect_tokens(&left);
            expected.extend(collect_tokens(&right));
            prop_assert_eq!(collect_tokens(&joined), expected);
        }
    }
}
