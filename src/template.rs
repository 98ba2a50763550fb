//! Templates: `{{ field.path }}` placeholders plus strftime specifiers.
//!
//! Used wherever a setting may depend on the event: the file sink's `path`,
//! Splunk's `index`/`source`/`sourcetype`/`host`, Elasticsearch's `index`,
//! alert message templates. A placeholder takes a field by dotted path (see
//! `LogEvent::get_path`); strings render bare, other values as JSON. `%Y`,
//! `%m`, `%d`… in the literal text are strftime specifiers rendered with the
//! time given to `render_at` (UTC); field values are never interpreted as
//! strftime, so a `%` inside an event cannot change a path. A literal `%` is
//! written `%%`.
//!
//! Templates are parsed and checked once, at build time.

use std::fmt::Write;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};

use crate::event::{LogEvent, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template:?}: \"{{{{\" at byte {position} is not closed by \"}}}}\"")]
    Unclosed { template: String, position: usize },
    #[error("template {template:?}: empty field name in \"{{{{ }}}}\" at byte {position}; write {{{{ field.path }}}}")]
    EmptyField { template: String, position: usize },
    #[error("template {template:?}: invalid strftime specifier in {literal:?}; use specifiers such as %Y-%m-%d, or %% for a literal %")]
    Strftime { template: String, literal: String },
}

/// Rendering failed because the event lacks a field the template needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the event has no field \"{0}\"")]
pub struct MissingField(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal { text: String, strftime: bool },
    Field(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(literal(text, &rest[..open])?);
            }
            let after_open = &rest[open + 2..];
            let close = after_open
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed { template: text.to_string(), position: offset + open })?;
            let field = after_open[..close].trim();
            if field.is_empty() {
                return Err(TemplateError::EmptyField { template: text.to_string(), position: offset + open });
            }
            parts.push(Part::Field(field.to_string()));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(literal(text, rest)?);
        }
        Ok(Template { source: text.to_string(), parts })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the output depends on the event or the time.
    pub fn is_dynamic(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Field(_) | Part::Literal { strftime: true, .. }))
    }

    /// The field paths the template reads.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field(path) => Some(path.as_str()),
            Part::Literal { .. } => None,
        })
    }

    /// Renders with the current time for strftime specifiers.
    pub fn render(&self, event: &LogEvent) -> Result<String, MissingField> {
        self.render_at(event, Utc::now())
    }

    pub fn render_at(&self, event: &LogEvent, time: DateTime<Utc>) -> Result<String, MissingField> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal { text, strftime: false } => out.push_str(text),
                Part::Literal { text, strftime: true } => {
                    let _ = write!(out, "{}", time.format(text));
                }
                Part::Field(path) => match event.get_path(path) {
                    Some(value) if !value.is_null() => out.push_str(&value.to_text()),
                    _ => return Err(MissingField(path.clone())),
                },
            }
        }
        Ok(out)
    }

    /// Renders with `write_field` deciding how each placeholder becomes text:
    /// it gets the field path, the value (`None` when the event lacks it) and
    /// the output. Used where a missing field is not an error (alert text shows
    /// a placeholder) or values need escaping (a JSON body template).
    pub fn render_with(
        &self,
        event: &LogEvent,
        time: DateTime<Utc>,
        mut write_field: impl FnMut(&str, Option<&Value>, &mut String),
    ) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal { text, strftime: false } => out.push_str(text),
                Part::Literal { text, strftime: true } => {
                    let _ = write!(out, "{}", time.format(text));
                }
                Part::Field(path) => write_field(path, event.get_path(path), &mut out),
            }
        }
        out
    }
}

fn literal(template: &str, text: &str) -> Result<Part, TemplateError> {
    if !text.contains('%') {
        return Ok(Part::Literal { text: text.to_string(), strftime: false });
    }
    if StrftimeItems::new(text).any(|item| matches!(item, Item::Error)) {
        return Err(TemplateError::Strftime { template: template.to_string(), literal: text.to_string() });
    }
    Ok(Part::Literal { text: text.to_string(), strftime: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(json: &str) -> LogEvent {
        let Value::Object(fields) = serde_json::from_str::<Value>(json).unwrap() else { panic!() };
        LogEvent::from_fields("test", fields)
    }

    #[test]
    fn renders_fields_and_dates() {
        let template = Template::parse("logs/{{ host.name }}/%Y-%m-%d/{{level}}.ndjson").unwrap();
        let time = Utc.with_ymd_and_hms(2026, 11, 21, 5, 0, 0).unwrap();
        let rendered = template.render_at(&event(r#"{"host":{"name":"api-prod-03"},"level":"INFO"}"#), time).unwrap();
        assert_eq!(rendered, "logs/api-prod-03/2026-11-21/INFO.ndjson");
        assert!(template.is_dynamic());
    }

    #[test]
    fn percent_in_field_values_is_not_strftime() {
        let template = Template::parse("%Y/{{ name }}").unwrap();
        let time = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(template.render_at(&event(r#"{"name":"100%d"}"#), time).unwrap(), "2026/100%d");
    }

    #[test]
    fn missing_fields_and_malformed_templates_are_errors() {
        let template = Template::parse("{{ absent }}").unwrap();
        assert_eq!(template.render(&event("{}")).unwrap_err(), MissingField("absent".into()));
        assert!(matches!(Template::parse("a {{ b"), Err(TemplateError::Unclosed { position: 2, .. })));
        assert!(matches!(Template::parse("{{ }}"), Err(TemplateError::EmptyField { .. })));
        assert!(matches!(Template::parse("%Q"), Err(TemplateError::Strftime { .. })));
        assert!(!Template::parse("main").unwrap().is_dynamic());
    }

    #[test]
    fn render_with_lets_the_caller_write_each_value() {
        let template = Template::parse("{{ a }}/{{ absent }}").unwrap();
        let rendered = template.render_with(&event(r#"{"a":"x\"y"}"#), Utc::now(), |path, value, out| match value {
            Some(value) => out.push_str(&value.to_text().replace('"', "\\\"")),
            None => out.push_str(&format!("<{path}?>")),
        });
        assert_eq!(rendered, r#"x\"y/<absent?>"#);
    }
}
