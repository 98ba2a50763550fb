//! The query language shared by the rules engine, the `filter` transform and
//! the `route` transform: Lucene `query_string` syntax and the Elasticsearch
//! filter DSL, evaluated against `LogEvent`s the way Elasticsearch would
//! evaluate them against documents indexed with its default dynamic mapping.
//!
//! Owns: parsing (`lucene`, `dsl`) into one AST (`QueryNode`), compiling the
//! AST once into an evaluation tree (`matcher`), and the evaluation itself.
//! Never: does IO, allocates per event on the fast path, or panics on input;
//! a malformed query is a `QueryError` at config load, never at match time.
//!
//! # Building a query
//!
//! - `Query::parse_lucene(text, &options)`: a `query_string` query.
//! - `Query::from_dsl(&json, &options)`: one filter DSL clause.
//! - `Query::from_filter_list(&[json], &options)`: ElastAlert's `filter:` list,
//!   whose clauses are ANDed.
//! - `Query::matches(&event)` (or `matches_at` with an explicit "now" for date
//!   math, `matches_fields` for a bare `ObjectMap`).
//!
//! `Query` renders with `Display` in a Lucene-like form for `pipe validate`,
//! for example `(match(message, "'Traceback'") wildcard(message, "*Exception*", normalised) ...)`.
//!
//! # Matching semantics (documented contract, tested in `matcher`)
//!
//! Field types are not declared; they follow from the field name and the
//! value, mimicking Elasticsearch's dynamic mapping (strings become `text`
//! with a `.keyword` sub-field):
//!
//! - **Text** (the default for string values): the value is tokenised like
//!   the `standard` analyzer (UAX #29 word boundaries, simplified as described
//!   in `analyzer`; lower-cased). `term`, `wildcard`, `prefix`, `regexp`,
//!   `fuzzy` and `range` test individual tokens. `match` and unquoted
//!   `query_string` terms analyse the query text the same way and match when
//!   any token matches (operator `or`; `and` and `minimum_should_match`
//!   supported). Phrases match consecutive token sequences (slop 0).
//! - **Keyword**: a field written `name.keyword`, or listed in
//!   `QueryOptions::keyword_fields`, matches the whole value exactly and
//!   case-sensitively; `match` and phrases compare the whole query text.
//!   `x.keyword` resolves to a field literally named `x.keyword` or nested
//!   `x` → `keyword` if present, otherwise to `x`. `ignore_above` is not
//!   emulated.
//! - **Unqualified terms** (`query_string` default field `*`) search every
//!   leaf field, each as text *or* as its `.keyword` sub-field, because
//!   Elasticsearch's `*` expansion includes the sub-fields. Fields listed in
//!   `keyword_fields` are searched as keyword only.
//! - **Numbers** (integer and float values) compare numerically: `term`,
//!   `match` and `query_string` terms equal the value when the query text
//!   parses as the same number; ranges compare numbers. A string value that
//!   parses as a number (SLS sends every value as a string) is compared
//!   numerically when the range bounds are numbers, and by its text tokens
//!   for everything else. Wildcards, regexps and fuzzy terms never match
//!   numbers (Elasticsearch rejects them on numeric fields).
//! - **Dates**: a range whose bounds are dates (`2024-05-01`,
//!   `2024-05-01T10:00:00+08:00`, `now-5m/m`, `2024-05-01||+1d`) compares
//!   values that are ISO 8601 strings or epoch numbers. Epoch numbers below
//!   1e11 are seconds, larger ones milliseconds, unless the DSL `format` says
//!   `epoch_second` or `epoch_millis`. A date without an offset is UTC unless
//!   the DSL gives `time_zone` as a fixed offset. Missing components and
//!   `/unit` rounding follow Elasticsearch: `gt` and `lte` round up, `gte`
//!   and `lt` round down. `now` is read once per `matches` call.
//! - **Booleans** equal the query text `true` / `false`.
//! - **Arrays** match when any element matches; `and` across tokens is
//!   per document (tokens may sit in different elements), phrases and range
//!   bounds apply within one element. **Objects** are reached by dotted path
//!   (`LogEvent::get_path`); `exists` is true for any non-null value, a
//!   non-empty array holding a non-null, or an object with an existing leaf.
//!   Null values match nothing.
//!
//! # `query_string` specifics (Lucene classic parser, as Elasticsearch uses it)
//!
//! - Operators follow Lucene's clause logic, not precedence: `AND` makes the
//!   clauses on both sides required, `OR` leaves them optional, `NOT`/`-`
//!   prohibits, `+` requires; a group matches when all required clauses match,
//!   no prohibited one does, and (if nothing is required) at least one
//!   optional one does. So `a AND b OR c` means `+a +b c` (c is optional).
//!   A group holding only prohibited clauses matches everything else, as
//!   Elasticsearch adds a match-all to purely negative groups.
//! - `default_operator` is OR; the DSL `query_string` may set it to AND.
//! - Single quotes are ordinary characters. The seed filter's
//!   `message:'Traceback'` is the term `'Traceback'`, which the analyzer turns
//!   into the token `traceback` (the quotes are not word characters), so it
//!   matches any message containing the word Traceback in any case — but not
//!   `Tracebacks` or `TracebackError`.
//! - Wildcard and prefix terms are not analysed but are lower-cased on text
//!   fields, then matched against single tokens: `message:*Exception*`
//!   matches the token `java.io.ioexception` and `exception`, while
//!   `*connection reset*` can never match (no token holds a space). On keyword
//!   fields they match the whole value, case-sensitively. The DSL `wildcard`
//!   and `prefix` queries are *not* lower-cased, as in Elasticsearch (use
//!   `case_insensitive: true`).
//! - `field:*` is `exists`; `_exists_:field` too; a bare `*` matches all.
//! - `field:>=10`, `>`, `<`, `<=` are ranges; `[a TO b]`, `{a TO b}` and mixed
//!   brackets are ranges with `*` for an open end.
//! - Field groups `host:(api OR admin)` apply the field to every unqualified
//!   term inside. Field names may use `*` patterns (`host.\*:x`).
//! - A term whose analysis yields no token (`message:-`) is dropped from its
//!   group, as Lucene drops it; an empty query matches nothing.
//! - Fuzzy terms `term~`, `term~1` use Damerau-Levenshtein distance (bare `~`
//!   is Elasticsearch's AUTO); boosts `^2` are accepted and ignored (no
//!   scoring). Phrase slop other than `~0` is rejected. Regexps `/.../` use
//!   the `regex` crate's syntax, anchored to whole tokens; Lucene-only
//!   operators (`@ & ~ < > #`) are rejected.
//!
//! # Filter DSL forms
//!
//! `query_string`, `term`, `terms`, `match`, `match_phrase`, `wildcard`,
//! `prefix`, `regexp`, `fuzzy`, `range`, `exists`, `bool` (`must`, `filter`,
//! `should`, `must_not`, `minimum_should_match`), `match_all`, `match_none`,
//! `constant_score`, and the pre-5.x forms ElastAlert rules still carry:
//! `query` (a wrapper holding a clause or a list of clauses), `filtered`
//! (`query` AND `filter`), `and` / `or` (a list or `{filters: [...]}`), `not`
//! (a clause or `{filter: ...}`), and `missing`. `bool` follows Elasticsearch
//! 7+: `should` is optional when `must`/`filter` exist, unless
//! `minimum_should_match` says otherwise.
//!
//! # Performance
//!
//! Compilation merges clauses on the same field so a field is looked up once
//! per group, and token tests on text fields first run an ASCII-case-
//! insensitive substring search (memchr on the literal's rarest byte, then a
//! verify) for a literal the token must contain; only hits are confirmed by
//! tokenising the whitespace-delimited window around them. A field is
//! lower-cased into a thread-local buffer and fully tokenised only when that
//! search cannot be trusted to be complete: a non-ASCII literal on non-ASCII
//! text, or a literal with `k` or `i` on text holding KELVIN SIGN or DOTTED
//! CAPITAL I (the only non-ASCII characters that lower-case to ASCII). The
//! result is exactly what tokenising every field would give (property-tested).
//! `benches/query.rs` measures the seed filter at several million demo events
//! per second per core.

