//! Line decoding shared by the `stdin` and `file` sources.
//!
//! `text`: each line becomes `{"message": line}`. `json`: each line must be a
//! JSON object and becomes its fields; a line that is not is kept as
//! `{"message": line}` and counted as a parse error, never dropped.

use serde::Deserialize;

use crate::event::{object_map_with_capacity, KeyString, ObjectMap, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    #[default]
    Text,
    Json,
}

/// Decodes one line (without its line terminator). Returns the fields and
/// whether the line failed to parse as the configured format.
pub fn decode_line(line: &str, decoding: Decoding) -> (ObjectMap, bool) {
    if decoding == Decoding::Json {
        if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) {
            return (fields, false);
        }
    }
    let mut fields = object_map_with_capacity(1);
    fields.insert(KeyString::const_new("message"), Value::from(line));
    (fields, decoding == Decoding::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_become_fields_and_bad_lines_are_kept() {
        let (fields, failed) = decode_line(r#"{"a":1}"#, Decoding::Json);
        assert!(!failed);
        assert_eq!(fields["a"], Value::Integer(1));
        let (fields, failed) = decode_line("not json", Decoding::Json);
        assert!(failed);
        assert_eq!(fields["message"].as_str(), Some("not json"));
        let (_, failed) = decode_line("[1,2]", Decoding::Json);
        assert!(failed, "only objects are events");
    }
}
