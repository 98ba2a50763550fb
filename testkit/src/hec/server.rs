//! The HEC emulator's HTTP surface: routing, the order of checks, recording,
//! the control handle and the `/_testkit/` endpoints.
//!
//! Order of checks on `/event` and `/raw` (each stops the request):
//! scheduled fault, busy switch (503/9), `Content-Encoding` (415), size
//! (413, on both the sent and the decompressed size), gzip validity (400/6),
//! credentials (401/2, 401/3, 403/4, 403/1, 400/16), channel (400/11 if not a
//! GUID, 400/10 if missing where required), then the body (§3). `/ack`
//! checks fault, encoding, size, credentials, `useACK` (400/14), channel,
//! then the body. The encoding and size checks come before authentication
//! because Splunk's HTTP layer handles them before HEC does (our choice;
//! unverified). `Content-Type` is never checked (Splunk does not appear to
//! enforce it). `/health` ignores tokens, faults, latency and the busy
//! switch; it answers the code set with `set_health`.
//!
//! Guarantees: a request with a partial failure keeps its accepted prefix
//! recorded but gets no `ackId` (the response is an error, so the client
//! could not learn one). Request ids count data requests from 1. The state
//! lock is never held across an await.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Request, Response, StatusCode};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::acks::{AckCounts, AckLedger, AckSettings, InvalidLossFraction};
use super::auth::{credentials, is_guid, Credentials};
use super::codes::HecCode;
use super::config::{
    validate_ack_settings, validate_token, validate_tokens, HecConfigError, HecToken, DEFAULT_MAX_CONTENT_LENGTH,
    SPLUNK_DEFAULT_SOURCETYPE,
};
use super::envelope::{
    parse_event_body, split_raw_lines, time_from_query, truncate_to_microseconds, AcceptedEnvelope, BatchOutcome,
    EnvelopeDefaults, EnvelopeRejection,
};
use crate::connection_drop::dropped_connection_response;
use crate::http::EmulatorServer;
use crate::tls::TlsIdentity;

const NOT_FOUND_TEXT: &str = "The requested URL was not found on this server.";
const CHANNEL_HEADER: &str = "x-splunk-request-channel";
/// What the default host is when the request carries no `Host` header.
const FALLBACK_SERVER_HOST: &str = "localhost:8088";

/// Which HEC endpoint received an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HecEndpoint {
    Event,
    Raw,
}

/// One event the emulator accepted, with every default resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HecRecordedEvent {
    /// Ordinal of the data request (`/event` or `/raw`) that carried it, from 1.
    pub request_id: u64,
    pub endpoint: HecEndpoint,
    /// The `name` of the token that sent it (never the token value).
    pub token_name: String,
    /// The channel as the client sent it, if it sent one.
    pub channel: Option<String>,
    /// The `ackId` returned for its request; `None` without `useACK` or when
    /// the request failed after this event was accepted.
    pub ack_id: Option<u64>,
    /// Epoch seconds with microsecond precision.
    pub time: f64,
    pub host: String,
    pub source: String,
    pub sourcetype: String,
    pub index: String,
    pub fields: Option<Map<String, Value>>,
    /// The `event` value as sent (a string for `/raw`; `null` for a metric
    /// envelope without `event`).
    pub event: Value,
}

/// Counts since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HecStats {
    /// Requests to `/event`, `/raw` and `/ack` (not health, not control).
    pub requests: u64,
    pub data_requests: u64,
    pub ack_requests: u64,
    pub health_requests: u64,
    /// Data requests answered 200.
    pub accepted_requests: u64,
    /// Data and ack requests answered with anything but 200, or dropped.
    pub rejected_requests: u64,
    pub accepted_events: u64,
    pub events_by_index: BTreeMap<String, u64>,
    /// Rejections that carried an HEC code, by code.
    pub rejected_by_code: BTreeMap<u16, u64>,
    /// Every rejection by HTTP status (0 for a dropped connection).
    pub rejected_by_http_status: BTreeMap<u16, u64>,
    pub dropped_connections: u64,
    pub acks: AckCounts,
}

/// Which requests a scheduled fault applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HecFaultTarget {
    /// `/event` and `/raw`.
    #[default]
    Data,
    /// `/ack`.
    Ack,
    /// `/event`, `/raw` and `/ack`.
    Any,
}

impl HecFaultTarget {
    fn covers(self, endpoint: Endpoint) -> bool {
        match self {
            HecFaultTarget::Data => matches!(endpoint, Endpoint::Event | Endpoint::Raw),
            HecFaultTarget::Ack => endpoint == Endpoint::Ack,
            HecFaultTarget::Any => matches!(endpoint, Endpoint::Event | Endpoint::Raw | Endpoint::Ack),
        }
    }
}

