//! The HTTP face of the emulator: the SLS API (every path outside
//! `/_testkit/`) and the `/_testkit/` control endpoints.
//!
//! Every SLS response carries `x-log-requestid` (24 uppercase hex digits);
//! successes are exactly 200; errors are `{"errorCode", "errorMessage"}` JSON;
//! response header names are lowercase and no `Content-Encoding` is ever sent
//! (compression is signalled by `x-log-compresstype` only). The project comes
//! from the `Host` header (first label; port ignored), or from the authority
//! of an absolute-form target when `Host` is missing. Requests are
//! authenticated (see `signature`), then SLS faults apply, then the API runs.
//! Control endpoints need no signature and answer `{"error": "..."}` on
//! failure.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::consumer_group::CheckpointCommit;
use super::error::SlsError;
use super::faults::{
    FaultEffect, FaultPhase, FaultSpec, RequestScope, SlsApi, SlsFault, CORRUPT_LZ4_BODY, CORRUPT_PROTOBUF_RAW,
};
use super::proto::{lz4_block_compress, Log, LogContent, LogGroup, LogTag};
use super::signature::{verify, SignedRequest};
use super::state::{lock, CursorPosition, PullRequest, MAX_PULL_LOG_GROUPS};
use super::{DemoData, Shared};
use crate::http::DropConnection;

/// Request bodies above this are refused; SLS caps PutLogs at 10 MB and
/// consumer calls send a few hundred bytes.
const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_testkit/stats", get(control_stats))
        .route("/_testkit/faults", get(control_list_faults).post(control_add_faults).delete(control_clear_faults))
        .route("/_testkit/logstores", post(control_create_logstore))
        .route("/_testkit/append", post(control_append))
        .route("/_testkit/demo", post(control_demo))
        .route("/_testkit/split", post(control_split))
        .fallback(sls_api)
        .with_state(shared)
}

/// An SLS error answer.
struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl From<SlsError> for ApiError {
    fn from(error: SlsError) -> ApiError {
        ApiError { status: error.status(), code: error.code().to_string(), message: error.to_string() }
    }
}

enum Outcome {
    Answer(Response),
    Drop,
}

