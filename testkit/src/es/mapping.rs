//! Index mappings: parsing them, extending them dynamically, and turning a
//! document into the indexed values queries run against.
//!
//! What is modelled: field types `text` (standard-analyzer-like tokens),
//! `keyword` (with `ignore_above`), the integer and floating types, `boolean`,
//! `date` (with `format`), `ip` (treated as keyword), `object`/`nested`
//! (nested treated as object), `enabled: false`, `index: false`, multi-fields
//! (`fields`), `dynamic: true|false|strict`, `date_detection`,
//! `numeric_detection` and `dynamic_templates` (`match_mapping_type`,
//! `match`, `unmatch`, `path_match`, `path_unmatch`). Dynamic strings become
//! `text` with a `keyword` sub-field (`ignore_above: 256`), integers `long`,
//! fractions `float`, as in Elasticsearch 6-8 and OpenSearch.
//!
//! What it guarantees: a value that does not fit its mapped type is a
//! per-document mapping error shaped like Elasticsearch's
//! (`mapper_parsing_exception`, or `document_parsing_exception` on 8.8+), and
//! the mapping is only extended when the whole document is accepted (the
//! caller parses against a copy). Other types (`geo_point`, `binary`, ...)
//! are accepted and stored but never indexed. Analysis is an approximation
//! of the standard analyzer, not Lucene's UAX#29 implementation.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::dates;
use super::error::{ApiError, ErrorCause};

/// What `dynamic` says about fields not in the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamicMode {
    True,
    False,
    Strict,
}

impl DynamicMode {
    fn parse(value: &Value) -> Result<DynamicMode, String> {
        match value {
            Value::Bool(true) => Ok(DynamicMode::True),
            Value::Bool(false) => Ok(DynamicMode::False),
            Value::String(text) => match text.as_str() {
                "true" => Ok(DynamicMode::True),
                "false" | "runtime" => Ok(DynamicMode::False),
                "strict" => Ok(DynamicMode::Strict),
                other => Err(format!("Could not convert [dynamic] to boolean: [{other}]")),
            },
            other => Err(format!("Could not convert [dynamic] to boolean: [{other}]")),
        }
    }

    fn to_json(self) -> Value {
        match self {
            DynamicMode::True => Value::String("true".into()),
            DynamicMode::False => Value::String("false".into()),
            DynamicMode::Strict => Value::String("strict".into()),
        }
    }
}

/// How a leaf field indexes its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Keyword,
    Integer {
        min: i64,
        max: i64,
    },
    Float,
    Boolean,
    Date,
    /// Stored, never indexed (`geo_point`, `binary`, `flattened`, ...).
    Opaque,
}

impl FieldKind {
    fn from_type(type_name: &str) -> Option<FieldKind> {
        Some(match type_name {
            "text" | "match_only_text" => FieldKind::Text,
            "keyword" | "constant_keyword" | "wildcard" | "ip" | "version" => FieldKind::Keyword,
            "long" => FieldKind::Integer { min: i64::MIN, max: i64::MAX },
            "integer" => FieldKind::Integer { min: i32::MIN as i64, max: i32::MAX as i64 },
            "short" => FieldKind::Integer { min: i16::MIN as i64, max: i16::MAX as i64 },
            "byte" => FieldKind::Integer { min: i8::MIN as i64, max: i8::MAX as i64 },
            "unsigned_long" => FieldKind::Integer { min: 0, max: i64::MAX },
            "double" | "float" | "half_float" | "scaled_float" => FieldKind::Float,
            "boolean" => FieldKind::Boolean,
            "date" | "date_nanos" => FieldKind::Date,
            "geo_point" | "geo_shape" | "binary" | "flattened" | "object_opaque" | "histogram" | "dense_vector"
            | "alias" | "completion" | "search_as_you_type" | "token_count" | "percolator" | "join"
            | "rank_feature" | "rank_features" | "integer_range" | "long_range" | "float_range" | "double_range"
            | "date_range" | "ip_range" => FieldKind::Opaque,
            _ => return None,
        })
    }
}

/// A field with a concrete type.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafMapping {
    pub type_name: String,
    pub kind: FieldKind,
    pub format: Option<String>,
    pub ignore_above: Option<usize>,
    pub index: bool,
    pub subfields: BTreeMap<String, LeafMapping>,
    /// Parameters kept only to echo them in `GET _mapping`.
    other_parameters: Map<String, Value>,
}

impl LeafMapping {
    fn of_type(type_name: &str) -> LeafMapping {
        LeafMapping {
            type_name: type_name.to_string(),
            kind: FieldKind::from_type(type_name).unwrap_or(FieldKind::Opaque),
            format: None,
            ignore_above: None,
            index: true,
            subfields: BTreeMap::new(),
            other_parameters: Map::new(),
        }
    }

    /// `text` with a `keyword` sub-field, the dynamic mapping of strings.
    fn dynamic_string() -> LeafMapping {
        let mut text = LeafMapping::of_type("text");
        let mut keyword = LeafMapping::of_type("keyword");
        keyword.ignore_above = Some(256);
        text.subfields.insert("keyword".into(), keyword);
        text
    }

    pub fn date_format(&self) -> &str {
        self.format.as_deref().unwrap_or(dates::DEFAULT_DATE_FORMAT)
    }

    fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("type".into(), Value::String(self.type_name.clone()));
        for (key, value) in &self.other_parameters {
            object.insert(key.clone(), value.clone());
        }
        if let Some(format) = &self.format {
            object.insert("format".into(), Value::String(format.clone()));
        }
        if let Some(ignore_above) = self.ignore_above {
            object.insert("ignore_above".into(), Value::from(ignore_above));
        }
        if !self.index {
            object.insert("index".into(), Value::Bool(false));
        }
        if !self.subfields.is_empty() {
            let fields: Map<String, Value> =
                self.subfields.iter().map(|(name, sub)| (name.clone(), sub.to_json())).collect();
            object.insert("fields".into(), Value::Object(fields));
        }
        Value::Object(object)
    }
}

/// An `object` (or `nested`) field and its properties.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectMapping {
    pub dynamic: Option<DynamicMode>,
    pub enabled: bool,
    pub nested: bool,
    pub properties: BTreeMap<String, FieldMapping>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldMapping {
    Object(ObjectMapping),
    Leaf(LeafMapping),
}

#[derive(Debug, Clone, PartialEq)]
struct DynamicTemplate {
    name: String,
    match_mapping_type: Option<String>,
    match_pattern: Option<String>,
    unmatch: Option<String>,
    path_match: Option<String>,
    path_unmatch: Option<String>,
    mapping: Map<String, Value>,
    raw: Value,
}

/// An index's whole mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct RootMapping {
    pub root: ObjectMapping,
    pub date_detection: bool,
    pub numeric_detection: bool,
    dynamic_templates: Vec<DynamicTemplate>,
    /// `_source`, `_meta`, `_routing`: echoed, not interpreted.
    other_parameters: Map<String, Value>,
}

impl Default for RootMapping {
    fn default() -> RootMapping {
        RootMapping {
            root: ObjectMapping { enabled: true, ..ObjectMapping::default() },
            date_detection: true,
            numeric_detection: false,
            dynamic_templates: Vec::new(),
            other_parameters: Map::new(),
        }
    }
}

fn mapping_error(reason: impl Into<String>) -> ApiError {
    ApiError::bad_request("mapper_parsing_exception", reason)
}

impl RootMapping {
    /// Parses a typeless `mappings` object (`{"properties": ...}`).
    pub fn parse(mappings: &Value) -> Result<RootMapping, ApiError> {
        let mut mapping = RootMapping::default();
        mapping.merge(mappings)?;
        Ok(mapping)
    }

    /// Applies a put-mapping body: new fields are added, compatible
    /// parameters updated, a changed field type is an error.
    pub fn merge(&mut self, mappings: &Value) -> Result<(), ApiError> {
        let Value::Object(object) = mappings else {
            return Err(mapping_error(format!("Failed to parse mapping: mapping must be an object, got [{mappings}]")));
        };
        let mut unsupported = Vec::new();
        for (key, value) in object {
            match key.as_str() {
                "properties" => merge_properties(&mut self.root, "", value)?,
                "dynamic" => self.root.dynamic = Some(DynamicMode::parse(value).map_err(mapping_error)?),
                "date_detection" => self.date_detection = value.as_bool().unwrap_or(value.as_str() == Some("true")),
                "numeric_detection" => {
                    self.numeric_detection = value.as_bool().unwrap_or(value.as_str() == Some("true"))
                }
                "dynamic_templates" => self.dynamic_templates = parse_dynamic_templates(value)?,
                "_source"
                | "_meta"
                | "_routing"
                | "_field_names"
                | "_all"
                | "dynamic_date_formats"
                | "_data_stream_timestamp"
                | "runtime"
                | "enabled" => {
                    self.other_parameters.insert(key.clone(), value.clone());
                }
                _ => unsupported.push(format!("{key} : {value}")),
            }
        }
        if !unsupported.is_empty() {
            return Err(mapping_error(format!(
                "Root mapping definition has unsupported parameters:  [{}]",
                unsupported.join(", ")
            )));
        }
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        if let Some(dynamic) = self.root.dynamic {
            object.insert("dynamic".into(), dynamic.to_json());
        }
        if !self.dynamic_templates.is_empty() {
            object.insert(
                "dynamic_templates".into(),
                Value::Array(self.dynamic_templates.iter().map(|t| t.raw.clone()).collect()),
            );
        }
        if !self.date_detection {
            object.insert("date_detection".into(), Value::Bool(false));
        }
        if self.numeric_detection {
            object.insert("numeric_detection".into(), Value::Bool(true));
        }
        for (key, value) in &self.other_parameters {
            object.insert(key.clone(), value.clone());
        }
        if !self.root.properties.is_empty() {
            object.insert("properties".into(), properties_to_json(&self.root.properties));
        }
        Value::Object(object)
    }

    /// The leaf mapping a query field name refers to (`message.keyword` is
    /// the `keyword` sub-field of `message`).
    pub fn resolve_leaf(&self, path: &str) -> Option<&LeafMapping> {
        let parts: Vec<&str> = path.split('.').collect();
        let mut object = &self.root;
        let mut index = 0;
        while index < parts.len() {
            match object.properties.get(parts[index])? {
                FieldMapping::Object(child) => object = child,
                FieldMapping::Leaf(leaf) => {
                    let rest = &parts[index + 1..];
                    return match rest {
                        [] => Some(leaf),
                        [sub] => leaf.subfields.get(*sub),
                        _ => None,
                    };
                }
            }
            index += 1;
        }
        None
    }