mod analyzer;
mod dates;
mod dsl;
mod lucene;
mod matcher;

use std::fmt;
use std::time::SystemTime;

use serde::Deserialize;

use crate::event::{LogEvent, ObjectMap};

pub use matcher::CompiledQuery;

/// Options that apply to every query built with them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryOptions {
    /// Fields (dotted paths) that behave like Elasticsearch `keyword` fields:
    /// whole-value, case-sensitive matching. Every other string field behaves
    /// like a `text` field.
    pub keyword_fields: Vec<String>,
}

/// A query that could not be built. Positions are 0-based character offsets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Malformed `query_string` text.
    #[error("{location}query_string: expected {expected} at position {position}, found {found}, in {query:?}")]
    Syntax {
        /// Where the text came from, such as `filter[0].query_string.query: `; empty at top level.
        location: String,
        position: usize,
        expected: String,
        found: String,
        query: String,
    },
    /// A filter DSL clause that is malformed or not supported.
    #[error("{path}: {message}")]
    Dsl {
        /// The clause's place in the input, such as `filter[1].bool.must[0].range.status`.
        path: String,
        message: String,
    },
}

/// Which fields a leaf query looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldTarget {
    /// One field by dotted path; text, keyword or number by its name and value.
    Named(String),
    /// Several fields by name, any of which may match (`query_string.fields`).
    AnyOf(Vec<String>),
    /// Every leaf field, each as text or as its `.keyword` sub-field.
    All,
    /// Every leaf field whose dotted path matches a `*` pattern, like `All`.
    Pattern(String),
}