async fn sls_api(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let request_id = shared.next_request_id();
    let (parts, body) = request.into_parts();
    let outcome = match axum::body::to_bytes(body, MAX_REQUEST_BODY_BYTES).await {
        Ok(body) => serve(&shared, &parts, &body).await,
        Err(_) => Err(SlsError::parameter(format!("request body is over {MAX_REQUEST_BODY_BYTES} bytes")).into()),
    };
    let mut response = match outcome {
        Ok(Outcome::Answer(response)) => response,
        Ok(Outcome::Drop) => {
            let mut response = Response::new(Body::empty());
            response.extensions_mut().insert(DropConnection);
            return response;
        }
        Err(error) => {
            *lock(&shared.counters.errors).entry(error.code.clone()).or_default() += 1;
            let body = json!({ "errorCode": error.code, "errorMessage": error.message }).to_string();
            (error.status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-log-requestid", value);
    }
    response
}

/// Which API a request is, and what it is about.
struct Target {
    api: SlsApi,
    logstore: Option<String>,
    shard: Option<u32>,
    consumer_group: Option<String>,
}

async fn serve(shared: &Shared, parts: &Parts, body: &Bytes) -> Result<Outcome, ApiError> {
    let query: Vec<(String, String)> = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let path = parts.uri.path();
    verify(
        &SignedRequest { method: &parts.method, headers: &parts.headers, path, query: &query, body },
        &shared.credentials,
        SystemTime::now(),
    )?;
    let project = project_of(parts)?;
    let parameter = |name: &str| query_parameter(&query, name);
    let target = route(&parts.method, path, parameter("type"), parameter("action"))?;
    if !shared.state.project_exists(&project) {
        return Err(SlsError::ProjectNotExist { project }.into());
    }

    let scope = RequestScope {
        api: target.api,
        project: &project,
        logstore: target.logstore.as_deref(),
        shard: target.shard,
        consumer_group: target.consumer_group.as_deref(),
    };
    let latency = lock(&shared.faults).take(FaultPhase::Latency, &scope);
    if let Some(FaultEffect::Latency(latency)) = latency {
        tokio::time::sleep(latency).await;
    }
    let answer_fault = lock(&shared.faults).take(FaultPhase::Answer, &scope);
    match answer_fault {
        Some(FaultEffect::Error { status, code, message }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err(ApiError { status, code, message });
        }
        Some(FaultEffect::InvalidCursor) => {
            return Err(SlsError::InvalidCursor {
                message: "cursor is invalid or expired (injected fault)".to_string(),
            }
            .into())
        }
        Some(FaultEffect::DropConnection) => return Ok(Outcome::Drop),
        _ => {}
    }

    let state = &shared.state;
    let logstore = target.logstore.as_deref().unwrap_or_default();
    let group = target.consumer_group.as_deref().unwrap_or_default();
    let shard = target.shard.unwrap_or_default();
    let response = match target.api {
        SlsApi::ListLogStores => {
            let names = state.list_logstores(&project)?;
            json_response(&json!({ "count": names.len(), "total": names.len(), "logstores": names }))
        }
        SlsApi::ListShards => json_response(&state.list_shards(&project, logstore)?),
        SlsApi::GetCursor => {
            let from = parameter("from").ok_or_else(|| {
                SlsError::parameter("GetCursor needs the \"from\" parameter (begin, end or unix seconds)")
            })?;
            let position = match from {
                "begin" => CursorPosition::Begin,
                "end" => CursorPosition::End,
                seconds => {
                    let seconds: i64 = seconds.parse().map_err(|_| {
                        SlsError::parameter(format!("from {seconds:?} is not begin, end or unix seconds"))
                    })?;
                    if seconds < 0 {
                        return Err(
                            SlsError::parameter(format!("from {seconds} is negative; give unix seconds")).into()
                        );
                    }
                    CursorPosition::ReceivedAt(seconds.min(u32::MAX as i64) as u32)
                }
            };
            json_response(&json!({ "cursor": state.cursor(&project, logstore, shard, position)? }))
        }
        SlsApi::GetCursorTime => {
            let cursor = parameter("cursor")
                .ok_or_else(|| SlsError::parameter("GetCursorTime needs the \"cursor\" parameter"))?;
            json_response(&json!({ "cursor_time": state.cursor_time(&project, logstore, shard, cursor)? }))
        }
        SlsApi::PullLogs => pull_logs(shared, parts, &project, logstore, shard, &scope, &query)?,
        SlsApi::SplitShard => {
            let split_key = match parameter("key").filter(|key| !key.is_empty()) {
                Some(key) => Some(
                    u128::from_str_radix(key, 16)
                        .map_err(|_| SlsError::parameter(format!("split key {key:?} is not 32 hex digits")))?,
                ),
                None => None,
            };
            json_response(&state.split(&project, logstore, shard, split_key)?)
        }
        SlsApi::CreateConsumerGroup => {
            #[derive(Deserialize)]
            struct CreateBody {
                #[serde(rename = "consumerGroup")]
                consumer_group: String,
                timeout: i64,
                #[serde(default)]
                order: bool,
            }
            let request: CreateBody =
                parse_json(body, "CreateConsumerGroup body {\"consumerGroup\", \"timeout\", \"order\"}")?;
            if request.consumer_group.is_empty() {
                return Err(SlsError::json("consumerGroup is empty").into());
            }
            let timeout = timeout_from(request.timeout)?;
            state.create_consumer_group(&project, logstore, &request.consumer_group, timeout, request.order)?;
            empty_response()
        }
        SlsApi::ListConsumerGroups => {
            let groups: Vec<_> = state
                .list_consumer_groups(&project, logstore)?
                .into_iter()
                .map(|(name, timeout, order)| json!({ "name": name, "timeout": timeout.as_secs(), "order": order }))
                .collect();
            json_response(&groups)
        }
        SlsApi::UpdateConsumerGroup => {
            #[derive(Deserialize)]
            struct UpdateBody {
                timeout: Option<i64>,
                order: Option<bool>,
            }
            let request: UpdateBody = parse_json(body, "UpdateConsumerGroup body {\"timeout\", \"order\"}")?;
            if request.timeout.is_none() && request.order.is_none() {
                return Err(SlsError::json("UpdateConsumerGroup body has neither timeout nor order").into());
            }
            let timeout = request.timeout.map(timeout_from).transpose()?;
            state.update_consumer_group(&project, logstore, group, timeout, request.order)?;
            empty_response()
        }
        SlsApi::DeleteConsumerGroup => {
            state.delete_consumer_group(&project, logstore, group)?;
            empty_response()
        }
        SlsApi::Heartbeat => {
            let consumer = parameter("consumer")
                .filter(|name| !name.is_empty())
                .ok_or_else(|| SlsError::parameter("heartbeat needs a non-empty \"consumer\" parameter"))?;
            let reported: Vec<u32> = parse_json(body, "heartbeat body (a JSON array of shard ids)")?;
            let held = state.heartbeat(
                &project,
                logstore,
                group,
                consumer,
                reported.into_iter().collect::<BTreeSet<u32>>(),
            )?;
            shared.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            json_response(&held)
        }
        SlsApi::UpdateCheckpoint => {
            #[derive(Deserialize)]
            struct CheckpointBody {
                shard: u32,
                checkpoint: String,
            }
            let request: CheckpointBody = parse_json(body, "checkpoint body {\"shard\", \"checkpoint\"}")?;
            let consumer = parameter("consumer").unwrap_or("");
            let force = match parameter("forceSuccess") {
                None => false,
                Some(value) if value.eq_ignore_ascii_case("true") => true,
                Some(value) if value.eq_ignore_ascii_case("false") => false,
                Some(value) => {
                    return Err(SlsError::parameter(format!("forceSuccess {value:?} is not true or false")).into())
                }
            };
            if !force && consumer.is_empty() {
                return Err(SlsError::parameter("a checkpoint without a consumer needs forceSuccess=true").into());
            }
            state.update_checkpoint(
                &project,
                logstore,
                group,
                &CheckpointCommit { shard: request.shard, cursor: &request.checkpoint, consumer, force },
            )?;
            shared.counters.checkpoint_updates.fetch_add(1, Ordering::Relaxed);
            empty_response()
        }
        SlsApi::GetCheckpoint => {
            let wanted = match parameter("shard") {
                None | Some("") => None,
                Some(text) => {
                    let shard: i64 =
                        text.parse().map_err(|_| SlsError::parameter(format!("shard {text:?} is not a number")))?;
                    match u32::try_from(shard) {
                        Ok(shard) => Some(shard),
                        Err(_) if shard < 0 => None,
                        Err(_) => return Ok(Outcome::Answer(json_response(&Vec::<u32>::new()))),
                    }
                }
            };
            json_response(&state.checkpoints(&project, logstore, group, wanted)?)
        }
    };
    Ok(Outcome::Answer(response))
}

fn pull_logs(
    shared: &Shared,
    parts: &Parts,
    project: &str,
    logstore: &str,
    shard: u32,
    scope: &RequestScope<'_>,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let parameter = |name: &str| query_parameter(query, name);
    let cursor = parameter("cursor").ok_or_else(|| SlsError::parameter("PullLogs needs the \"cursor\" parameter"))?;
    let count = match parameter("count") {
        None => MAX_PULL_LOG_GROUPS,
        Some(text) => match text.parse::<u32>() {
            Ok(0) | Err(_) => {
                return Err(SlsError::parameter(format!("count {text:?} must be an integer from 1 to 1000")).into())
            }
            Ok(count) => count.min(MAX_PULL_LOG_GROUPS),
        },
    };
    let end_cursor = parameter("end_cursor").filter(|text| !text.is_empty());
    let lz4 = parts
        .headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|coding| coding.trim().eq_ignore_ascii_case("lz4")));

    let state = &shared.state;
    let plan = state.plan_pull(project, logstore, shard, &PullRequest { cursor, count, end_cursor, lz4 })?;
    let mut pulled = state.pull_body(project, logstore, shard, &plan, lz4);
    if plan.group_count > 0 {
        match lock(&shared.faults).take(FaultPhase::PullBody, scope) {
            Some(FaultEffect::CorruptLz4) => {
                pulled.body = Bytes::from_static(CORRUPT_LZ4_BODY);
                pulled.compressed = true;
            }
            Some(FaultEffect::CorruptProtobuf) => {
                pulled.raw_size = CORRUPT_PROTOBUF_RAW.len();
                pulled.body = if lz4 {
                    Bytes::from(lz4_block_compress(CORRUPT_PROTOBUF_RAW))
                } else {
                    Bytes::from_static(CORRUPT_PROTOBUF_RAW)
                };
            }
            _ => {}
        }
    }

    plan.counters.pulls.fetch_add(1, Ordering::Relaxed);
    plan.counters.log_groups.fetch_add(plan.group_count as u64, Ordering::Relaxed);
    plan.counters.raw_bytes.fetch_add(pulled.raw_size as u64, Ordering::Relaxed);
    plan.counters.wire_bytes.fetch_add(pulled.body.len() as u64, Ordering::Relaxed);

    let mut response = Response::new(Body::from(pulled.body));
    let headers = response.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put("content-type", "application/x-protobuf".to_string());
    put("x-log-cursor", plan.next_cursor.clone());
    put("x-log-count", plan.group_count.to_string());
    put("x-log-bodyrawsize", pulled.raw_size.to_string());
    put("x-log-end-of-cursor", if plan.end_of_cursor { "1" } else { "0" }.to_string());
    put("x-log-cursor-time", plan.cursor_time.to_string());
    if let Some(last) = plan.read_last_cursor {
        put("x-log-read-last-cursor", last.to_string());
    }
    if pulled.compressed {
        put("x-log-compresstype", "lz4".to_string());
    }
    Ok(response)
}