/// What a scheduled fault does to a request. JSON form:
/// `{"kind":"code","code":9}`, `{"kind":"status","status":429,"retry_after_secs":2}`,
/// `{"kind":"drop_connection"}`, `{"kind":"drop_after_accept"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HecFault {
    /// Answer with this code, its HTTP status and its text; nothing is recorded.
    Code { code: HecCode },
    /// Answer with a bare HTTP status and no HEC code, as a proxy or Splunk
    /// Cloud throttling does; nothing is recorded.
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    /// Close the connection without answering; nothing is recorded.
    DropConnection,
    /// Process the request fully (events recorded, `ackId` issued), then close
    /// the connection without answering, so the client cannot know it landed.
    DropAfterAccept,
}

/// A control request the emulator cannot honour.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HecControlError {
    #[error("HEC emulator: fault status {0} is not an HTTP status; use 100 to 999")]
    InvalidStatus(u16),
    #[error("HEC emulator: health code {0} is not a health state; use 17, 18, 19 or 20")]
    NotAHealthState(u16),
    #[error(transparent)]
    AckSettings(#[from] InvalidLossFraction),
    #[error(transparent)]
    Token(#[from] HecConfigError),
}

/// `wait_for_events` ran out of time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("HEC emulator: waited {timeout:?} for {wanted} accepted events, saw {received}")]
pub struct HecWaitTimedOut {
    pub wanted: usize,
    pub received: usize,
    pub timeout: Duration,
}

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum HecStartError {
    #[error(transparent)]
    Config(#[from] HecConfigError),
    #[error("HEC emulator: cannot listen: {0}")]
    Bind(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Event,
    Raw,
    Health,
    Ack,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/services/collector" | "/services/collector/event" | "/services/collector/event/1.0" => {
                Some(Endpoint::Event)
            }
            "/services/collector/raw" | "/services/collector/raw/1.0" => Some(Endpoint::Raw),
            "/services/collector/health" | "/services/collector/health/1.0" => Some(Endpoint::Health),
            "/services/collector/ack" => Some(Endpoint::Ack),
            _ => None,
        }
    }

    fn method(self) -> Method {
        match self {
            Endpoint::Health => Method::GET,
            Endpoint::Event | Endpoint::Raw | Endpoint::Ack => Method::POST,
        }
    }
}

#[derive(Debug)]
struct ScheduledFault {
    target: HecFaultTarget,
    remaining: usize,
    fault: HecFault,
}

#[derive(Debug)]
struct HecState {
    tokens: HashMap<String, HecToken>,
    raw_requires_channel: bool,
    max_content_length: usize,
    acks: AckLedger,
    events: Vec<HecRecordedEvent>,
    stats: HecStats,
    faults: VecDeque<ScheduledFault>,
    busy: bool,
    latency: Duration,
    health: HecCode,
    last_request_id: u64,
}

impl HecState {
    fn take_fault(&mut self, endpoint: Endpoint) -> Option<HecFault> {
        let position = self.faults.iter().position(|scheduled| scheduled.target.covers(endpoint))?;
        let scheduled = &mut self.faults[position];
        scheduled.remaining -= 1;
        let fault = scheduled.fault.clone();
        if scheduled.remaining == 0 {
            self.faults.remove(position);
        }
        Some(fault)
    }

    fn count_rejection(&mut self, http_status: u16, code: Option<HecCode>) {
        self.stats.rejected_requests += 1;
        *self.stats.rejected_by_http_status.entry(http_status).or_default() += 1;
        if let Some(code) = code {
            *self.stats.rejected_by_code.entry(code.number()).or_default() += 1;
        }
    }

    fn reject(&mut self, code: HecCode) -> Response<Body> {
        self.count_rejection(code.http_status(), Some(code));
        hec_response(code, None)
    }

    fn authenticate(&self, headers: &HeaderMap, query: &Query) -> Result<HecToken, HecCode> {
        let (value, through_query_string) = match credentials(headers, query.get("token")) {
            Credentials::Missing => return Err(HecCode::TokenRequired),
            Credentials::Malformed => return Err(HecCode::InvalidAuthorization),
            Credentials::Header(value) => (value, false),
            Credentials::QueryString(value) => (value, true),
        };
        let token = self.tokens.get(&value).ok_or(HecCode::InvalidToken)?;
        if token.disabled {
            return Err(HecCode::TokenDisabled);
        }
        if through_query_string && !token.allow_query_string_auth {
            return Err(HecCode::QueryStringAuthorizationDisabled);
        }
        Ok(token.clone())
    }
}