    /// Whether `path` names an object (so `exists` on it checks children).
    pub fn is_object(&self, path: &str) -> bool {
        let mut object = &self.root;
        for part in path.split('.') {
            match object.properties.get(part) {
                Some(FieldMapping::Object(child)) => object = child,
                _ => return false,
            }
        }
        true
    }

    /// Every leaf field path, sub-fields included.
    pub fn leaf_paths(&self) -> Vec<(String, &LeafMapping)> {
        let mut paths = Vec::new();
        collect_leaf_paths(&self.root, "", &mut paths);
        paths
    }

    /// Validates `source` against the mapping, extending the mapping with
    /// dynamic fields, and returns the indexed values.
    pub fn index_document(
        &mut self,
        source: &Map<String, Value>,
        context: &DocumentContext<'_>,
    ) -> Result<IndexedFields, ErrorCause> {
        let mut parser = DocumentParser {
            context,
            date_detection: self.date_detection,
            numeric_detection: self.numeric_detection,
            templates: &self.dynamic_templates,
            indexed: IndexedFields::new(),
        };
        let dynamic = self.root.dynamic.unwrap_or(DynamicMode::True);
        parser.parse_object(&mut self.root, "", source, dynamic)?;
        Ok(parser.indexed)
    }
}

fn collect_leaf_paths<'a>(object: &'a ObjectMapping, prefix: &str, paths: &mut Vec<(String, &'a LeafMapping)>) {
    for (name, field) in &object.properties {
        let path = join_path(prefix, name);
        match field {
            FieldMapping::Object(child) => collect_leaf_paths(child, &path, paths),
            FieldMapping::Leaf(leaf) => {
                for (sub_name, sub) in &leaf.subfields {
                    paths.push((format!("{path}.{sub_name}"), sub));
                }
                paths.push((path, leaf));
            }
        }
    }
}

fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn properties_to_json(properties: &BTreeMap<String, FieldMapping>) -> Value {
    let mut object = Map::new();
    for (name, field) in properties {
        let rendered = match field {
            FieldMapping::Leaf(leaf) => leaf.to_json(),
            FieldMapping::Object(child) => {
                let mut child_json = Map::new();
                if child.nested {
                    child_json.insert("type".into(), Value::String("nested".into()));
                }
                if let Some(dynamic) = child.dynamic {
                    child_json.insert("dynamic".into(), dynamic.to_json());
                }
                if !child.enabled {
                    child_json.insert("type".into(), Value::String("object".into()));
                    child_json.insert("enabled".into(), Value::Bool(false));
                }
                if !child.properties.is_empty() {
                    child_json.insert("properties".into(), properties_to_json(&child.properties));
                }
                Value::Object(child_json)
            }
        };
        object.insert(name.clone(), rendered);
    }
    Value::Object(object)
}

fn merge_properties(object: &mut ObjectMapping, prefix: &str, properties: &Value) -> Result<(), ApiError> {
    let Value::Object(properties) = properties else {
        return Err(mapping_error(format!(
            "Expected map for property [properties] on field [{prefix}] but got a {properties}"
        )));
    };
    for (name, definition) in properties {
        // Dotted names in a mapping are shorthand for nested objects.
        let parts: Vec<&str> = name.split('.').collect();
        let mut target = &mut *object;
        let mut path = prefix.to_string();
        for part in &parts[..parts.len() - 1] {
            path = join_path(&path, part);
            let entry = target
                .properties
                .entry(part.to_string())
                .or_insert_with(|| FieldMapping::Object(ObjectMapping { enabled: true, ..ObjectMapping::default() }));
            target = match entry {
                FieldMapping::Object(child) => child,
                FieldMapping::Leaf(leaf) => {
                    return Err(ApiError::illegal_argument(format!(
                        "can't merge a non object mapping [{path}] with an object mapping (it is of type [{}])",
                        leaf.type_name
                    )))
                }
            };
        }
        let last = parts[parts.len() - 1];
        let path = join_path(&path, last);
        let parsed = parse_field_definition(&path, definition)?;
        match (target.properties.get_mut(last), parsed) {
            (None, parsed) => {
                target.properties.insert(last.to_string(), parsed);
            }
            (Some(FieldMapping::Leaf(existing)), FieldMapping::Leaf(new)) => {
                if existing.type_name != new.type_name {
                    return Err(ApiError::illegal_argument(format!(
                        "mapper [{path}] cannot be changed from type [{}] to [{}]",
                        existing.type_name, new.type_name
                    )));
                }
                for (sub_name, sub) in new.subfields {
                    existing.subfields.insert(sub_name, sub);
                }
                if new.ignore_above.is_some() {
                    existing.ignore_above = new.ignore_above;
                }
            }
            (Some(FieldMapping::Object(existing)), FieldMapping::Object(new)) => {
                if new.dynamic.is_some() {
                    existing.dynamic = new.dynamic;
                }
                let properties_json = definition.get("properties").cloned().unwrap_or_else(|| json!({}));
                merge_properties(existing, &path, &properties_json)?;
            }
            (Some(FieldMapping::Object(_)), FieldMapping::Leaf(new)) => {
                return Err(ApiError::illegal_argument(format!(
                    "can't merge a non object mapping [{path}] with an object mapping (it is of type [{}])",
                    new.type_name
                )))
            }
            (Some(FieldMapping::Leaf(existing)), FieldMapping::Object(_)) => {
                return Err(ApiError::illegal_argument(format!(
                    "can't merge a non object mapping [{path}] with an object mapping (it is of type [{}])",
                    existing.type_name
                )))
            }
        }
    }
    Ok(())
}

