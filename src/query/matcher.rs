//! Compilation of a `QueryNode` into an evaluation tree, and its evaluation
//! against event fields.
//!
//! Owns the matching semantics documented in the `query` module doc.
//! Guarantees: query text is analysed once, at compile time; a field is looked
//! up once per merged group (clauses on the same field inside one `AND`, `OR`
//! or `NOT` group share one lookup); token tests on text run the
//! `LiteralFinder` prefilter whenever the test implies a literal, and slow
//! tests (phrases, fuzzy, regexp, token ranges) tokenise a string at most once
//! per `matches` call through a per-thread token cache. Never: allocates on the
//! prefilter path, or panics on any event.
//!
//! The tree has two levels. `DocumentNode`s combine per-document conditions
//! (boolean groups, exists, field lookups); a `FieldNode` is evaluated against
//! the value of one field, where every leaf test is "some element of the value
//! passes", so `AND` across tokens is per document, like Elasticsearch.

use std::cell::{Cell, RefCell};
use std::time::SystemTime;

use regex::Regex;

use super::analyzer::{self, GlobPiece, LiteralFinder};
use super::dates::{self, DateExpression};
use super::{
    BoolQuery, BoundValue, EpochUnit, FieldTarget, MinimumShouldMatch, Operator, QueryError, QueryNode, QueryOptions,
    RangeBound, RangeQuery, ZeroTerms,
};
use crate::event::{lookup_path, ObjectMap, Value};

/// A query compiled for evaluation. Built by `Query`; exposed for inspection
/// (its `Debug` form shows the evaluation tree).
#[derive(Debug, Clone)]
pub struct CompiledQuery {
    root: DocumentNode,
    keyword_fields: Vec<String>,
    uses_now: bool,
}

#[derive(Debug, Clone)]
enum DocumentNode {
    All,
    None,
    Bool {
        must: Vec<DocumentNode>,
        should: Vec<DocumentNode>,
        must_not: Vec<DocumentNode>,
        minimum_should: usize,
    },
    Field {
        path: FieldPath,
        body: FieldNode,
    },
    /// Every leaf field (optionally only those whose path matches `selector`):
    /// fields in `keyword_fields` use `keyword_body`, others either body.
    AnyField {
        selector: Option<Vec<GlobPiece>>,
        text_body: FieldNode,
        keyword_body: FieldNode,
    },
    Exists {
        path: FieldPath,
    },
    ExistsAny {
        selector: Option<Vec<GlobPiece>>,
    },
}

/// Where a field is looked up: `primary`, then `fallback` (the name without
/// `.keyword`) when `primary` is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldPath {
    primary: String,
    fallback: Option<String>,
}

impl FieldPath {
    fn lookup<'a>(&self, fields: &'a ObjectMap) -> Option<&'a Value> {
        lookup_path(fields, &self.primary)
            .or_else(|| self.fallback.as_deref().and_then(|fallback| lookup_path(fields, fallback)))
    }
}

#[derive(Debug, Clone)]
enum FieldNode {
    Never,
    Test(Box<ValueTest>),
    Bool { must: Vec<FieldNode>, should: Vec<FieldNode>, minimum_should: usize },
}

/// What one scalar must satisfy, by its type.
#[derive(Debug, Clone)]
struct ValueTest {
    strings: StringTest,
    numbers: NumberTest,
    booleans: Option<bool>,
}

#[derive(Debug, Clone)]
enum NumberTest {
    Never,
    Equals(f64),
    Range(Box<RangeTest>),
}

#[derive(Debug, Clone)]
enum StringTest {
    Never,
    /// Text: some token passes `predicate`; `finder` holds a literal every
    /// passing token contains.
    Token {
        finder: Option<LiteralFinder>,
        predicate: TokenPredicate,
    },
    /// Text: the tokens appear consecutively.
    Phrase {
        tokens: Vec<String>,
        finders: Vec<LiteralFinder>,
    },
    /// Keyword: the whole value passes.
    Whole(TokenPredicate),
    /// Numeric-looking strings, dates, then tokens or the whole value.
    Range(Box<RangeTest>),
}

#[derive(Debug, Clone)]
enum TokenPredicate {
    Equals(String),
    EqualsIgnoringCase(String),
    Glob(Vec<GlobPiece>),
    GlobIgnoringCase(Vec<GlobPiece>),
    Regex(Regex),
    Fuzzy { value: Vec<char>, max_edits: u8 },
}

impl TokenPredicate {
    fn accepts(&self, candidate: &str) -> bool {
        match self {
            TokenPredicate::Equals(expected) => candidate == expected,
            TokenPredicate::EqualsIgnoringCase(expected) => analyzer::lowercase(candidate) == *expected,
            TokenPredicate::Glob(pattern) => analyzer::wildcard_matches(pattern, candidate),
            TokenPredicate::GlobIgnoringCase(pattern) => {
                analyzer::wildcard_matches(pattern, &analyzer::lowercase(candidate))
            }
            TokenPredicate::Regex(regex) => regex.is_match(candidate),
            TokenPredicate::Fuzzy { value, max_edits } => within_edits(value, candidate, *max_edits),
        }
    }
}

#[derive(Debug, Clone)]
struct RangeTest {
    lower: Option<CompiledBound>,
    upper: Option<CompiledBound>,
    /// Every present bound is a number.
    numeric: bool,
    /// Every present bound has a date reading (dates, date math, epoch numbers).
    dated: bool,
    epoch_unit: EpochUnit,
    /// Compare strings token by token (text) rather than whole (keyword).
    by_token: bool,
}

#[derive(Debug, Clone)]
struct CompiledBound {
    inclusive: bool,
    number: Option<f64>,
    date: Option<DateExpression>,
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    Keyword,
}

/// State for one `matches` call.
struct Evaluation<'a> {
    now_millis: i64,
    keyword_fields: &'a [String],
}

impl CompiledQuery {
    pub(crate) fn compile(node: &QueryNode, options: &QueryOptions) -> Result<CompiledQuery, QueryError> {
        let mut compiler = Compiler { options, uses_now: false };
        let root = compiler.document(node)?.unwrap_or(DocumentNode::None);
        Ok(CompiledQuery { root, keyword_fields: options.keyword_fields.clone(), uses_now: compiler.uses_now })
    }

    /// Whether `fields` match; `now` defaults to the clock and is read only
    /// when the query has `now`-based date math.
    pub fn matches_fields(&self, fields: &ObjectMap, now: Option<SystemTime>) -> bool {
        let now_millis = if self.uses_now { system_time_millis(now.unwrap_or_else(SystemTime::now)) } else { 0 };
        EVALUATION_GENERATION.with(|generation| generation.set(generation.get().wrapping_add(1)));
        let evaluation = Evaluation { now_millis, keyword_fields: &self.keyword_fields };
        evaluate_document(&self.root, fields, &evaluation)
    }
}

fn system_time_millis(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since.as_millis() as i64,
        Err(before) => -(before.duration().as_millis() as i64),
    }
}

struct Compiler<'a> {
    options: &'a QueryOptions,
    uses_now: bool,
}

fn compile_error(message: String) -> QueryError {
    QueryError::Dsl { path: "query".to_string(), message }
}

