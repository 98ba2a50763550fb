//! The Lucene `query_string` parser: text to `QueryNode`.
//!
//! Owns the grammar of Lucene's classic query parser as Elasticsearch's
//! `query_string` query extends it (see the module doc of `query` for the
//! semantics). Guarantees: every error names the 0-based character position
//! and what was expected there; the parser never analyses text (that needs
//! field types, which the compiler decides). Never: evaluates anything.
//!
//! Clause logic follows Lucene's `addClause`: a conjunction changes the
//! occurrence of the clause before it as well as the one after it, which is
//! why `a AND b OR c` is `+a +b c`.

use super::{
    BoolQuery, BoundValue, EpochUnit, FieldTarget, Operator, QueryError, QueryNode, RangeBound, RangeQuery, ZeroTerms,
};

/// Settings that `query_string` may override.
#[derive(Debug, Clone)]
pub(crate) struct LuceneSettings {
    pub default_field: FieldTarget,
    pub default_operator: Operator,
}

impl Default for LuceneSettings {
    fn default() -> LuceneSettings {
        LuceneSettings { default_field: FieldTarget::All, default_operator: Operator::Or }
    }
}

/// Parses `text`. `location` prefixes error messages (empty at top level).
pub(crate) fn parse(text: &str, settings: &LuceneSettings, location: &str) -> Result<QueryNode, QueryError> {
    let mut parser = Parser { characters: text.chars().collect(), position: 0, settings, location, text };
    parser.skip_whitespace();
    if parser.at_end() {
        // Elasticsearch answers an empty query string with no documents.
        return Ok(QueryNode::MatchNone);
    }
    let query = parser.parse_query(&settings.default_field.clone())?;
    parser.skip_whitespace();
    if let Some(character) = parser.peek() {
        return Err(parser.error("an operator or a term", Some(character)));
    }
    Ok(query)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conjunction {
    None,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    None,
    Required,
    Prohibited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occur {
    Must,
    Should,
    MustNot,
}

/// One character of a term and whether a backslash escaped it.
#[derive(Debug, Clone, Copy)]
struct TermCharacter {
    character: char,
    escaped: bool,
}

struct Parser<'a> {
    characters: Vec<char>,
    position: usize,
    settings: &'a LuceneSettings,
    location: &'a str,
    text: &'a str,
}

/// Characters that end a term (besides whitespace). `+` and `-` may appear
/// inside a term but not start one; `*` and `?` make it a wildcard term.
fn ends_term(character: char) -> bool {
    character.is_whitespace()
        || matches!(character, '!' | '(' | ')' | ':' | '^' | '[' | ']' | '"' | '{' | '}' | '~' | '/')
}

fn starts_term(character: char) -> bool {
    !ends_term(character) && !matches!(character, '+' | '-')
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.position >= self.characters.len()
    }

    fn peek(&self) -> Option<char> {
        self.characters.get(self.position).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.characters.get(self.position + offset).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.position += 1;
        }
    }

    fn error(&self, expected: &str, found: Option<char>) -> QueryError {
        self.error_at(self.position, expected, found)
    }

    fn error_at(&self, position: usize, expected: &str, found: Option<char>) -> QueryError {
        QueryError::Syntax {
            location: self.location.to_string(),
            position,
            expected: expected.to_string(),
            found: match found {
                Some(character) => format!("{character:?}"),
                None => "end of input".to_string(),
            },
            query: self.text.to_string(),
        }
    }

    /// Whether the cursor sits on exactly the unescaped word `word` (an
    /// operator), not on a longer term that starts with it.
    fn next_word_is(&self, word: &str) -> bool {
        let length = word.chars().count();
        word.chars().enumerate().all(|(offset, expected)| self.peek_at(offset) == Some(expected))
            && self.peek_at(length).is_none_or(ends_term)
    }

    fn parse_conjunction(&mut self) -> Conjunction {
        self.skip_whitespace();
        let operators =
            [("AND", Conjunction::And), ("&&", Conjunction::And), ("OR", Conjunction::Or), ("||", Conjunction::Or)];
        for (word, conjunction) in operators {
            if self.next_word_is(word) {
                self.position += word.len();
                return conjunction;
            }
        }
        Conjunction::None
    }

    fn parse_modifier(&mut self) -> Modifier {
        self.skip_whitespace();
        match self.peek() {
            Some('+') => {
                self.position += 1;
                Modifier::Required
            }
            Some('-') | Some('!') => {
                self.position += 1;
                Modifier::Prohibited
            }
            _ if self.next_word_is("NOT") => {
                self.position += 3;
                Modifier::Prohibited
            }
            _ => Modifier::None,
        }
    }

    /// `Query := Modifier Clause (Conjunction? Modifier Clause)*`, up to `)` or the end.
    fn parse_query(&mut self, field: &FieldTarget) -> Result<QueryNode, QueryError> {
        let mut clauses: Vec<(Occur, QueryNode)> = Vec::new();
        let modifier = self.parse_modifier();
        let first = self.parse_clause(field)?;
        let bare_first = (modifier == Modifier::None).then(|| first.clone());
        self.add_clause(&mut clauses, Conjunction::None, modifier, first);
        loop {
            self.skip_whitespace();
            if self.at_end() || self.peek() == Some(')') {
                break;
            }
            let conjunction = self.parse_conjunction();
            let modifier = self.parse_modifier();
            let clause = self.parse_clause(field)?;
            self.add_clause(&mut clauses, conjunction, modifier, clause);
        }
        if clauses.len() == 1 {
            if let Some(first) = bare_first {
                return Ok(first);
            }
        }
        let mut bool_query = BoolQuery::default();
        for (occur, clause) in clauses {
            match occur {
                Occur::Must => bool_query.must.push(clause),
                Occur::Should => bool_query.should.push(clause),
                Occur::MustNot => bool_query.must_not.push(clause),
            }
        }
        Ok(QueryNode::Bool(bool_query))
    }

    /// Lucene's `QueryParserBase.addClause`.
    fn add_clause(
        &self,
        clauses: &mut Vec<(Occur, QueryNode)>,
        conjunction: Conjunction,
        modifier: Modifier,
        clause: QueryNode,
    ) {
        if let Some(previous) = clauses.last_mut() {
            if previous.0 != Occur::MustNot {
                if conjunction == Conjunction::And {
                    previous.0 = Occur::Must;
                } else if conjunction == Conjunction::Or && self.settings.default_operator == Operator::And {
                    previous.0 = Occur::Should;
                }
            }
        }
        let prohibited = modifier == Modifier::Prohibited;
        let required = match self.settings.default_operator {
            Operator::Or => modifier == Modifier::Required || (conjunction == Conjunction::And && !prohibited),
            Operator::And => !prohibited && conjunction != Conjunction::Or,
        };
        let occur = if prohibited {
            Occur::MustNot
        } else if required {
            Occur::Must
        } else {
            Occur::Should
        };
        clauses.push((occur, clause));
    }

    /// `Clause := (Field ':')? (Term | '(' Query ')' Boost?)`
    fn parse_clause(&mut self, field: &FieldTarget) -> Result<QueryNode, QueryError> {
        self.skip_whitespace();
        let field = match self.try_parse_field_prefix()? {
            Some(explicit) => explicit,
            None => field.clone(),
        };
        self.skip_whitespace();
        if self.peek() == Some('(') {
            self.position += 1;
            self.skip_whitespace();
            if self.peek() == Some(')') {
                return Err(self.error("a term", Some(')')));
            }
            let query = self.parse_query(&field)?;
            self.skip_whitespace();
            match self.peek() {
                Some(')') => self.position += 1,
                other => return Err(self.error("')'", other)),
            }
            self.parse_boost()?;
            return Ok(query);
        }
        self.parse_term(&field)
    }

    /// A term followed by `:` names a field; anything else is left in place.
    fn try_parse_field_prefix(&mut self) -> Result<Option<FieldTarget>, QueryError> {
        let start = self.position;
        let Some(first) = self.peek() else {
            return Ok(None);
        };
        if !(starts_term(first) || first == '\\') {
            return Ok(None);
        }
        let word = self.read_term()?;
        self.skip_whitespace();
        if self.peek() != Some(':') {
            self.position = start;
            return Ok(None);
        }
        self.position += 1;
        let name: String = word.iter().map(|piece| piece.character).collect();
        let target = if name == "*" {
            FieldTarget::All
        } else if name.contains('*') {
            FieldTarget::Pattern(name)
        } else {
            FieldTarget::Named(name)
        };
        Ok(Some(target))
    }

    /// Reads a run of term characters, resolving backslash escapes.
    fn read_term(&mut self) -> Result<Vec<TermCharacter>, QueryError> {
        let mut word = Vec::new();
        while let Some(character) = self.peek() {
            if character == '\\' {
                let Some(escaped) = self.peek_at(1) else {
                    return Err(self.error_at(self.position + 1, "a character after '\\'", None));
                };
                word.push(TermCharacter { character: escaped, escaped: true });
                self.position += 2;
                continue;
            }
            if ends_term(character) {
                break;
            }
            word.push(TermCharacter { character, escaped: false });
            self.position += 1;
        }
        Ok(word)
    }

    /// `^number`, accepted and ignored: matching does not score.
    fn parse_boost(&mut self) -> Result<(), QueryError> {
        if self.peek() != Some('^') {
            return Ok(());
        }
        self.position += 1;
        if self.read_number().is_none() {
            return Err(self.error("a number after '^'", self.peek()));
        }
        Ok(())
    }

    fn read_number(&mut self) -> Option<f64> {
        let start = self.position;
        while self.peek().is_some_and(|character| character.is_ascii_digit() || character == '.') {
            self.position += 1;
        }
        let text: String = self.characters[start..self.position].iter().collect();
        if text.is_empty() {
            return None;
        }
        match text.parse() {
            Ok(number) => Some(number),
            Err(_) => {
                self.position = start;
                None
            }
        }
    }

    /// `~` with an optional number; `Some(None)` for a bare `~`.
    fn parse_tilde(&mut self) -> Result<Option<Option<f64>>, QueryError> {
        if self.peek() != Some('~') {
            return Ok(None);
        }
        self.position += 1;
        let number = self.read_number();
        if self.peek().is_some_and(|character| !ends_term(character) && character != '^') {
            return Err(self.error("a number after '~'", self.peek()));
        }
        Ok(Some(number))
    }

    fn parse_term(&mut self, field: &FieldTarget) -> Result<QueryNode, QueryError> {
        self.skip_whitespace();
        let start = self.position;
        match self.peek() {
            Some('"') => self.parse_phrase(field),
            Some('[') | Some('{') => self.parse_range(field),
            Some('/') => self.parse_regexp(field),
            Some(character) if starts_term(character) || character == '\\' => {
                let word = self.read_term()?;
                let mut fuzzy = self.parse_tilde()?;
                self.parse_boost()?;
                if fuzzy.is_none() {
                    fuzzy = self.parse_tilde()?;
                }
                self.term_query(field, &word, fuzzy, start)
            }
            other => Err(self.error("a term", other)),
        }
    }

    fn parse_phrase(&mut self, field: &FieldTarget) -> Result<QueryNode, QueryError> {
        let start = self.position;
        self.position += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error(&format!("'\"' closing the phrase opened at position {start}"), None)),
                Some('"') => {
                    self.position += 1;
                    break;
                }
                Some('\\') => {
                    let Some(escaped) = self.peek_at(1) else {
                        return Err(self.error_at(self.position + 1, "a character after '\\'", None));
                    };
                    text.push(escaped);
                    self.position += 2;
                }
                Some(character) => {
                    text.push(character);
                    self.position += 1;
                }
            }
        }
        let slop_position = self.position;
        let mut slop = self.parse_tilde()?;
        self.parse_boost()?;
        if slop.is_none() {
            slop = self.parse_tilde()?;
        }
        if let Some(slop) = slop {
            if slop.unwrap_or(0.0) != 0.0 {
                return Err(self.error_at(slop_position, "no phrase slop (only ~0 is supported)", Some('~')));
            }
        }
        if field_is_exists(field) {
            return Ok(exists_query(&text));
        }
        Ok(QueryNode::Phrase { field: field.clone(), query: text, zero_terms: ZeroTerms::Dropped })
    }

    fn parse_regexp(&mut self, field: &FieldTarget) -> Result<QueryNode, QueryError> {
        let start = self.position;
        self.position += 1;
        let mut pattern = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(
                        self.error(&format!("'/' closing the regular expression opened at position {start}"), None)
                    )
                }
                Some('/') => {
                    self.position += 1;
                    break;
                }
                Some('\\') if self.peek_at(1) == Some('/') => {
                    pattern.push('/');
                    self.position += 2;
                }
                Some('\\') => {
                    let Some(escaped) = self.peek_at(1) else {
                        return Err(self.error_at(self.position + 1, "a character after '\\'", None));
                    };
                    pattern.push('\\');
                    pattern.push(escaped);
                    self.position += 2;
                }
                Some(character @ ('@' | '&' | '~' | '<' | '>' | '#')) => {
                    return Err(self.error(
                        "a regular expression without Lucene-only operators (escape @ & ~ < > # with a backslash)",
                        Some(character),
                    ));
                }
                Some(character) => {
                    pattern.push(character);
                    self.position += 1;
                }
            }
        }
        self.parse_boost()?;
        if let Err(error) = regex::Regex::new(&pattern) {
            return Err(self.error_at(start, &format!("a valid regular expression ({error})"), Some('/')));
        }
        Ok(QueryNode::Regexp { field: field.clone(), pattern, case_insensitive: false })
    }

    /// `[a TO b]`, `{a TO b}` and mixed brackets; `*` is an open end, `TO` may be left out.
    fn parse_range(&mut self, field: &FieldTarget) -> Result<QueryNode, QueryError> {
        let lower_inclusive = self.peek() == Some('[');
        self.position += 1;
        self.skip_whitespace();
        let lower = self.read_range_bound()?;
        self.skip_whitespace();
        if self.peek() == Some('T')
            && self.peek_at(1) == Some('O')
            && self.peek_at(2).is_none_or(|after| after.is_whitespace() || after == '"')
        {
            self.position += 2;
            self.skip_whitespace();
        }
        let upper = self.read_range_bound()?;
        self.skip_whitespace();
        let upper_inclusive = match self.peek() {
            Some(']') => true,
            Some('}') => false,
            other => return Err(self.error("']' or '}' closing the range", other)),
        };
        self.position += 1;
        self.parse_boost()?;
        let bound = |value: Option<String>, inclusive: bool| {
            value.map(|text| RangeBound { value: BoundValue::Text(text), inclusive })
        };
        Ok(QueryNode::Range(RangeQuery {
            field: field.clone(),
            lower: bound(lower, lower_inclusive),
            upper: bound(upper, upper_inclusive),
            normalise: true,
            epoch_unit: EpochUnit::Guess,
            time_zone_offset_seconds: 0,
        }))
    }

    /// One range end: a quoted string or a run up to whitespace, `]` or `}`;
    /// an unquoted `*` is an open end (`None`).
    fn read_range_bound(&mut self) -> Result<Option<String>, QueryError> {
        match self.peek() {
            Some('"') => {
                self.position += 1;
                let mut text = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("'\"' closing the range bound", None)),
                        Some('"') => {
                            self.position += 1;
                            return Ok(Some(text));
                        }
                        Some('\\') if self.peek_at(1).is_some() => {
                            text.push(self.peek_at(1).unwrap_or_default());
                            self.position += 2;
                        }
                        Some(character) => {
                            text.push(character);
                            self.position += 1;
                        }
                    }
                }
            }
            Some(character) if !character.is_whitespace() && character != ']' && character != '}' => {
                let start = self.position;
                while self
                    .peek()
                    .is_some_and(|character| !character.is_whitespace() && character != ']' && character != '}')
                {
                    self.position += 1;
                }
                let text: String = self.characters[start..self.position].iter().collect();
                Ok((text != "*").then_some(text))
            }
            other => Err(self.error("a range bound", other)),
        }
    }

    /// Builds the query for an unquoted term, the way Elasticsearch's
    /// `QueryStringQueryParser` picks between exists, wildcard, comparison
    /// range, fuzzy and analysed term queries.
    fn term_query(
        &self,
        field: &FieldTarget,
        word: &[TermCharacter],
        fuzzy: Option<Option<f64>>,
        start: usize,
    ) -> Result<QueryNode, QueryError> {
        let text: String = word.iter().map(|piece| piece.character).collect();
        if field_is_exists(field) {
            return Ok(exists_query(&text));
        }
        let has_wildcard = word.iter().any(|piece| !piece.escaped && matches!(piece.character, '*' | '?'));
        if has_wildcard {
            if word.len() == 1 && word[0].character == '*' {
                return Ok(match field {
                    FieldTarget::All => QueryNode::MatchAll,
                    other => QueryNode::Exists { field: other.clone() },
                });
            }
            let mut pattern = String::new();
            for piece in word {
                if piece.escaped && matches!(piece.character, '*' | '?' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(piece.character);
            }
            return Ok(QueryNode::Wildcard { field: field.clone(), pattern, case_insensitive: false, normalise: true });
        }
        let unescaped_prefix = |prefix: &str| {
            prefix.chars().enumerate().all(|(index, expected)| {
                word.get(index).is_some_and(|piece| !piece.escaped && piece.character == expected)
            })
        };
        for (operator, is_lower, inclusive) in
            [(">=", true, true), ("<=", false, true), (">", true, false), ("<", false, false)]
        {
            if unescaped_prefix(operator) {
                let value: String = text[operator.len()..].to_string();
                if value.is_empty() {
                    return Err(self.error_at(start + operator.len(), &format!("a value after '{operator}'"), None));
                }
                let bound = Some(RangeBound { value: BoundValue::Text(value), inclusive });
                let (lower, upper) = if is_lower { (bound, None) } else { (None, bound) };
                return Ok(QueryNode::Range(RangeQuery {
                    field: field.clone(),
                    lower,
                    upper,
                    normalise: true,
                    epoch_unit: EpochUnit::Guess,
                    time_zone_offset_seconds: 0,
                }));
            }
        }
        if let Some(similarity) = fuzzy {
            let max_edits = match similarity {
                // Elasticsearch's AUTO fuzziness.
                None => match text.chars().count() {
                    0..=2 => 0,
                    3..=5 => 1,
                    _ => 2,
                },
                Some(edits) if edits >= 1.0 => edits.min(2.0) as u8,
                // Lucene's legacy minimum-similarity form `~0.8`.
                Some(similarity) => (((1.0 - similarity) * text.chars().count() as f64) as u8).min(2),
            };
            return Ok(QueryNode::Fuzzy { field: field.clone(), value: text, max_edits, normalise: true });
        }
        Ok(QueryNode::Match {
            field: field.clone(),
            query: text,
            operator: self.settings.default_operator,
            minimum_should_match: None,
            zero_terms: ZeroTerms::Dropped,
        })
    }
}