fn query_parameter<'query>(query: &'query [(String, String)], name: &str) -> Option<&'query str> {
    query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

fn project_of(parts: &Parts) -> Result<String, SlsError> {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.host().map(str::to_string));
    let host = host.filter(|host| !host.is_empty()).ok_or(SlsError::MissingHost)?;
    let without_port = host.rsplit_once(':').map_or(host.as_str(), |(name, port)| {
        if port.bytes().all(|byte| byte.is_ascii_digit()) {
            name
        } else {
            host.as_str()
        }
    });
    Ok(without_port.split('.').next().unwrap_or_default().to_string())
}

fn route(method: &Method, path: &str, kind: Option<&str>, action: Option<&str>) -> Result<Target, SlsError> {
    let segments: Vec<&str> = path.trim_start_matches('/').trim_end_matches('/').split('/').collect();
    let unsupported = || SlsError::NotFound { message: format!("this emulator does not implement {method} {path}") };
    let target = |api, logstore: &str, shard, consumer_group: Option<&str>| Target {
        api,
        logstore: Some(logstore.to_string()),
        shard,
        consumer_group: consumer_group.map(str::to_string),
    };
    let shard_id =
        |text: &str| text.parse::<u32>().map_err(|_| SlsError::parameter(format!("shard id {text:?} is not a number")));
    match (method, segments.as_slice()) {
        (&Method::GET, ["logstores"]) => {
            Ok(Target { api: SlsApi::ListLogStores, logstore: None, shard: None, consumer_group: None })
        }
        (&Method::GET, ["logstores", logstore, "shards"]) => Ok(target(SlsApi::ListShards, logstore, None, None)),
        (&Method::GET, ["logstores", logstore, "shards", shard]) => {
            let api = match kind {
                Some("cursor") => SlsApi::GetCursor,
                Some("cursor_time") => SlsApi::GetCursorTime,
                Some("log") | Some("logs") => SlsApi::PullLogs,
                other => {
                    return Err(SlsError::parameter(format!(
                        "type {other:?} is not one of cursor, cursor_time, log, logs"
                    )))
                }
            };
            Ok(target(api, logstore, Some(shard_id(shard)?), None))
        }
        (&Method::POST, ["logstores", logstore, "shards", shard]) if action == Some("split") => {
            Ok(target(SlsApi::SplitShard, logstore, Some(shard_id(shard)?), None))
        }
        (&Method::POST, ["logstores", logstore, "consumergroups"]) => {
            Ok(target(SlsApi::CreateConsumerGroup, logstore, None, None))
        }
        (&Method::GET, ["logstores", logstore, "consumergroups"]) => {
            Ok(target(SlsApi::ListConsumerGroups, logstore, None, None))
        }
        (&Method::PUT, ["logstores", logstore, "consumergroups", group]) => {
            Ok(target(SlsApi::UpdateConsumerGroup, logstore, None, Some(group)))
        }
        (&Method::DELETE, ["logstores", logstore, "consumergroups", group]) => {
            Ok(target(SlsApi::DeleteConsumerGroup, logstore, None, Some(group)))
        }
        (&Method::GET, ["logstores", logstore, "consumergroups", group]) => {
            Ok(target(SlsApi::GetCheckpoint, logstore, None, Some(group)))
        }
        (&Method::POST, ["logstores", logstore, "consumergroups", group]) => match kind {
            Some("heartbeat") => Ok(target(SlsApi::Heartbeat, logstore, None, Some(group))),
            Some("checkpoint") => Ok(target(SlsApi::UpdateCheckpoint, logstore, None, Some(group))),
            other => Err(SlsError::parameter(format!("type {other:?} is not heartbeat or checkpoint"))),
        },
        _ => Err(unsupported()),
    }
}