/// How `match` combines the tokens of its query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Operator {
    #[default]
    Or,
    And,
}

/// Elasticsearch's `minimum_should_match`: a count or a percentage of the
/// optional clauses; negative values count the clauses that may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinimumShouldMatch {
    Count(i64),
    Percent(i64),
}

impl MinimumShouldMatch {
    /// The number of optional clauses out of `total` that must match.
    pub fn required(self, total: usize) -> usize {
        let total_signed = total as i64;
        let required = match self {
            MinimumShouldMatch::Count(count) if count < 0 => total_signed + count,
            MinimumShouldMatch::Count(count) => count,
            MinimumShouldMatch::Percent(percent) if percent < 0 => total_signed - total_signed * -percent / 100,
            MinimumShouldMatch::Percent(percent) => total_signed * percent / 100,
        };
        required.max(0) as usize
    }
}

/// What an analysed query whose text yields no token does on a text field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroTerms {
    /// Matches nothing (the DSL's `zero_terms_query: none`, its default).
    #[default]
    MatchNone,
    /// Matches everything (`zero_terms_query: all`).
    MatchAll,
    /// Leaves its group, as Lucene drops a clause that analyses to nothing;
    /// a group left empty leaves its parent, and an empty query matches nothing.
    Dropped,
}

/// A boolean combination; `filter` clauses are required like `must`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BoolQuery {
    pub must: Vec<QueryNode>,
    pub filter: Vec<QueryNode>,
    pub should: Vec<QueryNode>,
    pub must_not: Vec<QueryNode>,
    /// `None`: 1 when there are optional clauses and nothing required, else 0.
    pub minimum_should_match: Option<MinimumShouldMatch>,
}

/// One end of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeBound {
    pub value: BoundValue,
    pub inclusive: bool,
}

/// A range bound as written: text (numbers, dates, date math or plain strings
/// are told apart when compiling) or a JSON number.
#[derive(Debug, Clone, PartialEq)]
pub enum BoundValue {
    Text(String),
    Number(f64),
}

/// How epoch numbers are read when compared with dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpochUnit {
    /// Seconds below 1e11, milliseconds from there on.
    #[default]
    Guess,
    Seconds,
    Milliseconds,
}

/// A range query. `None` bounds are open.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    pub field: FieldTarget,
    pub lower: Option<RangeBound>,
    pub upper: Option<RangeBound>,
    /// Lower-case string bounds on text fields (`query_string` does; the DSL does not).
    pub normalise: bool,
    pub epoch_unit: EpochUnit,
    /// Offset from UTC applied to date bounds written without one.
    pub time_zone_offset_seconds: i32,
}

