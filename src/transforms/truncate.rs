//! `truncate`: caps the length of string fields.
//!
//! Keys: `fields` (a table of field path → maximum length; required), `unit`
//! = `"characters"` (default, like the alert plugin that cut messages at 1024
//! characters) or `"bytes"` (for byte limits downstream; never splits a UTF-8
//! character, so the kept part may be up to 3 bytes shorter), `suffix`
//! (default `"..."`, appended after the kept part of a truncated value).
//!
//! Non-string and missing fields are left alone. The kept part shares the
//! original string's buffer (no copy) when no suffix is configured.
//!
//! Acknowledgements: pass-through. Metrics: the standard counters plus
//! `pipe_transform_truncated_fields_total`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::event::{EventBatch, LogEvent, Str, Value};
use crate::topology::{BuildContext, BuildError, FunctionTransform, Transform, TransformOutputBuffer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    #[default]
    Characters,
    Bytes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruncateConfig {
    pub fields: BTreeMap<String, usize>,
    #[serde(default)]
    pub unit: LengthUnit,
    #[serde(default = "default_suffix")]
    pub suffix: String,
}

fn default_suffix() -> String {
    "...".to_string()
}

impl TruncateConfig {
    pub fn build(&self, cx: &BuildContext) -> Result<Transform, BuildError> {
        Ok(Transform::Function(Box::new(self.build_truncator(cx)?)))
    }

    /// The runtime value, exposed for benches and tests.
    pub fn build_truncator(&self, cx: &BuildContext) -> Result<Truncate, BuildError> {
        if self.fields.is_empty() {
            return Err(BuildError::new(
                "\"fields\" is empty; give field = max_length pairs, like fields = { message = 1024 }",
            ));
        }
        if let Some((field, _)) = self.fields.iter().find(|(_, limit)| **limit == 0) {
            return Err(BuildError::new(format!("\"fields.{field}\" is 0; set a maximum length above 0")));
        }
        let truncated = metrics::counter!(
            "pipe_transform_truncated_fields_total",
            "component_id" => cx.id.clone(),
            "component_kind" => "transform",
            "component_type" => "truncate"
        );
        Ok(Truncate {
            fields: self.fields.iter().map(|(path, limit)| (path.clone(), *limit)).collect(),
            unit: self.unit,
            suffix: self.suffix.clone(),
            truncated,
        })
    }
}

pub struct Truncate {
    fields: Vec<(String, usize)>,
    unit: LengthUnit,
    suffix: String,
    truncated: metrics::Counter,
}

impl Truncate {
    pub fn truncate(&self, event: &mut LogEvent) {
        for (path, limit) in &self.fields {
            let Some(Value::String(text)) = event.get_path_mut(path) else { continue };
            let Some(keep) = kept_length(text, *limit, self.unit) else { continue };
            *text = if self.suffix.is_empty() {
                text.slice(0..keep)
            } else {
                let mut shortened = String::with_capacity(keep + self.suffix.len());
                shortened.push_str(&text[..keep]);
                shortened.push_str(&self.suffix);
                Str::from(shortened)
            };
            self.truncated.increment(1);
        }
    }
}

/// The byte length to keep, or `None` when `text` is within `limit`.
fn kept_length(text: &str, limit: usize, unit: LengthUnit) -> Option<usize> {
    match unit {
        LengthUnit::Bytes => {
            if text.len() <= limit {
                return None;
            }
            let mut end = limit;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            Some(end)
        }
        LengthUnit::Characters => {
            // A string of at most `limit` bytes has at most `limit` characters.
            if text.len() <= limit {
                return None;
            }
            text.char_indices().nth(limit).map(|(index, _)| index)
        }
    }
}

impl FunctionTransform for Truncate {
    fn transform(&mut self, mut batch: EventBatch, output: &mut TransformOutputBuffer) {
        for event in &mut batch {
            self.truncate(event);
        }
        output.append(&mut batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn truncator(limit: usize, unit: LengthUnit, suffix: &str) -> Truncate {
        TruncateConfig { fields: BTreeMap::from([("message".to_string(), limit)]), unit, suffix: suffix.into() }
            .build_truncator(&BuildContext { id: "t".into(), data_dir: "data".into() })
            .unwrap()
    }

    fn truncated(text: &str, truncator: &Truncate) -> String {
        let mut event = LogEvent::from_fields("test", Default::default());
        event.insert("message", text);
        truncator.truncate(&mut event);
        event.get("message").unwrap().as_str().unwrap().to_string()
    }

    #[test]
    fn characters_and_bytes() {
        assert_eq!(truncated("héllo wörld", &truncator(5, LengthUnit::Characters, "...")), "héllo...");
        assert_eq!(truncated("héllo", &truncator(2, LengthUnit::Bytes, "")), "h", "é is two bytes and is not split");
        assert_eq!(truncated("short", &truncator(10, LengthUnit::Bytes, "...")), "short");
        assert_eq!(truncated("日本語テキスト", &truncator(3, LengthUnit::Characters, "…")), "日本語…");
    }

    proptest! {
        #[test]
        fn never_splits_a_character_and_respects_the_limit(text in "\\PC{0,60}", limit in 1usize..40) {
            let kept = truncated(&text, &truncator(limit, LengthUnit::Bytes, ""));
            prop_assert!(kept.len() <= limit.max(text.len().min(limit)));
            prop_assert!(text.starts_with(&kept));
            let kept = truncated(&text, &truncator(limit, LengthUnit::Characters, ""));
            prop_assert!(kept.chars().count() <= limit);
            prop_assert!(text.starts_with(&kept));
        }
    }
}