struct Shared {
    state: Mutex<HecState>,
    accepted_event_count: watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HecState> {
        // A panic while holding the lock can only come from a bug in this
        // file; the state is still the best record of what happened, so keep
        // serving it rather than poisoning every later request.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Configures and starts an HEC emulator.
#[derive(Debug, Clone)]
pub struct HecEmulatorBuilder {
    tokens: Vec<HecToken>,
    acks: AckSettings,
    raw_requires_channel: bool,
    max_content_length: usize,
    tls: Option<TlsIdentity>,
}

impl Default for HecEmulatorBuilder {
    fn default() -> HecEmulatorBuilder {
        HecEmulatorBuilder {
            tokens: Vec::new(),
            acks: AckSettings::default(),
            raw_requires_channel: false,
            max_content_length: DEFAULT_MAX_CONTENT_LENGTH,
            tls: None,
        }
    }
}

impl HecEmulatorBuilder {
    pub fn token(mut self, token: HecToken) -> HecEmulatorBuilder {
        self.tokens.push(token);
        self
    }

    pub fn ack_settings(mut self, settings: AckSettings) -> HecEmulatorBuilder {
        self.acks = settings;
        self
    }

    /// Shorthand for an `AckSettings` change: ids read `true` only after `delay`.
    pub fn ack_delay(mut self, delay: Duration) -> HecEmulatorBuilder {
        self.acks.delay = delay;
        self
    }

    /// Require a channel on `/raw` even for tokens without `useACK`, as older
    /// Splunk releases do. Off by default (Splunk 10.4 behaviour).
    pub fn raw_requires_channel(mut self, required: bool) -> HecEmulatorBuilder {
        self.raw_requires_channel = required;
        self
    }

    /// Bodies above this many bytes, sent or decompressed, get 413.
    pub fn max_content_length(mut self, bytes: usize) -> HecEmulatorBuilder {
        self.max_content_length = bytes;
        self
    }

    /// Serve HTTPS with `identity`'s certificate (Splunk's default for HEC
    /// is HTTPS with its own CA); `url()` then starts with `https://`.
    pub fn tls(mut self, identity: TlsIdentity) -> HecEmulatorBuilder {
        self.tls = Some(identity);
        self
    }

    /// The router and its control handle, for serving on a custom harness.
    pub fn build(self) -> Result<(Router, HecControl), HecConfigError> {
        validate_tokens(&self.tokens)?;
        validate_ack_settings(&self.acks)?;
        if self.max_content_length == 0 {
            return Err(HecConfigError::ZeroMaxContentLength);
        }
        let state = HecState {
            tokens: self.tokens.into_iter().map(|token| (token.value.clone(), token)).collect(),
            raw_requires_channel: self.raw_requires_channel,
            max_content_length: self.max_content_length,
            acks: AckLedger::new(self.acks),
            events: Vec::new(),
            stats: HecStats::default(),
            faults: VecDeque::new(),
            busy: false,
            latency: Duration::ZERO,
            health: HecCode::Healthy,
            last_request_id: 0,
        };
        let shared = Arc::new(Shared { state: Mutex::new(state), accepted_event_count: watch::Sender::new(0) });
        let router = Router::new().fallback(dispatch).with_state(Arc::clone(&shared));
        Ok((router, HecControl { shared }))
    }

    /// Serves on 127.0.0.1 with a port the OS picks.
    pub async fn start(self) -> Result<HecEmulator, HecStartError> {
        self.start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(self, address: SocketAddr) -> Result<HecEmulator, HecStartError> {
        let tls = self.tls.clone();
        let (router, control) = self.build()?;
        let server = match &tls {
            Some(identity) => EmulatorServer::start_tls_on(address, router, identity).await?,
            None => EmulatorServer::start_on(address, router).await?,
        };
        Ok(HecEmulator { server, control })
    }
}

/// A running HEC emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct HecEmulator {
    server: EmulatorServer,
    control: HecControl,
}

impl HecEmulator {
    pub fn builder() -> HecEmulatorBuilder {
        HecEmulatorBuilder::default()
    }

    /// `http://127.0.0.1:PORT` (`https` with TLS), the HEC base URL (no
    /// trailing slash).
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn address(&self) -> SocketAddr {
        self.server.address()
    }

    pub fn control(&self) -> &HecControl {
        &self.control
    }

    /// The harness underneath: raw request log and generic `FaultPlan`.
    pub fn server(&self) -> &EmulatorServer {
        &self.server
    }

    pub async fn serve_forever(self) {
        self.server.serve_forever().await
    }
}

/// A cloneable handle to inspect and steer a running emulator.
#[derive(Clone)]
pub struct HecControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HecControl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("HecControl").finish_non_exhaustive()
    }
}

