//! `_bulk`: NDJSON parsing, per-item execution and the per-item response.
//!
//! Guarantees, matching Elasticsearch: the response is HTTP 200 whenever the
//! request itself is well formed, with `errors: true` and one item per
//! action, in request order, when some items failed; an item never fails
//! its neighbours. Items look like Elasticsearch's (`_index`, `_type` on
//! 6.x/7.x, `_id`, `_version`, `result`, `_shards`, `_seq_no`,
//! `_primary_term`, `status`, or `status` + `error`). Whole-request
//! failures are 400s: an empty body, a body not ending in a newline,
//! a malformed action line, an unknown action or metadata key, `_type` on
//! 8.x (outside `compatible-with=7`), a missing `_type` on 6.x, a missing
//! source line.
//!
//! Never: partial writes of one item, or writes of faulted items.

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::error::{ApiError, ErrorCause};
use super::faults::{EsFaults, ItemFaultKind};
use super::store::{Cluster, WriteFailure, WriteOperation, WriteOutcome};
use super::version::MappingTypeRule;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Index,
    Create,
    Update,
    Delete,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Index => "index",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// `?refresh=` on writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshPolicy {
    None,
    Immediate,
    WaitFor,
}

impl RefreshPolicy {
    pub fn parse(value: Option<&str>) -> Result<RefreshPolicy, ApiError> {
        match value {
            None | Some("false") => Ok(RefreshPolicy::None),
            Some("") | Some("true") => Ok(RefreshPolicy::Immediate),
            Some("wait_for") => Ok(RefreshPolicy::WaitFor),
            Some(other) => Err(ApiError::illegal_argument(format!("Unknown value for refresh: [{other}]."))),
        }
    }
}

/// One parsed bulk action with its source line.
#[derive(Debug, Clone)]
pub struct BulkItem {
    pub action: Action,
    pub index: String,
    pub type_name: Option<String>,
    pub id: Option<String>,
    pub if_seq_no: Option<u64>,
    pub if_primary_term: Option<u64>,
    /// The source line as sent (absent for `delete`).
    pub source_line: Option<String>,
}

/// What the request path and headers contribute.
#[derive(Debug, Clone)]
pub struct BulkDefaults {
    pub index: Option<String>,
    pub type_name: Option<String>,
    /// 8.x `compatible-with=7`: `_type` tolerated, items carry `_type`.
    pub compatible_with_7: bool,
}

fn malformed(line_number: usize, detail: String) -> ApiError {
    ApiError::illegal_argument(format!("Malformed action/metadata line [{line_number}], {detail}"))
}

