//! HTTP: routing Elasticsearch/OpenSearch REST paths to the store, and the
//! `/_testkit/...` control endpoints.
//!
//! Every request (except `/_testkit/...`) passes, in order: authentication
//! (when configured: 401 `security_exception` with `WWW-Authenticate`, or
//! OpenSearch's bare `Unauthorized`), media-type checks (`compatible-with`
//! accepted or rejected per release; unsupported `Content-Type` is 406),
//! `Content-Encoding: gzip|deflate` decoding, then the route. Responses get
//! `X-Elastic-Product: Elasticsearch` on Elasticsearch 7.14+ (not on
//! 401/403), the negotiated content type, `filter_path` filtering, and last
//! the malformed-response fault.
//!
//! Routes: `GET|HEAD /`; `PUT|DELETE|HEAD|GET /{index}`;
//! `GET|PUT|POST /{index}/_mapping`, `GET /_mapping`, `GET /{index}/_settings`;
//! `POST|PUT /_bulk`, `/{index}/_bulk` (6.x/7.x also `/{index}/{type}/_bulk`);
//! `GET|POST /_search`, `/{index}/_search`, `/_count`, `/{index}/_count`;
//! Elasticsearch 7.10+: `POST /{index}/_pit`, `DELETE /_pit`; OpenSearch
//! 2.4+: `POST /{index}/_search/point_in_time`, `DELETE
//! /_search/point_in_time[/_all]`, `GET /_search/point_in_time/_all`;
//! `POST|GET /_refresh`, `/{index}/_refresh`; `/_index_template/{name}`,
//! `/_template/{name}`; documents: `PUT|POST /{index}/_doc/{id}`, `POST
//! /{index}/_doc`, `PUT|POST /{index}/_create/{id}`, `POST
//! /{index}/_update/{id}`, `GET|HEAD|DELETE /{index}/_doc/{id}` (6.x:
//! `/{index}/{type}/{id}`); `GET /_cluster/health`.
//!
//! Control endpoints (never authenticated, never faulted by the emulator):
//! `GET /_testkit/stats`, `GET /_testkit/documents?index=EXPR`, `POST
//! /_testkit/load`, `POST /_testkit/load_demo`, `POST
//! /_testkit/refresh?index=EXPR`, `POST /_testkit/reset`, `GET|DELETE
//! /_testkit/faults`, `POST /_testkit/faults/items`, `POST
//! /_testkit/faults/shards`, `POST /_testkit/faults/malformed`, `POST
//! /_testkit/faults/http`.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::bulk::{self, BulkDefaults, RefreshPolicy};
use super::error::{ApiError, ErrorCause};
use super::faults::ItemFaultKind;
use super::fixtures::{DemoFixture, Fixture};
use super::search::{self, param, param_flag, ResponseShape, SearchRequest};
use super::store::{encode_pit_id, parse_time_value, TargetOptions, WriteOperation};
use super::version::MappingTypeRule;
use super::EsHandle;
use crate::http::Fault;

pub(crate) fn router(handle: EsHandle) -> Router {
    Router::new().fallback(dispatch).with_state(handle)
}

/// A request as the routes see it.
struct Incoming {
    method: Method,
    path: String,
    segments: Vec<String>,
    params: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    /// 8.x asked for 7.x shapes with `compatible-with=7`.
    compatible_with_7: bool,
}

/// A successful answer before the final touches.
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply { status, body: Some(body), headers: Vec::new() }
    }

    fn ok(body: Value) -> Reply {
        Reply::json(200, body)
    }

    fn empty(status: u16) -> Reply {
        Reply { status, body: None, headers: Vec::new() }
    }
}

type Outcome = Result<Reply, ApiError>;

fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                match hex {
                    Some(byte) => {
                        decoded.push(byte);
                        index += 3;
                    }
                    None => {
                        decoded.push(b'%');
                        index += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn parse_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => (percent_decode(key, true), percent_decode(value, true)),
            None => (percent_decode(pair, true), String::new()),
        })
        .collect()
}

