//! Environment interpolation in configuration text.
//!
//! Syntax: `${VAR}`, `${VAR:-default}` (used when VAR is unset or empty),
//! `${VAR:?message}` (an error with `message` when VAR is unset or empty), and
//! `$$` for a literal `$`. A `$` followed by anything else stays as it is.
//!
//! Substitution is TOML-aware, so a value can never inject structure:
//! - Inside a quoted string the value is escaped for that kind of string
//!   (quotes, backslashes and newlines stay data). A value that a
//!   single-quoted (literal) string cannot hold is an error that says to use
//!   double quotes.
//! - Outside strings (`port = ${PORT}`) a value that is a TOML integer, float
//!   or boolean is inserted as that scalar, so numbers and booleans can come
//!   from the environment; anything else is inserted as a double-quoted
//!   string. Durations and sizes are strings anyway (`timeout = ${TIMEOUT}`
//!   with TIMEOUT=30s works).
//! - Comments are left alone.
//!
//! Every problem is reported with its file and line, and all of them are
//! reported at once.

use std::fmt;

/// One interpolation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Bare,
    Comment,
    BasicString,
    LiteralString,
    MultilineBasicString,
    MultilineLiteralString,
}

/// Substitutes environment references in `text` (the contents of `file`).
pub fn interpolate(
    file: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<InterpolationError>> {
    let mut output = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut context = Context::Bare;
    let mut line = 1;
    let mut rest = text;

    while let Some(character) = rest.chars().next() {
        if character == '$' && context != Context::Comment {
            if let Some(after) = rest.strip_prefix("$$") {
                output.push('$');
                rest = after;
                continue;
            }
            if rest.starts_with("${") {
                match parse_reference(rest) {
                    Some((reference, consumed)) => {
                        match resolve(&reference, lookup) {
                            Ok(value) => match render(&value, context) {
                                Ok(rendered) => output.push_str(&rendered),
                                Err(message) => errors.push(InterpolationError {
                                    file: file.to_string(),
                                    line,
                                    message: format!("value of {}: {message}", reference.name),
                                }),
                            },
                            Err(message) => errors.push(InterpolationError { file: file.to_string(), line, message }),
                        }
                        rest = &rest[consumed..];
                        continue;
                    }
                    None => {
                        errors.push(InterpolationError {
                            file: file.to_string(),
                            line,
                            message: "malformed environment reference; write ${NAME}, ${NAME:-default} or ${NAME:?message}, or $$ for a literal $"
                                .to_string(),
                        });
                        output.push('$');
                        rest = &rest[1..];
                        continue;
                    }
                }
            }
        }

        // Track where we are in the TOML syntax.
        let (token_length, next_context) = match context {
            Context::Bare => {
                if rest.starts_with("\"\"\"") {
                    (3, Context::MultilineBasicString)
                } else if rest.starts_with("'''") {
                    (3, Context::MultilineLiteralString)
                } else {
                    match character {
                        '"' => (1, Context::BasicString),
                        '\'' => (1, Context::LiteralString),
                        '#' => (1, Context::Comment),
                        _ => (character.len_utf8(), Context::Bare),
                    }
                }
            }
            Context::Comment => {
                (character.len_utf8(), if character == '\n' { Context::Bare } else { Context::Comment })
            }
            Context::BasicString => match character {
                '\\' => (escape_length(rest), Context::BasicString),
                '"' | '\n' => (1, Context::Bare),
                _ => (character.len_utf8(), Context::BasicString),
            },
            Context::LiteralString => match character {
                '\'' | '\n' => (1, Context::Bare),
                _ => (character.len_utf8(), Context::LiteralString),
            },
            Context::MultilineBasicString => {
                if rest.starts_with("\"\"\"") {
                    (3, Context::Bare)
                } else if character == '\\' {
                    (escape_length(rest), Context::MultilineBasicString)
                } else {
                    (character.len_utf8(), Context::MultilineBasicString)
                }
            }
            Context::MultilineLiteralString => {
                if rest.starts_with("'''") {
                    (3, Context::Bare)
                } else {
                    (character.len_utf8(), Context::MultilineLiteralString)
                }
            }
        };
        let token = &rest[..token_length];
        line += token.matches('\n').count();
        output.push_str(token);
        rest = &rest[token_length..];
        context = next_context;
    }

    if errors.is_empty() {
        Ok(output)
    } else {
        Err(errors)
    }
}

/// Length of a backslash escape in a basic string, so an escaped quote does
/// not end the string.
fn escape_length(rest: &str) -> usize {
    let mut characters = rest.chars();
    characters.next();
    1 + characters.next().map_or(0, char::len_utf8)
}

struct Reference {
    name: String,
    fallback: Fallback,
}

enum Fallback {
    None,
    Default(String),
    Required(String),
}

/// Parses `${...}` at the start of `text`; returns the reference and the bytes consumed.
fn parse_reference(text: &str) -> Option<(Reference, usize)> {
    let body_start = 2;
    let close = text[body_start..].find('}')? + body_start;
    let body = &text[body_start..close];
    let (name, fallback) = if let Some((name, default)) = body.split_once(":-") {
        (name, Fallback::Default(default.to_string()))
    } else if let Some((name, message)) = body.split_once(":?") {
        (name, Fallback::Required(message.to_string()))
    } else {
        (body, Fallback::None)
    };
    let mut characters = name.chars();
    let valid_start = characters.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start || !characters.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((Reference { name: name.to_string(), fallback }, close + 1))
}

fn resolve(reference: &Reference, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let value = lookup(&reference.name).filter(|value| !value.is_empty());
    match (value, &reference.fallback) {
        (Some(value), _) => Ok(value),
        (None, Fallback::Default(default)) => Ok(default.clone()),
        (None, Fallback::Required(message)) => {
            Err(format!("environment variable {} is not set: {message}", reference.name))
        }
        (None, Fallback::None) => Err(format!(
            "environment variable {name} is not set; set it, or give a default with ${{{name}:-value}}",
            name = reference.name
        )),
    }
}

fn render(value: &str, context: Context) -> Result<String, &'static str> {
    match context {
        Context::Bare if is_toml_scalar(value) => Ok(value.to_string()),
        Context::Bare => Ok(format!("\"{}\"", escape_basic(value))),
        Context::BasicString | Context::MultilineBasicString => Ok(escape_basic(value)),
        Context::LiteralString => {
            if value.contains(['\'', '\n', '\r']) {
                Err("it contains a quote or a line break, which a single-quoted string cannot hold; use double quotes around the reference")
            } else {
                Ok(value.to_string())
            }
        }
        Context::MultilineLiteralString => {
            if value.contains("'''") {
                Err("it contains ''' which would end the string; use double quotes around the reference")
            } else {
                Ok(value.to_string())
            }
        }
        Context::Comment => Ok(String::new()),
    }
}