/// The parsed form of every query, before compilation.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryNode {
    MatchAll,
    MatchNone,
    Bool(BoolQuery),
    /// Exact token (text), exact value (keyword) or numeric/boolean equality.
    Term {
        field: FieldTarget,
        value: String,
        case_insensitive: bool,
    },
    /// Analysed query text; tokens combined by `operator` or `minimum_should_match`.
    Match {
        field: FieldTarget,
        query: String,
        operator: Operator,
        minimum_should_match: Option<MinimumShouldMatch>,
        zero_terms: ZeroTerms,
    },
    /// Consecutive tokens (text) or the whole value (keyword).
    Phrase {
        field: FieldTarget,
        query: String,
        zero_terms: ZeroTerms,
    },
    /// `*` and `?` wildcards; `\` escapes. Prefix queries are patterns ending in `*`.
    Wildcard {
        field: FieldTarget,
        pattern: String,
        case_insensitive: bool,
        /// Lower-case the pattern on text fields (`query_string` does; the DSL does not).
        normalise: bool,
    },
    /// A regular expression (regex crate syntax) matched against whole tokens or values.
    Regexp {
        field: FieldTarget,
        pattern: String,
        case_insensitive: bool,
    },
    /// Tokens or values within `max_edits` Damerau-Levenshtein edits.
    Fuzzy {
        field: FieldTarget,
        value: String,
        max_edits: u8,
        normalise: bool,
    },
    Range(RangeQuery),
    Exists {
        field: FieldTarget,
    },
}

/// A compiled query, ready to match events. Cheap to clone and `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Query {
    node: QueryNode,
    compiled: CompiledQuery,
}

impl Query {
    /// Parses Lucene `query_string` text with default field `*` and default
    /// operator OR.
    pub fn parse_lucene(text: &str, options: &QueryOptions) -> Result<Query, QueryError> {
        let node = lucene::parse(text, &lucene::LuceneSettings::default(), "")?;
        Query::from_node(node, options)
    }

    /// Builds one filter DSL clause (JSON, or YAML/TOML converted to JSON).
    pub fn from_dsl(value: &serde_json::Value, options: &QueryOptions) -> Result<Query, QueryError> {
        let node = dsl::parse_clause(value, "filter")?;
        Query::from_node(node, options)
    }

    /// Builds ElastAlert's `filter:` list: every clause must match; an empty
    /// list matches everything.
    pub fn from_filter_list(list: &[serde_json::Value], options: &QueryOptions) -> Result<Query, QueryError> {
        let node = dsl::parse_filter_list(list)?;
        Query::from_node(node, options)
    }

    /// Compiles an already-built AST.
    pub fn from_node(node: QueryNode, options: &QueryOptions) -> Result<Query, QueryError> {
        let compiled = CompiledQuery::compile(&node, options)?;
        Ok(Query { node, compiled })
    }

    /// Whether `event` matches, with date math evaluated against the clock.
    pub fn matches(&self, event: &LogEvent) -> bool {
        self.compiled.matches_fields(event.fields(), None)
    }

    /// Whether `event` matches, with `now` in date math taken as `now`.
    pub fn matches_at(&self, event: &LogEvent, now: SystemTime) -> bool {
        self.compiled.matches_fields(event.fields(), Some(now))
    }

    /// Whether a bare field map matches (the clock supplies `now`).
    pub fn matches_fields(&self, fields: &ObjectMap) -> bool {
        self.compiled.matches_fields(fields, None)
    }

    /// The parsed form, for inspection and rendering.
    pub fn node(&self) -> &QueryNode {
        &self.node
    }

    pub fn compiled(&self) -> &CompiledQuery {
        &self.compiled
    }
}

impl fmt::Display for Query {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.node.fmt(formatter)
    }
}