impl HecControl {
    /// Every accepted event, in arrival order.
    pub fn events(&self) -> Vec<HecRecordedEvent> {
        self.shared.lock().events.clone()
    }

    pub fn stats(&self) -> HecStats {
        let state = self.shared.lock();
        HecStats { acks: state.acks.counts(), ..state.stats.clone() }
    }

    /// Waits until at least `count` events were accepted, then returns them all.
    pub async fn wait_for_events(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<HecRecordedEvent>, HecWaitTimedOut> {
        let mut receiver = self.shared.accepted_event_count.subscribe();
        let reached = tokio::time::timeout(timeout, receiver.wait_for(|accepted| *accepted >= count)).await;
        match reached {
            Ok(Ok(_)) => Ok(self.events()),
            _ => Err(HecWaitTimedOut { wanted: count, received: self.events().len(), timeout }),
        }
    }

    /// Applies `fault` to the next `count` requests `target` covers, after any
    /// faults scheduled earlier for those requests.
    pub fn fail_next(&self, count: usize, target: HecFaultTarget, fault: HecFault) -> Result<(), HecControlError> {
        if let HecFault::Status { status, .. } = fault {
            StatusCode::from_u16(status).map_err(|_| HecControlError::InvalidStatus(status))?;
        }
        if count > 0 {
            self.shared.lock().faults.push_back(ScheduledFault { target, remaining: count, fault });
        }
        Ok(())
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Scheduled fault applications still to come.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.iter().map(|scheduled| scheduled.remaining).sum()
    }

    /// While on, every data request gets 503 code 9 (after scheduled faults).
    pub fn set_busy(&self, busy: bool) {
        self.shared.lock().busy = busy;
    }

    /// Delay before answering each `/event`, `/raw` and `/ack` request.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// What `/services/collector/health` answers: 17, 18, 19 or 20.
    pub fn set_health(&self, code: HecCode) -> Result<(), HecControlError> {
        if !code.is_health_state() {
            return Err(HecControlError::NotAHealthState(code.number()));
        }
        self.shared.lock().health = code;
        Ok(())
    }

    pub fn ack_settings(&self) -> AckSettings {
        self.shared.lock().acks.settings().clone()
    }

    pub fn set_ack_settings(&self, settings: AckSettings) -> Result<(), HecControlError> {
        settings.validate()?;
        self.shared.lock().acks.set_settings(settings);
        Ok(())
    }

    /// The next `count` issued ack ids never become `true`.
    pub fn lose_next_acks(&self, count: u64) {
        self.shared.lock().acks.lose_next(count);
    }

    /// Adds a token or replaces the one with the same value.
    pub fn upsert_token(&self, token: HecToken) -> Result<(), HecControlError> {
        validate_token(&token)?;
        self.shared.lock().tokens.insert(token.value.clone(), token);
        Ok(())
    }

    /// Returns whether a token with this value existed.
    pub fn set_token_disabled(&self, value: &str, disabled: bool) -> bool {
        match self.shared.lock().tokens.get_mut(value) {
            Some(token) => {
                token.disabled = disabled;
                true
            }
            None => false,
        }
    }

    /// Returns whether a token with this value existed.
    pub fn remove_token(&self, value: &str) -> bool {
        self.shared.lock().tokens.remove(value).is_some()
    }

    /// Forgets events, counts, channels, ack ids and faults; clears busy,
    /// latency and health. Tokens and ack settings stay.
    pub fn reset(&self) {
        let mut state = self.shared.lock();
        state.events.clear();
        state.stats = HecStats::default();
        state.acks.reset();
        state.faults.clear();
        state.busy = false;
        state.latency = Duration::ZERO;
        state.health = HecCode::Healthy;
        state.last_request_id = 0;
        self.shared.accepted_event_count.send_replace(0);
    }
}

/// Query parameters, first occurrence of each name wins.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        Query(form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    // The harness has already buffered the whole body, so this cannot wait
    // on the network; an error here means the body was cut short.
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return plain_response(StatusCode::BAD_REQUEST, "text/plain", "request body could not be read");
    };
    let path = parts.uri.path();
    if let Some(control_path) = path.strip_prefix("/_testkit/") {
        return control_request(&shared, &parts.method, control_path, &body);
    }
    let Some(endpoint) = Endpoint::from_path(path) else {
        return not_found_or_not_allowed(StatusCode::NOT_FOUND);
    };
    if parts.method == Method::OPTIONS {
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::ALLOW, endpoint.method().as_str())
            .body(Body::empty())
            .expect("static response parts are valid");
    }
    if parts.method != endpoint.method() {
        return not_found_or_not_allowed(StatusCode::METHOD_NOT_ALLOWED);
    }
    let query = Query::parse(parts.uri.query());
    if endpoint == Endpoint::Health {
        let mut state = shared.lock();
        state.stats.health_requests += 1;
        return hec_response(state.health, None);
    }

    let (latency, fault) = {
        let mut state = shared.lock();
        state.stats.requests += 1;
        if endpoint == Endpoint::Ack {
            state.stats.ack_requests += 1;
        } else {
            state.stats.data_requests += 1;
        }
        (state.latency, state.take_fault(endpoint))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut drop_after_accept = false;
    match fault {
        None => {}
        Some(HecFault::Code { code }) => return shared.lock().reject(code),
        Some(HecFault::Status { status, retry_after_secs }) => {
            shared.lock().count_rejection(status, None);
            return bare_status_response(status, retry_after_secs);
        }
        Some(HecFault::DropConnection) => {
            let mut state = shared.lock();
            state.count_rejection(0, None);
            state.stats.dropped_connections += 1;
            return dropped_connection_response();
        }
        Some(HecFault::DropAfterAccept) => drop_after_accept = true,
    }
    let response = match endpoint {
        Endpoint::Ack => ack_request(&shared, &parts.headers, &body, &query),
        _ => data_request(&shared, endpoint, &parts.headers, &body, &query),
    };
    if drop_after_accept {
        shared.lock().stats.dropped_connections += 1;
        return dropped_connection_response();
    }
    response
}