/// Splits and validates the NDJSON body.
pub fn parse(body: &[u8], defaults: &BulkDefaults, types: MappingTypeRule) -> Result<Vec<BulkItem>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("parse_exception", "the bulk body is not valid UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ApiError::validation(&["no requests added"]));
    }
    if !text.ends_with('\n') {
        return Err(ApiError::illegal_argument("The bulk request must be terminated by a newline [\\n]"));
    }
    let lines: Vec<&str> = text.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line)).collect();
    let mut items = Vec::new();
    let mut missing_types = 0;
    let mut missing_indices = 0;
    let mut index = 0;
    // The split leaves one empty string after the final newline.
    while index + 1 < lines.len() {
        let line_number = index + 1;
        let line = lines[index];
        index += 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Value = serde_json::from_str(line).map_err(|error| {
            ApiError::bad_request(
                "x_content_parse_exception",
                format!("[{line_number}:{}] Unexpected character in action line: {error}", error.column()),
            )
        })?;
        let Value::Object(object) = parsed else {
            return Err(malformed(line_number, format!("expected START_OBJECT but found [{}]", token_name(&parsed))));
        };
        if object.len() != 1 {
            return Err(malformed(line_number, "expected a single action such as {\"index\":{...}}".to_string()));
        }
        let (action_name, metadata) = object.iter().next().expect("one entry checked above");
        let action = match action_name.as_str() {
            "index" => Action::Index,
            "create" => Action::Create,
            "update" => Action::Update,
            "delete" => Action::Delete,
            other => {
                return Err(malformed(
                    line_number,
                    format!("expected field [create], [delete], [index] or [update] but found [{other}]"),
                ))
            }
        };
        let Value::Object(metadata) = metadata else {
            return Err(malformed(line_number, format!("expected START_OBJECT but found [{}]", token_name(metadata))));
        };
        let mut item = BulkItem {
            action,
            index: defaults.index.clone().unwrap_or_default(),
            type_name: defaults.type_name.clone(),
            id: None,
            if_seq_no: None,
            if_primary_term: None,
            source_line: None,
        };
        for (key, value) in metadata {
            let text = || match value {
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                _ => None,
            };
            match key.as_str() {
                "_index" => item.index = text().unwrap_or_default(),
                "_id" => item.id = text(),
                "_type" => {
                    if types == MappingTypeRule::Removed && !defaults.compatible_with_7 {
                        return Err(ApiError::illegal_argument(format!(
                            "Action/metadata line [{line_number}] contains an unknown parameter [_type]"
                        )));
                    }
                    item.type_name = text();
                }
                "if_seq_no" => item.if_seq_no = value.as_u64(),
                "if_primary_term" => item.if_primary_term = value.as_u64(),
                "routing"
                | "pipeline"
                | "require_alias"
                | "dynamic_templates"
                | "version"
                | "version_type"
                | "retry_on_conflict"
                | "_source"
                | "require_data_stream"
                | "list_executed_pipelines" => {}
                other => {
                    return Err(ApiError::illegal_argument(format!(
                        "Action/metadata line [{line_number}] contains an unknown parameter [{other}]"
                    )))
                }
            }
        }
        if item.index.is_empty() {
            missing_indices += 1;
        }
        if types == MappingTypeRule::Required && item.type_name.is_none() {
            missing_types += 1;
        }
        if action != Action::Delete {
            if index + 1 >= lines.len() || lines[index].trim().is_empty() {
                return Err(ApiError::validation(&["source is missing"]));
            }
            item.source_line = Some(lines[index].to_string());
            index += 1;
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(ApiError::validation(&["no requests added"]));
    }
    if missing_indices > 0 || missing_types > 0 {
        let mut problems = vec!["index is missing"; missing_indices];
        problems.extend(vec!["type is missing"; missing_types]);
        return Err(ApiError::validation(&problems));
    }
    Ok(items)
}

fn token_name(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "START_OBJECT",
        Value::Array(_) => "START_ARRAY",
        Value::String(_) => "VALUE_STRING",
        Value::Number(_) => "VALUE_NUMBER",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Null => "VALUE_NULL",
    }
}

/// How items are rendered.
#[derive(Debug, Clone, Copy)]
pub struct ItemShape {
    pub with_type: bool,
    pub forced_refresh: bool,
}

fn success_item(outcome: &WriteOutcome, replicas: u32, shape: ItemShape) -> Value {
    let mut item = Map::new();
    item.insert("_index".into(), Value::String(outcome.index.clone()));
    if shape.with_type {
        item.insert("_type".into(), Value::String(outcome.type_name.clone()));
    }
    item.insert("_id".into(), Value::String(outcome.id.clone()));
    item.insert("_version".into(), Value::from(outcome.version));
    item.insert("result".into(), Value::String(outcome.result.to_string()));
    if shape.forced_refresh {
        item.insert("forced_refresh".into(), Value::Bool(true));
    }
    // A single-node cluster: replicas are configured but never assigned.
    item.insert("_shards".into(), json!({"total": 1 + replicas, "successful": 1, "failed": 0}));
    item.insert("_seq_no".into(), Value::from(outcome.seq_no));
    item.insert("_primary_term".into(), Value::from(outcome.primary_term));
    item.insert("status".into(), Value::from(outcome.status));
    Value::Object(item)
}

fn failure_item(failure: &WriteFailure, shape: ItemShape) -> Value {
    let mut item = Map::new();
    item.insert("_index".into(), Value::String(failure.index.clone()));
    if shape.with_type {
        item.insert("_type".into(), Value::String(failure.type_name.clone()));
    }
    item.insert("_id".into(), if failure.id.is_empty() { Value::Null } else { Value::String(failure.id.clone()) });
    item.insert("status".into(), Value::from(failure.status));
    item.insert("error".into(), failure.cause.to_json());
    Value::Object(item)
}