fn timeout_from(seconds: i64) -> Result<Duration, SlsError> {
    if seconds < 1 {
        return Err(SlsError::json(format!("timeout {seconds} must be at least 1 second")));
    }
    Ok(Duration::from_secs(seconds as u64))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, SlsError> {
    serde_json::from_slice(body).map_err(|error| SlsError::json(format!("{what} is not valid JSON: {error}")))
}

fn json_response<T: serde::Serialize + ?Sized>(value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn empty_response() -> Response {
    Response::new(Body::empty())
}

// ---- /_testkit/ control endpoints ----

fn control_error(error: impl std::fmt::Display, status: StatusCode) -> Response {
    (status, Json(json!({ "error": error.to_string() }))).into_response()
}

fn control_result<T: serde::Serialize>(result: Result<T, SlsError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(error) => control_error(&error, error.status()),
    }
}

async fn control_stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.stats()).into_response()
}

async fn control_list_faults(State(shared): State<Arc<Shared>>) -> Response {
    let specs: Vec<FaultSpec> = lock(&shared.faults).pending().iter().map(FaultSpec::from).collect();
    Json(specs).into_response()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(FaultSpec),
    Many(Vec<FaultSpec>),
}

async fn control_add_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let specs = match serde_json::from_slice::<OneOrMany>(&body) {
        Ok(OneOrMany::One(spec)) => vec![spec],
        Ok(OneOrMany::Many(specs)) => specs,
        Err(error) => {
            return control_error(
                format!("fault spec is not valid JSON for one fault or a list of faults: {error}"),
                StatusCode::BAD_REQUEST,
            )
        }
    };
    let mut faults = Vec::with_capacity(specs.len());
    for spec in specs {
        match SlsFault::try_from(spec) {
            Ok(fault) => faults.push(fault),
            Err(error) => return control_error(error, StatusCode::BAD_REQUEST),
        }
    }
    let mut rules = lock(&shared.faults);
    for fault in faults {
        rules.add(fault);
    }
    Json(json!({ "pending": rules.pending().len() })).into_response()
}