impl Compiler<'_> {
    /// `None` when the node was dropped (a `query_string` clause that
    /// analysed to nothing).
    fn document(&mut self, node: &QueryNode) -> Result<Option<DocumentNode>, QueryError> {
        Ok(Some(match node {
            QueryNode::MatchAll => DocumentNode::All,
            QueryNode::MatchNone => DocumentNode::None,
            QueryNode::Bool(bool_query) => return self.bool_group(bool_query),
            QueryNode::Exists { field } => self.exists(field),
            // `zero_terms_query: all` turns an empty analysis into match-all,
            // whether or not the field exists; keyword fields are not analysed.
            QueryNode::Match { zero_terms: ZeroTerms::MatchAll, query, field, .. }
            | QueryNode::Phrase { zero_terms: ZeroTerms::MatchAll, query, field, .. }
                if !self.is_keyword_target(field) && analyzer::collect_tokens(query).is_empty() =>
            {
                DocumentNode::All
            }
            QueryNode::Term { field, .. }
            | QueryNode::Match { field, .. }
            | QueryNode::Phrase { field, .. }
            | QueryNode::Wildcard { field, .. }
            | QueryNode::Regexp { field, .. }
            | QueryNode::Fuzzy { field, .. }
            | QueryNode::Range(RangeQuery { field, .. }) => return self.leaf(field, node),
        }))
    }

    fn bool_group(&mut self, bool_query: &BoolQuery) -> Result<Option<DocumentNode>, QueryError> {
        let mut compile_all = |clauses: &[QueryNode]| -> Result<Vec<DocumentNode>, QueryError> {
            let mut compiled = Vec::with_capacity(clauses.len());
            for clause in clauses {
                compiled.extend(self.document(clause)?);
            }
            Ok(compiled)
        };
        let mut must = compile_all(&bool_query.must)?;
        must.extend(compile_all(&bool_query.filter)?);
        let should = compile_all(&bool_query.should)?;
        let must_not = compile_all(&bool_query.must_not)?;
        let clause_count =
            bool_query.must.len() + bool_query.filter.len() + bool_query.should.len() + bool_query.must_not.len();
        if clause_count > 0 && must.is_empty() && should.is_empty() && must_not.is_empty() {
            return Ok(None);
        }
        let minimum_should = match bool_query.minimum_should_match {
            Some(minimum) => minimum.required(should.len()),
            None if !should.is_empty() && must.is_empty() => 1,
            None => 0,
        };
        Ok(Some(merge_fields(must, should, must_not, minimum_should)))
    }

    fn exists(&self, field: &FieldTarget) -> DocumentNode {
        match field {
            FieldTarget::Named(name) => DocumentNode::Exists { path: self.resolve(name).0 },
            FieldTarget::AnyOf(names) => DocumentNode::Bool {
                must: Vec::new(),
                should: names.iter().map(|name| self.exists(&target_for_name(name))).collect(),
                must_not: Vec::new(),
                minimum_should: 1,
            },
            FieldTarget::All => DocumentNode::ExistsAny { selector: None },
            FieldTarget::Pattern(pattern) => DocumentNode::ExistsAny { selector: Some(literal_glob(pattern)) },
        }
    }

    fn is_keyword_target(&self, field: &FieldTarget) -> bool {
        matches!(field, FieldTarget::Named(name) if self.resolve(name).1 == Mode::Keyword)
    }

    fn resolve(&self, name: &str) -> (FieldPath, Mode) {
        if self.options.keyword_fields.iter().any(|keyword| keyword == name) {
            return (FieldPath { primary: name.to_string(), fallback: None }, Mode::Keyword);
        }
        if let Some(base) = name.strip_suffix(".keyword") {
            return (FieldPath { primary: name.to_string(), fallback: Some(base.to_string()) }, Mode::Keyword);
        }
        (FieldPath { primary: name.to_string(), fallback: None }, Mode::Text)
    }

    fn leaf(&mut self, field: &FieldTarget, node: &QueryNode) -> Result<Option<DocumentNode>, QueryError> {
        match field {
            FieldTarget::Named(name) => {
                let (path, mode) = self.resolve(name);
                Ok(self.field_body(node, mode)?.map(|body| DocumentNode::Field { path, body }))
            }
            FieldTarget::AnyOf(names) => {
                let mut should = Vec::new();
                for name in names {
                    should.extend(self.leaf(&target_for_name(name), node)?);
                }
                if should.is_empty() {
                    return Ok(None);
                }
                Ok(Some(DocumentNode::Bool { must: Vec::new(), should, must_not: Vec::new(), minimum_should: 1 }))
            }
            FieldTarget::All | FieldTarget::Pattern(_) => {
                let text_body = self.field_body(node, Mode::Text)?;
                let keyword_body = self.field_body(node, Mode::Keyword)?;
                if text_body.is_none() && keyword_body.is_none() {
                    return Ok(None);
                }
                let selector = match field {
                    FieldTarget::Pattern(pattern) => Some(literal_glob(pattern)),
                    _ => None,
                };
                Ok(Some(DocumentNode::AnyField {
                    selector,
                    text_body: text_body.unwrap_or(FieldNode::Never),
                    keyword_body: keyword_body.unwrap_or(FieldNode::Never),
                }))
            }
        }
    }

    /// The per-field test of a leaf query in `mode`; `None` when dropped.
    fn field_body(&mut self, node: &QueryNode, mode: Mode) -> Result<Option<FieldNode>, QueryError> {
        let body = match node {
            QueryNode::Term { value, case_insensitive, .. } => {
                let strings = match (mode, case_insensitive) {
                    (Mode::Text, false) => token_test(TokenPredicate::Equals(value.clone()), Some(value)),
                    // Tokens are already lower-case.
                    (Mode::Text, true) => {
                        let lowered = analyzer::lowercase(value);
                        token_test(TokenPredicate::Equals(lowered.clone()), Some(&lowered))
                    }
                    (Mode::Keyword, false) => StringTest::Whole(TokenPredicate::Equals(value.clone())),
                    (Mode::Keyword, true) => {
                        StringTest::Whole(TokenPredicate::EqualsIgnoringCase(analyzer::lowercase(value)))
                    }
                };
                test(strings, number_equal_to(value), boolean_equal_to(value))
            }
            QueryNode::Match { query, operator, minimum_should_match, zero_terms, .. } => {
                let numbers = number_equal_to(query);
                let booleans = boolean_equal_to(query);
                if mode == Mode::Keyword {
                    test(StringTest::Whole(TokenPredicate::Equals(query.clone())), numbers, booleans)
                } else {
                    let tokens = analyzer::collect_tokens(query);
                    if tokens.is_empty() {
                        return Ok(zero_token_body(*zero_terms, numbers, booleans));
                    }
                    let mut leaves = Vec::with_capacity(tokens.len());
                    for token in &tokens {
                        let strings = token_test(TokenPredicate::Equals(token.clone()), Some(token));
                        leaves.push(test(strings, numbers.clone(), booleans));
                    }
                    combine_tokens(leaves, *operator, *minimum_should_match)
                }
            }
            QueryNode::Phrase { query, zero_terms, .. } => {
                let numbers = number_equal_to(query);
                let booleans = boolean_equal_to(query);
                if mode == Mode::Keyword {
                    test(StringTest::Whole(TokenPredicate::Equals(query.clone())), numbers, booleans)
                } else {
                    let tokens = analyzer::collect_tokens(query);
                    match tokens.len() {
                        0 => return Ok(zero_token_body(*zero_terms, numbers, booleans)),
                        1 => test(
                            token_test(TokenPredicate::Equals(tokens[0].clone()), Some(&tokens[0])),
                            numbers,
                            booleans,
                        ),
                        _ => {
                            let finders = tokens.iter().map(|token| LiteralFinder::new(token)).collect();
                            test(StringTest::Phrase { tokens, finders }, numbers, booleans)
                        }
                    }
                }
            }
            QueryNode::Wildcard { pattern, case_insensitive, normalise, .. } => {
                let lowered = *case_insensitive || (*normalise && mode == Mode::Text);
                let pattern = if lowered { analyzer::lowercase(pattern) } else { pattern.clone() };
                let pieces = parse_wildcard(&pattern);
                let strings = match (mode, *case_insensitive) {
                    (Mode::Text, _) => {
                        let literal =
                            analyzer::glob_literals(&pieces).into_iter().max_by_key(|literal| literal.chars().count());
                        // Tokens are already lower-case, so a lowered pattern is case-insensitive.
                        token_test(TokenPredicate::Glob(pieces), literal.as_deref())
                    }
                    (Mode::Keyword, false) => StringTest::Whole(TokenPredicate::Glob(pieces)),
                    (Mode::Keyword, true) => StringTest::Whole(TokenPredicate::GlobIgnoringCase(pieces)),
                };
                test(strings, NumberTest::Never, None)
            }
            QueryNode::Regexp { pattern, case_insensitive, .. } => {
                let flags = if *case_insensitive { "(?si)" } else { "(?s)" };
                let regex = Regex::new(&format!("^{flags}(?:{pattern})$")).map_err(|problem| {
                    compile_error(format!("regular expression {pattern:?} is invalid: {problem}"))
                })?;
                let strings = match mode {
                    Mode::Text => StringTest::Token { finder: None, predicate: TokenPredicate::Regex(regex) },
                    Mode::Keyword => StringTest::Whole(TokenPredicate::Regex(regex)),
                };
                test(strings, NumberTest::Never, None)
            }
            QueryNode::Fuzzy { value, max_edits, normalise, .. } => {
                let value = if *normalise && mode == Mode::Text { analyzer::lowercase(value) } else { value.clone() };
                let predicate = TokenPredicate::Fuzzy { value: value.chars().collect(), max_edits: *max_edits };
                let strings = match mode {
                    Mode::Text => StringTest::Token { finder: None, predicate },
                    Mode::Keyword => StringTest::Whole(predicate),
                };
                test(strings, NumberTest::Never, None)
            }
            QueryNode::Range(range) => {
                let range_test = self.range(range, mode)?;
                test(StringTest::Range(Box::new(range_test.clone())), NumberTest::Range(Box::new(range_test)), None)
            }
            QueryNode::MatchAll | QueryNode::MatchNone | QueryNode::Bool(_) | QueryNode::Exists { .. } => {
                return Err(compile_error(format!("{node} is not a field query")));
            }
        };
        Ok(Some(body))
    }

    fn range(&mut self, range: &RangeQuery, mode: Mode) -> Result<RangeTest, QueryError> {
        let normalise = range.normalise && mode == Mode::Text;
        let mut compile_bound = |bound: &Option<RangeBound>| -> Option<CompiledBound> {
            let bound = bound.as_ref()?;
            let (text, number, date) = match &bound.value {
                BoundValue::Number(number) => (number.to_string(), Some(*number), None),
                BoundValue::Text(text) => {
                    let number = text.trim().parse::<f64>().ok().filter(|number| number.is_finite());
                    let date = DateExpression::parse(text, range.time_zone_offset_seconds);
                    (text.clone(), number, date)
                }
            };
            if date.as_ref().is_some_and(DateExpression::uses_now) {
                self.uses_now = true;
            }
            let text = if normalise { analyzer::lowercase(&text) } else { text };
            Some(CompiledBound { inclusive: bound.inclusive, number, date, text })
        };
        let lower = compile_bound(&range.lower);
        let upper = compile_bound(&range.upper);
        let present = || lower.iter().chain(upper.iter());
        Ok(RangeTest {
            numeric: present().all(|bound| bound.number.is_some()),
            dated: present().all(|bound| bound.date.is_some() || bound.number.is_some()),
            lower: lower.clone(),
            upper: upper.clone(),
            epoch_unit: range.epoch_unit,
            by_token: mode == Mode::Text,
        })
    }
}