fn parse_field_definition(path: &str, definition: &Value) -> Result<FieldMapping, ApiError> {
    let Value::Object(definition) = definition else {
        return Err(mapping_error(format!(
            "Expected map for property [fields] on field [{path}] but got a class java.lang.String"
        )));
    };
    let type_name = definition.get("type").and_then(Value::as_str);
    match type_name {
        None | Some("object") | Some("nested") => {
            let mut object =
                ObjectMapping { enabled: true, nested: type_name == Some("nested"), ..ObjectMapping::default() };
            if let Some(dynamic) = definition.get("dynamic") {
                object.dynamic = Some(DynamicMode::parse(dynamic).map_err(mapping_error)?);
            }
            if definition.get("enabled").and_then(Value::as_bool) == Some(false) {
                object.enabled = false;
            }
            if let Some(properties) = definition.get("properties") {
                merge_properties(&mut object, path, properties)?;
            }
            Ok(FieldMapping::Object(object))
        }
        Some(type_name) => {
            let kind = FieldKind::from_type(type_name).ok_or_else(|| {
                mapping_error(format!("No handler for type [{type_name}] declared on field [{path}]"))
            })?;
            let mut leaf = LeafMapping { kind, ..LeafMapping::of_type(type_name) };
            for (key, value) in definition {
                match key.as_str() {
                    "type" => {}
                    "format" => leaf.format = value.as_str().map(str::to_string),
                    "ignore_above" => leaf.ignore_above = value.as_u64().map(|above| above as usize),
                    "index" => leaf.index = value.as_bool().unwrap_or(value.as_str() != Some("false")),
                    "fields" => {
                        let Value::Object(subfields) = value else {
                            return Err(mapping_error(format!("Expected map for property [fields] on field [{path}]")));
                        };
                        for (sub_name, sub_definition) in subfields {
                            match parse_field_definition(&format!("{path}.{sub_name}"), sub_definition)? {
                                FieldMapping::Leaf(sub) => {
                                    leaf.subfields.insert(sub_name.clone(), sub);
                                }
                                FieldMapping::Object(_) => {
                                    return Err(mapping_error(format!(
                                        "Type [object] cannot be used in multi field [{path}.{sub_name}]"
                                    )))
                                }
                            }
                        }
                    }
                    _ => {
                        leaf.other_parameters.insert(key.clone(), value.clone());
                    }
                }
            }
            Ok(FieldMapping::Leaf(leaf))
        }
    }
}

fn parse_dynamic_templates(value: &Value) -> Result<Vec<DynamicTemplate>, ApiError> {
    let Value::Array(entries) = value else {
        return Err(mapping_error("Dynamic template syntax error. An array of named objects is expected."));
    };
    let mut templates = Vec::new();
    for entry in entries {
        let Some((name, body)) = entry.as_object().and_then(|object| object.iter().next()) else {
            return Err(mapping_error("Dynamic template syntax error. An array of named objects is expected."));
        };
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        let mapping = body.get("mapping").and_then(Value::as_object).cloned().unwrap_or_default();
        templates.push(DynamicTemplate {
            name: name.clone(),
            match_mapping_type: text("match_mapping_type"),
            match_pattern: text("match"),
            unmatch: text("unmatch"),
            path_match: text("path_match"),
            path_unmatch: text("path_unmatch"),
            mapping,
            raw: entry.clone(),
        });
    }
    Ok(templates)
}

/// Simple `*` wildcard matching, as dynamic templates and `_source` use.
pub fn simple_wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (index, part) in parts.iter().enumerate() {
        if index == 0 {
            match rest.strip_prefix(part) {
                Some(after) => rest = after,
                None => return false,
            }
        } else if index == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(found) => rest = &rest[found + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// One indexed value of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexedValue {
    Keyword(String),
    /// The tokens of one text value, in order.
    Text(Vec<String>),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Date(i64),
}

/// Field path (sub-fields as `message.keyword`) to its indexed values.
pub type IndexedFields = BTreeMap<String, Vec<IndexedValue>>;

/// What a mapping error message needs to know about the document.
#[derive(Debug, Clone)]
pub struct DocumentContext<'a> {
    pub document_id: &'a str,
    /// The source line as sent, used for the `[line:col]` prefix.
    pub raw_source: &'a str,
    /// 8.8+: `document_parsing_exception` with a `[line:col]` prefix.
    pub document_parsing_exception: bool,
    /// 7.x+: "... in document with id '...'".
    pub names_document: bool,
}

