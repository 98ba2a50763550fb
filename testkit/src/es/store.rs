//! The emulated cluster's state: indices, documents, refresh, templates,
//! points in time and counters.
//!
//! Visibility model: every index keeps its live documents (what get-by-id
//! and conflict checks see) and a searchable snapshot (what search and
//! `_count` see). A refresh replaces the snapshot with the live documents.
//! Refreshes happen on `_refresh`, on `?refresh=true|wait_for`, and lazily:
//! when a read finds changes older than the refresh interval, it refreshes
//! first, which is observably the same as a periodic refresh and needs no
//! background task. A point in time holds the snapshots of its indices as
//! they were when it was opened, so it never sees later writes.
//!
//! The whole state sits behind one `std::sync::Mutex` owned by the caller:
//! no critical section awaits, and searches clone `Arc` snapshots under the
//! lock and evaluate outside it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};

use super::dates;
use super::error::{ApiError, ErrorCause};
use super::mapping::{simple_wildcard_match, DocumentContext, IndexedFields, RootMapping};
use super::query::Matchable;
use super::version::{MappingTypeRule, Product};

/// One version of one document.
#[derive(Debug, Clone)]
pub struct StoredDocument {
    pub id: String,
    /// `_doc`, or the 6.x mapping type the document was written with.
    pub type_name: String,
    pub source: Value,
    pub indexed: IndexedFields,
    pub version: u64,
    pub seq_no: u64,
    pub primary_term: u64,
    pub shard: u32,
}

impl Matchable for StoredDocument {
    fn document_id(&self) -> &str {
        &self.id
    }

    fn indexed(&self) -> &IndexedFields {
        &self.indexed
    }
}

/// What a search sees of one index.
#[derive(Debug)]
pub struct IndexSnapshot {
    pub name: String,
    pub uuid: String,
    pub mapping: Arc<RootMapping>,
    /// Documents in sequence-number order.
    pub documents: Vec<Arc<StoredDocument>>,
    pub number_of_shards: u32,
}

#[derive(Debug, Clone)]
pub struct IndexSettings {
    pub number_of_shards: u32,
    pub number_of_replicas: u32,
    /// `None`: the emulator default; `Some(None)`: `-1`, never refresh on a
    /// timer.
    pub refresh_interval: Option<Option<Duration>>,
    /// Other settings, echoed by `GET /{index}/_settings`.
    pub other: Map<String, Value>,
}

#[derive(Debug)]
pub struct Index {
    pub name: String,
    pub uuid: String,
    pub creation_date: i64,
    pub mapping: Arc<RootMapping>,
    pub settings: IndexSettings,
    pub aliases: Map<String, Value>,
    /// The 6.x mapping type name (from the mapping or the first write).
    pub type_name: String,
    live: HashMap<String, Arc<StoredDocument>>,
    /// Versions of deleted documents, so a re-create continues the count.
    tombstones: HashMap<String, u64>,
    next_seq_no: u64,
    searchable: Arc<IndexSnapshot>,
    pending_since: Option<Instant>,
}

impl Index {
    fn snapshot_of_live(&self) -> Arc<IndexSnapshot> {
        let mut documents: Vec<Arc<StoredDocument>> = self.live.values().cloned().collect();
        documents.sort_by_key(|document| document.seq_no);
        Arc::new(IndexSnapshot {
            name: self.name.clone(),
            uuid: self.uuid.clone(),
            mapping: Arc::clone(&self.mapping),
            documents,
            number_of_shards: self.settings.number_of_shards,
        })
    }

    pub fn searchable(&self) -> &Arc<IndexSnapshot> {
        &self.searchable
    }

    /// The searchable documents under the live mapping: Elasticsearch
    /// applies the mapping update a write causes when the write is indexed,
    /// not at the next refresh, so a query or sort on a field that only an
    /// unrefreshed write introduced works (and matches nothing yet) instead
    /// of failing with "No mapping found".
    fn searchable_with_live_mapping(&self) -> Arc<IndexSnapshot> {
        if Arc::ptr_eq(&self.searchable.mapping, &self.mapping) {
            return Arc::clone(&self.searchable);
        }
        let searchable = &self.searchable;
        Arc::new(IndexSnapshot {
            name: searchable.name.clone(),
            uuid: searchable.uuid.clone(),
            mapping: Arc::clone(&self.mapping),
            documents: searchable.documents.clone(),
            number_of_shards: searchable.number_of_shards,
        })
    }

    pub fn live_documents(&self) -> Vec<Arc<StoredDocument>> {
        let mut documents: Vec<Arc<StoredDocument>> = self.live.values().cloned().collect();
        documents.sort_by_key(|document| document.seq_no);
        documents
    }

    pub fn get(&self, id: &str) -> Option<&Arc<StoredDocument>> {
        self.live.get(id)
    }

    fn has_pending_changes(&self) -> bool {
        self.pending_since.is_some()
    }
}

/// A template applied when a matching index is created.
#[derive(Debug, Clone)]
pub struct IndexTemplate {
    pub name: String,
    pub patterns: Vec<String>,
    /// Composable templates use `priority`, legacy ones `order`.
    pub rank: i64,
    pub composable: bool,
    pub settings: Value,
    pub mappings: Value,
    pub aliases: Value,
    pub body: Value,
}