fn data_request(
    shared: &Shared,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &Bytes,
    query: &Query,
) -> Response<Body> {
    // The lock is taken for the checks and for recording, never while a
    // body is decompressed or parsed, so one large request does not stall
    // every other connection.
    let (request_id, busy, max_content_length, raw_requires_channel) = {
        let mut state = shared.lock();
        state.last_request_id += 1;
        (state.last_request_id, state.busy, state.max_content_length, state.raw_requires_channel)
    };
    if busy {
        return shared.lock().reject(HecCode::ServerBusy);
    }
    let body = match decode_body(headers, body, max_content_length) {
        Ok(body) => body,
        Err(problem) => return body_problem_response(&mut shared.lock(), problem),
    };
    let authenticated = shared.lock().authenticate(headers, query);
    let token = match authenticated {
        Ok(token) => token,
        Err(code) => return shared.lock().reject(code),
    };
    let channel = match channel_of(headers, query) {
        Ok(channel) => channel,
        Err(code) => return shared.lock().reject(code),
    };
    let channel_required = token.use_ack || (endpoint == Endpoint::Raw && raw_requires_channel);
    if channel_required && channel.is_none() {
        return shared.lock().reject(HecCode::DataChannelMissing);
    }
    let defaults = EnvelopeDefaults {
        host: token.default_host.clone().unwrap_or_else(|| server_host(headers)),
        source: token.default_source.clone().unwrap_or_else(|| format!("http:{}", token.name)),
        sourcetype: token.default_sourcetype.clone().unwrap_or_else(|| SPLUNK_DEFAULT_SOURCETYPE.to_string()),
        index: token.effective_default_index().to_string(),
        receipt_time: now_epoch_seconds(),
    };
    let outcome = match endpoint {
        Endpoint::Raw => raw_outcome(&body, &defaults, query, &token),
        _ => parse_event_body(&body, &defaults, &|index| token.allows_index(index)),
    };
    let mut state = shared.lock();
    let ack_id = match (&outcome.rejection, &channel) {
        (None, Some(channel)) if token.use_ack => Some(state.acks.issue(&channel.to_ascii_lowercase(), Instant::now())),
        _ => None,
    };
    let endpoint_kind = if endpoint == Endpoint::Raw { HecEndpoint::Raw } else { HecEndpoint::Event };
    for accepted in outcome.accepted {
        record(&mut state, accepted, request_id, endpoint_kind, &token, channel.as_deref(), ack_id);
    }
    shared.accepted_event_count.send_replace(state.events.len());
    match outcome.rejection {
        Some(EnvelopeRejection { code, event_number }) => {
            state.count_rejection(code.http_status(), Some(code));
            hec_response(code, event_number.map(|number| ("invalid-event-number", number as u64)))
        }
        None => {
            state.stats.accepted_requests += 1;
            hec_response(HecCode::Success, ack_id.map(|id| ("ackId", id)))
        }
    }
}