impl DocumentContext<'_> {
    fn error_type(&self) -> &'static str {
        if self.document_parsing_exception {
            "document_parsing_exception"
        } else {
            "mapper_parsing_exception"
        }
    }

    /// `[1:col] ` where col is where the field's value starts in the raw
    /// source (approximate: the first occurrence of the quoted key).
    fn position_prefix(&self, field_name: &str) -> String {
        if !self.document_parsing_exception {
            return String::new();
        }
        let quoted = format!("\"{field_name}\"");
        let column = self
            .raw_source
            .find(&quoted)
            .map(|found| {
                let after_key = found + quoted.len();
                let rest = &self.raw_source[after_key..];
                let skipped = rest.len() - rest.trim_start_matches([' ', ':', '\t']).len();
                after_key + skipped + 1
            })
            .unwrap_or(1);
        format!("[1:{column}] ")
    }

    fn field_error(
        &self,
        path: &str,
        leaf_name: &str,
        type_name: &str,
        value: &Value,
        cause: ErrorCause,
    ) -> ErrorCause {
        let document =
            if self.names_document { format!(" in document with id '{}'", self.document_id) } else { String::new() };
        let preview = if self.names_document {
            format!(". Preview of field's value: '{}'", preview(value))
        } else {
            String::new()
        };
        let reason = format!(
            "{}failed to parse field [{path}] of type [{type_name}]{document}{preview}",
            self.position_prefix(leaf_name)
        );
        ErrorCause::new(self.error_type(), reason).caused_by(cause)
    }

    fn plain_error(&self, leaf_name: &str, reason: String) -> ErrorCause {
        ErrorCause::new(self.error_type(), format!("{}{reason}", self.position_prefix(leaf_name)))
    }
}