fn target_for_name(name: &str) -> FieldTarget {
    if name.contains('*') {
        FieldTarget::Pattern(name.to_string())
    } else {
        FieldTarget::Named(name.to_string())
    }
}

/// A field-name pattern: only `*` is special.
fn literal_glob(pattern: &str) -> Vec<GlobPiece> {
    pattern
        .chars()
        .map(|character| if character == '*' { GlobPiece::AnyRun } else { GlobPiece::Literal(character) })
        .collect()
}

/// A Lucene wildcard pattern: `*`, `?`, and `\` escaping the next character.
fn parse_wildcard(pattern: &str) -> Vec<GlobPiece> {
    let mut pieces = Vec::with_capacity(pattern.len());
    let mut characters = pattern.chars();
    while let Some(character) = characters.next() {
        pieces.push(match character {
            '*' => GlobPiece::AnyRun,
            '?' => GlobPiece::AnyOne,
            '\\' => GlobPiece::Literal(characters.next().unwrap_or('\\')),
            other => GlobPiece::Literal(other),
        });
    }
    pieces
}

fn test(strings: StringTest, numbers: NumberTest, booleans: Option<bool>) -> FieldNode {
    FieldNode::Test(Box::new(ValueTest { strings, numbers, booleans }))
}

fn number_equal_to(text: &str) -> NumberTest {
    match text.trim().parse::<f64>() {
        Ok(number) if number.is_finite() => NumberTest::Equals(number),
        _ => NumberTest::Never,
    }
}