fn raw_outcome(body: &[u8], defaults: &EnvelopeDefaults, query: &Query, token: &HecToken) -> BatchOutcome {
    let whole_body =
        |code| BatchOutcome { accepted: Vec::new(), rejection: Some(EnvelopeRejection { code, event_number: None }) };
    let time = match query.get("time") {
        None => defaults.receipt_time,
        Some(text) => match time_from_query(text) {
            Some(time) => time,
            None => return whole_body(HecCode::InvalidDataFormat),
        },
    };
    let index = query.get("index").unwrap_or(&defaults.index).to_string();
    if !token.allows_index(&index) {
        return whole_body(HecCode::IncorrectIndex);
    }
    let lines = split_raw_lines(body);
    if lines.is_empty() {
        return whole_body(HecCode::NoData);
    }
    let accepted = lines
        .into_iter()
        .map(|line| AcceptedEnvelope {
            time,
            host: query.get("host").unwrap_or(&defaults.host).to_string(),
            source: query.get("source").unwrap_or(&defaults.source).to_string(),
            sourcetype: query.get("sourcetype").unwrap_or(&defaults.sourcetype).to_string(),
            index: index.clone(),
            fields: None,
            event: Value::String(line),
        })
        .collect();
    BatchOutcome { accepted, rejection: None }
}

fn record(
    state: &mut HecState,
    accepted: AcceptedEnvelope,
    request_id: u64,
    endpoint: HecEndpoint,
    token: &HecToken,
    channel: Option<&str>,
    ack_id: Option<u64>,
) {
    state.stats.accepted_events += 1;
    *state.stats.events_by_index.entry(accepted.index.clone()).or_default() += 1;
    state.events.push(HecRecordedEvent {
        request_id,
        endpoint,
        token_name: token.name.clone(),
        channel: channel.map(str::to_string),
        ack_id,
        time: accepted.time,
        host: accepted.host,
        source: accepted.source,
        sourcetype: accepted.sourcetype,
        index: accepted.index,
        fields: accepted.fields,
        event: accepted.event,
    });
}

#[derive(Deserialize)]
struct AckQuery {
    acks: Vec<u64>,
}

fn ack_request(shared: &Shared, headers: &HeaderMap, body: &Bytes, query: &Query) -> Response<Body> {
    let mut state = shared.lock();
    let body = match decode_body(headers, body, state.max_content_length) {
        Ok(body) => body,
        Err(problem) => return body_problem_response(&mut state, problem),
    };
    let token = match state.authenticate(headers, query) {
        Ok(token) => token,
        Err(code) => return state.reject(code),
    };
    if !token.use_ack {
        return state.reject(HecCode::AckDisabled);
    }
    let channel = match channel_of(headers, query) {
        Ok(Some(channel)) => channel,
        Ok(None) => return state.reject(HecCode::DataChannelMissing),
        Err(code) => return state.reject(code),
    };
    let ids = match serde_json::from_slice::<AckQuery>(&body) {
        Ok(AckQuery { acks }) if !acks.is_empty() => acks,
        _ => return state.reject(HecCode::InvalidDataFormat),
    };
    let answers = state.acks.query(&channel.to_ascii_lowercase(), &ids, Instant::now());
    let acks: Map<String, Value> =
        answers.into_iter().map(|(id, ready)| (id.to_string(), Value::Bool(ready))).collect();
    json_response(StatusCode::OK, &json!({ "acks": acks }))
}

/// The channel from the header (preferred) or `?channel=`, checked to be a GUID.
fn channel_of(headers: &HeaderMap, query: &Query) -> Result<Option<String>, HecCode> {
    let channel = match headers.get(CHANNEL_HEADER) {
        Some(value) => Some(value.to_str().map_err(|_| HecCode::InvalidDataChannel)?.to_string()),
        None => query.get("channel").map(str::to_string),
    };
    match channel {
        Some(channel) if !is_guid(&channel) => Err(HecCode::InvalidDataChannel),
        channel => Ok(channel),
    }
}

fn server_host(headers: &HeaderMap) -> String {
    headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or(FALLBACK_SERVER_HOST).to_string()
}

fn now_epoch_seconds() -> f64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    truncate_to_microseconds(since_epoch.as_secs_f64())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyProblem {
    UnsupportedEncoding,
    TooLarge,
    CorruptGzip,
}