/// How Java prints the value in "Preview of field's value".
fn preview(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(object) => {
            let inner: Vec<String> = object.iter().map(|(key, value)| format!("{key}={}", preview(value))).collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(preview).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

struct DocumentParser<'a> {
    context: &'a DocumentContext<'a>,
    date_detection: bool,
    numeric_detection: bool,
    templates: &'a [DynamicTemplate],
    indexed: IndexedFields,
}

impl DocumentParser<'_> {
    fn parse_object(
        &mut self,
        object_mapping: &mut ObjectMapping,
        prefix: &str,
        object: &Map<String, Value>,
        inherited: DynamicMode,
    ) -> Result<(), ErrorCause> {
        let dynamic = object_mapping.dynamic.unwrap_or(inherited);
        for (key, value) in object {
            if key.is_empty() || key.split('.').any(str::is_empty) {
                return Err(self.context.plain_error(
                    key,
                    format!("field name cannot be an empty string or contain empty path parts: [{key}]"),
                ));
            }
            let parts: Vec<&str> = key.split('.').collect();
            self.parse_path(object_mapping, prefix, &parts, value, dynamic)?;
        }
        Ok(())
    }

    fn parse_path(
        &mut self,
        object_mapping: &mut ObjectMapping,
        prefix: &str,
        parts: &[&str],
        value: &Value,
        dynamic: DynamicMode,
    ) -> Result<(), ErrorCause> {
        if parts.len() == 1 {
            return self.parse_value(object_mapping, prefix, parts[0], value, dynamic);
        }
        let name = parts[0];
        let path = join_path(prefix, name);
        if !object_mapping.properties.contains_key(name) {
            match dynamic {
                DynamicMode::False => return Ok(()),
                DynamicMode::Strict => return Err(self.strict_error(prefix, name)),
                DynamicMode::True => {
                    object_mapping.properties.insert(
                        name.to_string(),
                        FieldMapping::Object(ObjectMapping { enabled: true, ..ObjectMapping::default() }),
                    );
                }
            }
        }
        match object_mapping.properties.get_mut(name) {
            Some(FieldMapping::Object(child)) => {
                if !child.enabled {
                    return Ok(());
                }
                let child_dynamic = child.dynamic.unwrap_or(dynamic);
                self.parse_path(child, &path, &parts[1..], value, child_dynamic)
            }
            Some(FieldMapping::Leaf(leaf)) => {
                let full = join_path(&path, &parts[1..].join("."));
                Err(self.context.plain_error(
                    name,
                    format!("Could not dynamically add mapping for field [{full}]. Existing mapping for [{path}] must be of type object but found [{}].", leaf.type_name),
                ))
            }
            None => Ok(()),
        }
    }

    fn strict_error(&self, prefix: &str, name: &str) -> ErrorCause {
        let parent = if prefix.is_empty() { "_doc" } else { prefix };
        let position = self.context.position_prefix(name);
        ErrorCause::new(
            "strict_dynamic_mapping_exception",
            format!(
                "{position}mapping set to strict, dynamic introduction of [{name}] within [{parent}] is not allowed"
            ),
        )
    }

    fn parse_value(
        &mut self,
        object_mapping: &mut ObjectMapping,
        prefix: &str,
        name: &str,
        value: &Value,
        dynamic: DynamicMode,
    ) -> Result<(), ErrorCause> {
        let path = join_path(prefix, name);
        match value {
            Value::Null => Ok(()),
            Value::Array(items) => {
                for item in items {
                    self.parse_value(object_mapping, prefix, name, item, dynamic)?;
                }
                Ok(())
            }
            Value::Object(inner) => {
                if !object_mapping.properties.contains_key(name) {
                    match dynamic {
                        DynamicMode::False => return Ok(()),
                        DynamicMode::Strict => return Err(self.strict_error(prefix, name)),
                        DynamicMode::True => {
                            let created = self.dynamic_field(&path, name, "object")?;
                            object_mapping.properties.insert(name.to_string(), created);
                        }
                    }
                }
                match object_mapping.properties.get_mut(name) {
                    Some(FieldMapping::Object(child)) => {
                        if !child.enabled {
                            return Ok(());
                        }
                        self.parse_object(child, &path, inner, dynamic)
                    }
                    Some(FieldMapping::Leaf(leaf)) if leaf.kind == FieldKind::Opaque => Ok(()),
                    Some(FieldMapping::Leaf(leaf)) => {
                        let cause = ErrorCause::new("illegal_argument_exception", "Can't get text on a START_OBJECT");
                        Err(self.context.field_error(&path, name, &leaf.type_name, value, cause))
                    }
                    None => Ok(()),
                }
            }
            scalar => {
                if !object_mapping.properties.contains_key(name) {
                    match dynamic {
                        DynamicMode::False => return Ok(()),
                        DynamicMode::Strict => return Err(self.strict_error(prefix, name)),
                        DynamicMode::True => {
                            let detected = self.detect_type(scalar);
                            let created = self.dynamic_field(&path, name, detected)?;
                            object_mapping.properties.insert(name.to_string(), created);
                        }
                    }
                }
                match object_mapping.properties.get(name) {
                    Some(FieldMapping::Leaf(leaf)) => self.index_leaf(&path, name, leaf, scalar),
                    Some(FieldMapping::Object(_)) => Err(self.context.plain_error(
                        name,
                        format!("object mapping for [{path}] tried to parse field [{name}] as object, but found a concrete value"),
                    )),
                    None => Ok(()),
                }
            }
        }
    }

    /// The dynamic mapping type name Elasticsearch detects for a value.
    fn detect_type(&self, value: &Value) -> &'static str {
        match value {
            Value::Bool(_) => "boolean",
            Value::Number(number) if number.is_i64() || number.is_u64() => "long",
            Value::Number(_) => "double",
            Value::String(text) => {
                // Detection requires at least a full date so that strings such
                // as "8080" or "2024" stay strings.
                if self.date_detection
                    && text.len() >= 10
                    && dates::parse_date(text, "strict_date_optional_time||yyyy/MM/dd HH:mm:ss||yyyy/MM/dd", false, 0)
                        .is_ok()
                {
                    "date"
                } else if self.numeric_detection && text.trim().parse::<i64>().is_ok() {
                    "long"
                } else if self.numeric_detection && text.trim().parse::<f64>().is_ok_and(f64::is_finite) {
                    "double"
                } else {
                    "string"
                }
            }
            _ => "object",
        }
    }

    fn dynamic_field(&self, path: &str, name: &str, detected: &str) -> Result<FieldMapping, ErrorCause> {
        for template in self.templates {
            if let Some(expected) = &template.match_mapping_type {
                if expected != "*" && expected != detected {
                    continue;
                }
            }
            if template.match_pattern.as_deref().is_some_and(|pattern| !simple_wildcard_match(pattern, name))
                || template.unmatch.as_deref().is_some_and(|pattern| simple_wildcard_match(pattern, name))
                || template.path_match.as_deref().is_some_and(|pattern| !simple_wildcard_match(pattern, path))
                || template.path_unmatch.as_deref().is_some_and(|pattern| simple_wildcard_match(pattern, path))
            {
                continue;
            }
            let mut mapping = template.mapping.clone();
            let default_type = match detected {
                "string" => "text",
                "double" => "float",
                other => other,
            };
            for value in mapping.values_mut() {
                if let Value::String(text) = value {
                    *text = text.replace("{name}", name).replace("{dynamic_type}", default_type);
                }
            }
            if !mapping.contains_key("type") && detected != "object" {
                mapping.insert("type".into(), Value::String(default_type.to_string()));
            }
            return parse_field_definition(path, &Value::Object(mapping)).map_err(|error| {
                let reason = error
                    .to_json()
                    .and_then(|body| body["error"]["reason"].as_str().map(str::to_string))
                    .unwrap_or_default();
                ErrorCause::new(
                    "mapper_parsing_exception",
                    format!("dynamic template [{}] is invalid: {reason}", template.name),
                )
            });
        }
        Ok(match detected {
            "object" => FieldMapping::Object(ObjectMapping { enabled: true, ..ObjectMapping::default() }),
            "string" => FieldMapping::Leaf(LeafMapping::dynamic_string()),
            "double" => FieldMapping::Leaf(LeafMapping::of_type("float")),
            other => FieldMapping::Leaf(LeafMapping::of_type(other)),
        })
    }

    fn index_leaf(&mut self, path: &str, name: &str, leaf: &LeafMapping, value: &Value) -> Result<(), ErrorCause> {
        let indexed = convert_scalar(leaf, value)
            .map_err(|cause| self.context.field_error(path, name, &leaf.type_name, value, cause))?;
        if leaf.index {
            if let Some(indexed) = indexed {
                self.indexed.entry(path.to_string()).or_default().push(indexed);
            }
        }
        for (sub_name, sub) in &leaf.subfields {
            let sub_path = format!("{path}.{sub_name}");
            let indexed = convert_scalar(sub, value)
                .map_err(|cause| self.context.field_error(&sub_path, name, &sub.type_name, value, cause))?;
            if let (true, Some(indexed)) = (sub.index, indexed) {
                self.indexed.entry(sub_path).or_default().push(indexed);
            }
        }
        Ok(())
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Converts one scalar for a leaf; `Ok(None)` means accepted, not indexed.
fn convert_scalar(leaf: &LeafMapping, value: &Value) -> Result<Option<IndexedValue>, ErrorCause> {
    let not_numeric = || {
        ErrorCause::new(
            "illegal_argument_exception",
            format!("Current token ({}) not numeric, can not use numeric value accessors", token_name(value)),
        )
    };
    match leaf.kind {
        FieldKind::Keyword => {
            let text = scalar_text(value);
            if leaf.ignore_above.is_some_and(|limit| text.chars().count() > limit) {
                return Ok(None);
            }
            Ok(Some(IndexedValue::Keyword(text)))
        }
        FieldKind::Text => Ok(Some(IndexedValue::Text(analyze(&scalar_text(value))))),
        FieldKind::Integer { min, max } => {
            let number = match value {
                Value::Number(number) => {
                    number.as_i64().map(|integer| integer as f64).or_else(|| number.as_f64()).ok_or_else(not_numeric)?
                }
                Value::String(text) => {
                    text.trim().parse::<f64>().ok().filter(|parsed| parsed.is_finite()).ok_or_else(|| {
                        ErrorCause::new("illegal_argument_exception", format!("For input string: \"{text}\""))
                    })?
                }
                _ => return Err(not_numeric()),
            };
            let truncated = number.trunc();
            if truncated < min as f64 || truncated > max as f64 {
                return Err(ErrorCause::new(
                    "illegal_argument_exception",
                    format!(
                        "Value [{}] is out of range for {} {}",
                        scalar_text(value),
                        article(&leaf.type_name),
                        leaf.type_name
                    ),
                ));
            }
            let exact = match value {
                Value::Number(number) => number.as_i64().unwrap_or(truncated as i64),
                _ => value.as_str().and_then(|text| text.trim().parse::<i64>().ok()).unwrap_or(truncated as i64),
            };
            Ok(Some(IndexedValue::Integer(exact)))
        }
        FieldKind::Float => {
            let number = match value {
                Value::Number(number) => number.as_f64().ok_or_else(not_numeric)?,
                Value::String(text) => text
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| ErrorCause::new("number_format_exception", format!("For input string: \"{text}\"")))?,
                _ => return Err(not_numeric()),
            };
            Ok(Some(IndexedValue::Float(number)))
        }
        FieldKind::Boolean => match value {
            Value::Bool(flag) => Ok(Some(IndexedValue::Boolean(*flag))),
            Value::String(text) if text == "true" => Ok(Some(IndexedValue::Boolean(true))),
            Value::String(text) if text == "false" || text.is_empty() => Ok(Some(IndexedValue::Boolean(false))),
            other => Err(ErrorCause::new(
                "illegal_argument_exception",
                format!("Failed to parse value [{}] as only [true] or [false] are allowed.", scalar_text(other)),
            )),
        },
        FieldKind::Date => {
            let format = leaf.date_format();
            let millis = match value {
                Value::String(_) | Value::Number(_) => dates::parse_date_value(value, format).map_err(|reason| {
                    ErrorCause::new("illegal_argument_exception", reason).caused_by(ErrorCause::new(
                        "date_time_parse_exception",
                        "Failed to parse with all enclosed parsers",
                    ))
                })?,
                other => {
                    return Err(ErrorCause::new(
                        "illegal_argument_exception",
                        format!("failed to parse date field [{}] with format [{format}]", scalar_text(other)),
                    ))
                }
            };
            Ok(Some(IndexedValue::Date(millis)))
        }
        FieldKind::Opaque => Ok(None),
    }
}