#[derive(Debug)]
pub struct PointInTime {
    pub serial: u64,
    pub generation: u64,
    pub snapshots: Vec<Arc<IndexSnapshot>>,
    pub expires_at: Instant,
    pub creation_time_millis: i64,
}

/// Counters for `/_testkit/stats`.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub searches: u64,
    pub counts: u64,
    pub bulk_requests: u64,
    pub bulk_items_by_result: BTreeMap<String, u64>,
    pub bulk_items_by_status: BTreeMap<u16, u64>,
    pub pits_opened: u64,
    pub pits_closed: u64,
    pub pits_expired: u64,
    pub refreshes: u64,
    pub auth_failures: u64,
    pub injected_item_faults: u64,
    pub injected_shard_failures: u64,
    pub injected_malformed_responses: u64,
}

/// How to resolve an index expression.
#[derive(Debug, Clone, Copy)]
pub struct TargetOptions {
    pub ignore_unavailable: bool,
    pub allow_no_indices: bool,
}

impl Default for TargetOptions {
    fn default() -> TargetOptions {
        TargetOptions { ignore_unavailable: false, allow_no_indices: true }
    }
}

/// A single write, as bulk and the document APIs express it.
#[derive(Debug, Clone)]
pub enum WriteOperation {
    /// `index` (replace) or `create` (fail if present).
    Index {
        id: Option<String>,
        source: Value,
        create_only: bool,
        if_seq_no: Option<u64>,
        if_primary_term: Option<u64>,
    },
    /// Partial update: merge `doc`, or insert `upsert` when missing.
    Update {
        id: String,
        doc: Option<Value>,
        upsert: Option<Value>,
        doc_as_upsert: bool,
    },
    Delete {
        id: String,
        if_seq_no: Option<u64>,
        if_primary_term: Option<u64>,
    },
}

/// What a successful write did.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub index: String,
    pub type_name: String,
    pub id: String,
    pub version: u64,
    pub seq_no: u64,
    pub primary_term: u64,
    /// `created`, `updated`, `deleted`, `not_found`, `noop`.
    pub result: &'static str,
    pub status: u16,
}

/// A failed write: its status, error object and the id it concerned.
#[derive(Debug, Clone)]
pub struct WriteFailure {
    pub index: String,
    pub type_name: String,
    pub id: String,
    pub status: u16,
    /// Boxed so that `Result<WriteOutcome, WriteFailure>` stays small.
    pub cause: Box<ErrorCause>,
}

#[derive(Debug)]
pub struct Cluster {
    pub product: Product,
    pub default_refresh_interval: Option<Duration>,
    pub cluster_uuid: String,
    pub indices: BTreeMap<String, Index>,
    pub templates: BTreeMap<String, IndexTemplate>,
    pub legacy_templates: BTreeMap<String, IndexTemplate>,
    pub pits: HashMap<u64, PointInTime>,
    pub counters: Counters,
    next_pit_serial: u64,
    id_counter: u64,
    node_bytes: [u8; 6],
}

/// Validates an index name the way Elasticsearch does.
pub fn validate_index_name(name: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| {
        ApiError::new(
            400,
            ErrorCause::new("invalid_index_name_exception", format!("Invalid index name [{name}], {why}"))
                .with("index_uuid", "_na_")
                .with("index", name),
        )
    };
    if name.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if name != name.to_lowercase() {
        return Err(invalid("must be lowercase"));
    }
    if name == "." || name == ".." {
        return Err(invalid("must not be '.' or '..'"));
    }
    if name.starts_with(['-', '_', '+']) {
        return Err(invalid("must not start with '_', '-', or '+'"));
    }
    if let Some(bad) =
        name.chars().find(|c| matches!(c, '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'))
    {
        return Err(invalid(&format!("must not contain the following characters [{bad}]")));
    }
    if name.len() > 255 {
        return Err(invalid("index name is too long, (256 > 255)"));
    }
    Ok(())
}