fn boolean_equal_to(text: &str) -> Option<bool> {
    match text {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn token_test(predicate: TokenPredicate, literal: Option<&str>) -> StringTest {
    let finder = match literal {
        // Tokens are lower-case, so only a lower-case literal is one every
        // accepted token contains.
        Some(literal) if !literal.is_empty() && analyzer::lowercase(literal) == literal => {
            Some(LiteralFinder::new(literal))
        }
        _ => None,
    };
    StringTest::Token { finder, predicate }
}

/// The text-field body of an analysed query whose text has no token.
fn zero_token_body(zero_terms: ZeroTerms, numbers: NumberTest, booleans: Option<bool>) -> Option<FieldNode> {
    match zero_terms {
        ZeroTerms::Dropped => None,
        // Numbers and booleans are not analysed, so they still compare.
        ZeroTerms::MatchNone | ZeroTerms::MatchAll => Some(test(StringTest::Never, numbers, booleans)),
    }
}

fn combine_tokens(mut leaves: Vec<FieldNode>, operator: Operator, minimum: Option<MinimumShouldMatch>) -> FieldNode {
    if leaves.len() == 1 && (minimum.is_none() || minimum.is_some_and(|minimum| minimum.required(1) <= 1)) {
        return leaves.remove(0);
    }
    match (operator, minimum) {
        (_, Some(minimum)) => {
            let minimum_should = minimum.required(leaves.len()).max(1);
            FieldNode::Bool { must: Vec::new(), should: leaves, minimum_should }
        }
        (Operator::And, None) => FieldNode::Bool { must: leaves, should: Vec::new(), minimum_should: 0 },
        (Operator::Or, None) => FieldNode::Bool { must: Vec::new(), should: leaves, minimum_should: 1 },
    }
}

/// Merges clauses on the same field inside a group into one lookup. Valid
/// because a field test evaluates every child against the same value:
/// `f:a AND f:b` is `f:(a AND b)`, `f:a OR f:b` is `f:(a OR b)`, and
/// `NOT f:a AND NOT f:b` is `NOT f:(a OR b)`; a missing field fails both sides.
fn merge_fields(
    must: Vec<DocumentNode>,
    should: Vec<DocumentNode>,
    must_not: Vec<DocumentNode>,
    minimum_should: usize,
) -> DocumentNode {
    let must = merge_same_field(must, true);
    let must_not = merge_same_field(must_not, false);
    let (should, minimum_should) = if must.is_empty() && minimum_should == 1 {
        let merged = merge_same_field(should, false);
        (merged, 1)
    } else {
        (should, minimum_should)
    };
    if must_not.is_empty() && should.is_empty() && must.len() == 1 {
        return must.into_iter().next().unwrap_or(DocumentNode::All);
    }
    if must.is_empty() && must_not.is_empty() && should.len() == 1 && minimum_should == 1 {
        return should.into_iter().next().unwrap_or(DocumentNode::None);
    }
    DocumentNode::Bool { must, should, must_not, minimum_should }
}

fn merge_same_field(clauses: Vec<DocumentNode>, all_required: bool) -> Vec<DocumentNode> {
    let mut merged: Vec<DocumentNode> = Vec::with_capacity(clauses.len());
    for clause in clauses {
        let DocumentNode::Field { path, body } = clause else {
            merged.push(clause);
            continue;
        };
        let existing = merged.iter_mut().find_map(|candidate| match candidate {
            DocumentNode::Field { path: existing_path, body: existing_body } if *existing_path == path => {
                Some(existing_body)
            }
            _ => None,
        });
        match existing {
            Some(existing_body) => {
                let previous = std::mem::replace(existing_body, FieldNode::Never);
                *existing_body = match (previous, all_required) {
                    (FieldNode::Bool { mut must, should, minimum_should: 0 }, true) if should.is_empty() => {
                        must.push(body);
                        FieldNode::Bool { must, should, minimum_should: 0 }
                    }
                    (FieldNode::Bool { must, mut should, minimum_should: 1 }, false) if must.is_empty() => {
                        should.push(body);
                        FieldNode::Bool { must, should, minimum_should: 1 }
                    }
                    (previous, true) => {
                        FieldNode::Bool { must: vec![previous, body], should: Vec::new(), minimum_should: 0 }
                    }
                    (previous, false) => {
                        FieldNode::Bool { must: Vec::new(), should: vec![previous, body], minimum_should: 1 }
                    }
                };
            }
            None => merged.push(DocumentNode::Field { path, body }),
        }
    }
    merged
}

fn evaluate_document(node: &DocumentNode, fields: &ObjectMap, evaluation: &Evaluation<'_>) -> bool {
    match node {
        DocumentNode::All => true,
        DocumentNode::None => false,
        DocumentNode::Bool { must, should, must_not, minimum_should } => {
            must.iter().all(|clause| evaluate_document(clause, fields, evaluation))
                && !must_not.iter().any(|clause| evaluate_document(clause, fields, evaluation))
                && at_least(should, *minimum_should, |clause| evaluate_document(clause, fields, evaluation))
        }
        DocumentNode::Field { path, body } => {
            path.lookup(fields).is_some_and(|value| evaluate_field(body, value, evaluation))
        }
        DocumentNode::AnyField { selector, text_body, keyword_body } => {
            let mut path = String::new();
            any_leaf(fields, &mut path, &mut |path, value| {
                if selector.as_ref().is_some_and(|selector| !analyzer::wildcard_matches(selector, path)) {
                    return false;
                }
                if evaluation.keyword_fields.iter().any(|keyword| keyword == path) {
                    return evaluate_field(keyword_body, value, evaluation);
                }
                evaluate_field(text_body, value, evaluation) || evaluate_field(keyword_body, value, evaluation)
            })
        }
        DocumentNode::Exists { path } => path.lookup(fields).is_some_and(value_exists),
        DocumentNode::ExistsAny { selector } => {
            let mut path = String::new();
            any_leaf(fields, &mut path, &mut |path, value| {
                selector.as_ref().is_none_or(|selector| analyzer::wildcard_matches(selector, path))
                    && value_exists(value)
            })
        }
    }
}

/// Whether at least `minimum` of `clauses` pass, stopping as soon as the answer is known.
fn at_least<T>(clauses: &[T], minimum: usize, mut passes: impl FnMut(&T) -> bool) -> bool {
    if minimum == 0 {
        return true;
    }
    if minimum > clauses.len() {
        return false;
    }
    let mut passed = 0;
    for (index, clause) in clauses.iter().enumerate() {
        if passes(clause) {
            passed += 1;
            if passed >= minimum {
                return true;
            }
        }
        if passed + (clauses.len() - index - 1) < minimum {
            return false;
        }
    }
    false
}

/// Visits every leaf field (a non-object value, arrays included as one
/// field) with its dotted path, descending into objects and into objects
/// inside arrays; stops at the first `visit` that returns true.
fn any_leaf(map: &ObjectMap, path: &mut String, visit: &mut dyn FnMut(&str, &Value) -> bool) -> bool {
    for (key, value) in map {
        let saved_length = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        let found = match value {
            Value::Object(inner) => any_leaf(inner, path, visit),
            Value::Array(items) => {
                visit(path, value)
                    || items.iter().any(|item| match item {
                        Value::Object(inner) => any_leaf(inner, path, visit),
                        _ => false,
                    })
            }
            _ => visit(path, value),
        };
        path.truncate(saved_length);
        if found {
            return true;
        }
    }
    false
}

fn value_exists(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => items.iter().any(value_exists),
        Value::Object(map) => map.values().any(value_exists),
        _ => true,
    }
}

fn evaluate_field(node: &FieldNode, value: &Value, evaluation: &Evaluation<'_>) -> bool {
    match node {
        FieldNode::Never => false,
        FieldNode::Test(test) => value_passes(test, value, evaluation),
        FieldNode::Bool { must, should, minimum_should } => {
            must.iter().all(|child| evaluate_field(child, value, evaluation))
                && at_least(should, *minimum_should, |child| evaluate_field(child, value, evaluation))
        }
    }
}

fn value_passes(test: &ValueTest, value: &Value, evaluation: &Evaluation<'_>) -> bool {
    match value {
        Value::Null | Value::Object(_) => false,
        Value::Boolean(flag) => test.booleans == Some(*flag),
        Value::Integer(number) => number_passes(&test.numbers, *number as f64, evaluation),
        Value::Float(number) => number_passes(&test.numbers, *number, evaluation),
        Value::String(text) => string_passes(&test.strings, text, evaluation),
        Value::Array(items) => items.iter().any(|item| value_passes(test, item, evaluation)),
    }
}

fn number_passes(test: &NumberTest, number: f64, evaluation: &Evaluation<'_>) -> bool {
    match test {
        NumberTest::Never => false,
        NumberTest::Equals(expected) => number == *expected,
        NumberTest::Range(range) => {
            if range.numeric {
                range.contains_number(number)
            } else if range.dated {
                range.contains_millis(dates::epoch_to_millis(number, range.epoch_unit), evaluation.now_millis)
            } else {
                false
            }
        }
    }
}

fn string_passes(test: &StringTest, text: &str, evaluation: &Evaluation<'_>) -> bool {
    match test {
        StringTest::Never => false,
        StringTest::Token { finder: Some(finder), predicate } => {
            finder.any_token(text, &mut |token| predicate.accepts(token))
        }
        StringTest::Token { finder: None, predicate } => {
            with_tokens(text, |tokens| tokens.iter().any(|token| predicate.accepts(token)))
        }
        StringTest::Phrase { tokens, finders } => {
            // Every phrase token must be a token of the text; cheap to rule out first.
            finders.iter().zip(tokens).all(|(finder, expected)| finder.any_token(text, &mut |token| token == expected))
                && with_tokens(text, |text_tokens| {
                    text_tokens.windows(tokens.len()).any(|window| window == tokens.as_slice())
                })
        }
        StringTest::Whole(predicate) => predicate.accepts(text),
        StringTest::Range(range) => range.contains_string(text, evaluation),
    }
}

impl RangeTest {
    fn contains_number(&self, number: f64) -> bool {
        let above = self.lower.as_ref().is_none_or(|bound| {
            let limit = bound.number.unwrap_or(f64::NAN);
            if bound.inclusive {
                number >= limit
            } else {
                number > limit
            }
        });
        let below = self.upper.as_ref().is_none_or(|bound| {
            let limit = bound.number.unwrap_or(f64::NAN);
            if bound.inclusive {
                number <= limit
            } else {
                number < limit
            }
        });
        above && below
    }

    fn bound_millis(&self, bound: &CompiledBound, is_lower: bool, now_millis: i64) -> Option<i64> {
        // Elasticsearch rounds `gt` and `lte` bounds up, `gte` and `lt` down.
        let round_up = is_lower != bound.inclusive;
        match &bound.date {
            Some(expression) => expression.evaluate(now_millis, round_up),
            None => bound.number.map(|number| dates::epoch_to_millis(number, self.epoch_unit)),
        }
    }

    fn contains_millis(&self, millis: i64, now_millis: i64) -> bool {
        let above = self.lower.as_ref().is_none_or(|bound| match self.bound_millis(bound, true, now_millis) {
            Some(limit) if bound.inclusive => millis >= limit,
            Some(limit) => millis > limit,
            None => false,
        });
        let below = self.upper.as_ref().is_none_or(|bound| match self.bound_millis(bound, false, now_millis) {
            Some(limit) if bound.inclusive => millis <= limit,
            Some(limit) => millis < limit,
            None => false,
        });
        above && below
    }

    fn contains_text(&self, text: &str) -> bool {
        let above = self.lower.as_ref().is_none_or(|bound| {
            if bound.inclusive {
                text >= bound.text.as_str()
            } else {
                text > bound.text.as_str()
            }
        });
        let below = self.upper.as_ref().is_none_or(|bound| {
            if bound.inclusive {
                text <= bound.text.as_str()
            } else {
                text < bound.text.as_str()
            }
        });
        above && below
    }

    fn contains_string(&self, text: &str, evaluation: &Evaluation<'_>) -> bool {
        let number = text.trim().parse::<f64>().ok().filter(|number| number.is_finite());
        if let Some(number) = number {
            if self.numeric {
                return self.contains_number(number);
            }
            if self.dated {
                return self.contains_millis(dates::epoch_to_millis(number, self.epoch_unit), evaluation.now_millis);
            }
        }
        if self.dated {
            if let Some((millis, _)) = dates::parse_iso(text, 0) {
                return self.contains_millis(millis, evaluation.now_millis);
            }
            if !self.numeric {
                return false;
            }
        }
        if self.by_token {
            with_tokens(text, |tokens| tokens.iter().any(|token| self.contains_text(token)))
        } else {
            self.contains_text(text)
        }
    }
}

/// Damerau-Levenshtein (optimal string alignment) distance of at most `max_edits`.
fn within_edits(expected: &[char], candidate: &str, max_edits: u8) -> bool {
    let candidate: Vec<char> = candidate.chars().collect();
    let max_edits = usize::from(max_edits);
    if expected.len().abs_diff(candidate.len()) > max_edits {
        return false;
    }
    let width = candidate.len() + 1;
    let mut previous_previous = vec![0usize; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current = vec![0usize; width];
    for row in 1..=expected.len() {
        current[0] = row;
        let mut row_minimum = current[0];
        for column in 1..width {
            let cost = usize::from(expected[row - 1] != candidate[column - 1]);
            let mut distance = (previous[column] + 1).min(current[column - 1] + 1).min(previous[column - 1] + cost);
            if row > 1
                && column > 1
                && expected[row - 1] == candidate[column - 2]
                && expected[row - 2] == candidate[column - 1]
            {
                distance = distance.min(previous_previous[column - 2] + 1);
            }
            current[column] = distance;
            row_minimum = row_minimum.min(distance);
        }
        if row_minimum > max_edits {
            return false;
        }
        std::mem::swap(&mut previous_previous, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[candidate.len()] <= max_edits
}

thread_local! {
    /// Bumped by every `matches` call, so cached tokens never outlive the
    /// event they came from.
    static EVALUATION_GENERATION: Cell<u64> = const { Cell::new(0) };
    static TOKEN_CACHE: RefCell<TokenCache> = const { RefCell::new(TokenCache { generation: u64::MAX, address: 0, length: 0, tokens: Vec::new() }) };
}

/// The tokens of the string most recently tokenised in this `matches` call,
/// keyed by its address and length (the event is borrowed for the whole
/// call, so the bytes there cannot change).
struct TokenCache {
    generation: u64,
    address: usize,
    length: usize,
    tokens: Vec<String>,
}

fn with_tokens(text: &str, use_tokens: impl FnOnce(&[String]) -> bool) -> bool {
    let generation = EVALUATION_GENERATION.with(Cell::get);
    TOKEN_CACHE.with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return use_tokens(&analyzer::collect_tokens(text));
        };
        let address = text.as_ptr() as usize;
        if cache.generation != generation || cache.address != address || cache.length != text.len() {
            cache.tokens = analyzer::collect_tokens(text);
            cache.generation = generation;
            cache.address = address;
            cache.length = text.len();
        }
        use_tokens(&cache.tokens)
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use proptest::prelude::*;
    use serde_json::json;

    use super::super::{Query, QueryOptions};
    use crate::event::{LogEvent, Value};

    const SEED: &str = "message:'Traceback' OR message:*Exception* OR source:*Defend*";

    fn event(json: serde_json::Value) -> LogEvent {
        let Value::Object(fields) = Value::from(json) else { panic!("test events are objects") };
        LogEvent::from_fields("test", fields)
    }

    fn lucene(text: &str) -> Query {
        Query::parse_lucene(text, &QueryOptions::default()).unwrap_or_else(|error| panic!("{error}"))
    }

    fn dsl(clause: serde_json::Value) -> Query {
        Query::from_dsl(&clause, &QueryOptions::default()).unwrap_or_else(|error| panic!("{error}"))
    }

    fn matches(query: &Query, fields: serde_json::Value) -> bool {
        query.matches(&event(fields))
    }

    fn demo_event(log: &pipe_demo_logs::DemoLog) -> LogEvent {
        let mut fields = crate::event::object_map_with_capacity(log.contents.len() + 3);
        for (key, value) in &log.contents {
            fields.insert(key.as_str().into(), Value::from(value.as_str()));
        }
        fields.insert("__topic__".into(), Value::from(log.topic.as_str()));
        fields.insert("__source__".into(), Value::from(log.source.as_str()));
        fields.insert("__time__".into(), Value::from(log.time.to_string()));
        LogEvent::from_fields("demo", fields)
    }

    #[test]
    fn seed_rule_matches_tracebacks_exceptions_and_defend_sources() {
        let seed = lucene(SEED);
        let python =
            "Traceback (most recent call last):\n  File \"/srv/app/orders.py\", line 3, in build_order\nKeyError: 'user_id'";
        assert!(matches(&seed, json!({"message": python, "source": "/data/logs/app/app.log"})));
        assert!(matches(&seed, json!({"message": "saw a traceback here"})), "the analyzer lower-cases");
        assert!(matches(&seed, json!({"message": "quoted 'Traceback' too"})));
        assert!(matches(&seed, json!({"message": "Exception in thread \"worker-3\" java.lang.NullPointerException"})));
        assert!(matches(&seed, json!({"message": "request failed: java.io.IOException: Connection reset by peer"})));
        assert!(matches(&seed, json!({"message": "blocked login", "source": "/opt/DefendAgent/logs/DefendAgent.log"})));
        assert!(!matches(&seed, json!({"message": "Tracebacks are words too", "source": "/data/logs/app.log"})));
        assert!(!matches(&seed, json!({"message": "TracebackError raised"})));
        assert!(!matches(&seed, json!({"message": "request completed in 12 ms", "source": "/data/logs/api/app.log"})));
        assert!(!matches(&seed, json!({"source": "/opt/defense/agent.log"})));
        assert!(!matches(&seed, json!({"msg": "Traceback"})), "only the named fields are searched");
    }

    #[test]
    fn seed_rule_as_elastalert_filter_list() {
        let list = vec![json!({"query": [{"query_string": {"query": SEED}}]})];
        let query = Query::from_filter_list(&list, &QueryOptions::default()).unwrap();
        assert!(matches(&query, json!({"message": "Traceback (most recent call last):"})));
        assert!(!matches(&query, json!({"message": "all good"})));
    }

    #[test]
    fn seed_rule_on_demo_events_equals_the_tokenising_reference() {
        let seed = lucene(SEED);
        let exception = super::parse_wildcard("*exception*");
        let defend = super::parse_wildcard("*defend*");
        let mut generator = pipe_demo_logs::DemoLogGenerator::new(42);
        let mut matched = 0;
        for _ in 0..5000 {
            let log = generator.next_log(1_700_000_000);
            let event = demo_event(&log);
            let tokens_of = |field: &str| {
                event.get(field).and_then(Value::as_str).map(super::analyzer::collect_tokens).unwrap_or_default()
            };
            let expected = tokens_of("message")
                .iter()
                .any(|token| token == "traceback" || super::analyzer::wildcard_matches(&exception, token))
                || tokens_of("source").iter().any(|token| super::analyzer::wildcard_matches(&defend, token));
            assert_eq!(seed.matches(&event), expected, "{log:?}");
            matched += usize::from(expected);
        }
        // Tracebacks, exception lines and Defend logs are about a fifth of the mix.
        assert!((600..1500).contains(&matched), "{matched} of 5000 matched");
    }

    #[test]
    fn text_versus_keyword() {
        let options = QueryOptions { keyword_fields: vec!["host".to_string()] };
        let host = |text: &str| Query::parse_lucene(text, &options).unwrap();
        assert!(matches(&host("host:wallet-qa-01"), json!({"host": "wallet-qa-01"})));
        assert!(!matches(&host("host:wallet"), json!({"host": "wallet-qa-01"})), "keyword fields match whole values");
        assert!(
            !matches(&host("host:WALLET-QA-01"), json!({"host": "wallet-qa-01"})),
            "keyword fields are case-sensitive"
        );
        assert!(matches(&host("host:wallet*"), json!({"host": "wallet-qa-01"})));
        assert!(matches(&lucene("host:wallet"), json!({"host": "wallet-qa-01"})), "text fields match tokens");
        assert!(matches(&lucene("host:WALLET"), json!({"host": "wallet-qa-01"})));
        assert!(matches(&lucene("host.keyword:wallet-qa-01"), json!({"host": "wallet-qa-01"})));
        assert!(!matches(&lucene("host.keyword:wallet"), json!({"host": "wallet-qa-01"})));
        assert!(matches(&lucene("host.keyword:x"), json!({"host": {"keyword": "x"}})), "a real keyword sub-field wins");
        assert!(
            !matches(&dsl(json!({"term": {"message": "Traceback"}})), json!({"message": "Traceback (most"})),
            "term is not analysed"
        );
        assert!(matches(&dsl(json!({"term": {"message": "traceback"}})), json!({"message": "Traceback (most"})));
        assert!(matches(
            &dsl(json!({"term": {"message": {"value": "TraceBack", "case_insensitive": true}}})),
            json!({"message": "Traceback"})
        ));
        assert!(matches(
            &dsl(json!({"term": {"message.keyword": "Traceback (most"}})),
            json!({"message": "Traceback (most"})
        ));
        assert!(matches(&dsl(json!({"match": {"host.keyword": "wallet-qa-01"}})), json!({"host": "wallet-qa-01"})));
        assert!(!matches(&dsl(json!({"match": {"host.keyword": "wallet"}})), json!({"host": "wallet-qa-01"})));
    }

    #[test]
    fn match_operators_and_minimum_should_match() {
        let fields = json!({"message": "connection reset by peer"});
        assert!(matches(&dsl(json!({"match": {"message": "Connection refused"}})), fields.clone()));
        assert!(!matches(
            &dsl(json!({"match": {"message": {"query": "Connection refused", "operator": "and"}}})),
            fields.clone()
        ));
        assert!(matches(
            &dsl(json!({"match": {"message": {"query": "connection reset", "operator": "AND"}}})),
            fields.clone()
        ));
        let two_of_three =
            dsl(json!({"match": {"message": {"query": "connection reset refused", "minimum_should_match": 2}}}));
        assert!(matches(&two_of_three, fields.clone()));
        let all_three =
            dsl(json!({"match": {"message": {"query": "connection reset refused", "minimum_should_match": "100%"}}}));
        assert!(!matches(&all_three, fields));
        assert!(
            matches(
                &dsl(json!({"match": {"tags": {"query": "alpha beta", "operator": "and"}}})),
                json!({"tags": ["alpha", "beta"]})
            ),
            "per document"
        );
        assert!(
            !matches(&dsl(json!({"match": {"message": "---"}})), json!({"message": "---"})),
            "zero terms match none"
        );
        assert!(matches(
            &dsl(json!({"match": {"message": {"query": "---", "zero_terms_query": "all"}}})),
            json!({"other": 1})
        ));
    }

    #[test]
    fn phrases_are_consecutive_tokens() {
        let phrase = lucene("message:\"connection reset\"");
        assert!(matches(&phrase, json!({"message": "java.io.IOException: Connection reset by peer"})));
        assert!(!matches(&phrase, json!({"message": "reset connection"})));
        assert!(!matches(&phrase, json!({"message": "connection was reset"})));
        assert!(!matches(&phrase, json!({"message": ["connection", "reset"]})), "phrases stay inside one element");
        assert!(matches(
            &dsl(json!({"match_phrase": {"message": "Reset by"}})),
            json!({"message": "connection reset by peer"})
        ));
        assert!(matches(&lucene("message:\"Traceback\""), json!({"message": "Traceback (most recent call last)"})));
    }

    #[test]
    fn numbers_compare_numerically() {
        let status = lucene("status:500");
        assert!(matches(&status, json!({"status": 500})));
        assert!(matches(&status, json!({"status": 500.0})));
        assert!(matches(&status, json!({"status": "500"})));
        assert!(!matches(&status, json!({"status": 501})));
        assert!(matches(&lucene("status:500.0"), json!({"status": 500})));
        assert!(matches(&dsl(json!({"term": {"status": 500}})), json!({"status": 500})));
        assert!(matches(&dsl(json!({"terms": {"status": [404, 500]}})), json!({"status": [200, 500]})));
        assert!(!matches(&dsl(json!({"terms": {"status": [404, 500]}})), json!({"status": 200})));
        assert!(matches(&lucene("ok:true"), json!({"ok": true})));
        assert!(!matches(&lucene("ok:true"), json!({"ok": false})));
        assert!(!matches(&lucene("status:5*"), json!({"status": 500})), "wildcards never match numbers");
    }

    #[test]
    fn numeric_ranges_inclusive_and_exclusive() {
        let inclusive = lucene("status:[500 TO 599]");
        let exclusive = lucene("status:{500 TO 599}");
        for (value, inside_inclusive, inside_exclusive) in [
            (json!(500), true, false),
            (json!(550.5), true, true),
            (json!(599), true, false),
            (json!(600), false, false),
            (json!("1000"), false, false),
            (json!("503"), true, true),
        ] {
            assert_eq!(matches(&inclusive, json!({"status": value.clone()})), inside_inclusive, "{value}");
            assert_eq!(matches(&exclusive, json!({"status": value.clone()})), inside_exclusive, "{value}");
        }
        assert!(matches(&lucene("status:>=500"), json!({"status": "503"})));
        assert!(!matches(&lucene("status:>500"), json!({"status": 500})));
        assert!(matches(&lucene("status:<=500"), json!({"status": 500})));
        assert!(!matches(&lucene("status:<500"), json!({"status": 500})));
        assert!(matches(&lucene("status:[* TO *]"), json!({"status": 1})));
        assert!(!matches(&lucene("status:[* TO *]"), json!({"other": 1})));
        let dsl_range = dsl(json!({"range": {"status_code": {"from": 500, "to": 599}}}));
        assert!(matches(&dsl_range, json!({"status_code": 599})));
        let exclusive_dsl = dsl(json!({"range": {"status_code": {"from": 500, "to": 599, "include_upper": false}}}));
        assert!(!matches(&exclusive_dsl, json!({"status_code": 599})));
        assert!(matches(&dsl(json!({"range": {"latency": {"gt": 0.5, "lte": 2}}})), json!({"latency": [0.1, 1.5]})));
        assert!(!matches(&dsl(json!({"range": {"latency": {"gt": 0.5, "lte": 2}}})), json!({"latency": [0.1, 3.0]})));
    }

    #[test]
    fn string_ranges_compare_tokens_or_whole_values() {
        assert!(matches(&lucene("host:[a TO c]"), json!({"host": "Zed bravo"})), "the token bravo is in range");
        assert!(!matches(
            &dsl(json!({"range": {"host.keyword": {"gte": "a", "lte": "c"}}})),
            json!({"host": "Zed bravo"})
        ));
        assert!(matches(
            &dsl(json!({"range": {"host.keyword": {"gte": "a", "lte": "c"}}})),
            json!({"host": "bravo Zed"})
        ));
    }

    #[test]
    fn date_ranges() {
        let window = lucene("@timestamp:[2024-05-01 TO 2024-05-02}");
        assert!(matches(&window, json!({"@timestamp": "2024-05-01T00:00:00Z"})));
        assert!(matches(&window, json!({"@timestamp": "2024-05-01T23:59:59.999Z"})));
        assert!(!matches(&window, json!({"@timestamp": "2024-05-02T00:00:00Z"})));
        assert!(matches(&window, json!({"@timestamp": "2024-05-02T01:00:00+02:00"})), "offsets are honoured");
        assert!(matches(&window, json!({"@timestamp": 1_714_550_400})), "epoch seconds");
        assert!(matches(&window, json!({"@timestamp": 1_714_550_400_000_i64})), "epoch milliseconds");
        assert!(matches(&window, json!({"@timestamp": "1714550400"})), "epoch seconds as text");
        assert!(!matches(&window, json!({"@timestamp": "yesterday"})));
        let partial_upper = dsl(json!({"range": {"t": {"lte": "2024-05-01"}}}));
        assert!(matches(&partial_upper, json!({"t": "2024-05-01T18:00:00Z"})), "lte rounds a partial date up");
        let partial_exclusive = dsl(json!({"range": {"t": {"gt": "2024-05-01"}}}));
        assert!(!matches(&partial_exclusive, json!({"t": "2024-05-01T18:00:00Z"})), "gt rounds a partial date up");
        let zoned = dsl(json!({"range": {"t": {"gte": "2024-05-01T08:00:00", "time_zone": "+08:00"}}}));
        assert!(matches(&zoned, json!({"t": "2024-05-01T00:00:00Z"})));
        assert!(!matches(&zoned, json!({"t": "2024-04-30T23:59:59Z"})));
        let millis = dsl(json!({"range": {"t": {"gte": 5000, "format": "epoch_millis"}}}));
        assert!(matches(&millis, json!({"t": 5000})));
    }

    #[test]
    fn date_math_relative_to_now() {
        let now = UNIX_EPOCH + Duration::from_secs(1_714_550_400);
        let recent = dsl(json!({"range": {"__time__": {"gte": "now-5m"}}}));
        let event_at = |seconds: u64| event(json!({"__time__": seconds.to_string()}));
        assert!(recent.matches_at(&event_at(1_714_550_400 - 299), now));
        assert!(!recent.matches_at(&event_at(1_714_550_400 - 301), now));
        let today = lucene("t:[now/d TO now/d]");
        assert!(today.matches_at(&event(json!({"t": "2024-05-01T23:59:59Z"})), now));
        assert!(!today.matches_at(&event(json!({"t": "2024-05-02T00:00:00Z"})), now));
        assert!(recent.matches(&event(json!({"__time__": "4102444800"}))), "the clock supplies now by default");
    }

    #[test]
    fn wildcards_on_text_and_keyword() {
        assert!(matches(&lucene("message:*EXCEPTION"), json!({"message": "java.io.IOException: x"})));
        assert!(
            !matches(&lucene("message:*connection\\ reset*"), json!({"message": "connection reset"})),
            "a wildcard matches one token"
        );
        assert!(
            matches(&lucene("message:*connection reset*"), json!({"message": "connection reset"})),
            "two clauses: the second is unqualified"
        );
        assert!(
            !matches(&dsl(json!({"wildcard": {"message": "*Exception*"}})), json!({"message": "IOException"})),
            "the DSL does not lower-case"
        );
        assert!(matches(&dsl(json!({"wildcard": {"message": "*exception*"}})), json!({"message": "IOException"})));
        assert!(matches(
            &dsl(json!({"wildcard": {"message": {"value": "*Exception*", "case_insensitive": true}}})),
            json!({"message": "IOException"})
        ));
        assert!(!matches(
            &dsl(json!({"query": {"wildcard": {"source": "*Defend*"}}})),
            json!({"source": "/opt/DefendAgent/a.log"})
        ));
        assert!(matches(
            &dsl(json!({"wildcard": {"source.keyword": "*Defend*"}})),
            json!({"source": "/opt/DefendAgent/a.log"})
        ));
        assert!(!matches(
            &dsl(json!({"wildcard": {"source.keyword": "*defend*"}})),
            json!({"source": "/opt/DefendAgent/a.log"})
        ));
        assert!(matches(
            &dsl(json!({"prefix": {"logger": "com.example"}})),
            json!({"logger": "com.example.api.OrderController"})
        ));
        assert!(matches(&dsl(json!({"prefix": {"host.keyword": "wallet-"}})), json!({"host": "wallet-qa-01"})));
        assert!(matches(&lucene("thread:work?r"), json!({"thread": "worker-1"})));
        assert!(!matches(&lucene("thread:work?r"), json!({"thread": "workr"})));
        assert!(matches(
            &dsl(json!({"regexp": {"logger": "com\\.example\\.[a-z]+\\..*"}})),
            json!({"logger": "com.example.api.OrderController"})
        ));
        assert!(matches(&dsl(json!({"fuzzy": {"message": "conection"}})), json!({"message": "connection reset"})));
        assert!(matches(&lucene("message:conection~1"), json!({"message": "Connection reset"})));
        assert!(!matches(&lucene("message:conection~1"), json!({"message": "collection"})));
    }

    #[test]
    fn escaping_keeps_special_characters_literal() {
        assert!(matches(&lucene("path:\\/var\\/log"), json!({"path": "/var/log/syslog"})), "analysed: var OR log");
        assert!(matches(&lucene("path.keyword:\\/var\\/log"), json!({"path": "/var/log"})));
        assert!(
            matches(&lucene("name:foo\\*"), json!({"name": "foo"})),
            "an escaped * is not a wildcard and analyses away"
        );
        assert!(!matches(&lucene("name.keyword:foo\\*"), json!({"name": "foobar"})));
        assert!(matches(&lucene("name.keyword:foo\\*"), json!({"name": "foo*"})));
        assert!(matches(&lucene("msg:a\\:b"), json!({"msg": "x a:b y"})));
    }

    #[test]
    fn field_groups_and_unqualified_terms() {
        let group = lucene("host:(api OR admin) AND level:ERROR");
        assert!(matches(&group, json!({"host": "api-prod-03", "level": "ERROR"})));
        assert!(matches(&group, json!({"host": "admin-prod-01", "level": "error"})));
        assert!(!matches(&group, json!({"host": "wallet-qa-01", "level": "ERROR"})));
        assert!(!matches(&group, json!({"host": "api-prod-03", "level": "WARN"})));
        let unqualified = lucene("Traceback");
        assert!(matches(&unqualified, json!({"level": "ERROR", "message": "Traceback (most recent call last)"})));
        assert!(matches(&unqualified, json!({"nested": {"deeper": ["x", "a traceback"]}})));
        assert!(!matches(&unqualified, json!({"message": "fine"})));
        assert!(matches(&lucene("500"), json!({"status": 500})), "unqualified numbers compare with numeric fields");
        assert!(matches(&lucene("Wallet-*"), json!({"host": "Wallet-qa"})), "the .keyword sub-field takes part in *");
        let keyword_only =
            Query::parse_lucene("Wallet-*", &QueryOptions { keyword_fields: vec!["other".into()] }).unwrap();
        assert!(!matches(&keyword_only, json!({"other": "wallet-qa"})));
        assert!(matches(&lucene("host.\\*:api"), json!({"host": {"name": "api-1"}})));
        assert!(!matches(&lucene("host.\\*:api"), json!({"hostname": "api-1"})));
        let and_terms = dsl(json!({"query_string": {"query": "reset peer", "default_operator": "AND"}}));
        assert!(
            matches(&and_terms, json!({"message": "reset", "other": "peer"})),
            "each whitespace-separated term is its own clause"
        );
        let and_tokens = dsl(json!({"query_string": {"query": "reset-peer", "default_operator": "AND"}}));
        assert!(matches(&and_tokens, json!({"message": "reset by peer"})));
        assert!(
            !matches(&and_tokens, json!({"message": "reset", "other": "peer"})),
            "the tokens of one term share a field"
        );
        let listed = dsl(json!({"query_string": {"query": "wallet", "fields": ["host", "source"]}}));
        assert!(matches(&listed, json!({"source": "/data/logs/wallet/app.log"})));
        assert!(!matches(&listed, json!({"message": "wallet"})));
    }

    #[test]
    fn exists_semantics() {
        let exists = lucene("_exists_:user");
        assert!(matches(&exists, json!({"user": "alice"})));
        assert!(matches(&exists, json!({"user": ""})));
        assert!(matches(&exists, json!({"user": [null, "x"]})));
        assert!(matches(&exists, json!({"user": {"name": "alice"}})));
        assert!(!matches(&exists, json!({"user": null})));
        assert!(!matches(&exists, json!({"user": []})));
        assert!(!matches(&exists, json!({"user": {"name": null}})));
        assert!(!matches(&exists, json!({"other": 1})));
        assert!(matches(&lucene("_exists_:user.name"), json!({"user": {"name": "alice"}})));
        assert!(matches(&lucene("user.name:*"), json!({"user": {"name": "alice"}})));
        assert!(matches(&dsl(json!({"exists": {"field": "user"}})), json!({"user": 0})));
        assert!(matches(&dsl(json!({"missing": {"field": "user"}})), json!({"other": 0})));
        assert!(!matches(&dsl(json!({"missing": {"field": "user"}})), json!({"user": 0})));
        assert!(matches(&lucene("_exists_:u*"), json!({"user": 1})));
    }

    #[test]
    fn lucene_clause_semantics() {
        let quirk = lucene("level:error AND host:api OR host:admin");
        assert!(matches(&quirk, json!({"level": "error", "host": "api"})));
        assert!(
            !matches(&quirk, json!({"host": "admin"})),
            "AND made both neighbours required; the OR clause is optional"
        );
        let negative = lucene("NOT level:debug");
        assert!(matches(&negative, json!({"level": "info"})));
        assert!(matches(&negative, json!({"message": "no level"})));
        assert!(!matches(&negative, json!({"level": "debug"})));
        let required = lucene("+level:error -host:wallet message:timeout");
        assert!(matches(&required, json!({"level": "error", "host": "api"})));
        assert!(!matches(&required, json!({"level": "error", "host": "wallet-qa"})));
        let grouped = lucene("level:error AND (host:api OR host:admin)");
        assert!(!matches(&grouped, json!({"level": "error", "host": "wallet"})));
        assert!(matches(&grouped, json!({"level": "error", "host": "admin"})));
        let dropped = lucene("message:... OR level:error");
        assert!(matches(&dropped, json!({"level": "error"})), "a clause without tokens is dropped");
        assert!(!matches(&lucene("message:..."), json!({"message": "..."})), "an empty query matches nothing");
        assert!(!matches(&lucene(""), json!({"message": ""})));
    }

    #[test]
    fn nested_fields_and_arrays() {
        let query = lucene("user.name:alice AND items.sku:B-2");
        assert!(matches(&query, json!({"user": {"name": "Alice"}, "items": {"sku": ["A-1", "B-2"]}})));
        assert!(
            matches(&lucene("user.name:alice"), json!({"user.name": "alice"})),
            "literal dotted keys resolve first"
        );
        assert!(matches(&lucene("items.0.sku:a"), json!({"items": [{"sku": "A-1"}]})));
    }

    #[test]
    fn bool_dsl_forms() {
        let query = dsl(json!({"bool": {
            "must": {"term": {"level": "error"}},
            "filter": [{"range": {"status": {"gte": 500}}}],
            "should": [{"match": {"host": "api"}}, {"match": {"host": "admin"}}],
            "must_not": [{"term": {"host": "qa"}}],
        }}));
        assert!(
            matches(&query, json!({"level": "ERROR", "status": 503, "host": "wallet-prod"})),
            "should is optional beside must"
        );
        assert!(!matches(&query, json!({"level": "ERROR", "status": 503, "host": "wallet-qa"})));
        assert!(!matches(&query, json!({"level": "ERROR", "status": 404, "host": "api"})));
        let should_only = dsl(json!({"bool": {"should": [{"match": {"host": "api"}}, {"match": {"host": "admin"}}]}}));
        assert!(!matches(&should_only, json!({"host": "wallet"})));
        assert!(matches(&should_only, json!({"host": "admin-1"})));
        let two = dsl(
            json!({"bool": {"should": [{"term": {"a": "x"}}, {"term": {"b": "x"}}, {"term": {"c": "x"}}], "minimum_should_match": 2}}),
        );
        assert!(matches(&two, json!({"a": "x", "c": "x"})));
        assert!(!matches(&two, json!({"a": "x"})));
        let required_should = dsl(
            json!({"bool": {"must": [{"term": {"a": "x"}}], "should": [{"term": {"b": "x"}}], "minimum_should_match": 1}}),
        );
        assert!(!matches(&required_should, json!({"a": "x"})));
        assert!(matches(&dsl(json!({"bool": {"must_not": {"term": {"a": "x"}}}})), json!({"a": "y"})));
        assert!(matches(&dsl(json!({"match_all": {}})), json!({})));
        assert!(!matches(&dsl(json!({"match_none": {}})), json!({})));
        assert!(matches(&dsl(json!({"constant_score": {"filter": {"term": {"a": "x"}}}})), json!({"a": "x"})));
        let legacy =
            dsl(json!({"or": [{"term": {"a": "x"}}, {"and": [{"not": {"term": {"b": "y"}}}, {"term": {"c": "z"}}]}]}));
        assert!(matches(&legacy, json!({"c": "z"})));
        assert!(!matches(&legacy, json!({"b": "y", "c": "z"})));
        let filtered = dsl(json!({"filtered": {"query": {"match": {"a": "x"}}, "filter": {"term": {"b": "y"}}}}));
        assert!(matches(&filtered, json!({"a": "x", "b": "y"})));
        assert!(!matches(&filtered, json!({"a": "x"})));
    }

    #[test]
    fn filter_list_ands_its_clauses() {
        let list =
            vec![json!({"term": {"level": "error"}}), json!({"query": {"query_string": {"query": "host:api*"}}})];
        let query = Query::from_filter_list(&list, &QueryOptions::default()).unwrap();
        assert!(matches(&query, json!({"level": "error", "host": "api-prod"})));
        assert!(!matches(&query, json!({"level": "error", "host": "wallet"})));
        let error = Query::from_filter_list(
            &[json!({"term": {"a": "b"}}), json!({"query_string": {"query": "a:(b"}})],
            &QueryOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "filter[1].query_string.query: query_string: expected ')' at position 4, found end of input, in \"a:(b\""
        );
    }

    #[test]
    fn non_ascii_fields_take_the_lowercasing_path() {
        let seed = lucene(SEED);
        assert!(matches(&seed, json!({"message": "错误: Traceback (most recent call last)"})));
        assert!(matches(&seed, json!({"message": "发生 NullPointerException 异常"})));
        assert!(!matches(&seed, json!({"message": "一切正常"})));
        assert!(matches(&lucene("message:kelvin"), json!({"message": "\u{212A}ELVIN 温度"})));
        assert!(
            matches(&lucene("message:告警"), json!({"message": "日志告警"})),
            "each Han character is a token: 告 OR 警"
        );
    }

    #[test]
    fn compiled_queries_are_shareable() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Query>();
    }

    #[test]
    fn display_renders_the_ast() {
        assert_eq!(
            dsl(json!({"bool": {"must": [{"term": {"a": "x"}}], "must_not": [{"exists": {"field": "b"}}], "minimum_should_match": 1}})).to_string(),
            "(+term(a, \"x\") -exists(b))~1"
        );
    }

    fn reference_tokens_match(text: &str, token_test: &dyn Fn(&str) -> bool) -> bool {
        super::analyzer::collect_tokens(text).iter().any(|token| token_test(token))
    }

    fn random_text() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "Traceback",
            "traceback",
            "TRACEBACK",
            "Tracebacks",
            "'",
            "Exception",
            "IOException",
            "java.io.",
            "Defend",
            "defend",
            ":",
            ".",
            " ",
            "\n",
            "\t",
            "-",
            "_",
            "x",
            "K",
            "\u{212A}",
            "\u{130}",
            "é",
            "错误",
            "1",
            "/",
            "\"",
        ]);
        prop::collection::vec(pieces, 0..30).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn seed_rule_equals_the_tokenising_reference(message in random_text(), source in random_text()) {
            let seed = lucene(SEED);
            let exception = super::parse_wildcard("*exception*");
            let defend = super::parse_wildcard("*defend*");
            let expected = reference_tokens_match(&message, &|token| token == "traceback" || super::analyzer::wildcard_matches(&exception, token))
                || reference_tokens_match(&source, &|token| super::analyzer::wildcard_matches(&defend, token));
            prop_assert_eq!(seed.matches(&event(json!({"message": message, "source": source}))), expected);
        }

        #[test]
        fn phrases_equal_the_tokenising_reference(message in random_text()) {
            let phrase = lucene("message:\"java.io.ioexception traceback\"");
            let tokens = super::analyzer::collect_tokens(&message);
            let expected = tokens.windows(2).any(|window| window[0] == "java.io.ioexception" && window[1] == "traceback");
            prop_assert_eq!(phrase.matches(&event(json!({"message": message}))), expected);
        }
    }
}