fn field_is_exists(field: &FieldTarget) -> bool {
    matches!(field, FieldTarget::Named(name) if name == "_exists_")
}

fn exists_query(field_name: &str) -> QueryNode {
    let field = if field_name.contains('*') {
        FieldTarget::Pattern(field_name.to_string())
    } else {
        FieldTarget::Named(field_name.to_string())
    };
    QueryNode::Exists { field }
}

/// The first unescaped Lucene-only regular-expression operator in `pattern`
/// (`@ & ~ < > #`), which the `regex` crate would read as a literal.
pub(crate) fn lucene_only_regexp_operator(pattern: &str) -> Option<char> {
    let mut characters = pattern.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => {
                characters.next();
            }
            '@' | '&' | '~' | '<' | '>' | '#' => return Some(character),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_default(text: &str) -> QueryNode {
        parse(text, &LuceneSettings::default(), "").unwrap_or_else(|error| panic!("{text:?}: {error}"))
    }

    fn rendered(text: &str) -> String {
        parse_default(text).to_string()
    }

    fn syntax_error(text: &str) -> (usize, String) {
        match parse(text, &LuceneSettings::default(), "") {
            Err(QueryError::Syntax { position, expected, .. }) => (position, expected),
            other => panic!("{text:?}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn seed_filter_parses_into_three_optional_clauses() {
        assert_eq!(
            rendered("message:'Traceback' OR message:*Exception* OR source:*Defend*"),
            "(match(message, \"'Traceback'\") wildcard(message, \"*Exception*\", normalised) wildcard(source, \"*Defend*\", normalised))"
        );
    }

    #[test]
    fn lucene_clause_logic() {
        assert_eq!(rendered("a AND b OR c"), "(+match(*, \"a\") +match(*, \"b\") match(*, \"c\"))");
        assert_eq!(rendered("a b"), "(match(*, \"a\") match(*, \"b\"))");
        assert_eq!(rendered("+a -b c"), "(+match(*, \"a\") match(*, \"c\") -match(*, \"b\"))");
        assert_eq!(rendered("a AND NOT b"), "(+match(*, \"a\") -match(*, \"b\"))");
        assert_eq!(rendered("a && !b || c"), "(+match(*, \"a\") match(*, \"c\") -match(*, \"b\"))");
        assert_eq!(rendered("NOT a"), "(-match(*, \"a\"))");
        assert_eq!(rendered("ANDROID OR NOTE"), "(match(*, \"ANDROID\") match(*, \"NOTE\"))");
        let settings = LuceneSettings { default_operator: Operator::And, ..LuceneSettings::default() };
        assert_eq!(
            parse("a b OR c", &settings, "").unwrap().to_string(),
            "(+match(*, \"a\", and) match(*, \"b\", and) match(*, \"c\", and))"
        );
    }

    #[test]
    fn fields_groups_and_special_fields() {
        assert_eq!(rendered("host:(api OR admin)"), "(match(host, \"api\") match(host, \"admin\"))");
        assert_eq!(rendered("host:(api OR level:x)"), "(match(host, \"api\") match(level, \"x\"))");
        assert_eq!(rendered("_exists_:user.name"), "exists(user.name)");
        assert_eq!(rendered("user:*"), "exists(user)");
        assert_eq!(rendered("*"), "*:*");
        assert_eq!(rendered("*:foo"), "match(*, \"foo\")");
        assert_eq!(rendered("host.\\*:foo"), "match(host.*, \"foo\")");
        assert_eq!(rendered("field : value"), "match(field, \"value\")");
        assert_eq!(rendered("status:\"internal error\""), "phrase(status, \"internal error\")");
    }

    #[test]
    fn ranges_and_comparisons() {
        assert_eq!(rendered("status:[500 TO 599]"), "range(status, [\"500\" TO \"599\"])");
        assert_eq!(rendered("status:{500 TO *]"), "range(status, {\"500\" TO *])");
        assert_eq!(rendered("status:[500 599}"), "range(status, [\"500\" TO \"599\"})");
        assert_eq!(rendered("status:>=500"), "range(status, [\"500\" TO *])");
        assert_eq!(rendered("status:<500"), "range(status, [* TO \"500\"})");
        assert_eq!(rendered("age:(>=10 AND <20)"), "(+range(age, [\"10\" TO *]) +range(age, [* TO \"20\"}))");
        assert_eq!(
            rendered("@timestamp:[\"2024-01-01\" TO now-5m]"),
            "range(@timestamp, [\"2024-01-01\" TO \"now-5m\"])"
        );
    }

    #[test]
    fn escapes_wildcards_fuzzy_and_boosts() {
        assert_eq!(rendered("path:\\/var\\/log"), "match(path, \"/var/log\")");
        assert_eq!(rendered("name:foo\\*bar*"), "wildcard(name, \"foo\\\\*bar*\", normalised)");
        assert_eq!(rendered("name:a\\:b"), "match(name, \"a:b\")");
        assert_eq!(rendered("name:\"say \\\"hi\\\"\""), "phrase(name, \"say \\\"hi\\\"\")");
        assert_eq!(rendered("name:te?t"), "wildcard(name, \"te?t\", normalised)");
        assert_eq!(rendered("quikc~"), "fuzzy(*, \"quikc\", 1)");
        assert_eq!(rendered("quikc~2^3"), "fuzzy(*, \"quikc\", 2)");
        assert_eq!(rendered("a^2 OR (b c)^0.5"), "(match(*, \"a\") (match(*, \"b\") match(*, \"c\")))");
        assert_eq!(rendered("name:/joh?n(ath[oa]n)/"), "regexp(name, \"joh?n(ath[oa]n)\")");
        assert_eq!(rendered("wallet-qa-01"), "match(*, \"wallet-qa-01\")");
    }

    #[test]
    fn empty_query_matches_nothing() {
        assert_eq!(parse_default("   "), QueryNode::MatchNone);
    }

    #[test]
    fn malformed_queries_report_position_and_expectation() {
        assert_eq!(syntax_error("message:(Traceback OR error"), (27, "')'".to_string()));
        assert_eq!(syntax_error("a OR"), (4, "a term".to_string()));
        assert_eq!(syntax_error("a AND )"), (6, "a term".to_string()));
        assert_eq!(syntax_error("a)"), (1, "an operator or a term".to_string()));
        assert_eq!(
            syntax_error("message:\"unterminated"),
            (21, "'\"' closing the phrase opened at position 8".to_string())
        );
        assert_eq!(syntax_error("status:[1 TO 5"), (14, "']' or '}' closing the range".to_string()));
        assert_eq!(syntax_error("status:>="), (9, "a value after '>='".to_string()));
        assert_eq!(syntax_error("a^"), (2, "a number after '^'".to_string()));
        assert_eq!(syntax_error("trailing\\"), (9, "a character after '\\'".to_string()));
        assert_eq!(syntax_error("()"), (1, "a term".to_string()));
        assert_eq!(syntax_error("\"a b\"~2"), (5, "no phrase slop (only ~0 is supported)".to_string()));
        assert_eq!(
            syntax_error("name:/a@b/").1,
            "a regular expression without Lucene-only operators (escape @ & ~ < > # with a backslash)"
        );
        assert_eq!(syntax_error(":value"), (0, "a term".to_string()));
        let error = parse("message:(Traceback OR error", &LuceneSettings::default(), "").unwrap_err();
        assert_eq!(
            error.to_string(),
            "query_string: expected ')' at position 27, found end of input, in \"message:(Traceback OR error\""
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_eq!(syntax_error("日志:(告警"), (6, "')'".to_string()));
    }
}
