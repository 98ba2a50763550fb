//! Parser for the Lucene query syntax subset `query_string` accepts.
//!
//! Supported: `field:value`, bare terms (default fields), `field:"a phrase"`,
//! wildcards `*`/`?` in terms, `field:*` (exists), `_exists_:field`,
//! `field:(a OR b)` groups, `( ... )`, `AND`/`&&`, `OR`/`||`, `NOT`/`!`,
//! `+`/`-` prefixes, ranges `[a TO b]`, `{a TO b}`, `>x`, `>=x`, `<x`, `<=x`,
//! backslash escapes; `^boost` and `~fuzziness` suffixes are read and
//! ignored. Regular expressions (`/.../`) are rejected.
//!
//! Clause combination follows Lucene's classic query parser, including its
//! quirks: an `AND` makes the clause before it required, and with the
//! default `OR` operator `a AND b OR c` means `+a +b c`. A query made only of
//! prohibited clauses matches everything else, as Elasticsearch arranges.
//! The parser knows nothing about mappings; `query.rs` compiles the tree.

/// How a clause takes part in its boolean query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occur {
    Must,
    Should,
    MustNot,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TermKind {
    /// Analyzed like the field's analyzer.
    Plain,
    /// Contains `*` or `?`.
    Wildcard,
    /// A quoted phrase.
    Phrase,
    /// `field:*` or `_exists_:field`.
    Exists,
    Range {
        lower: Option<String>,
        upper: Option<String>,
        include_lower: bool,
        include_upper: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueryNode {
    Boolean(Vec<(Occur, QueryNode)>),
    Term { field: Option<String>, text: String, kind: TermKind },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultOperator {
    Or,
    And,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Plus,
    Minus,
    /// A term, possibly `field:`-prefixed; `quoted` for phrases.
    Word {
        text: String,
        quoted: bool,
    },
    Colon,
    Range {
        lower: Option<String>,
        upper: Option<String>,
        include_lower: bool,
        include_upper: bool,
    },
    Comparison {
        operator: String,
    },
}

/// Parses `query` into a tree; the error text says what was wrong where.
pub fn parse(query: &str, default_operator: DefaultOperator) -> Result<QueryNode, String> {
    let tokens = tokenize(query)?;
    let mut parser = Parser { tokens, position: 0, default_operator };
    let node = parser.parse_query(None)?;
    if parser.position < parser.tokens.len() {
        return Err(format!(
            "Cannot parse '{query}': unexpected {:?} at token {}",
            parser.tokens[parser.position], parser.position
        ));
    }
    Ok(node)
}

fn is_special(character: char) -> bool {
    matches!(character, '(' | ')' | ':' | '"' | '[' | ']' | '{' | '}' | '^' | '~' | '\\' | '/')
}

fn tokenize(query: &str) -> Result<Vec<Token>, String> {
    let characters: Vec<char> = query.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < characters.len() {
        let character = characters[index];
        match character {
            c if c.is_whitespace() => index += 1,
            '(' => {
                tokens.push(Token::Open);
                index += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                index += 1;
            }
            ':' => {
                tokens.push(Token::Colon);
                index += 1;
            }
            '+' => {
                tokens.push(Token::Plus);
                index += 1;
            }
            '-' => {
                tokens.push(Token::Minus);
                index += 1;
            }
            '!' => {
                tokens.push(Token::Not);
                index += 1;
            }
            '&' if characters.get(index + 1) == Some(&'&') => {
                tokens.push(Token::And);
                index += 2;
            }
            '|' if characters.get(index + 1) == Some(&'|') => {
                tokens.push(Token::Or);
                index += 2;
            }
            '/' => {
                return Err(format!("Cannot parse '{query}': regular expressions are not supported by the emulator"))
            }
            '^' | '~' => {
                // Boost and fuzziness: skip the operator and its number.
                index += 1;
                while index < characters.len() && (characters[index].is_ascii_digit() || characters[index] == '.') {
                    index += 1;
                }
            }
            '"' => {
                let mut text = String::new();
                index += 1;
                loop {
                    match characters.get(index) {
                        None => return Err(format!("Cannot parse '{query}': Lexical error: unterminated phrase")),
                        Some('"') => break,
                        Some('\\') => {
                            if let Some(next) = characters.get(index + 1) {
                                text.push(*next);
                            }
                            index += 2;
                        }
                        Some(other) => {
                            text.push(*other);
                            index += 1;
                        }
                    }
                }
                index += 1;
                tokens.push(Token::Word { text, quoted: true });
            }
            '[' | '{' => {
                let include_lower = character == '[';
                let close = characters[index..]
                    .iter()
                    .position(|c| *c == ']' || *c == '}')
                    .ok_or_else(|| format!("Cannot parse '{query}': unterminated range"))?;
                let inner: String = characters[index + 1..index + close].iter().collect();
                let include_upper = characters[index + close] == ']';
                let parts: Vec<&str> = inner.split(" TO ").collect();
                if parts.len() != 2 {
                    return Err(format!("Cannot parse '{query}': a range needs 'lower TO upper'"));
                }
                let bound = |text: &str| {
                    let text = text.trim().trim_matches('"');
                    (text != "*").then(|| text.to_string())
                };
                tokens.push(Token::Range {
                    lower: bound(parts[0]),
                    upper: bound(parts[1]),
                    include_lower,
                    include_upper,
                });
                index += close + 1;
            }
            '>' | '<' => {
                let mut operator = character.to_string();
                index += 1;
                if characters.get(index) == Some(&'=') {
                    operator.push('=');
                    index += 1;
                }
                tokens.push(Token::Comparison { operator });
            }
            _ => {
                let mut text = String::new();
                while index < characters.len() {
                    let current = characters[index];
                    if current == '\\' {
                        if let Some(next) = characters.get(index + 1) {
                            text.push(*next);
                        }
                        index += 2;
                        continue;
                    }
                    if current.is_whitespace() || is_special(current) {
                        break;
                    }
                    text.push(current);
                    index += 1;
                }
                match text.as_str() {
                    "AND" => tokens.push(Token::And),
                    "OR" => tokens.push(Token::Or),
                    "NOT" => tokens.push(Token::Not),
                    _ => tokens.push(Token::Word { text, quoted: false }),
                }
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    default_operator: DefaultOperator,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Conjunction {
    None,
    And,
    Or,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Modifier {
    None,
    Required,
    Prohibited,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn parse_query(&mut self, field: Option<&str>) -> Result<QueryNode, String> {
        let mut clauses: Vec<(Occur, QueryNode)> = Vec::new();
        let mut first = true;
        while let Some(token) = self.peek() {
            if *token == Token::Close {
                break;
            }
            let mut conjunction = Conjunction::None;
            if !first {
                match token {
                    Token::And => {
                        conjunction = Conjunction::And;
                        self.position += 1;
                    }
                    Token::Or => {
                        conjunction = Conjunction::Or;
                        self.position += 1;
                    }
                    _ => {}
                }
            }
            let mut modifier = Modifier::None;
            match self.peek() {
                Some(Token::Plus) => {
                    modifier = Modifier::Required;
                    self.position += 1;
                }
                Some(Token::Minus) | Some(Token::Not) => {
                    modifier = Modifier::Prohibited;
                    self.position += 1;
                }
                _ => {}
            }
            let clause = self.parse_clause(field)?;
            self.add_clause(&mut clauses, conjunction, modifier, clause);
            first = false;
        }
        if clauses.len() == 1 && clauses[0].0 != Occur::MustNot {
            return Ok(clauses.remove(0).1);
        }
        Ok(QueryNode::Boolean(clauses))
    }

    /// Lucene's rules for how a conjunction and a modifier set the occur of
    /// the new clause and, for `AND`/`OR`, the one before it.
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
                } else if conjunction == Conjunction::Or && self.default_operator == DefaultOperator::And {
                    previous.0 = Occur::Should;
                }
            }
        }
        let prohibited = modifier == Modifier::Prohibited;
        let required = match self.default_operator {
            DefaultOperator::Or => modifier == Modifier::Required || (conjunction == Conjunction::And && !prohibited),
            DefaultOperator::And => !prohibited && conjunction != Conjunction::Or,
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

    fn parse_clause(&mut self, field: Option<&str>) -> Result<QueryNode, String> {
        let token = self.peek().cloned().ok_or("Cannot parse: the query ended where a term was expected")?;
        match token {
            Token::Open => {
                self.position += 1;
                let inner = self.parse_query(field)?;
                if self.peek() != Some(&Token::Close) {
                    return Err("Cannot parse: missing ')'".to_string());
                }
                self.position += 1;
                Ok(inner)
            }
            Token::Word { text, quoted } => {
                self.position += 1;
                if !quoted && self.peek() == Some(&Token::Colon) {
                    self.position += 1;
                    if text == "_exists_" {
                        let Some(Token::Word { text: target, .. }) = self.peek().cloned() else {
                            return Err("Cannot parse: _exists_ needs a field name".to_string());
                        };
                        self.position += 1;
                        return Ok(QueryNode::Term {
                            field: Some(target),
                            text: String::new(),
                            kind: TermKind::Exists,
                        });
                    }
                    return self.parse_clause(Some(&text));
                }
                Ok(term(field, text, quoted))
            }
            Token::Range { lower, upper, include_lower, include_upper } => {
                self.position += 1;
                Ok(QueryNode::Term {
                    field: field.map(str::to_string),
                    text: String::new(),
                    kind: TermKind::Range { lower, upper, include_lower, include_upper },
                })
            }
            Token::Comparison { operator } => {
                self.position += 1;
                let Some(Token::Word { text, .. }) = self.peek().cloned() else {
                    return Err(format!("Cannot parse: '{operator}' needs a value"));
                };
                self.position += 1;
                let kind = match operator.as_str() {
                    ">" => {
                        TermKind::Range { lower: Some(text), upper: None, include_lower: false, include_upper: false }
                    }
                    ">=" => {
                        TermKind::Range { lower: Some(text), upper: None, include_lower: true, include_upper: false }
                    }
                    "<" => {
                        TermKind::Range { lower: None, upper: Some(text), include_lower: false, include_upper: false }
                    }
                    _ => TermKind::Range { lower: None, upper: Some(text), include_lower: false, include_upper: true },
                };
                Ok(QueryNode::Term { field: field.map(str::to_string), text: String::new(), kind })
            }
            other => Err(format!("Cannot parse: unexpected {other:?} where a term was expected")),
        }
    }
}

fn term(field: Option<&str>, text: String, quoted: bool) -> QueryNode {
    let kind = if quoted {
        TermKind::Phrase
    } else if text == "*" && field.is_some() {
        TermKind::Exists
    } else if text.contains(['*', '?']) {
        TermKind::Wildcard
    } else {
        TermKind::Plain
    };
    QueryNode::Term { field: field.map(str::to_string), text, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(field: Option<&str>, text: &str) -> QueryNode {
        QueryNode::Term { field: field.map(str::to_string), text: text.to_string(), kind: TermKind::Plain }
    }

    #[test]
    fn the_seed_alert_query_parses_into_three_optional_clauses() {
        let node = parse("message:'Traceback' OR message:*Exception* OR source:*Defend*", DefaultOperator::Or).unwrap();
        let QueryNode::Boolean(clauses) = node else { panic!("expected a boolean query") };
        assert_eq!(clauses.len(), 3);
        assert!(clauses.iter().all(|(occur, _)| *occur == Occur::Should));
        assert_eq!(clauses[0].1, plain(Some("message"), "'Traceback'"));
        assert!(
            matches!(&clauses[1].1, QueryNode::Term { kind: TermKind::Wildcard, text, .. } if text == "*Exception*")
        );
    }

    #[test]
    fn lucene_conjunction_rules_apply() {
        let QueryNode::Boolean(clauses) = parse("a AND b OR c", DefaultOperator::Or).unwrap() else { panic!() };
        let occurs: Vec<Occur> = clauses.iter().map(|(occur, _)| *occur).collect();
        assert_eq!(occurs, vec![Occur::Must, Occur::Must, Occur::Should]);
        let QueryNode::Boolean(clauses) = parse("a b -c", DefaultOperator::And).unwrap() else { panic!() };
        let occurs: Vec<Occur> = clauses.iter().map(|(occur, _)| *occur).collect();
        assert_eq!(occurs, vec![Occur::Must, Occur::Must, Occur::MustNot]);
        let QueryNode::Boolean(clauses) = parse("NOT level:INFO", DefaultOperator::Or).unwrap() else { panic!() };
        assert_eq!(clauses, vec![(Occur::MustNot, plain(Some("level"), "INFO"))]);
    }

    #[test]
    fn groups_phrases_ranges_and_exists() {
        let QueryNode::Boolean(clauses) = parse("host:(a OR b) AND msg:\"hello world\"", DefaultOperator::Or).unwrap()
        else {
            panic!()
        };
        assert!(matches!(&clauses[0].1, QueryNode::Boolean(inner) if inner[0].1 == plain(Some("host"), "a")));
        assert!(matches!(&clauses[1].1, QueryNode::Term { kind: TermKind::Phrase, text, .. } if text == "hello world"));
        let range = parse("count:[1 TO 5}", DefaultOperator::Or).unwrap();
        assert!(matches!(
            range,
            QueryNode::Term { kind: TermKind::Range { include_lower: true, include_upper: false, .. }, .. }
        ));
        assert!(matches!(
            parse("_exists_:host", DefaultOperator::Or).unwrap(),
            QueryNode::Term { kind: TermKind::Exists, .. }
        ));
        assert!(matches!(
            parse("count:>=3", DefaultOperator::Or).unwrap(),
            QueryNode::Term { kind: TermKind::Range { .. }, .. }
        ));
        assert_eq!(parse("wallet-qa-01", DefaultOperator::Or).unwrap(), plain(None, "wallet-qa-01"));
        assert!(parse("msg:\"open", DefaultOperator::Or).is_err());
        assert!(parse("(a OR b", DefaultOperator::Or).is_err());
    }
}