/// The failure a fault injects for one item.
fn injected_failure(
    kind: &ItemFaultKind,
    item: &BulkItem,
    source: Option<&Value>,
    cluster: &Cluster,
) -> (u16, ErrorCause) {
    let id = item.id.clone().unwrap_or_default();
    let uuid = cluster.indices.get(&item.index).map(|index| index.uuid.clone()).unwrap_or_else(|| "_na_".into());
    let (status, cause) = match kind {
        ItemFaultKind::Rejected => (
            429,
            ErrorCause::new(
                "es_rejected_execution_exception",
                format!(
                    "rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes={}, max_coordinating_and_primary_bytes=107374182] on EsThreadPoolExecutor[name = testkit-node-1/write, queue capacity = 10000, active threads = 2, queued tasks = 10000, completed tasks = 1000]",
                    item.source_line.as_deref().map(str::len).unwrap_or(0)
                ),
            ),
        ),
        ItemFaultKind::CircuitBreaking => (
            429,
            ErrorCause::new(
                "circuit_breaking_exception",
                "[parent] Data too large, data for [indices:data/write/bulk[s]] would be [1030000000/982.2mb], which is larger than the limit of [1020054732/972.7mb]",
            )
            .with("bytes_wanted", 1_030_000_000_u64)
            .with("bytes_limit", 1_020_054_732_u64)
            .with("durability", "TRANSIENT"),
        ),
        ItemFaultKind::Unavailable => (
            503,
            ErrorCause::new(
                "unavailable_shards_exception",
                format!("[{}][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[{}][0]] containing [1] requests]", item.index, item.index),
            ),
        ),
        ItemFaultKind::Mapping => {
            let (field, value) = source
                .and_then(Value::as_object)
                .and_then(|object| object.iter().next())
                .map(|(key, value)| (key.clone(), value.clone()))
                .unwrap_or_else(|| ("field".into(), Value::Null));
            let preview = match &value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let product = cluster.product;
            let (error_type, prefix) = if product.document_parsing_exception() { ("document_parsing_exception", "[1:2] ") } else { ("mapper_parsing_exception", "") };
            let reason = if product.mapping_error_names_document() {
                format!("{prefix}failed to parse field [{field}] of type [long] in document with id '{id}'. Preview of field's value: '{preview}'")
            } else {
                format!("failed to parse field [{field}] of type [long]")
            };
            (400, ErrorCause::new(error_type, reason).caused_by(ErrorCause::new("illegal_argument_exception", format!("For input string: \"{preview}\""))))
        }
        ItemFaultKind::Custom { status, error_type, reason } => (*status, ErrorCause::new(error_type.clone(), reason.clone())),
    };
    // Shard-level failures name their index; node-level rejections do not.
    let cause = if matches!(
        cause.error_type.as_str(),
        "mapper_parsing_exception" | "document_parsing_exception" | "unavailable_shards_exception"
    ) {
        cause.on_index(&item.index, &uuid)
    } else {
        cause
    };
    (status, cause)
}

/// Everything one bulk call changed, for counters and refresh.
#[derive(Debug, Default)]
pub struct BulkSummary {
    pub touched_indices: BTreeSet<String>,
    pub results: Vec<String>,
    pub statuses: Vec<u16>,
    pub injected: u64,
}

/// Executes parsed items against the cluster and renders the response.
pub fn execute(
    items: Vec<BulkItem>,
    cluster: &mut Cluster,
    faults: &EsFaults,
    refresh: RefreshPolicy,
    compatible_with_7: bool,
) -> (Value, BulkSummary) {
    let started = Instant::now();
    let mut summary = BulkSummary::default();
    let shape = ItemShape {
        with_type: cluster.product.mapping_types() != MappingTypeRule::Removed || compatible_with_7,
        forced_refresh: refresh == RefreshPolicy::Immediate,
    };
    let mut rendered = Vec::with_capacity(items.len());
    let mut errors = false;
    for item in items {
        let parsed_source: Option<Result<Value, serde_json::Error>> =
            item.source_line.as_deref().map(serde_json::from_str);
        let source_for_faults = match &parsed_source {
            Some(Ok(value)) => Some(value),
            _ => None,
        };
        let default_type = if cluster.product.mapping_types() == MappingTypeRule::Required { "doc" } else { "_doc" };
        let outcome: Result<WriteOutcome, WriteFailure> = if let Some(kind) = faults.take_item_fault(source_for_faults)
        {
            summary.injected += 1;
            let (status, cause) = injected_failure(&kind, &item, source_for_faults, cluster);
            Err(WriteFailure {
                index: item.index.clone(),
                type_name: item.type_name.clone().unwrap_or_else(|| default_type.to_string()),
                id: item.id.clone().unwrap_or_default(),
                status,
                cause: Box::new(cause),
            })
        } else {
            run_item(&item, parsed_source, cluster)
        };
        let body = match &outcome {
            Ok(done) => {
                summary.touched_indices.insert(done.index.clone());
                summary.results.push(done.result.to_string());
                summary.statuses.push(done.status);
                let replicas =
                    cluster.indices.get(&done.index).map(|index| index.settings.number_of_replicas).unwrap_or(1);
                success_item(done, replicas, shape)
            }
            Err(failure) => {
                errors = true;
                summary.results.push("failed".to_string());
                summary.statuses.push(failure.status);
                failure_item(failure, shape)
            }
        };
        rendered.push(json!({ item.action.name(): body }));
    }
    if refresh != RefreshPolicy::None {
        for name in &summary.touched_indices {
            cluster.refresh_index(name);
        }
    }
    let response = json!({"took": started.elapsed().as_millis() as u64, "errors": errors, "items": rendered});
    (response, summary)
}