fn decode_body(headers: &HeaderMap, body: &Bytes, max_content_length: usize) -> Result<Bytes, BodyProblem> {
    if body.len() > max_content_length {
        return Err(BodyProblem::TooLarge);
    }
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => return Ok(body.clone()),
        Some(value) => value.to_str().map_err(|_| BodyProblem::UnsupportedEncoding)?.trim().to_ascii_lowercase(),
    };
    match encoding.as_str() {
        "" | "identity" => Ok(body.clone()),
        "gzip" | "x-gzip" => {
            let mut decompressed = Vec::new();
            // Reading one byte past the limit is enough to know it was passed,
            // and keeps a gzip bomb from filling memory.
            let limit = u64::try_from(max_content_length).unwrap_or(u64::MAX).saturating_add(1);
            flate2::read::MultiGzDecoder::new(&body[..])
                .take(limit)
                .read_to_end(&mut decompressed)
                .map_err(|_| BodyProblem::CorruptGzip)?;
            if decompressed.len() > max_content_length {
                return Err(BodyProblem::TooLarge);
            }
            Ok(Bytes::from(decompressed))
        }
        _ => Err(BodyProblem::UnsupportedEncoding),
    }
}

fn body_problem_response(state: &mut HecState, problem: BodyProblem) -> Response<Body> {
    match problem {
        BodyProblem::UnsupportedEncoding => {
            state.count_rejection(415, None);
            plain_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "text/html; charset=UTF-8",
                "<!doctype html><html><head><title>415 Unsupported Media Type</title></head>\
                 <body><h1>Unsupported Media Type</h1><p>Unsupported content encoding.</p></body></html>",
            )
        }
        BodyProblem::TooLarge => {
            state.count_rejection(413, None);
            plain_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/html; charset=UTF-8",
                "<!doctype html><html><head><title>413 Request Entity Too Large</title></head>\
                 <body><h1>Request Entity Too Large</h1></body></html>",
            )
        }
        BodyProblem::CorruptGzip => state.reject(HecCode::InvalidDataFormat),
    }
}

fn hec_response(code: HecCode, extra: Option<(&str, u64)>) -> Response<Body> {
    let mut body = Map::new();
    body.insert("text".into(), Value::from(code.text()));
    body.insert("code".into(), Value::from(code.number()));
    if let Some((key, number)) = extra {
        body.insert(key.into(), Value::from(number));
    }
    let status = StatusCode::from_u16(code.http_status()).expect("the status table holds valid statuses");
    json_response(status, &Value::Object(body))
}

fn not_found_or_not_allowed(status: StatusCode) -> Response<Body> {
    json_response(status, &json!({ "text": NOT_FOUND_TEXT, "code": status.as_u16() }))
}

fn bare_status_response(status: u16, retry_after_secs: Option<u64>) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder().status(status).header(header::CONTENT_TYPE, "text/plain");
    if let Some(seconds) = retry_after_secs {
        builder = builder.header(header::RETRY_AFTER, seconds);
    }
    builder
        .body(Body::from(status.canonical_reason().unwrap_or("error")))
        .expect("a validated status and plain headers are valid")
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    plain_response(status, "application/json; charset=UTF-8", body.to_string())
}

fn plain_response(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .expect("static response parts are valid")
}