impl fmt::Display for FieldTarget {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldTarget::Named(name) => formatter.write_str(name),
            FieldTarget::AnyOf(names) => write!(formatter, "[{}]", names.join(", ")),
            FieldTarget::All => formatter.write_str("*"),
            FieldTarget::Pattern(pattern) => formatter.write_str(pattern),
        }
    }
}

impl fmt::Display for MinimumShouldMatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MinimumShouldMatch::Count(count) => write!(formatter, "{count}"),
            MinimumShouldMatch::Percent(percent) => write!(formatter, "{percent}%"),
        }
    }
}

impl fmt::Display for BoundValue {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundValue::Text(text) => write!(formatter, "{text:?}"),
            BoundValue::Number(number) => write!(formatter, "{number}"),
        }
    }
}

impl fmt::Display for QueryNode {
    /// Lucene's `BooleanQuery` notation for groups (`+` required, `-`
    /// prohibited, `#` filter, `~n` minimum_should_match) and
    /// `kind(field, ...)` for leaves.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryNode::MatchAll => formatter.write_str("*:*"),
            QueryNode::MatchNone => formatter.write_str("match_none"),
            QueryNode::Bool(bool_query) => {
                formatter.write_str("(")?;
                let mut first = true;
                let groups: [(&str, &Vec<QueryNode>); 4] = [
                    ("+", &bool_query.must),
                    ("#", &bool_query.filter),
                    ("", &bool_query.should),
                    ("-", &bool_query.must_not),
                ];
                for (marker, clauses) in groups {
                    for clause in clauses {
                        if !first {
                            formatter.write_str(" ")?;
                        }
                        first = false;
                        write!(formatter, "{marker}{clause}")?;
                    }
                }
                formatter.write_str(")")?;
                if let Some(minimum) = bool_query.minimum_should_match {
                    write!(formatter, "~{minimum}")?;
                }
                Ok(())
            }
            QueryNode::Term { field, value, case_insensitive } => {
                write!(formatter, "term({field}, {value:?}")?;
                if *case_insensitive {
                    formatter.write_str(", case_insensitive")?;
                }
                formatter.write_str(")")
            }
            QueryNode::Match { field, query, operator, minimum_should_match, zero_terms } => {
                write!(formatter, "match({field}, {query:?}")?;
                if *operator == Operator::And {
                    formatter.write_str(", and")?;
                }
                if let Some(minimum) = minimum_should_match {
                    write!(formatter, ", minimum_should_match {minimum}")?;
                }
                if *zero_terms == ZeroTerms::MatchAll {
                    formatter.write_str(", zero_terms all")?;
                }
                formatter.write_str(")")
            }
            QueryNode::Phrase { field, query, .. } => write!(formatter, "phrase({field}, {query:?})"),
            QueryNode::Wildcard { field, pattern, case_insensitive, normalise } => {
                write!(formatter, "wildcard({field}, {pattern:?}")?;
                if *case_insensitive {
                    formatter.write_str(", case_insensitive")?;
                }
                if *normalise {
                    formatter.write_str(", normalised")?;
                }
                formatter.write_str(")")
            }
            QueryNode::Regexp { field, pattern, case_insensitive } => {
                write!(formatter, "regexp({field}, {pattern:?}")?;
                if *case_insensitive {
                    formatter.write_str(", case_insensitive")?;
                }
                formatter.write_str(")")
            }
            QueryNode::Fuzzy { field, value, max_edits, .. } => {
                write!(formatter, "fuzzy({field}, {value:?}, {max_edits})")
            }
            QueryNode::Range(range) => {
                write!(formatter, "range({field}, ", field = range.field)?;
                match &range.lower {
                    Some(bound) => write!(formatter, "{}{}", if bound.inclusive { '[' } else { '{' }, bound.value)?,
                    None => formatter.write_str("[*")?,
                }
                formatter.write_str(" TO ")?;
                match &range.upper {
                    Some(bound) => write!(formatter, "{}{}", bound.value, if bound.inclusive { ']' } else { '}' })?,
                    None => formatter.write_str("*]")?,
                }
                formatter.write_str(")")
            }
            QueryNode::Exists { field } => write!(formatter, "exists({field})"),
        }
    }
}