fn article(type_name: &str) -> &'static str {
    if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn token_name(value: &Value) -> &'static str {
    match value {
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::String(_) => "VALUE_STRING",
        Value::Null => "VALUE_NULL",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
        Value::Number(_) => "VALUE_NUMBER",
    }
}

/// An approximation of the standard analyzer: runs of letters, digits and
/// `_`, joined across a single `.` or `'` between word characters (so
/// `java.lang.NullPointerException` and `don't` stay one token), lowercased.
pub fn analyze(text: &str) -> Vec<String> {
    let characters: Vec<char> = text.chars().collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut tokens = Vec::new();
    let mut current = String::new();
    for (index, &character) in characters.iter().enumerate() {
        if is_word(character) {
            current.extend(character.to_lowercase());
        } else if (character == '.' || character == '\'')
            && !current.is_empty()
            && characters.get(index + 1).is_some_and(|next| is_word(*next))
        {
            current.push(character);
        } else if !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// Every value at a dotted path in a source document, arrays flattened.
/// Both nested objects (`{"host":{"name":..}}`) and literal dotted keys
/// (`{"host.name":..}`) are found.
pub fn source_values<'a>(source: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut found = Vec::new();
    collect_source_values(source, path, &mut found);
    found
}

fn collect_source_values<'a>(value: &'a Value, path: &str, found: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => {
            for item in items {
                collect_source_values(item, path, found);
            }
        }
        Value::Object(object) => {
            if let Some(direct) = object.get(path) {
                push_flattened(direct, found);
            }
            for (split, _) in path.match_indices('.') {
                if let Some(child) = object.get(&path[..split]) {
                    collect_source_values(child, &path[split + 1..], found);
                }
            }
        }
        _ => {}
    }
}