// No `deny_unknown_fields`: serde does not support it together with `flatten`.
#[derive(Deserialize)]
struct FaultRequest {
    count: usize,
    #[serde(default)]
    target: HecFaultTarget,
    #[serde(flatten)]
    fault: HecFault,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BusyRequest {
    busy: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyRequest {
    latency_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthRequest {
    code: HecCode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountRequest {
    count: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenStateRequest {
    token: String,
    disabled: bool,
}

fn control_request(shared: &Arc<Shared>, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
    let control = HecControl { shared: Arc::clone(shared) };
    let done = || json_response(StatusCode::OK, &json!({ "ok": true }));
    match (method.as_str(), path) {
        ("GET", "stats") => json_response(StatusCode::OK, &json!(control.stats())),
        ("GET", "events") => json_response(StatusCode::OK, &json!(control.events())),
        ("POST", "reset") => {
            control.reset();
            done()
        }
        ("POST", "faults") => with_json(body, |request: FaultRequest| {
            control.fail_next(request.count, request.target, request.fault).map(|()| done())
        }),
        ("DELETE", "faults") => {
            control.clear_faults();
            done()
        }
        ("PUT", "busy") => with_json(body, |request: BusyRequest| {
            control.set_busy(request.busy);
            Ok(done())
        }),
        ("PUT", "latency") => with_json(body, |request: LatencyRequest| {
            control.set_latency(Duration::from_millis(request.latency_ms));
            Ok(done())
        }),
        ("PUT", "health") => {
            with_json(body, |request: HealthRequest| control.set_health(request.code).map(|()| done()))
        }
        ("GET", "acks") => json_response(StatusCode::OK, &json!(control.ack_settings())),
        ("PUT", "acks") => with_json(body, |settings: AckSettings| control.set_ack_settings(settings).map(|()| done())),
        ("POST", "acks/lose_next") => with_json(body, |request: CountRequest| {
            control.lose_next_acks(request.count);
            Ok(done())
        }),
        ("PUT", "token_state") => with_json(body, |request: TokenStateRequest| {
            if control.set_token_disabled(&request.token, request.disabled) {
                Ok(done())
            } else {
                Ok(json_response(StatusCode::NOT_FOUND, &json!({ "error": "HEC emulator: no such token" })))
            }
        }),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("HEC emulator: no control endpoint {method} /_testkit/{path}") }),
        ),
    }
}

fn with_json<T, F>(body: &[u8], apply: F) -> Response<Body>
where
    T: serde::de::DeserializeOwned,
    F: FnOnce(T) -> Result<Response<Body>, HecControlError>,
{
    match serde_json::from_slice::<T>(body) {
        Ok(request) => apply(request)
            .unwrap_or_else(|error| json_response(StatusCode::BAD_REQUEST, &json!({ "error": error.to_string() }))),
        Err(error) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": format!("HEC emulator: control body is not valid: {error}") }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    fn encoding(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, value.parse().unwrap());
        headers
    }

    #[test]
    fn decode_body_handles_gzip_limits_and_unknown_encodings() {
        let plain = Bytes::from_static(b"{\"event\":\"x\"}");
        assert_eq!(decode_body(&HeaderMap::new(), &plain, 100), Ok(plain.clone()));
        assert_eq!(decode_body(&encoding("gzip"), &gzip(&plain), 100), Ok(plain.clone()));
        assert_eq!(decode_body(&encoding("deflate"), &plain, 100), Err(BodyProblem::UnsupportedEncoding));
        assert_eq!(decode_body(&encoding("gzip"), &plain, 100), Err(BodyProblem::CorruptGzip));
        assert_eq!(decode_body(&HeaderMap::new(), &plain, 5), Err(BodyProblem::TooLarge));
        let bomb = gzip(&vec![b'a'; 10_000]);
        assert!(bomb.len() < 1_000);
        assert_eq!(decode_body(&encoding("gzip"), &bomb, 1_000), Err(BodyProblem::TooLarge));
    }

    #[test]
    fn channel_prefers_the_header_and_checks_the_guid() {
        let guid = "0af1c3d2-1234-4abc-8def-00112233aabb";
        let mut headers = HeaderMap::new();
        headers.insert(CHANNEL_HEADER, guid.parse().unwrap());
        let query = Query::parse(Some("channel=bad"));
        assert_eq!(channel_of(&headers, &query), Ok(Some(guid.to_string())));
        assert_eq!(channel_of(&HeaderMap::new(), &query), Err(HecCode::InvalidDataChannel));
        assert_eq!(channel_of(&HeaderMap::new(), &Query::parse(None)), Ok(None));
    }

    #[test]
    fn fault_requests_parse_from_json() {
        let request: FaultRequest =
            serde_json::from_str(r#"{"count":2,"target":"ack","kind":"code","code":9}"#).unwrap();
        assert_eq!((request.count, request.target), (2, HecFaultTarget::Ack));
        assert_eq!(request.fault, HecFault::Code { code: HecCode::ServerBusy });
        let request: FaultRequest = serde_json::from_str(r#"{"count":1,"kind":"drop_after_accept"}"#).unwrap();
        assert_eq!((request.target, request.fault), (HecFaultTarget::Data, HecFault::DropAfterAccept));
        assert!(serde_json::from_str::<FaultRequest>(r#"{"count":1,"kind":"explode"}"#).is_err());
    }

    #[test]
    fn control_rejects_bad_settings() {
        let (_router, control) = HecEmulator::builder().token(HecToken::new("t")).build().unwrap();
        assert_eq!(
            control.fail_next(1, HecFaultTarget::Data, HecFault::Status { status: 42, retry_after_secs: None }),
            Err(HecControlError::InvalidStatus(42))
        );
        assert_eq!(control.set_health(HecCode::ServerBusy), Err(HecControlError::NotAHealthState(9)));
        assert!(control.set_ack_settings(AckSettings { loss_fraction: -0.1, ..AckSettings::default() }).is_err());
        assert!(control.set_token_disabled("t", true));
        assert!(!control.set_token_disabled("missing", true));
    }
}