/// Resolves `<static{now/d{yyyy.MM.dd}}>` date-math index names (UTC only).
pub fn resolve_date_math_name(name: &str, now: i64) -> Result<String, ApiError> {
    let Some(inner) = name.strip_prefix('<').and_then(|rest| rest.strip_suffix('>')) else {
        return Ok(name.to_string());
    };
    let invalid = || ApiError::bad_request("parse_exception", format!("invalid dynamic name expression [{inner}]"));
    let mut resolved = String::new();
    let mut rest = inner;
    while let Some(open) = rest.find('{') {
        resolved.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        // The expression ends at the `}` that balances the opening brace.
        let mut depth = 1;
        let mut close = None;
        for (offset, character) in after.char_indices() {
            match character {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(offset);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close.ok_or_else(invalid)?;
        let expression = &after[..close];
        let (math, format) = match expression.find('{') {
            Some(format_start) => (&expression[..format_start], expression[format_start + 1..].trim_end_matches('}')),
            None => (expression, "yyyy.MM.dd"),
        };
        let format = format.split('|').next().unwrap_or("yyyy.MM.dd");
        let millis =
            dates::resolve_date_math(math, dates::DEFAULT_DATE_FORMAT, now, false, 0).map_err(|_| invalid())?;
        let strftime = format
            .replace("yyyy", "%Y")
            .replace("MM", "%m")
            .replace("dd", "%d")
            .replace("HH", "%H")
            .replace("mm", "%M");
        resolved.push_str(&dates::format_index_pattern(&strftime, millis).map_err(|_| invalid())?);
        rest = &after[close + 1..];
    }
    resolved.push_str(rest);
    Ok(resolved)
}

fn shard_of(id: &str, shards: u32) -> u32 {
    // FNV-1a: stable across runs, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.as_bytes() {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as u32
}

fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => deep_merge(existing, value),
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Flattens `{"index": {"number_of_shards": 1}}` and `index.`-prefixed keys
/// into `number_of_shards`-style keys.
fn flatten_settings(settings: &Value, prefix: &str, flat: &mut Map<String, Value>) {
    if let Value::Object(object) = settings {
        for (key, value) in object {
            let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            if value.is_object() {
                flatten_settings(value, &key, flat);
            } else {
                flat.insert(key.strip_prefix("index.").unwrap_or(&key).to_string(), value.clone());
            }
        }
    }
}

/// Parses `1s`, `500ms`, `2m`, `-1`.
pub fn parse_time_value(text: &str) -> Option<Option<Duration>> {
    let text = text.trim();
    if text == "-1" {
        return Some(None);
    }
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "nanos" => number / 1e9,
        "micros" => number / 1e6,
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86400.0,
        _ => return None,
    };
    Some(Some(Duration::from_secs_f64(seconds)))
}

impl Cluster {
    pub fn new(product: Product, default_refresh_interval: Option<Duration>) -> Cluster {
        let seed = dates::now_millis() as u64 ^ (std::process::id() as u64) << 20;
        let node = seed.to_le_bytes();
        let mut cluster = Cluster {
            product,
            default_refresh_interval,
            cluster_uuid: String::new(),
            indices: BTreeMap::new(),
            templates: BTreeMap::new(),
            legacy_templates: BTreeMap::new(),
            pits: HashMap::new(),
            counters: Counters::default(),
            next_pit_serial: 1,
            id_counter: seed & 0xffff,
            node_bytes: [node[0], node[1], node[2], node[3], node[4], node[5]],
        };
        cluster.cluster_uuid = cluster.next_uuid();
        cluster
    }

    /// A 20-character URL-safe id shaped like Elasticsearch's
    /// auto-generated ones: time, sequence, node.
    pub fn next_document_id(&mut self) -> String {
        self.id_counter = self.id_counter.wrapping_add(1);
        let time = dates::now_millis().to_be_bytes();
        let sequence = self.id_counter.to_be_bytes();
        let mut bytes = [0_u8; 15];
        bytes[..3].copy_from_slice(&sequence[5..8]);
        bytes[3..9].copy_from_slice(&time[2..8]);
        bytes[9..15].copy_from_slice(&self.node_bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn next_uuid(&mut self) -> String {
        self.id_counter = self.id_counter.wrapping_add(1);
        let mut bytes = [0_u8; 16];
        bytes[..8].copy_from_slice(&(dates::now_millis() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        bytes[8..].copy_from_slice(&self.id_counter.wrapping_mul(0xc2b2_ae3d_27d4_eb4f).to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn refresh_interval_of(&self, index: &Index) -> Option<Duration> {
        match index.settings.refresh_interval {
            Some(configured) => configured,
            None => self.default_refresh_interval,
        }
    }

    /// Refreshes every index whose oldest unrefreshed change is older than
    /// its refresh interval.
    pub fn refresh_due(&mut self, now: Instant) {
        let due: Vec<String> = self
            .indices
            .values()
            .filter(|index| match (index.pending_since, self.refresh_interval_of(index)) {
                (Some(since), Some(interval)) => now.duration_since(since) >= interval,
                _ => false,
            })
            .map(|index| index.name.clone())
            .collect();
        for name in due {
            self.refresh_index(&name);
        }
    }

    pub fn refresh_index(&mut self, name: &str) {
        if let Some(index) = self.indices.get_mut(name) {
            if index.has_pending_changes() || !Arc::ptr_eq(&index.searchable.mapping, &index.mapping) {
                index.searchable = index.snapshot_of_live();
                index.pending_since = None;
                self.counters.refreshes += 1;
            }
        }
    }

    /// Resolves an index expression (comma list, wildcards, `-exclusions`,
    /// `_all`, date-math names) to existing index names, sorted.
    pub fn resolve(&self, expression: &str, options: TargetOptions) -> Result<Vec<String>, ApiError> {
        let now = dates::now_millis();
        let mut selected: Vec<String> = Vec::new();
        let parts: Vec<&str> = if expression.is_empty() { vec!["_all"] } else { expression.split(',').collect() };
        for (position, part) in parts.iter().enumerate() {
            let part = part.trim();
            if let Some(excluded) = part.strip_prefix('-').filter(|_| position > 0) {
                selected.retain(|name| !simple_wildcard_match(excluded, name));
                continue;
            }
            if part == "_all" || part == "*" {
                selected.extend(self.indices.keys().filter(|name| !name.starts_with('.')).cloned());
            } else if part.contains('*') {
                let include_hidden = part.starts_with('.');
                selected.extend(
                    self.indices
                        .keys()
                        .filter(|name| (include_hidden || !name.starts_with('.')) && simple_wildcard_match(part, name))
                        .cloned(),
                );
            } else {
                let name = resolve_date_math_name(part, now)?;
                if self.indices.contains_key(&name) {
                    selected.push(name);
                } else if !options.ignore_unavailable {
                    return Err(ApiError::index_not_found(&name));
                }
            }
        }
        selected.sort();
        selected.dedup();
        if selected.is_empty() && !options.allow_no_indices {
            return Err(ApiError::index_not_found(expression));
        }
        Ok(selected)
    }

    /// The searchable snapshots of the resolved indices, after any due
    /// refresh.
    pub fn searchable_snapshots(
        &mut self,
        expression: &str,
        options: TargetOptions,
    ) -> Result<Vec<Arc<IndexSnapshot>>, ApiError> {
        self.refresh_due(Instant::now());
        let names = self.resolve(expression, options)?;
        Ok(names.iter().filter_map(|name| self.indices.get(name)).map(Index::searchable_with_live_mapping).collect())
    }

    /// Creates an index from a create-index body (`settings`, `mappings`,
    /// `aliases`) after applying matching templates.
    pub fn create_index(&mut self, name: &str, body: &Value) -> Result<&Index, ApiError> {
        validate_index_name(name)?;
        if let Some(existing) = self.indices.get(name) {
            let cause = ErrorCause::new(
                "resource_already_exists_exception",
                format!("index [{name}/{}] already exists", existing.uuid),
            )
            .with("index_uuid", existing.uuid.clone())
            .with("index", name);
            return Err(ApiError::new(400, cause));
        }
        let (mut settings, mut mappings, mut aliases) = (json!({}), json!({}), json!({}));
        for template in self.matching_templates(name) {
            deep_merge(&mut settings, &template.settings);
            deep_merge(&mut mappings, &template.mappings);
            deep_merge(&mut aliases, &template.aliases);
        }
        if let Value::Object(object) = body {
            for key in object.keys() {
                if !matches!(key.as_str(), "settings" | "mappings" | "aliases") {
                    return Err(ApiError::parsing(format!("unknown key [{key}] for create index")));
                }
            }
        }
        if let Some(explicit) = body.get("settings") {
            deep_merge(&mut settings, explicit);
        }
        if let Some(explicit) = body.get("mappings") {
            deep_merge(&mut mappings, explicit);
        }
        if let Some(explicit) = body.get("aliases") {
            deep_merge(&mut aliases, explicit);
        }
        let (mapping, type_name) = self.parse_mappings(&mappings)?;
        let mut flat = Map::new();
        flatten_settings(&settings, "", &mut flat);
        let number = |key: &str, default: u32| -> Result<u32, ApiError> {
            match flat.get(key) {
                None => Ok(default),
                Some(value) => value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
                    .filter(|count| *count >= 1 || key == "number_of_replicas")
                    .map(|count| count as u32)
                    .ok_or_else(|| {
                        ApiError::illegal_argument(format!("Failed to parse value [{value}] for setting [index.{key}]"))
                    }),
            }
        };
        let number_of_shards = number("number_of_shards", self.product.default_shards())?;
        let number_of_replicas = number("number_of_replicas", 1)?;
        let refresh_interval = match flat.get("refresh_interval") {
            None => None,
            Some(value) => {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                Some(parse_time_value(&text).ok_or_else(|| {
                    ApiError::illegal_argument(format!("failed to parse setting [index.refresh_interval] with value [{text}] as a time value: unit is missing or unrecognized"))
                })?)
            }
        };
        for key in ["number_of_shards", "number_of_replicas", "refresh_interval"] {
            flat.remove(key);
        }
        let uuid = self.next_uuid();
        let mut index = Index {
            name: name.to_string(),
            uuid,
            creation_date: dates::now_millis(),
            mapping: Arc::new(mapping),
            settings: IndexSettings { number_of_shards, number_of_replicas, refresh_interval, other: flat },
            aliases: aliases.as_object().cloned().unwrap_or_default(),
            type_name,
            live: HashMap::new(),
            tombstones: HashMap::new(),
            next_seq_no: 0,
            searchable: Arc::new(IndexSnapshot {
                name: name.to_string(),
                uuid: String::new(),
                mapping: Arc::new(RootMapping::default()),
                documents: Vec::new(),
                number_of_shards,
            }),
            pending_since: None,
        };
        index.searchable = index.snapshot_of_live();
        self.indices.insert(name.to_string(), index);
        Ok(&self.indices[name])
    }

    /// Splits 6.x typed mappings (`{"doc": {"properties": ...}}`) from
    /// typeless ones and parses them.
    fn parse_mappings(&self, mappings: &Value) -> Result<(RootMapping, String), ApiError> {
        let default_type = if self.product.mapping_types() == MappingTypeRule::Required { "doc" } else { "_doc" };
        if self.product.mapping_types() == MappingTypeRule::Required {
            if let Some(object) = mappings.as_object() {
                let known = [
                    "properties",
                    "dynamic",
                    "dynamic_templates",
                    "date_detection",
                    "numeric_detection",
                    "_source",
                    "_meta",
                    "_routing",
                ];
                if object.len() == 1 {
                    if let Some((type_name, inner)) =
                        object.iter().next().filter(|(key, _)| !known.contains(&key.as_str()))
                    {
                        return Ok((RootMapping::parse(inner)?, type_name.clone()));
                    }
                }
            }
        }
        Ok((RootMapping::parse(mappings)?, default_type.to_string()))
    }

    fn matching_templates(&self, name: &str) -> Vec<IndexTemplate> {
        let matches =
            |template: &&IndexTemplate| template.patterns.iter().any(|pattern| simple_wildcard_match(pattern, name));
        // The highest-priority composable template wins outright; legacy
        // templates apply only when no composable one matches.
        if let Some(best) = self.templates.values().filter(matches).max_by_key(|template| template.rank) {
            return vec![best.clone()];
        }
        let mut legacy: Vec<IndexTemplate> = self.legacy_templates.values().filter(matches).cloned().collect();
        legacy.sort_by_key(|template| template.rank);
        legacy
    }

    pub fn put_template(&mut self, name: &str, body: &Value, composable: bool) -> Result<(), ApiError> {
        let patterns: Vec<String> = match body.get("index_patterns") {
            Some(Value::String(pattern)) => vec![pattern.clone()],
            Some(Value::Array(patterns)) => patterns.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ if body.get("template").is_some() && !composable => {
                vec![body["template"].as_str().unwrap_or_default().to_string()]
            }
            _ => return Err(ApiError::validation(&["index patterns are missing"])),
        };
        let source = if composable { body.get("template").cloned().unwrap_or_else(|| json!({})) } else { body.clone() };
        let mappings = source.get("mappings").cloned().unwrap_or_else(|| json!({}));
        // Reject mappings that would fail at index creation now, as
        // Elasticsearch validates templates when they are stored.
        self.parse_mappings(&mappings)?;
        let rank_key = if composable { "priority" } else { "order" };
        let template = IndexTemplate {
            name: name.to_string(),
            patterns,
            rank: body.get(rank_key).and_then(Value::as_i64).unwrap_or(0),
            composable,
            settings: source.get("settings").cloned().unwrap_or_else(|| json!({})),
            mappings,
            aliases: source.get("aliases").cloned().unwrap_or_else(|| json!({})),
            body: body.clone(),
        };
        if composable {
            self.templates.insert(name.to_string(), template);
        } else {
            self.legacy_templates.insert(name.to_string(), template);
        }
        Ok(())
    }

    pub fn delete_index(&mut self, name: &str) {
        self.indices.remove(name);
    }

    /// Applies one write to `index_name`, creating the index if needed.
    /// Holds no lock itself; the caller holds the cluster's.
    pub fn write(
        &mut self,
        index_name: &str,
        type_name: Option<&str>,
        operation: WriteOperation,
        raw_source: &str,
    ) -> Result<WriteOutcome, WriteFailure> {
        let id_hint = match &operation {
            WriteOperation::Index { id, .. } => id.clone(),
            WriteOperation::Update { id, .. } | WriteOperation::Delete { id, .. } => Some(id.clone()),
        };
        let failure = |status: u16, cause: ErrorCause, type_name: &str| WriteFailure {
            index: index_name.to_string(),
            type_name: type_name.to_string(),
            id: id_hint.clone().unwrap_or_default(),
            status,
            cause: Box::new(cause),
        };
        if !self.indices.contains_key(index_name) {
            if let WriteOperation::Delete { .. } = operation {
                // A delete never auto-creates its index.
                let cause = ErrorCause::new("index_not_found_exception", format!("no such index [{index_name}]"))
                    .with("resource.type", "index_expression")
                    .with("resource.id", index_name)
                    .with("index_uuid", "_na_")
                    .with("index", index_name);
                return Err(failure(404, cause, "_doc"));
            }
            self.create_index(index_name, &json!({})).map_err(|error| {
                let cause = error
                    .to_json()
                    .map(|body| {
                        ErrorCause::new(
                            body["error"]["type"].as_str().unwrap_or("exception"),
                            body["error"]["reason"].as_str().unwrap_or(""),
                        )
                    })
                    .unwrap_or_else(|| ErrorCause::new("exception", "index creation failed"));
                failure(error.status, cause.with("index", index_name), "_doc")
            })?;
        }
        let product = self.product;
        let generated_id = match &operation {
            WriteOperation::Index { id: None, .. } => Some(self.next_document_id()),
            _ => None,
        };
        let index = self.indices.get_mut(index_name).expect("index exists: created above");
        let type_name = type_name.map(str::to_string).unwrap_or_else(|| index.type_name.clone());
        let on_index = |cause: ErrorCause| cause.on_index(&index.name, &index.uuid);
        let conflict = |id: &str, reason: String| WriteFailure {
            index: index.name.clone(),
            type_name: type_name.clone(),
            id: id.to_string(),
            status: 409,
            cause: Box::new(
                ErrorCause::new("version_conflict_engine_exception", format!("[{id}]: {reason}"))
                    .on_index(&index.name, &index.uuid),
            ),
        };
        let check_sequence = |current: Option<&Arc<StoredDocument>>,
                              id: &str,
                              if_seq_no: Option<u64>,
                              if_primary_term: Option<u64>| {
            match (if_seq_no, if_primary_term) {
                (None, None) => Ok(()),
                (Some(seq_no), Some(term)) => match current {
                    Some(document) if document.seq_no == seq_no && document.primary_term == term => Ok(()),
                    Some(document) => Err(conflict(
                        id,
                        format!(
                            "version conflict, required seqNo [{seq_no}], primary term [{term}]. current document has seqNo [{}] and primary term [{}]",
                            document.seq_no, document.primary_term
                        ),
                    )),
                    None => Err(conflict(id, format!("version conflict, required seqNo [{seq_no}], primary term [{term}] but no document was found"))),
                },
                _ => Err(conflict(id, "if_seq_no and if_primary_term must be set together".to_string())),
            }
        };
        let (id, new_source, result) = match operation {
            WriteOperation::Index { id, source, create_only, if_seq_no, if_primary_term } => {
                let id = id.or(generated_id).unwrap_or_default();
                let current = index.live.get(&id);
                if create_only {
                    if let Some(existing) = current {
                        return Err(conflict(
                            &id,
                            format!(
                                "version conflict, document already exists (current version [{}])",
                                existing.version
                            ),
                        ));
                    }
                }
                check_sequence(current, &id, if_seq_no, if_primary_term)?;
                let result = if current.is_some() { "updated" } else { "created" };
                (id, Some(source), result)
            }
            WriteOperation::Update { id, doc, upsert, doc_as_upsert } => {
                let current = index.live.get(&id).cloned();
                match (current, doc) {
                    (Some(existing), Some(doc)) => {
                        let mut merged = existing.source.clone();
                        deep_merge(&mut merged, &doc);
                        if merged == existing.source {
                            return Ok(WriteOutcome {
                                index: index.name.clone(),
                                type_name,
                                id,
                                version: existing.version,
                                seq_no: existing.seq_no,
                                primary_term: existing.primary_term,
                                result: "noop",
                                status: 200,
                            });
                        }
                        (id, Some(merged), "updated")
                    }
                    (Some(_), None) => {
                        return Err(failure(
                            400,
                            ErrorCause::new(
                                "action_request_validation_exception",
                                "Validation Failed: 1: script or doc is missing;",
                            ),
                            &type_name,
                        ))
                    }
                    (None, doc) => {
                        let inserted = if doc_as_upsert { doc } else { upsert };
                        match inserted {
                            Some(source) => (id, Some(source), "created"),
                            None => {
                                let cause = on_index(ErrorCause::new(
                                    "document_missing_exception",
                                    format!("[{type_name}][{id}]: document missing"),
                                ));
                                return Err(WriteFailure {
                                    index: index.name.clone(),
                                    type_name: type_name.clone(),
                                    id,
                                    status: 404,
                                    cause: Box::new(cause),
                                });
                            }
                        }
                    }
                }
            }
            WriteOperation::Delete { id, if_seq_no, if_primary_term } => {
                check_sequence(index.live.get(&id), &id, if_seq_no, if_primary_term)?;
                (id, None, "deleted")
            }
        };
        let previous_version =
            index.live.get(&id).map(|document| document.version).or_else(|| index.tombstones.get(&id).copied());
        let Some(source) = new_source else {
            let seq_no = index.next_seq_no;
            return match index.live.remove(&id) {
                Some(removed) => {
                    index.next_seq_no += 1;
                    index.tombstones.insert(id.clone(), removed.version + 1);
                    index.pending_since.get_or_insert_with(Instant::now);
                    Ok(WriteOutcome {
                        index: index.name.clone(),
                        type_name,
                        id,
                        version: removed.version + 1,
                        seq_no,
                        primary_term: 1,
                        result,
                        status: 200,
                    })
                }
                None => {
                    index.next_seq_no += 1;
                    let version = previous_version.unwrap_or(0) + 1;
                    Ok(WriteOutcome {
                        index: index.name.clone(),
                        type_name,
                        id,
                        version,
                        seq_no,
                        primary_term: 1,
                        result: "not_found",
                        status: 404,
                    })
                }
            };
        };
        let Value::Object(object) = &source else {
            let cause = ErrorCause::new(
                if product.document_parsing_exception() {
                    "document_parsing_exception"
                } else {
                    "mapper_parsing_exception"
                },
                "failed to parse",
            )
            .caused_by(ErrorCause::new(
                "not_x_content_exception",
                "Compressor detection can only be called on some xcontent bytes or compressed xcontent bytes",
            ));
            return Err(WriteFailure { index: index.name.clone(), type_name, id, status: 400, cause: Box::new(cause) });
        };
        let context = DocumentContext {
            document_id: &id,
            raw_source,
            document_parsing_exception: product.document_parsing_exception(),
            names_document: product.mapping_error_names_document(),
        };
        let mut candidate = (*index.mapping).clone();
        let indexed = candidate.index_document(object, &context).map_err(|cause| WriteFailure {
            index: index.name.clone(),
            type_name: type_name.clone(),
            id: id.clone(),
            status: 400,
            cause: Box::new(cause),
        })?;
        if candidate != *index.mapping {
            index.mapping = Arc::new(candidate);
        }
        let version = previous_version.map(|version| version + 1).unwrap_or(1);
        let seq_no = index.next_seq_no;
        index.next_seq_no += 1;
        index.tombstones.remove(&id);
        let shard = shard_of(&id, index.settings.number_of_shards);
        index.live.insert(
            id.clone(),
            Arc::new(StoredDocument {
                id: id.clone(),
                type_name: type_name.clone(),
                source,
                indexed,
                version,
                seq_no,
                primary_term: 1,
                shard,
            }),
        );
        index.pending_since.get_or_insert_with(Instant::now);
        let status = if result == "created" { 201 } else { 200 };
        Ok(WriteOutcome { index: index.name.clone(), type_name, id, version, seq_no, primary_term: 1, result, status })
    }

    /// Opens a point in time over the resolved indices.
    pub fn open_pit(
        &mut self,
        expression: &str,
        keep_alive: Duration,
        options: TargetOptions,
    ) -> Result<&PointInTime, ApiError> {
        self.expire_pits(Instant::now());
        let snapshots = self.searchable_snapshots(expression, options)?;
        let serial = self.next_pit_serial;
        self.next_pit_serial += 1;
        self.counters.pits_opened += 1;
        let pit = PointInTime {
            serial,
            generation: 0,
            snapshots,
            expires_at: Instant::now() + keep_alive,
            creation_time_millis: dates::now_millis(),
        };
        self.pits.insert(serial, pit);
        Ok(&self.pits[&serial])
    }

    pub fn expire_pits(&mut self, now: Instant) {
        let before = self.pits.len();
        self.pits.retain(|_, pit| pit.expires_at > now);
        self.counters.pits_expired += (before - self.pits.len()) as u64;
    }

    /// Looks up a PIT by id, extends it, and returns its snapshots and the
    /// id to send back (a new one on every call, as clients must cope with).
    pub fn use_pit(
        &mut self,
        id: &str,
        keep_alive: Option<Duration>,
    ) -> Result<(Vec<Arc<IndexSnapshot>>, String), ApiError> {
        let now = Instant::now();
        self.expire_pits(now);
        let serial = decode_pit_id(id).ok_or_else(|| missing_context(id))?;
        let pit = self.pits.get_mut(&serial).ok_or_else(|| missing_context(id))?;
        if let Some(keep_alive) = keep_alive {
            pit.expires_at = pit.expires_at.max(now + keep_alive);
        }
        pit.generation += 1;
        Ok((pit.snapshots.clone(), encode_pit_id(serial, pit.generation)))
    }

    /// Closes PITs; returns how many search contexts (shards) were freed
    /// and which ids were found.
    pub fn close_pits(&mut self, ids: &[String]) -> Vec<(String, Option<u32>)> {
        self.expire_pits(Instant::now());
        ids.iter()
            .map(|id| {
                let freed = decode_pit_id(id).and_then(|serial| self.pits.remove(&serial)).map(|pit| {
                    self.counters.pits_closed += 1;
                    pit.snapshots.iter().map(|snapshot| snapshot.number_of_shards).sum()
                });
                (id.clone(), freed)
            })
            .collect()
    }

    pub fn close_all_pits(&mut self) -> Vec<String> {
        let ids: Vec<String> = self.pits.values().map(|pit| encode_pit_id(pit.serial, pit.generation)).collect();
        self.counters.pits_closed += ids.len() as u64;
        self.pits.clear();
        ids
    }
}

fn missing_context(id: &str) -> ApiError {
    let shard = ErrorCause::new("search_context_missing_exception", format!("No search context found for id [{id}]"));
    ApiError::search_phase(404, shard, Vec::new())
}

const PIT_MARKER: &str = "testkit-pit";

/// PIT ids are opaque base64 text, like Elasticsearch's.
pub fn encode_pit_id(serial: u64, generation: u64) -> String {
    STANDARD.encode(format!(
        "{PIT_MARKER}\u{0}{serial}\u{0}{generation}\u{0}{:016x}",
        serial.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    ))
}

pub fn decode_pit_id(id: &str) -> Option<u64> {
    let bytes = STANDARD.decode(id.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split('\u{0}');
    (parts.next()? == PIT_MARKER).then_some(())?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster::new(Product::elasticsearch("8.15.0").unwrap(), None)
    }

    fn index_doc(
        cluster: &mut Cluster,
        index: &str,
        id: Option<&str>,
        source: Value,
        create_only: bool,
    ) -> Result<WriteOutcome, WriteFailure> {
        let raw = source.to_string();
        let operation = WriteOperation::Index {
            id: id.map(str::to_string),
            source,
            create_only,
            if_seq_no: None,
            if_primary_term: None,
        };
        cluster.write(index, None, operation, &raw)
    }

    #[test]
    fn writes_are_invisible_until_refresh_and_pits_keep_their_snapshot() {
        let mut cluster = cluster();
        index_doc(&mut cluster, "logs", Some("1"), json!({"a": 1}), false).unwrap();
        let before = cluster.searchable_snapshots("logs", TargetOptions::default()).unwrap();
        assert!(before[0].documents.is_empty());
        cluster.refresh_index("logs");
        let pit_serial = cluster.open_pit("logs", Duration::from_secs(60), TargetOptions::default()).unwrap().serial;
        index_doc(&mut cluster, "logs", Some("2"), json!({"a": 2}), false).unwrap();
        cluster.refresh_index("logs");
        let (pit_view, new_id) = cluster.use_pit(&encode_pit_id(pit_serial, 0), None).unwrap();
        assert_eq!(pit_view[0].documents.len(), 1);
        assert_eq!(decode_pit_id(&new_id), Some(pit_serial));
        assert_eq!(cluster.searchable_snapshots("logs", TargetOptions::default()).unwrap()[0].documents.len(), 2);
    }

    #[test]
    fn a_field_an_unrefreshed_write_mapped_is_searchable_before_the_write_is_visible() {
        let mut cluster = cluster();
        index_doc(&mut cluster, "silences", Some("1"), json!({"until": "2026-01-01T00:00:00Z"}), false).unwrap();
        let snapshots = cluster.searchable_snapshots("silences", TargetOptions::default()).unwrap();
        assert!(snapshots[0].documents.is_empty(), "not refreshed yet");
        assert_eq!(snapshots[0].mapping.resolve_leaf("until").unwrap().type_name, "date");
    }

    #[test]
    fn lazy_refresh_applies_the_interval() {
        let mut cluster = Cluster::new(Product::elasticsearch("7.17.0").unwrap(), Some(Duration::from_millis(0)));
        index_doc(&mut cluster, "logs", None, json!({"a": 1}), false).unwrap();
        assert_eq!(cluster.searchable_snapshots("logs", TargetOptions::default()).unwrap()[0].documents.len(), 1);
    }

    #[test]
    fn create_conflicts_versions_and_generated_ids() {
        let mut cluster = cluster();
        let first = index_doc(&mut cluster, "logs", Some("x"), json!({"a": 1}), true).unwrap();
        assert_eq!((first.result, first.status, first.version), ("created", 201, 1));
        let conflict = index_doc(&mut cluster, "logs", Some("x"), json!({"a": 1}), true).unwrap_err();
        assert_eq!(conflict.status, 409);
        assert_eq!(conflict.cause.reason, "[x]: version conflict, document already exists (current version [1])");
        let replaced = index_doc(&mut cluster, "logs", Some("x"), json!({"a": 2}), false).unwrap();
        assert_eq!((replaced.result, replaced.version, replaced.seq_no), ("updated", 2, 1));
        let generated = index_doc(&mut cluster, "logs", None, json!({"a": 3}), false).unwrap();
        assert_eq!(generated.id.len(), 20);
        assert_ne!(generated.id, index_doc(&mut cluster, "logs", None, json!({}), false).unwrap().id);
    }

    #[test]
    fn resolution_handles_lists_wildcards_exclusions_and_missing() {
        let mut cluster = cluster();
        for name in ["logs-a", "logs-b", "other", ".hidden"] {
            cluster.create_index(name, &json!({})).unwrap();
        }
        let options = TargetOptions::default();
        assert_eq!(cluster.resolve("logs-*", options).unwrap(), vec!["logs-a", "logs-b"]);
        assert_eq!(cluster.resolve("logs-*,-logs-b,other", options).unwrap(), vec!["logs-a", "other"]);
        assert_eq!(cluster.resolve("_all", options).unwrap().len(), 3);
        assert!(cluster.resolve("nope-*", options).unwrap().is_empty());
        assert_eq!(cluster.resolve("logs-a,nope", options).unwrap_err().status, 404);
        assert_eq!(
            cluster.resolve("logs-a,nope", TargetOptions { ignore_unavailable: true, ..options }).unwrap(),
            vec!["logs-a"]
        );
        assert!(cluster.create_index("Bad", &json!({})).is_err());
        assert_eq!(
            cluster.create_index("other", &json!({})).unwrap_err().error_type(),
            Some("resource_already_exists_exception")
        );
    }

    #[test]
    fn templates_apply_at_creation() {
        let mut cluster = cluster();
        cluster
            .put_template("logs", &json!({"index_patterns": ["logs-*"], "priority": 5, "template": {"settings": {"number_of_shards": 2}, "mappings": {"properties": {"n": {"type": "long"}}}}}), true)
            .unwrap();
        let index = cluster.create_index("logs-1", &json!({})).unwrap();
        assert_eq!(index.settings.number_of_shards, 2);
        assert_eq!(index.mapping.resolve_leaf("n").unwrap().type_name, "long");
    }

    #[test]
    fn date_math_names_and_time_values() {
        let noon = 1_767_268_800_000;
        assert_eq!(resolve_date_math_name("<logs-{now/d}>", noon).unwrap(), "logs-2026.01.01");
        assert_eq!(resolve_date_math_name("<logs-{now/d{yyyy-MM}}>", noon).unwrap(), "logs-2026-01");
        assert_eq!(parse_time_value("1s"), Some(Some(Duration::from_secs(1))));
        assert_eq!(parse_time_value("-1"), Some(None));
        assert_eq!(parse_time_value("1x"), None);
    }
}