fn is_toml_scalar(value: &str) -> bool {
    if value == "true" || value == "false" {
        return true;
    }
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    let (integer_part, fraction) = match digits.split_once('.') {
        Some((integer_part, fraction)) => (integer_part, Some(fraction)),
        None => (digits, None),
    };
    let plain_digits = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    // TOML forbids leading zeros, so "007" stays a string.
    let no_leading_zero = integer_part == "0" || !integer_part.starts_with('0');
    plain_digits(integer_part) && no_leading_zero && fraction.is_none_or(plain_digits)
}

fn escape_basic(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() => escaped.push_str(&format!("\\u{:04X}", c as u32)),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string())
    }

    fn run(text: &str, pairs: &'static [(&'static str, &'static str)]) -> Result<String, Vec<InterpolationError>> {
        interpolate("test.toml", text, &env(pairs))
    }

    #[test]
    fn substitutes_in_strings_and_bare_positions() {
        let text = "endpoint = \"http://${HOST}:${PORT}\"\nport = ${PORT}\nverify = ${VERIFY}\nname = ${NAME}\n";
        let out = run(text, &[("HOST", "h"), ("PORT", "8088"), ("VERIFY", "false"), ("NAME", "a b")]).unwrap();
        assert_eq!(out, "endpoint = \"http://h:8088\"\nport = 8088\nverify = false\nname = \"a b\"\n");
        let parsed: toml::Table = out.parse().unwrap();
        assert_eq!(parsed["port"].as_integer(), Some(8088));
        assert_eq!(parsed["verify"].as_bool(), Some(false));
    }

    #[test]
    fn defaults_and_required_messages() {
        assert_eq!(run("a = \"${X:-fallback}\"", &[]).unwrap(), "a = \"fallback\"");
        assert_eq!(run("a = \"${X:-fallback}\"", &[("X", "")]).unwrap(), "a = \"fallback\"");
        let errors = run("\n\na = \"${TOKEN:?set it from the vault}\"", &[]).unwrap_err();
        assert_eq!(errors[0].to_string(), "test.toml:3: environment variable TOKEN is not set: set it from the vault");
    }

    #[test]
    fn unset_variable_names_file_line_and_variable_and_all_errors_are_reported() {
        let errors = run("a = \"${ONE}\"\nb = ${TWO}\n", &[]).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].to_string().starts_with("test.toml:1: environment variable ONE is not set"));
        assert!(errors[1].to_string().starts_with("test.toml:2: environment variable TWO is not set"));
    }

    #[test]
    fn values_cannot_inject_structure() {
        let hostile = "x\"\n[sinks.evil]\ntype = \"console\"";
        let leak: &'static str = Box::leak(hostile.to_string().into_boxed_str());
        let pairs: &'static [(&'static str, &'static str)] = Box::leak(Box::new([("V", leak)]));
        for template in ["a = \"${V}\"", "a = ${V}", "a = \"\"\"${V}\"\"\""] {
            let out = run(template, pairs).unwrap();
            let parsed: toml::Table = out.parse().unwrap_or_else(|error| panic!("{template}: {error}\n{out}"));
            assert_eq!(parsed.len(), 1, "{template}");
            assert_eq!(parsed["a"].as_str(), Some(hostile), "{template}");
        }
        let errors = run("a = '${V}'", pairs).unwrap_err();
        assert!(errors[0].message.contains("use double quotes"));
    }

    #[test]
    fn dollar_escapes_comments_and_plain_dollars() {
        assert_eq!(
            run("a = \"cost $$5 and $HOME\" # ${NOT_EXPANDED}", &[]).unwrap(),
            "a = \"cost $5 and $HOME\" # ${NOT_EXPANDED}"
        );
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        let out = run(r#"a = "say \"${X}\"" "#, &[("X", "hi")]).unwrap();
        assert_eq!(out, r#"a = "say \"hi\"" "#);
    }

    #[test]
    fn leading_zero_numbers_stay_strings() {
        assert_eq!(run("a = ${X}", &[("X", "007")]).unwrap(), "a = \"007\"");
        assert_eq!(run("a = ${X}", &[("X", "-1.5")]).unwrap(), "a = -1.5");
    }

    #[test]
    fn malformed_reference_is_an_error() {
        let errors = run("a = \"${not valid}\"", &[]).unwrap_err();
        assert!(errors[0].message.contains("malformed environment reference"));
    }
}