fn push_flattened<'a>(value: &'a Value, found: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => {
            for item in items {
                push_flattened(item, found);
            }
        }
        other => found.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(parsing_exception: bool) -> DocumentContext<'static> {
        DocumentContext {
            document_id: "1",
            raw_source: r#"{"count": "abc"}"#,
            document_parsing_exception: parsing_exception,
            names_document: true,
        }
    }

    fn index(mapping: &mut RootMapping, document: Value) -> Result<IndexedFields, ErrorCause> {
        let Value::Object(object) = document else { panic!("test documents are objects") };
        mapping.index_document(&object, &context(false))
    }

    #[test]
    fn dynamic_mapping_infers_text_keyword_long_float_date_and_objects() {
        let mut mapping = RootMapping::default();
        let indexed = index(
            &mut mapping,
            json!({"message": "Hello World", "count": 3, "ratio": 0.5, "@timestamp": "2026-01-01T00:00:00Z", "host": {"name": "web-1"}, "ok": true}),
        )
        .unwrap();
        assert_eq!(mapping.resolve_leaf("message").unwrap().type_name, "text");
        assert_eq!(mapping.resolve_leaf("message.keyword").unwrap().type_name, "keyword");
        assert_eq!(mapping.resolve_leaf("count").unwrap().type_name, "long");
        assert_eq!(mapping.resolve_leaf("ratio").unwrap().type_name, "float");
        assert_eq!(mapping.resolve_leaf("@timestamp").unwrap().type_name, "date");
        assert_eq!(mapping.resolve_leaf("host.name.keyword").unwrap().type_name, "keyword");
        assert_eq!(indexed["message"], vec![IndexedValue::Text(vec!["hello".into(), "world".into()])]);
        assert_eq!(indexed["message.keyword"], vec![IndexedValue::Keyword("Hello World".into())]);
        assert_eq!(indexed["ok"], vec![IndexedValue::Boolean(true)]);
    }

    #[test]
    fn a_string_into_a_mapped_long_is_a_mapping_error() {
        let mut mapping = RootMapping::parse(&json!({"properties": {"count": {"type": "long"}}})).unwrap();
        let error = index(&mut mapping, json!({"count": "abc"})).unwrap_err();
        assert_eq!(error.error_type, "mapper_parsing_exception");
        assert_eq!(
            error.reason,
            "failed to parse field [count] of type [long] in document with id '1'. Preview of field's value: 'abc'"
        );
        assert_eq!(error.caused_by.unwrap().reason, "For input string: \"abc\"");
        let Value::Object(object) = json!({"count": "abc"}) else { unreachable!() };
        let newer = mapping.index_document(&object, &context(true)).unwrap_err();
        assert_eq!(newer.error_type, "document_parsing_exception");
        assert!(newer.reason.starts_with("[1:11] failed to parse field [count]"), "{}", newer.reason);
        assert!(index(&mut mapping, json!({"count": "42"})).is_ok(), "numeric strings are coerced");
    }

    #[test]
    fn object_and_scalar_conflicts_and_strict_mode() {
        let mut mapping = RootMapping::default();
        index(&mut mapping, json!({"host": {"name": "a"}})).unwrap();
        let error = index(&mut mapping, json!({"host": "plain"})).unwrap_err();
        assert!(
            error.reason.contains("object mapping for [host] tried to parse field [host] as object"),
            "{}",
            error.reason
        );
        let mut strict =
            RootMapping::parse(&json!({"dynamic": "strict", "properties": {"a": {"type": "keyword"}}})).unwrap();
        let error = index(&mut strict, json!({"b": 1})).unwrap_err();
        assert_eq!(error.error_type, "strict_dynamic_mapping_exception");
        let mut closed = RootMapping::parse(&json!({"dynamic": false})).unwrap();
        let indexed = index(&mut closed, json!({"b": 1})).unwrap();
        assert!(indexed.is_empty() && closed.resolve_leaf("b").is_none());
    }

    #[test]
    fn dynamic_templates_and_numeric_detection_apply() {
        let mut mapping = RootMapping::parse(&json!({
            "numeric_detection": true,
            "date_detection": false,
            "dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 1024}}}],
            "properties": {"match_body": {"type": "object", "enabled": false}}
        }))
        .unwrap();
        index(
            &mut mapping,
            json!({"rule_name": "r", "num": "12", "when": "2026-01-01T00:00:00Z", "match_body": {"x": {"y": 1}}}),
        )
        .unwrap();
        assert_eq!(mapping.resolve_leaf("rule_name").unwrap().type_name, "keyword");
        assert_eq!(mapping.resolve_leaf("num").unwrap().type_name, "long");
        assert_eq!(mapping.resolve_leaf("when").unwrap().type_name, "keyword");
        assert!(mapping.resolve_leaf("match_body.x.y").is_none());
    }

    #[test]
    fn put_mapping_rejects_type_changes_and_typed_roots() {
        let mut mapping = RootMapping::parse(&json!({"properties": {"a": {"type": "long"}}})).unwrap();
        let error = mapping.merge(&json!({"properties": {"a": {"type": "keyword"}}})).unwrap_err();
        assert_eq!(
            error.to_json().unwrap()["error"]["reason"],
            "mapper [a] cannot be changed from type [long] to [keyword]"
        );
        let typed = RootMapping::parse(&json!({"_doc": {"properties": {}}})).unwrap_err();
        assert!(typed.to_json().unwrap()["error"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("Root mapping definition has unsupported parameters"));
    }

    #[test]
    fn analysis_keeps_dotted_class_names_and_source_lookup_finds_both_shapes() {
        assert_eq!(
            analyze("java.lang.NullPointerException at X.run"),
            vec!["java.lang.nullpointerexception", "at", "x.run"]
        );
        assert_eq!(analyze("'Traceback' (most recent)"), vec!["traceback", "most", "recent"]);
        let source = json!({"host": {"name": "a"}, "host.name": "b", "tags": [{"k": 1}, {"k": 2}]});
        assert_eq!(source_values(&source, "host.name").len(), 2);
        assert_eq!(source_values(&source, "tags.k"), vec![&json!(1), &json!(2)]);
    }
}