fn run_item(
    item: &BulkItem,
    parsed_source: Option<Result<Value, serde_json::Error>>,
    cluster: &mut Cluster,
) -> Result<WriteOutcome, WriteFailure> {
    let raw = item.source_line.clone().unwrap_or_default();
    let source = match parsed_source {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(error)) => {
            let error_type = if cluster.product.document_parsing_exception() {
                "document_parsing_exception"
            } else {
                "mapper_parsing_exception"
            };
            let cause = ErrorCause::new(error_type, format!("[1:{}] failed to parse: {error}", error.column()))
                .caused_by(ErrorCause::new("x_content_parse_exception", format!("[1:{}] {error}", error.column())));
            return Err(WriteFailure {
                index: item.index.clone(),
                type_name: item.type_name.clone().unwrap_or_else(|| "_doc".into()),
                id: item.id.clone().unwrap_or_default(),
                status: 400,
                cause: Box::new(cause),
            });
        }
    };
    let operation = match item.action {
        Action::Index | Action::Create => WriteOperation::Index {
            id: item.id.clone(),
            source: source.unwrap_or(Value::Null),
            create_only: item.action == Action::Create,
            if_seq_no: item.if_seq_no,
            if_primary_term: item.if_primary_term,
        },
        Action::Update => {
            let body = source.unwrap_or(Value::Null);
            let Some(id) = item.id.clone() else {
                return Err(WriteFailure {
                    index: item.index.clone(),
                    type_name: "_doc".into(),
                    id: String::new(),
                    status: 400,
                    cause: Box::new(ErrorCause::new(
                        "action_request_validation_exception",
                        "Validation Failed: 1: id is missing;",
                    )),
                });
            };
            if body.get("script").is_some() {
                return Err(WriteFailure {
                    index: item.index.clone(),
                    type_name: "_doc".into(),
                    id,
                    status: 400,
                    cause: Box::new(ErrorCause::new(
                        "illegal_argument_exception",
                        "scripted updates are not implemented by the testkit Elasticsearch emulator",
                    )),
                });
            }
            WriteOperation::Update {
                id,
                doc: body.get("doc").cloned(),
                upsert: body.get("upsert").cloned(),
                doc_as_upsert: body.get("doc_as_upsert").and_then(Value::as_bool).unwrap_or(false),
            }
        }
        Action::Delete => WriteOperation::Delete {
            id: item.id.clone().unwrap_or_default(),
            if_seq_no: item.if_seq_no,
            if_primary_term: item.if_primary_term,
        },
    };
    cluster.write(&item.index, item.type_name.as_deref(), operation, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::version::Product;

    fn defaults() -> BulkDefaults {
        BulkDefaults { index: None, type_name: None, compatible_with_7: false }
    }

    fn run(product: &str, body: &str, faults: &EsFaults) -> Value {
        let product = Product::elasticsearch(product).unwrap();
        let mut cluster = Cluster::new(product, None);
        let items = parse(body.as_bytes(), &defaults(), product.mapping_types()).unwrap();
        execute(items, &mut cluster, faults, RefreshPolicy::None, false).0
    }

    #[test]
    fn items_report_created_conflict_and_generated_ids() {
        let body = concat!(
            "{\"index\":{\"_index\":\"logs\",\"_id\":\"1\"}}\n{\"a\":1}\n",
            "{\"create\":{\"_index\":\"logs\",\"_id\":\"1\"}}\n{\"a\":2}\n",
            "{\"index\":{\"_index\":\"logs\"}}\n{\"a\":3}\n",
            "{\"delete\":{\"_index\":\"logs\",\"_id\":\"nope\"}}\n",
        );
        let response = run("8.15.0", body, &EsFaults::default());
        assert_eq!(response["errors"], true);
        let items = response["items"].as_array().unwrap();
        assert_eq!(items[0]["index"]["status"], 201);
        assert_eq!(items[0]["index"]["result"], "created");
        assert!(items[0]["index"].get("_type").is_none());
        assert_eq!(items[1]["create"]["status"], 409);
        assert_eq!(items[1]["create"]["error"]["type"], "version_conflict_engine_exception");
        assert_eq!(items[2]["index"]["_id"].as_str().unwrap().len(), 20);
        assert_eq!(items[3]["delete"]["status"], 404);
        assert_eq!(items[3]["delete"]["result"], "not_found");
    }

    #[test]
    fn mapping_conflicts_and_injected_faults_fail_single_items() {
        let faults = EsFaults::default();
        faults.reject_next_items(1);
        let body = "{\"index\":{\"_index\":\"m\"}}\n{\"n\":1}\n{\"index\":{\"_index\":\"m\"}}\n{\"n\":1}\n{\"index\":{\"_index\":\"m\",\"_id\":\"x\"}}\n{\"n\":\"abc\"}\n";
        let response = run("7.17.0", body, &faults);
        let items = response["items"].as_array().unwrap();
        assert_eq!(items[0]["index"]["status"], 429);
        assert_eq!(items[0]["index"]["error"]["type"], "es_rejected_execution_exception");
        assert_eq!(items[0]["index"]["_type"], "_doc");
        assert_eq!(items[1]["index"]["status"], 201);
        assert_eq!(items[2]["index"]["status"], 400);
        assert_eq!(items[2]["index"]["error"]["type"], "mapper_parsing_exception");
        assert_eq!(
            items[2]["index"]["error"]["reason"],
            "failed to parse field [n] of type [long] in document with id 'x'. Preview of field's value: 'abc'"
        );
        let newer = run("8.15.0", "{\"index\":{\"_index\":\"m\"}}\n{\"n\":1}\n{\"index\":{\"_index\":\"m\",\"_id\":\"x\"}}\n{\"n\":\"abc\"}\n", &EsFaults::default());
        assert_eq!(newer["items"][1]["index"]["error"]["type"], "document_parsing_exception");
    }

    #[test]
    fn whole_request_errors() {
        let types = MappingTypeRule::Removed;
        let no_newline = parse(b"{\"index\":{\"_index\":\"a\"}}\n{}", &defaults(), types).unwrap_err();
        assert_eq!(
            no_newline.to_json().unwrap()["error"]["reason"],
            "The bulk request must be terminated by a newline [\\n]"
        );
        assert_eq!(
            parse(b"", &defaults(), types).unwrap_err().error_type(),
            Some("action_request_validation_exception")
        );
        let typed = parse(b"{\"index\":{\"_index\":\"a\",\"_type\":\"_doc\"}}\n{}\n", &defaults(), types).unwrap_err();
        assert_eq!(
            typed.to_json().unwrap()["error"]["reason"],
            "Action/metadata line [1] contains an unknown parameter [_type]"
        );
        let compat = BulkDefaults { compatible_with_7: true, ..defaults() };
        assert!(parse(b"{\"index\":{\"_index\":\"a\",\"_type\":\"_doc\"}}\n{}\n", &compat, types).is_ok());
        let untyped_6 =
            parse(b"{\"index\":{\"_index\":\"a\"}}\n{}\n", &defaults(), MappingTypeRule::Required).unwrap_err();
        assert_eq!(untyped_6.to_json().unwrap()["error"]["reason"], "Validation Failed: 1: type is missing;");
        let unknown = parse(b"{\"upsert\":{\"_index\":\"a\"}}\n{}\n", &defaults(), types).unwrap_err();
        assert!(unknown.to_json().unwrap()["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("expected field [create], [delete], [index] or [update]"));
        assert!(
            parse(b"{\"index\":{\"_index\":\"a\"}}\r\n{}\r\n", &defaults(), types).is_ok(),
            "CRLF line ends are accepted"
        );
    }
}