async fn control_clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    lock(&shared.faults).clear();
    Json(json!({ "pending": 0 })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLogstoreRequest {
    project: String,
    logstore: String,
    shards: u32,
}

async fn control_create_logstore(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: CreateLogstoreRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return control_error(
                format!("body must be {{\"project\", \"logstore\", \"shards\"}}: {error}"),
                StatusCode::BAD_REQUEST,
            )
        }
    };
    shared.state.ensure_project(&request.project);
    control_result(
        shared.state.create_logstore(&request.project, &request.logstore, request.shards).map(|()| json!({})),
    )
}

/// A log group as JSON on `POST /_testkit/append`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogGroupJson {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    tags: Vec<(String, String)>,
    logs: Vec<LogJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogJson {
    time: u32,
    #[serde(default)]
    time_ns: Option<u32>,
    contents: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppendRequest {
    project: String,
    logstore: String,
    shard: u32,
    log_groups: Vec<LogGroupJson>,
}

async fn control_append(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: AppendRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return control_error(
                format!("body must be {{\"project\", \"logstore\", \"shard\", \"log_groups\"}}: {error}"),
                StatusCode::BAD_REQUEST,
            )
        }
    };
    let groups: Vec<LogGroup> = request
        .log_groups
        .into_iter()
        .map(|group| LogGroup {
            logs: group
                .logs
                .into_iter()
                .map(|log| Log {
                    time: log.time,
                    contents: log.contents.into_iter().map(|(key, value)| LogContent { key, value }).collect(),
                    time_ns: log.time_ns,
                })
                .collect(),
            reserved: None,
            topic: Some(group.topic),
            source: Some(group.source),
            machine_uuid: None,
            log_tags: group.tags.into_iter().map(|(key, value)| LogTag { key, value }).collect(),
        })
        .collect();
    let result = shared.state.append(&request.project, &request.logstore, request.shard, &groups, SystemTime::now());
    control_result(result.map(|log_groups| json!({ "log_groups": log_groups })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoRequest {
    project: String,
    logstore: String,
    seed: u64,
    log_groups_per_shard: usize,
    logs_per_group: usize,
    #[serde(default)]
    log_time: Option<u32>,
}

async fn control_demo(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: DemoRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return control_error(
                format!("body must be {{\"project\", \"logstore\", \"seed\", \"log_groups_per_shard\", \"logs_per_group\"}}: {error}"),
                StatusCode::BAD_REQUEST,
            )
        }
    };
    let demo = DemoData {
        seed: request.seed,
        log_groups_per_shard: request.log_groups_per_shard,
        logs_per_group: request.logs_per_group,
        log_time: request.log_time,
    };
    control_result(shared.load_demo_data(&request.project, &request.logstore, &demo))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitRequest {
    project: String,
    logstore: String,
    shard: u32,
    #[serde(default)]
    split_key: Option<String>,
}

async fn control_split(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: SplitRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return control_error(
                format!("body must be {{\"project\", \"logstore\", \"shard\", \"split_key\"?}}: {error}"),
                StatusCode::BAD_REQUEST,
            )
        }
    };
    let split_key = match request.split_key.as_deref().map(|key| u128::from_str_radix(key, 16)).transpose() {
        Ok(key) => key,
        Err(_) => return control_error("split_key must be 32 hex digits", StatusCode::BAD_REQUEST),
    };
    control_result(shared.state.split(&request.project, &request.logstore, request.shard, split_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_with_host(host: Option<&str>, uri: &str) -> Parts {
        let mut builder = axum::http::Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_project_is_the_first_host_label_without_port() {
        assert_eq!(project_of(&parts_with_host(Some("myproj.127.0.0.1"), "/x")).unwrap(), "myproj");
        assert_eq!(project_of(&parts_with_host(Some("myproj.sls.test:8080"), "/x")).unwrap(), "myproj");
        assert_eq!(project_of(&parts_with_host(None, "http://other.sls.test:1/x")).unwrap(), "other");
        assert_eq!(project_of(&parts_with_host(None, "/x")).unwrap_err().code(), "MissingHost");
    }

    #[test]
    fn routes_cover_the_consumer_apis() {
        let api =
            |method: Method, path: &str, kind: Option<&str>| route(&method, path, kind, None).map(|target| target.api);
        assert_eq!(api(Method::GET, "/logstores/l/shards/0", Some("logs")).ok(), Some(SlsApi::PullLogs));
        assert_eq!(api(Method::GET, "/logstores/l/shards/0", Some("cursor")).ok(), Some(SlsApi::GetCursor));
        assert_eq!(api(Method::POST, "/logstores/l/consumergroups/g", Some("heartbeat")).ok(), Some(SlsApi::Heartbeat));
        assert_eq!(api(Method::GET, "/logstores/l/consumergroups/g", None).ok(), Some(SlsApi::GetCheckpoint));
        assert_eq!(
            api(Method::GET, "/logstores/l/shards/x", Some("log")).err().map(|error| error.code()),
            Some("ParameterInvalid")
        );
        assert_eq!(api(Method::PATCH, "/logstores/l", None).err().map(|error| error.code()), Some("NotFound"));
    }
}