async fn dispatch(State(handle): State<EsHandle>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let path = parts.uri.path().to_string();
    let params = parse_params(parts.uri.query().unwrap_or_default());
    let segments: Vec<String> =
        path.split('/').filter(|segment| !segment.is_empty()).map(|segment| percent_decode(segment, false)).collect();
    let mut incoming = Incoming {
        method: parts.method,
        path,
        segments,
        params,
        headers: parts.headers,
        body,
        compatible_with_7: false,
    };

    if incoming.segments.first().map(String::as_str) == Some("_testkit") {
        return control(&handle, &incoming);
    }

    let product = handle.product();
    let head = incoming.method == Method::HEAD;
    let outcome = match authenticate(&handle, &incoming) {
        Err(error) => Err(error),
        Ok(()) => match negotiate(&incoming, &handle) {
            Err(error) => Err(error),
            Ok(negotiated) => {
                incoming.compatible_with_7 =
                    negotiated.compatible_with == Some(7) && product.is_elasticsearch() && product.version.major >= 8;
                match decode_body(&incoming) {
                    Err(error) => Err(error),
                    Ok(decoded) => {
                        incoming.body = decoded;
                        route(&handle, &incoming)
                    }
                }
            }
        },
    };
    let accept_vnd = compatible_version(header(&incoming.headers, "accept"))
        .map(|version| format!("application/vnd.elasticsearch+json;compatible-with={version}"));
    finish(&handle, &incoming, outcome, head, accept_vnd)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

/// Turns a route outcome into the HTTP response.
fn finish(
    handle: &EsHandle,
    incoming: &Incoming,
    outcome: Outcome,
    head: bool,
    accept_vnd: Option<String>,
) -> Response<Body> {
    let product = handle.product();
    let (status, body_json, raw_text, extra_headers) = match outcome {
        Ok(reply) => (reply.status, reply.body, None, reply.headers),
        Err(error) => {
            let raw = error.raw_body().map(str::to_string);
            (error.status, error.to_json(), raw, error.headers.clone())
        }
    };
    let mut builder =
        Response::builder().status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    if product.sends_product_header() && status != 401 && status != 403 {
        builder = builder.header("X-Elastic-Product", "Elasticsearch");
    }
    for (name, value) in &extra_headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let mut bytes = match (body_json, raw_text) {
        (Some(mut body), _) => {
            if let Some(paths) = param(&incoming.params, "filter_path") {
                body = filter_path(&body, paths);
            }
            builder = builder.header("content-type", accept_vnd.unwrap_or_else(|| "application/json".to_string()));
            let pretty = param_flag(&incoming.params, "pretty") == Some(true);
            let text = if pretty { serde_json::to_string_pretty(&body) } else { serde_json::to_string(&body) };
            text.unwrap_or_default().into_bytes()
        }
        (None, Some(text)) => {
            builder = builder.header("content-type", "text/plain; charset=UTF-8");
            text.into_bytes()
        }
        (None, None) => Vec::new(),
    };
    if !bytes.is_empty() && handle.faults().take_malformed(&incoming.path) {
        handle.cluster().counters.injected_malformed_responses += 1;
        bytes.truncate(bytes.len() / 2);
        bytes.extend_from_slice(b"\x00<truncated by testkit fault>");
    }
    if head {
        bytes.clear();
    }
    builder.body(Body::from(bytes)).unwrap_or_else(|_| Response::new(Body::from("testkit: invalid response header")))
}

// ---------------------------------------------------------------------------
// Authentication, media types, encodings.

fn authenticate(handle: &EsHandle, incoming: &Incoming) -> Result<(), ApiError> {
    let auth = &handle.config().auth;
    if auth.is_open() {
        return Ok(());
    }
    let header_value = header(&incoming.headers, "authorization");
    let (scheme, credentials) = header_value.split_once(' ').unwrap_or((header_value, ""));
    let credentials = credentials.trim();
    let verdict = match scheme.to_ascii_lowercase().as_str() {
        "" => Err(None),
        "basic" => {
            let decoded = STANDARD.decode(credentials).ok().and_then(|bytes| String::from_utf8(bytes).ok());
            match decoded.as_deref().and_then(|text| text.split_once(':')) {
                Some((user, password)) if auth.accepts_basic(user, password) => Ok(()),
                Some((user, _)) => {
                    Err(Some(format!("unable to authenticate user [{user}] for REST request [{}]", incoming.path)))
                }
                None => Err(Some(format!("unable to authenticate user [] for REST request [{}]", incoming.path))),
            }
        }
        "apikey" if auth.accepts_api_key(credentials) => Ok(()),
        "bearer" if auth.accepts_bearer(credentials) => Ok(()),
        _ => Err(Some(
            "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
                .to_string(),
        )),
    };
    let Err(reason) = verdict else { return Ok(()) };
    handle.cluster().counters.auth_failures += 1;
    if !handle.product().is_elasticsearch() {
        // The OpenSearch security plugin answers with bare text.
        return Err(ApiError::raw_text(401, "Unauthorized")
            .with_header("WWW-Authenticate", "Basic realm=\"OpenSearch Security\""));
    }
    let reason =
        reason.unwrap_or_else(|| format!("missing authentication credentials for REST request [{}]", incoming.path));
    let challenges = ["Basic realm=\"security\", charset=\"UTF-8\"", "Bearer realm=\"security\"", "ApiKey"];
    let cause = ErrorCause::new("security_exception", reason).with("header", json!({"WWW-Authenticate": challenges}));
    let mut error = ApiError::new(401, cause);
    for challenge in challenges {
        error = error.with_header("WWW-Authenticate", challenge);
    }
    Err(error)
}

/// The `compatible-with` version in a media type, if any.
fn compatible_version(media_type: &str) -> Option<u32> {
    let lowered = media_type.to_ascii_lowercase();
    if !lowered.contains("application/vnd.elasticsearch+") {
        return None;
    }
    let after = lowered.split("compatible-with=").nth(1)?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

struct Negotiated {
    compatible_with: Option<u32>,
}

fn media_type_error(headers: &str, detail: String) -> ApiError {
    ApiError::new(
        400,
        ErrorCause::new("media_type_header_exception", format!("Invalid media-type value on headers [{headers}]"))
            .caused_by(ErrorCause::new("status_exception", detail)),
    )
}

fn negotiate(incoming: &Incoming, handle: &EsHandle) -> Result<Negotiated, ApiError> {
    let product = handle.product();
    let accept = header(&incoming.headers, "accept");
    let content_type = if incoming.body.is_empty() { "" } else { header(&incoming.headers, "content-type") };
    let lowered = content_type.to_ascii_lowercase();
    let base = lowered.split(';').next().unwrap_or_default().trim();
    let supported = [
        "application/json",
        "application/x-ndjson",
        "application/vnd.elasticsearch+json",
        "application/vnd.elasticsearch+x-ndjson",
        "application/yaml",
        "application/smile",
        "application/cbor",
        "",
    ];
    if !supported.contains(&base) {
        return Err(ApiError::plain(406, format!("Content-Type header [{content_type}] is not supported")));
    }
    let accept_version = compatible_version(accept);
    let content_version = compatible_version(content_type);
    if accept_version.is_none() && content_version.is_none() {
        return Ok(Negotiated { compatible_with: None });
    }
    let accepted = product.accepted_compatible_versions();
    if accepted.is_empty() {
        if content_version.is_some() {
            return Err(ApiError::plain(406, format!("Content-Type header [{content_type}] is not supported")));
        }
        // Older releases ignore a versioned Accept they do not understand.
        return Ok(Negotiated { compatible_with: None });
    }
    let list = accepted.iter().rev().map(u32::to_string).collect::<Vec<_>>().join(" or ");
    if let Some(version) = accept_version.filter(|version| !accepted.contains(version)) {
        return Err(media_type_error(
            "Accept",
            format!("Accept version must be either version {list}, but found {version}. Accept={accept}"),
        ));
    }
    if let Some(version) = content_version.filter(|version| !accepted.contains(version)) {
        return Err(media_type_error(
            "Content-Type",
            format!(
                "Content-Type version must be either version {list}, but found {version}. Content-Type={content_type}"
            ),
        ));
    }
    let has_content = !content_type.is_empty();
    if has_content && accept_version != content_version {
        return Err(media_type_error(
            "Accept, Content-Type",
            format!("A compatible version is required on both Content-Type and Accept headers if either one has requested a compatible version and the compatible versions must match. Accept={accept}, Content-Type={content_type}"),
        ));
    }
    Ok(Negotiated { compatible_with: accept_version.or(content_version) })
}

fn decode_body(incoming: &Incoming) -> Result<Bytes, ApiError> {
    let encoding = header(&incoming.headers, "content-encoding").to_ascii_lowercase();
    let mut decoded = Vec::new();
    let result = match encoding.as_str() {
        "" | "identity" => return Ok(incoming.body.clone()),
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(&incoming.body[..]).read_to_end(&mut decoded),
        "deflate" => flate2::read::ZlibDecoder::new(&incoming.body[..]).read_to_end(&mut decoded),
        other => {
            return Err(ApiError::illegal_argument(format!(
                "unsupported Content-Encoding [{other}]; send gzip or deflate"
            )))
        }
    };
    result.map_err(|error| {
        ApiError::bad_request("parse_exception", format!("request body is not valid {encoding}: {error}"))
    })?;
    Ok(Bytes::from(decoded))
}

fn json_body(incoming: &Incoming) -> Result<Map<String, Value>, ApiError> {
    if incoming.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&incoming.body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(ApiError::parsing(format!("request body must be a JSON object, found {other}"))),
        Err(error) => Err(ApiError::bad_request(
            "x_content_parse_exception",
            format!("[{}:{}] {error}", error.line(), error.column()),
        )),
    }
}

// ---------------------------------------------------------------------------
// Routing.

fn method_not_allowed(incoming: &Incoming, allowed: &str) -> ApiError {
    ApiError::plain(
        405,
        format!(
            "Incorrect HTTP method for uri [{}] and method [{}], allowed: [{allowed}]",
            incoming.path, incoming.method
        ),
    )
}

fn route(handle: &EsHandle, incoming: &Incoming) -> Outcome {
    let product = handle.product();
    let segments: Vec<&str> = incoming.segments.iter().map(String::as_str).collect();
    let method = &incoming.method;
    let is = |expected: &Method| method == expected;
    match segments.as_slice() {
        [] => match *method {
            Method::GET => Ok(Reply::ok(root(handle))),
            Method::HEAD => Ok(Reply::empty(200)),
            _ => Err(method_not_allowed(incoming, "GET, HEAD")),
        },
        ["_bulk"] | [_, "_bulk"] | [_, _, "_bulk"] => {
            if !(is(&Method::POST) || is(&Method::PUT)) {
                return Err(method_not_allowed(incoming, "POST, PUT"));
            }
            let (index, type_name) = match segments.as_slice() {
                [index, _] => (Some(index.to_string()), None),
                [index, type_name, _] if product.mapping_types() != MappingTypeRule::Removed => {
                    (Some(index.to_string()), Some(type_name.to_string()))
                }
                [_, _, _] => return Err(ApiError::no_handler(method.as_str(), &incoming.path)),
                _ => (None, None),
            };
            handle_bulk(handle, incoming, index, type_name)
        }
        ["_search"] | [_, "_search"] if is(&Method::GET) || is(&Method::POST) => {
            let index = (segments.len() == 2).then(|| segments[0]);
            handle_search(handle, incoming, index)
        }
        ["_count"] | [_, "_count"] if is(&Method::GET) || is(&Method::POST) => {
            let index = (segments.len() == 2).then(|| segments[0]);
            handle_count(handle, incoming, index)
        }
        [index, "_pit"] if product.has_elasticsearch_pit() && is(&Method::POST) => {
            open_pit(handle, incoming, index, false)
        }
        ["_pit"] if product.has_elasticsearch_pit() && is(&Method::DELETE) => close_pit_elasticsearch(handle, incoming),
        [index, "_search", "point_in_time"] if product.has_opensearch_pit() && is(&Method::POST) => {
            open_pit(handle, incoming, index, true)
        }
        ["_search", "point_in_time"] if product.has_opensearch_pit() && is(&Method::DELETE) => {
            close_pit_opensearch(handle, incoming)
        }
        ["_search", "point_in_time", "_all"] if product.has_opensearch_pit() && is(&Method::DELETE) => {
            let ids = handle.cluster().close_all_pits();
            Ok(Reply::ok(
                json!({"pits": ids.iter().map(|id| json!({"successful": true, "pit_id": id})).collect::<Vec<_>>()}),
            ))
        }
        ["_search", "point_in_time", "_all"] if product.has_opensearch_pit() && is(&Method::GET) => {
            let mut cluster = handle.cluster();
            cluster.expire_pits(std::time::Instant::now());
            let now = std::time::Instant::now();
            let pits: Vec<Value> = cluster
                .pits
                .values()
                .map(|pit| json!({"pit_id": encode_pit_id(pit.serial, 0), "creation_time": pit.creation_time_millis, "keep_alive": pit.expires_at.saturating_duration_since(now).as_millis() as u64}))
                .collect();
            Ok(Reply::ok(json!({"pits": pits})))
        }
        ["_refresh"] | [_, "_refresh"] if is(&Method::POST) || is(&Method::GET) => {
            let expression = if segments.len() == 2 { segments[0] } else { "_all" };
            let mut cluster = handle.cluster();
            let names = cluster.resolve(expression, target_options(incoming))?;
            let mut shards = 0;
            for name in &names {
                cluster.refresh_index(name);
                shards += cluster.indices.get(name).map(|index| index.settings.number_of_shards).unwrap_or(0);
            }
            Ok(Reply::ok(json!({"_shards": {"total": shards * 2, "successful": shards, "failed": 0}})))
        }
        ["_mapping"] if is(&Method::GET) => get_mapping(handle, incoming, "_all"),
        [index, "_mapping"] => match *method {
            Method::GET => get_mapping(handle, incoming, index),
            Method::PUT | Method::POST => put_mapping(handle, incoming, index),
            _ => Err(method_not_allowed(incoming, "GET, PUT, POST")),
        },
        [index, "_settings"] if is(&Method::GET) => get_settings(handle, incoming, index),
        ["_cluster", "health"] | ["_cluster", "health", _] if is(&Method::GET) => {
            let cluster = handle.cluster();
            let shards: u32 = cluster.indices.values().map(|index| index.settings.number_of_shards).sum();
            Ok(Reply::ok(json!({
                "cluster_name": handle.config().cluster_name, "status": "green", "timed_out": false,
                "number_of_nodes": 1, "number_of_data_nodes": 1, "active_primary_shards": shards, "active_shards": shards,
                "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": 0, "delayed_unassigned_shards": 0,
                "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
                "active_shards_percent_as_number": 100.0
            })))
        }
        ["_index_template", name] | ["_template", name] => {
            template(handle, incoming, name, segments[0] == "_index_template")
        }
        ["_index_template"] | ["_template"] if is(&Method::GET) => {
            let cluster = handle.cluster();
            if segments[0] == "_index_template" {
                let templates: Vec<Value> = cluster
                    .templates
                    .values()
                    .map(|template| json!({"name": template.name, "index_template": template.body}))
                    .collect();
                Ok(Reply::ok(json!({"index_templates": templates})))
            } else {
                Ok(Reply::ok(Value::Object(
                    cluster
                        .legacy_templates
                        .values()
                        .map(|template| (template.name.clone(), template.body.clone()))
                        .collect(),
                )))
            }
        }
        [index, "_doc"] if is(&Method::POST) => {
            write_document(handle, incoming, index, None, None, DocumentWrite::Index)
        }
        [index, "_doc", id] => match *method {
            Method::PUT | Method::POST => write_document(handle, incoming, index, None, Some(id), DocumentWrite::Index),
            Method::GET | Method::HEAD => get_document(handle, incoming, index, id),
            Method::DELETE => write_document(handle, incoming, index, None, Some(id), DocumentWrite::Delete),
            _ => Err(method_not_allowed(incoming, "GET, HEAD, PUT, POST, DELETE")),
        },
        [index, "_create", id] if is(&Method::PUT) || is(&Method::POST) => {
            write_document(handle, incoming, index, None, Some(id), DocumentWrite::Create)
        }
        [index, "_update", id] if is(&Method::POST) => {
            write_document(handle, incoming, index, None, Some(id), DocumentWrite::Update)
        }
        [index, type_name]
            if !type_name.starts_with('_')
                && product.mapping_types() == MappingTypeRule::Required
                && is(&Method::POST) =>
        {
            write_document(handle, incoming, index, Some(type_name), None, DocumentWrite::Index)
        }
        [index, type_name, id]
            if !type_name.starts_with('_') && product.mapping_types() == MappingTypeRule::Required =>
        {
            match *method {
                Method::PUT | Method::POST => {
                    write_document(handle, incoming, index, Some(type_name), Some(id), DocumentWrite::Index)
                }
                Method::GET | Method::HEAD => get_document(handle, incoming, index, id),
                Method::DELETE => {
                    write_document(handle, incoming, index, Some(type_name), Some(id), DocumentWrite::Delete)
                }
                _ => Err(method_not_allowed(incoming, "GET, HEAD, PUT, POST, DELETE")),
            }
        }
        [index] if !index.starts_with('_') => match *method {
            Method::PUT => create_index(handle, incoming, index),
            Method::DELETE => delete_index(handle, incoming, index),
            Method::HEAD => {
                let cluster = handle.cluster();
                let found = cluster
                    .resolve(index, TargetOptions { ignore_unavailable: false, allow_no_indices: false })
                    .is_ok();
                Ok(Reply::empty(if found { 200 } else { 404 }))
            }
            Method::GET => get_index(handle, incoming, index),
            _ => Err(method_not_allowed(incoming, "GET, HEAD, PUT, DELETE")),
        },
        _ => Err(ApiError::no_handler(method.as_str(), &incoming.path)),
    }
}

fn root(handle: &EsHandle) -> Value {
    let config = handle.config();
    let cluster_uuid = handle.cluster().cluster_uuid.clone();
    config.product.root_document(&config.node_name, &config.cluster_name, &cluster_uuid)
}

fn target_options(incoming: &Incoming) -> TargetOptions {
    TargetOptions {
        ignore_unavailable: param_flag(&incoming.params, "ignore_unavailable").unwrap_or(false),
        allow_no_indices: param_flag(&incoming.params, "allow_no_indices").unwrap_or(true),
    }
}

fn refresh_policy(incoming: &Incoming) -> Result<RefreshPolicy, ApiError> {
    RefreshPolicy::parse(param(&incoming.params, "refresh"))
}

fn handle_bulk(handle: &EsHandle, incoming: &Incoming, index: Option<String>, type_name: Option<String>) -> Outcome {
    let product = handle.product();
    let refresh = refresh_policy(incoming)?;
    if let Some(index) = &index {
        super::store::validate_index_name(index)?;
    }
    let defaults = BulkDefaults { index, type_name, compatible_with_7: incoming.compatible_with_7 };
    let items = bulk::parse(&incoming.body, &defaults, product.mapping_types())?;
    let mut cluster = handle.cluster();
    let (response, summary) = bulk::execute(items, &mut cluster, handle.faults(), refresh, incoming.compatible_with_7);
    let counters = &mut cluster.counters;
    counters.bulk_requests += 1;
    counters.injected_item_faults += summary.injected;
    for result in summary.results {
        *counters.bulk_items_by_result.entry(result).or_default() += 1;
    }
    for status in summary.statuses {
        *counters.bulk_items_by_status.entry(status).or_default() += 1;
    }
    Ok(Reply::ok(response))
}

fn response_shape(handle: &EsHandle, incoming: &Incoming, pit_id: Option<String>) -> ResponseShape {
    let injected = handle.faults().take_shard_fault();
    if injected.is_some() {
        handle.cluster().counters.injected_shard_failures += 1;
    }
    ResponseShape {
        product: handle.product(),
        compatible_with_7: incoming.compatible_with_7,
        rest_total_hits_as_int: param_flag(&incoming.params, "rest_total_hits_as_int").unwrap_or(false),
        pit_id,
        injected_shard_failures: injected,
        node_id: handle.0.node_id.clone(),
        now_millis: super::dates::now_millis(),
    }
}

fn handle_search(handle: &EsHandle, incoming: &Incoming, index: Option<&str>) -> Outcome {
    let product = handle.product();
    let body = json_body(incoming)?;
    let request = SearchRequest::parse(&body, &incoming.params, &product)?;
    let (snapshots, pit_id) = match &request.pit {
        Some(pit) => {
            if index.is_some() {
                return Err(ApiError::validation(&[
                    "[indices] cannot be used with point in time. Do not specify any index with point in time.",
                ]));
            }
            let (snapshots, next_id) = handle.cluster().use_pit(&pit.id, pit.keep_alive)?;
            // Elasticsearch may hand back a new id on every search;
            // OpenSearch ids stay the same (unverified, kept stable).
            let returned = if product.is_elasticsearch() { next_id } else { pit.id.clone() };
            (snapshots, Some(returned))
        }
        None => (handle.cluster().searchable_snapshots(index.unwrap_or("_all"), target_options(incoming))?, None),
    };
    let shape = response_shape(handle, incoming, pit_id);
    handle.cluster().counters.searches += 1;
    Ok(Reply::ok(search::execute(&request, &snapshots, &shape)?))
}

fn handle_count(handle: &EsHandle, incoming: &Incoming, index: Option<&str>) -> Outcome {
    let body = json_body(incoming)?;
    let query = search::parse_count_body(&body, &incoming.params)?;
    let snapshots = handle.cluster().searchable_snapshots(index.unwrap_or("_all"), target_options(incoming))?;
    let shape = response_shape(handle, incoming, None);
    handle.cluster().counters.counts += 1;
    Ok(Reply::ok(search::count(&query, &snapshots, &shape)?))
}

fn open_pit(handle: &EsHandle, incoming: &Incoming, index: &str, opensearch: bool) -> Outcome {
    let keep_alive = match param(&incoming.params, "keep_alive") {
        None => return Err(ApiError::validation(&["[keep_alive] is not specified"])),
        Some(text) => parse_time_value(text).flatten().ok_or_else(|| {
            ApiError::illegal_argument(format!(
                "failed to parse setting [keep_alive] with value [{text}] as a time value"
            ))
        })?,
    };
    let mut cluster = handle.cluster();
    let product = cluster.product;
    let pit = cluster.open_pit(index, keep_alive, target_options(incoming))?;
    let shards: u32 = pit.snapshots.iter().map(|snapshot| snapshot.number_of_shards).sum();
    let id = encode_pit_id(pit.serial, 0);
    let shards_json = json!({"total": shards, "successful": shards, "skipped": 0, "failed": 0});
    if opensearch {
        return Ok(Reply::ok(json!({"pit_id": id, "_shards": shards_json, "creation_time": pit.creation_time_millis})));
    }
    if product.version.major >= 8 {
        Ok(Reply::ok(json!({"id": id, "_shards": shards_json})))
    } else {
        Ok(Reply::ok(json!({"id": id})))
    }
}

fn close_pit_elasticsearch(handle: &EsHandle, incoming: &Incoming) -> Outcome {
    let body = json_body(incoming)?;
    let id = body.get("id").and_then(Value::as_str).ok_or_else(|| ApiError::validation(&["[id] is not specified"]))?;
    let closed = handle.cluster().close_pits(&[id.to_string()]);
    match closed.first().and_then(|(_, freed)| *freed) {
        Some(freed) => Ok(Reply::ok(json!({"succeeded": true, "num_freed": freed}))),
        None => Ok(Reply::json(404, json!({"succeeded": true, "num_freed": 0}))),
    }
}

fn close_pit_opensearch(handle: &EsHandle, incoming: &Incoming) -> Outcome {
    let body = json_body(incoming)?;
    let ids: Vec<String> = match body.get("pit_id") {
        Some(Value::String(id)) => vec![id.clone()],
        Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => return Err(ApiError::validation(&["no pit ids specified"])),
    };
    let closed = handle.cluster().close_pits(&ids);
    let all_found = closed.iter().all(|(_, freed)| freed.is_some());
    let pits: Vec<Value> =
        closed.iter().map(|(id, freed)| json!({"successful": freed.is_some(), "pit_id": id})).collect();
    Ok(Reply::json(if all_found { 200 } else { 404 }, json!({"pits": pits})))
}

fn create_index(handle: &EsHandle, incoming: &Incoming, index: &str) -> Outcome {
    let body = Value::Object(json_body(incoming)?);
    let name = super::store::resolve_date_math_name(index, super::dates::now_millis())?;
    let mut cluster = handle.cluster();
    cluster.create_index(&name, &body)?;
    Ok(Reply::ok(json!({"acknowledged": true, "shards_acknowledged": true, "index": name})))
}

fn delete_index(handle: &EsHandle, incoming: &Incoming, expression: &str) -> Outcome {
    let mut cluster = handle.cluster();
    if cluster.product.destructive_requires_name() && (expression.contains('*') || expression == "_all") {
        return Err(ApiError::illegal_argument("Wildcard expressions or all indices are not allowed"));
    }
    let names = cluster.resolve(expression, target_options(incoming))?;
    for name in names {
        cluster.delete_index(&name);
    }
    Ok(Reply::ok(json!({"acknowledged": true})))
}

fn mapping_json(handle: &EsHandle, index: &super::store::Index) -> Value {
    let mapping = index.mapping.to_json();
    if handle.product().mapping_types() == MappingTypeRule::Required {
        json!({ index.type_name.clone(): mapping })
    } else {
        mapping
    }
}

fn get_mapping(handle: &EsHandle, incoming: &Incoming, expression: &str) -> Outcome {
    let cluster = handle.cluster();
    let names = cluster.resolve(expression, target_options(incoming))?;
    let mut response = Map::new();
    for name in names {
        if let Some(index) = cluster.indices.get(&name) {
            response.insert(name.clone(), json!({"mappings": mapping_json(handle, index)}));
        }
    }
    Ok(Reply::ok(Value::Object(response)))
}

fn put_mapping(handle: &EsHandle, incoming: &Incoming, expression: &str) -> Outcome {
    let body = Value::Object(json_body(incoming)?);
    let mut cluster = handle.cluster();
    let names = cluster.resolve(expression, target_options(incoming))?;
    if names.is_empty() {
        return Err(ApiError::index_not_found(expression));
    }
    // Validate against every index first so a failure changes nothing.
    let mut updated = Vec::new();
    for name in &names {
        let index = &cluster.indices[name];
        let mut mapping = (*index.mapping).clone();
        mapping.merge(&body)?;
        updated.push((name.clone(), mapping));
    }
    for (name, mapping) in updated {
        if let Some(index) = cluster.indices.get_mut(&name) {
            index.mapping = std::sync::Arc::new(mapping);
        }
    }
    Ok(Reply::ok(json!({"acknowledged": true})))
}

fn settings_json(index: &super::store::Index) -> Value {
    let mut settings = Map::new();
    settings.insert("number_of_shards".into(), Value::String(index.settings.number_of_shards.to_string()));
    settings.insert("number_of_replicas".into(), Value::String(index.settings.number_of_replicas.to_string()));
    if let Some(interval) = index.settings.refresh_interval {
        let text = interval.map(|duration| format!("{}ms", duration.as_millis())).unwrap_or_else(|| "-1".to_string());
        settings.insert("refresh_interval".into(), Value::String(text));
    }
    for (key, value) in &index.settings.other {
        settings.insert(key.clone(), value.clone());
    }
    settings.insert("uuid".into(), Value::String(index.uuid.clone()));
    settings.insert("creation_date".into(), Value::String(index.creation_date.to_string()));
    settings.insert("provided_name".into(), Value::String(index.name.clone()));
    json!({"index": settings})
}

fn get_settings(handle: &EsHandle, incoming: &Incoming, expression: &str) -> Outcome {
    let cluster = handle.cluster();
    let names = cluster.resolve(expression, target_options(incoming))?;
    let response: Map<String, Value> = names
        .iter()
        .filter_map(|name| cluster.indices.get(name))
        .map(|index| (index.name.clone(), json!({"settings": settings_json(index)})))
        .collect();
    Ok(Reply::ok(Value::Object(response)))
}

fn get_index(handle: &EsHandle, incoming: &Incoming, expression: &str) -> Outcome {
    let cluster = handle.cluster();
    let names = cluster.resolve(expression, target_options(incoming))?;
    let response: Map<String, Value> = names
        .iter()
        .filter_map(|name| cluster.indices.get(name))
        .map(|index| (index.name.clone(), json!({"aliases": index.aliases, "mappings": mapping_json(handle, index), "settings": settings_json(index)})))
        .collect();
    Ok(Reply::ok(Value::Object(response)))
}

fn template(handle: &EsHandle, incoming: &Incoming, name: &str, composable: bool) -> Outcome {
    let mut cluster = handle.cluster();
    let exists =
        if composable { cluster.templates.contains_key(name) } else { cluster.legacy_templates.contains_key(name) };
    let missing = || {
        let kind = if composable { "index template" } else { "index_template" };
        ApiError::new(
            404,
            ErrorCause::new("resource_not_found_exception", format!("{kind} matching [{name}] not found")),
        )
    };
    match incoming.method {
        Method::PUT | Method::POST => {
            if param_flag(&incoming.params, "create") == Some(true) && exists {
                return Err(ApiError::illegal_argument(format!("index template [{name}] already exists")));
            }
            let body = Value::Object(json_body(incoming)?);
            cluster.put_template(name, &body, composable)?;
            Ok(Reply::ok(json!({"acknowledged": true})))
        }
        Method::HEAD => Ok(Reply::empty(if exists { 200 } else { 404 })),
        Method::GET => {
            if composable {
                let template = cluster.templates.get(name).ok_or_else(missing)?;
                Ok(Reply::ok(json!({"index_templates": [{"name": name, "index_template": template.body}]})))
            } else {
                let template = cluster.legacy_templates.get(name).ok_or_else(missing)?;
                Ok(Reply::ok(json!({ name: template.body })))
            }
        }
        Method::DELETE => {
            let removed =
                if composable { cluster.templates.remove(name) } else { cluster.legacy_templates.remove(name) };
            removed.ok_or_else(missing)?;
            Ok(Reply::ok(json!({"acknowledged": true})))
        }
        _ => Err(method_not_allowed(incoming, "GET, HEAD, PUT, POST, DELETE")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DocumentWrite {
    Index,
    Create,
    Update,
    Delete,
}

fn write_document(
    handle: &EsHandle,
    incoming: &Incoming,
    index: &str,
    type_name: Option<&str>,
    id: Option<&str>,
    kind: DocumentWrite,
) -> Outcome {
    let product = handle.product();
    super::store::validate_index_name(index)?;
    let refresh = refresh_policy(incoming)?;
    let create_only = kind == DocumentWrite::Create || param(&incoming.params, "op_type") == Some("create");
    let if_seq_no = param(&incoming.params, "if_seq_no").and_then(|text| text.parse().ok());
    let if_primary_term = param(&incoming.params, "if_primary_term").and_then(|text| text.parse().ok());
    let raw = String::from_utf8_lossy(&incoming.body).into_owned();
    let operation = match kind {
        DocumentWrite::Delete => {
            WriteOperation::Delete { id: id.unwrap_or_default().to_string(), if_seq_no, if_primary_term }
        }
        DocumentWrite::Update => {
            let body = json_body(incoming)?;
            WriteOperation::Update {
                id: id.unwrap_or_default().to_string(),
                doc: body.get("doc").cloned(),
                upsert: body.get("upsert").cloned(),
                doc_as_upsert: body.get("doc_as_upsert").and_then(Value::as_bool).unwrap_or(false),
            }
        }
        DocumentWrite::Index | DocumentWrite::Create => {
            let source = match serde_json::from_slice::<Value>(&incoming.body) {
                Ok(source) => source,
                Err(error) => {
                    let error_type = if product.document_parsing_exception() {
                        "document_parsing_exception"
                    } else {
                        "mapper_parsing_exception"
                    };
                    return Err(ApiError::new(400, ErrorCause::new(error_type, format!("failed to parse: {error}"))));
                }
            };
            WriteOperation::Index { id: id.map(str::to_string), source, create_only, if_seq_no, if_primary_term }
        }
    };
    let mut cluster = handle.cluster();
    let outcome = cluster.write(index, type_name, operation, &raw);
    match outcome {
        Ok(done) => {
            if refresh != RefreshPolicy::None {
                cluster.refresh_index(&done.index);
            }
            let replicas = cluster.indices.get(&done.index).map(|index| index.settings.number_of_replicas).unwrap_or(1);
            let mut body = Map::new();
            body.insert("_index".into(), Value::String(done.index.clone()));
            if product.mapping_types() != MappingTypeRule::Removed || incoming.compatible_with_7 {
                body.insert("_type".into(), Value::String(done.type_name.clone()));
            }
            body.insert("_id".into(), Value::String(done.id.clone()));
            body.insert("_version".into(), Value::from(done.version));
            body.insert("result".into(), Value::String(done.result.to_string()));
            if refresh == RefreshPolicy::Immediate {
                body.insert("forced_refresh".into(), Value::Bool(true));
            }
            body.insert("_shards".into(), json!({"total": 1 + replicas, "successful": 1, "failed": 0}));
            body.insert("_seq_no".into(), Value::from(done.seq_no));
            body.insert("_primary_term".into(), Value::from(done.primary_term));
            Ok(Reply::json(done.status, Value::Object(body)))
        }
        Err(failure) => Err(ApiError::new(failure.status, *failure.cause)),
    }
}

fn get_document(handle: &EsHandle, incoming: &Incoming, expression: &str, id: &str) -> Outcome {
    let product = handle.product();
    let cluster = handle.cluster();
    let index = cluster.indices.get(expression).ok_or_else(|| ApiError::index_not_found(expression))?;
    let mut body = Map::new();
    body.insert("_index".into(), Value::String(index.name.clone()));
    if product.mapping_types() != MappingTypeRule::Removed || incoming.compatible_with_7 {
        body.insert("_type".into(), Value::String(index.type_name.clone()));
    }
    body.insert("_id".into(), Value::String(id.to_string()));
    match index.get(id) {
        Some(document) => {
            body.insert("_version".into(), Value::from(document.version));
            body.insert("_seq_no".into(), Value::from(document.seq_no));
            body.insert("_primary_term".into(), Value::from(document.primary_term));
            body.insert("found".into(), Value::Bool(true));
            body.insert("_source".into(), document.source.clone());
            Ok(Reply::ok(Value::Object(body)))
        }
        None => {
            body.insert("found".into(), Value::Bool(false));
            Ok(Reply::json(404, Value::Object(body)))
        }
    }
}

// ---------------------------------------------------------------------------
// `filter_path`.

/// Keeps only the paths named in `filter_path` (comma list, `*` matches
/// one key, `**` any depth, a leading `-` excludes). Arrays are transparent.
pub fn filter_path(body: &Value, paths: &str) -> Value {
    let (excludes, includes): (Vec<Vec<&str>>, Vec<Vec<&str>>) = paths
        .split(',')
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .map(|path| path.split('.').collect::<Vec<&str>>())
        .partition(|parts| parts[0].starts_with('-'));
    let excludes: Vec<Vec<&str>> = excludes
        .into_iter()
        .map(|mut parts| {
            parts[0] = &parts[0][1..];
            parts
        })
        .collect();
    let included = if includes.is_empty() {
        body.clone()
    } else {
        include_paths(body, &includes.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap_or_else(|| json!({}))
    };
    if excludes.is_empty() {
        return included;
    }
    exclude_paths(&included, &excludes.iter().map(Vec::as_slice).collect::<Vec<_>>())
}

fn segment_matches(pattern: &str, key: &str) -> bool {
    super::mapping::simple_wildcard_match(pattern, key)
}

fn include_paths(value: &Value, patterns: &[&[&str]]) -> Option<Value> {
    if patterns.iter().any(|pattern| pattern.is_empty()) {
        return Some(value.clone());
    }
    match value {
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(|item| include_paths(item, patterns)).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(object) => {
            let mut kept = Map::new();
            for (key, child) in object {
                let mut next: Vec<&[&str]> = Vec::new();
                for pattern in patterns {
                    if pattern[0] == "**" {
                        next.push(pattern);
                        next.push(&pattern[1..]);
                        if pattern.len() > 1 && segment_matches(pattern[1], key) {
                            next.push(&pattern[2..]);
                        }
                    } else if segment_matches(pattern[0], key) {
                        next.push(&pattern[1..]);
                    }
                }
                if next.is_empty() {
                    continue;
                }
                if let Some(filtered) = include_paths(child, &next) {
                    kept.insert(key.clone(), filtered);
                }
            }
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        _ => None,
    }
}

fn exclude_paths(value: &Value, patterns: &[&[&str]]) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|item| exclude_paths(item, patterns)).collect()),
        Value::Object(object) => {
            let mut kept = Map::new();
            for (key, child) in object {
                let matching: Vec<&[&str]> =
                    patterns.iter().filter(|pattern| segment_matches(pattern[0], key)).copied().collect();
                if matching.iter().any(|pattern| pattern.len() == 1) {
                    continue;
                }
                let next: Vec<&[&str]> = matching.iter().map(|pattern| &pattern[1..]).collect();
                kept.insert(key.clone(), if next.is_empty() { child.clone() } else { exclude_paths(child, &next) });
            }
            Value::Object(kept)
        }
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------
// Canned errors for the harness fault plan.

/// The error body Elasticsearch sends with a whole-request `status`.
pub fn canned_error(status: u16) -> ApiError {
    match status {
        429 => ApiError::new(
            429,
            ErrorCause::new(
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation [coordinating_and_primary_bytes=104857600, replica_bytes=0, all_bytes=104857600, coordinating_operation_bytes=1048576, max_coordinating_and_primary_bytes=107374182]",
            ),
        ),
        503 => ApiError::new(503, ErrorCause::new("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];")),
        413 => ApiError::new(413, ErrorCause::new("content_too_long_exception", "entity content is too long [104857601] for the configured buffer limit [104857600]")),
        401 => ApiError::new(401, ErrorCause::new("security_exception", "missing authentication credentials for REST request [/]")),
        403 => ApiError::new(403, ErrorCause::new("security_exception", "action [indices:data/write/bulk] is unauthorized for user [testkit] with effective roles [viewer]")),
        502 | 504 => ApiError::new(status, ErrorCause::new("exception", "upstream proxy failure")),
        _ => ApiError::new(status, ErrorCause::new("exception", format!("testkit injected failure with status {status}"))),
    }
}

// ---------------------------------------------------------------------------
// Control endpoints.

fn control_reply(status: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn control_error(message: impl std::fmt::Display) -> Response<Body> {
    control_reply(400, json!({"error": message.to_string()}))
}

fn control_body<T: for<'de> Deserialize<'de>>(incoming: &Incoming) -> Result<T, String> {
    serde_json::from_slice(&incoming.body)
        .map_err(|error| format!("testkit control body for {} is invalid: {error}", incoming.path))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemFaultRequest {
    #[serde(default)]
    count: Option<u64>,
    #[serde(default, rename = "where")]
    selector: Option<FieldEquals>,
    fault: ItemFaultKind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldEquals {
    field: String,
    equals: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardFaultRequest {
    searches: u64,
    #[serde(default = "one")]
    failed_shards: u32,
    #[serde(default, rename = "type")]
    error_type: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MalformedRequest {
    count: u64,
    #[serde(default)]
    path_contains: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFaultRequest {
    #[serde(default)]
    count: usize,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    drop: bool,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    path_prefix: Option<String>,
}

fn control(handle: &EsHandle, incoming: &Incoming) -> Response<Body> {
    let segments: Vec<&str> = incoming.segments.iter().skip(1).map(String::as_str).collect();
    let method = &incoming.method;
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["stats"]) => control_reply(200, serde_json::to_value(handle.stats()).unwrap_or_default()),
        ("GET", ["documents"]) => {
            let expression = param(&incoming.params, "index").unwrap_or("*");
            match handle.documents(expression) {
                Ok(documents) => control_reply(200, json!({"documents": documents})),
                Err(error) => control_error(error),
            }
        }
        ("POST", ["load"]) => match control_body::<Fixture>(incoming) {
            Ok(fixture) => match handle.load(&fixture) {
                Ok(report) => control_reply(200, serde_json::to_value(report).unwrap_or_default()),
                Err(error) => control_error(error),
            },
            Err(message) => control_error(message),
        },
        ("POST", ["load_demo"]) => match control_body::<DemoFixture>(incoming) {
            Ok(demo) => match handle.load_demo(&demo) {
                Ok(report) => control_reply(200, serde_json::to_value(report).unwrap_or_default()),
                Err(error) => control_error(error),
            },
            Err(message) => control_error(message),
        },
        ("POST", ["refresh"]) => match handle.refresh(param(&incoming.params, "index").unwrap_or("*")) {
            Ok(()) => control_reply(200, json!({"refreshed": true})),
            Err(error) => control_error(error),
        },
        ("POST", ["reset"]) => {
            handle.reset();
            control_reply(200, json!({"reset": true}))
        }
        ("GET", ["faults"]) => {
            let mut description = handle.faults().describe();
            description["http_pending"] = json!(handle.http_faults().map(|plan| plan.pending()).unwrap_or(0));
            control_reply(200, description)
        }
        ("DELETE", ["faults"]) => {
            handle.faults().clear();
            if let Some(plan) = handle.http_faults() {
                plan.clear();
            }
            control_reply(200, json!({"cleared": true}))
        }
        ("POST", ["faults", "items"]) => match control_body::<ItemFaultRequest>(incoming) {
            Ok(request) => {
                match request.selector {
                    Some(FieldEquals { field, equals }) => {
                        handle.faults().fail_items_where(&field, equals, request.fault, request.count)
                    }
                    None => handle.faults().fail_next_items(request.count.unwrap_or(1), request.fault),
                }
                control_reply(200, handle.faults().describe())
            }
            Err(message) => control_error(message),
        },
        ("POST", ["faults", "shards"]) => match control_body::<ShardFaultRequest>(incoming) {
            Ok(request) => {
                let cause = match (request.error_type, request.reason) {
                    (None, None) => None,
                    (error_type, reason) => Some(ErrorCause::new(
                        error_type.unwrap_or_else(|| "exception".into()),
                        reason.unwrap_or_else(|| "injected shard failure".into()),
                    )),
                };
                handle.faults().fail_shards(request.searches, request.failed_shards, cause);
                control_reply(200, handle.faults().describe())
            }
            Err(message) => control_error(message),
        },
        ("POST", ["faults", "malformed"]) => match control_body::<MalformedRequest>(incoming) {
            Ok(request) => {
                handle.faults().malformed_responses(request.path_contains.as_deref(), request.count);
                control_reply(200, handle.faults().describe())
            }
            Err(message) => control_error(message),
        },
        ("POST", ["faults", "http"]) => match control_body::<HttpFaultRequest>(incoming) {
            Ok(request) => {
                let Some(plan) = handle.http_faults() else {
                    return control_error(
                        "the harness fault plan is not available: the router is not served by EmulatorServer",
                    );
                };
                if let Some(latency) = request.latency_ms {
                    plan.set_latency(Duration::from_millis(latency));
                }
                let fault = if request.drop {
                    Some(Fault::DropConnection)
                } else {
                    request.status.map(|status| {
                        let body = request.body.clone().or_else(|| canned_error(status).to_json()).unwrap_or_default();
                        Fault::status(status, body.to_string())
                    })
                };
                if let Some(fault) = fault {
                    let count = request.count.max(1);
                    match &request.path_prefix {
                        Some(prefix) => plan.next_matching(prefix, count, fault),
                        None => plan.next(count, fault),
                    }
                }
                control_reply(200, json!({"http_pending": plan.pending()}))
            }
            Err(message) => control_error(message),
        },
        _ => control_reply(
            404,
            json!({"error": format!("unknown testkit control endpoint {} {}", method, incoming.path)}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_path_includes_excludes_and_wildcards() {
        let body = json!({"took": 3, "errors": true, "items": [{"index": {"_id": "1", "status": 201}}, {"create": {"_id": "2", "status": 409, "error": {"type": "x"}}}]});
        assert_eq!(
            filter_path(&body, "errors,items.*.error,items.*.status"),
            json!({"errors": true, "items": [{"index": {"status": 201}}, {"create": {"status": 409, "error": {"type": "x"}}}]})
        );
        assert_eq!(filter_path(&body, "-items"), json!({"took": 3, "errors": true}));
        assert_eq!(
            filter_path(&body, "**.status"),
            json!({"items": [{"index": {"status": 201}}, {"create": {"status": 409}}]})
        );
        assert_eq!(filter_path(&body, "nothing"), json!({}));
    }

    #[test]
    fn compatible_versions_are_read_from_media_types() {
        assert_eq!(compatible_version("application/vnd.elasticsearch+json; compatible-with=8"), Some(8));
        assert_eq!(compatible_version("application/vnd.elasticsearch+x-ndjson;compatible-with=7"), Some(7));
        assert_eq!(compatible_version("application/json"), None);
        assert_eq!(
            parse_params("a=1&q=level%3AERROR+x&flag"),
            vec![("a".into(), "1".into()), ("q".into(), "level:ERROR x".into()), ("flag".into(), String::new())]
        );
        assert_eq!(percent_decode("%3Clogs-%7Bnow%2Fd%7D%3E", false), "<logs-{now/d}>");
    }
}
