//! The WeCom emulator's HTTP surface: gettoken, app `message/send`, robot
//! `webhook/send`, recording, the control handle and `/_testkit/` endpoints.
//!
//! Order of checks (each stops the request):
//! - gettoken: fault, corpid (41002 missing, 40013 unknown), corpsecret
//!   (41004 missing, 40091 if it is another corp's secret, 40001 otherwise).
//!   Within a token's life gettoken returns the same token with the remaining
//!   `expires_in` (older docs; unverified for today's WeCom).
//! - message/send: access_token (41001 missing, 40014 unknown or
//!   invalidated, 42001 expired), fault, JSON (47001), agentid (40056; an
//!   integer or a string holding one, as Alertmanager sends), recipients
//!   (82001, 40032, 82002, 82003, 81013 when all are invalid), message type
//!   and content (40008, 44004, 45002, 40058), duplicate check (suppressed
//!   silently with errcode 0), per-member rate limits (excess recipients
//!   dropped silently with errcode 0).
//! - webhook/send: key (93000 missing or unknown), robot state (93004,
//!   93008), fault, JSON (47001), message type and content, 20/min sliding
//!   window per key (45009; only accepted messages count).
//!
//! Guarantees: API answers are HTTP 200 with `errcode`/`errmsg` (unless a
//! scheduled fault asks for a bare HTTP status or a dropped connection);
//! routing errors are bare 404/405. Secrets never appear in stats or
//! `Debug` output. The state lock is never held across an await.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Request, Response, StatusCode};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::codes::{
    decorated_errmsg, scramble, ACCESS_TOKEN_EXPIRED, ACCESS_TOKEN_MISSING, ALL_RECIPIENTS_INVALID, CORPID_MISSING,
    CORPSECRET_MISSING, DATA_FORMAT_ERROR, FREQUENCY_LIMIT, INVALID_ACCESS_TOKEN, INVALID_AGENTID, INVALID_CORPID,
    INVALID_SECRET, INVALID_WEBHOOK_URL, OK, ROBOT_DISABLED, ROBOT_NOT_IN_GROUP, SECRET_OF_ANOTHER_CORP,
};
use super::config::{
    validate_apps, validate_robots, validate_token_lifetime, RobotState, WecomApp, WecomConfigError, WecomRateLimits,
    WecomRobot, DEFAULT_TOKEN_LIFETIME,
};
use super::limits::SlidingWindow;
use super::validate::{parse_recipients, validate_app_message, validate_robot_message, Rejection, ValidMessage};
use crate::connection_drop::dropped_connection_response;
use crate::http::EmulatorServer;

/// Long enough that clients cannot get away with a small fixed buffer
/// (WeCom reserves up to 512 bytes).
const ACCESS_TOKEN_LENGTH: usize = 128;
const TOKEN_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const DEFAULT_DUPLICATE_CHECK_INTERVAL: Duration = Duration::from_secs(1800);
const MAX_DUPLICATE_CHECK_INTERVAL: Duration = Duration::from_secs(4 * 3600);
const FALLBACK_CLIENT_IP: &str = "127.0.0.1";

/// Which API a message came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WecomMode {
    /// Group robot webhook.
    Robot,
    /// App message API.
    App,
}

/// One message WeCom accepted (errcode 0).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct WecomMessage {
    /// Order of acceptance, from 1.
    pub sequence: u64,
    pub mode: WecomMode,
    /// The webhook key (robot mode). A test fixture, shown because tests ask
    /// which robot got what; `Debug` still redacts it.
    pub key: Option<String>,
    /// The robot's configured name (robot mode).
    pub robot_name: Option<String>,
    /// The app's agent id (app mode).
    pub agent_id: Option<i64>,
    pub touser: Vec<String>,
    pub toparty: Vec<String>,
    pub totag: Vec<String>,
    pub msgtype: String,
    /// The text of `text`, `markdown` and `markdown_v2` messages.
    pub content: Option<String>,
    /// The type-specific object as delivered (news titles truncated).
    pub payload: Value,
    /// App mode: recipients outside the visible range (lower-cased).
    pub invaliduser: Vec<String>,
    pub invalidparty: Vec<String>,
    pub invalidtag: Vec<String>,
    /// App mode: members who received it (not rate-limited); `@all` stays `@all`.
    pub delivered_to: Vec<String>,
    /// App mode: members whose per-member limit dropped it silently.
    pub rate_limited: Vec<String>,
    /// App mode: an identical body within `duplicate_check_interval`; nobody
    /// received it.
    pub duplicate: bool,
    pub msgid: Option<String>,
    pub received_at_unix_ms: u64,
}

impl std::fmt::Debug for WecomMessage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WecomMessage")
            .field("sequence", &self.sequence)
            .field("mode", &self.mode)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("robot_name", &self.robot_name)
            .field("agent_id", &self.agent_id)
            .field("touser", &self.touser)
            .field("toparty", &self.toparty)
            .field("totag", &self.totag)
            .field("msgtype", &self.msgtype)
            .field("content", &self.content)
            .field("delivered_to", &self.delivered_to)
            .field("rate_limited", &self.rate_limited)
            .field("duplicate", &self.duplicate)
            .finish_non_exhaustive()
    }
}

/// Counts since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WecomStats {
    /// Every gettoken request, successful or not: tests assert caching on it.
    pub gettoken_calls: u64,
    pub tokens_issued: u64,
    pub app_requests: u64,
    pub app_accepted: u64,
    pub robot_requests: u64,
    pub robot_accepted: u64,
    /// Robot sends refused with 45009 by the sliding window.
    pub robot_rate_limited: u64,
    /// App recipients dropped silently by per-member limits.
    pub recipients_rate_limited: u64,
    pub duplicates_suppressed: u64,
    /// Every non-zero errcode answered, by errcode.
    pub rejected_by_errcode: BTreeMap<i64, u64>,
    pub dropped_connections: u64,
}

/// Which API a scheduled fault applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WecomFaultTarget {
    #[serde(rename = "gettoken")]
    GetToken,
    App,
    Robot,
    #[default]
    Any,
}

impl WecomFaultTarget {
    fn covers(self, api: Api) -> bool {
        match self {
            WecomFaultTarget::GetToken => api == Api::GetToken,
            WecomFaultTarget::App => api == Api::App,
            WecomFaultTarget::Robot => api == Api::Robot,
            WecomFaultTarget::Any => true,
        }
    }
}

/// What a scheduled fault does. JSON: `{"kind":"errcode","errcode":45009}`,
/// `{"kind":"http_status","status":502}`, `{"kind":"drop_connection"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WecomFault {
    /// HTTP 200 with this errcode and a decorated errmsg; nothing recorded.
    Errcode { errcode: i64 },
    /// A bare HTTP status, as a gateway in front of WeCom would answer.
    HttpStatus { status: u16 },
    /// Close the connection without answering; nothing recorded.
    DropConnection,
}

/// A control request the emulator cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WecomControlError {
    #[error("WeCom emulator: fault status {0} is not an HTTP status; use 100 to 999")]
    InvalidStatus(u16),
    #[error("WeCom emulator: errcode 0 is success, not a fault; inject a non-zero errcode")]
    SuccessIsNotAFault,
    #[error(transparent)]
    Config(#[from] WecomConfigError),
}

/// `wait_for_messages` ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WeCom emulator: waited {timeout:?} for {wanted} accepted messages, saw {received}")]
pub struct WecomWaitTimedOut {
    pub wanted: usize,
    pub received: usize,
    pub timeout: Duration,
}

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum WecomStartError {
    #[error(transparent)]
    Config(#[from] WecomConfigError),
    #[error("WeCom emulator: cannot listen: {0}")]
    Bind(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    GetToken,
    App,
    Robot,
}

#[derive(Debug)]
struct ScheduledFault {
    target: WecomFaultTarget,
    remaining: usize,
    fault: WecomFault,
}

#[derive(Debug)]
struct IssuedToken {
    app_index: usize,
    expires_at: Instant,
    invalidated: bool,
}

#[derive(Debug)]
struct WecomState {
    apps: Vec<WecomApp>,
    robots: HashMap<String, WecomRobot>,
    token_lifetime: Duration,
    tokens: HashMap<String, IssuedToken>,
    rate_limits: WecomRateLimits,
    robot_windows: HashMap<String, SlidingWindow>,
    member_minute_windows: HashMap<(i64, String), SlidingWindow>,
    member_hour_windows: HashMap<(i64, String), SlidingWindow>,
    /// Last delivery of each body per app, for `enable_duplicate_check`.
    delivered_bodies: HashMap<(usize, String), Instant>,
    faults: VecDeque<ScheduledFault>,
    messages: Vec<WecomMessage>,
    stats: WecomStats,
    last_token_serial: u64,
    last_message_sequence: u64,
}

/// The outcome of one API call before it becomes an HTTP response.
enum Answer {
    Reply { errcode: i64, detail: Option<String>, extra: Map<String, Value> },
    HttpStatus(u16),
    Drop,
}

impl Answer {
    fn error(errcode: i64) -> Answer {
        Answer::Reply { errcode, detail: None, extra: Map::new() }
    }

    fn ok(extra: Map<String, Value>) -> Answer {
        Answer::Reply { errcode: OK, detail: None, extra }
    }
}

impl From<Rejection> for Answer {
    fn from(rejection: Rejection) -> Answer {
        Answer::Reply { errcode: rejection.errcode, detail: rejection.detail, extra: Map::new() }
    }
}

impl WecomState {
    fn take_fault(&mut self, api: Api) -> Option<Answer> {
        let position = self.faults.iter().position(|scheduled| scheduled.target.covers(api))?;
        let scheduled = &mut self.faults[position];
        scheduled.remaining -= 1;
        let fault = scheduled.fault.clone();
        if scheduled.remaining == 0 {
            self.faults.remove(position);
        }
        Some(match fault {
            WecomFault::Errcode { errcode } => Answer::error(errcode),
            WecomFault::HttpStatus { status } => Answer::HttpStatus(status),
            WecomFault::DropConnection => Answer::Drop,
        })
    }

    fn next_token(&mut self) -> String {
        self.last_token_serial += 1;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let mut seed = scramble(self.last_token_serial ^ (u64::from(nanos) << 20));
        let mut token = String::with_capacity(ACCESS_TOKEN_LENGTH);
        while token.len() < ACCESS_TOKEN_LENGTH {
            seed = scramble(seed);
            for shift in (0..60).step_by(6) {
                if token.len() < ACCESS_TOKEN_LENGTH {
                    token.push(char::from(TOKEN_ALPHABET[((seed >> shift) & 63) as usize]));
                }
            }
        }
        token
    }

    fn gettoken(&mut self, query: &Query) -> Answer {
        self.stats.gettoken_calls += 1;
        if let Some(fault) = self.take_fault(Api::GetToken) {
            return fault;
        }
        let corp_id = match query.get("corpid") {
            Some(corp_id) if !corp_id.is_empty() => corp_id,
            _ => return Answer::error(CORPID_MISSING),
        };
        if !self.apps.iter().any(|app| app.corp_id == corp_id) {
            return Answer::error(INVALID_CORPID);
        }
        let secret = match query.get("corpsecret") {
            Some(secret) if !secret.is_empty() => secret,
            _ => return Answer::error(CORPSECRET_MISSING),
        };
        let Some(app_index) = self.apps.iter().position(|app| app.corp_id == corp_id && app.secret == secret) else {
            let another_corps = self.apps.iter().any(|app| app.secret == secret);
            return Answer::error(if another_corps { SECRET_OF_ANOTHER_CORP } else { INVALID_SECRET });
        };
        let now = Instant::now();
        let reusable = self
            .tokens
            .iter()
            .filter(|(_, issued)| issued.app_index == app_index && !issued.invalidated && issued.expires_at > now)
            .max_by_key(|(_, issued)| issued.expires_at)
            .map(|(token, issued)| (token.clone(), issued.expires_at));
        let (token, expires_at) = match reusable {
            Some(reused) => reused,
            None => {
                let token = self.next_token();
                let expires_at = now + self.token_lifetime;
                self.tokens.insert(token.clone(), IssuedToken { app_index, expires_at, invalidated: false });
                self.stats.tokens_issued += 1;
                (token, expires_at)
            }
        };
        let remaining = expires_at.saturating_duration_since(now);
        let expires_in = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
        let mut extra = Map::new();
        extra.insert("access_token".into(), Value::from(token));
        extra.insert("expires_in".into(), Value::from(expires_in));
        Answer::ok(extra)
    }

    fn app_send(&mut self, query: &Query, body: &[u8]) -> Answer {
        self.stats.app_requests += 1;
        let app_index = match self.check_access_token(query.get("access_token")) {
            Ok(app_index) => app_index,
            Err(errcode) => return Answer::error(errcode),
        };
        if let Some(fault) = self.take_fault(Api::App) {
            return fault;
        }
        let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
            return Answer::error(DATA_FORMAT_ERROR);
        };
        let app = self.apps[app_index].clone();
        let agent_id = match request.get("agentid") {
            Some(Value::Number(number)) => number.as_i64(),
            Some(Value::String(text)) => text.trim().parse::<i64>().ok(),
            _ => None,
        };
        if agent_id != Some(app.agent_id) {
            return Answer::error(INVALID_AGENTID);
        }
        let recipients = match parse_recipients(&request) {
            Ok(recipients) => recipients,
            Err(rejection) => return rejection.into(),
        };
        let (valid_users, invalid_users): (Vec<String>, Vec<String>) = recipients
            .users
            .iter()
            .map(|user| user.to_lowercase())
            .partition(|user| recipients.everyone || app.users.as_ref().is_none_or(|known| known.contains(user)));
        let (valid_parties, invalid_parties): (Vec<String>, Vec<String>) = recipients
            .parties
            .iter()
            .cloned()
            .partition(|party| app.parties.as_ref().is_none_or(|known| known.contains(party)));
        let (valid_tags, invalid_tags): (Vec<String>, Vec<String>) =
            recipients.tags.iter().cloned().partition(|tag| app.tags.as_ref().is_none_or(|known| known.contains(tag)));
        if valid_users.is_empty() && valid_parties.is_empty() && valid_tags.is_empty() {
            return Answer::error(ALL_RECIPIENTS_INVALID);
        }
        let message = match validate_app_message(&request) {
            Ok(message) => message,
            Err(rejection) => return rejection.into(),
        };

        let now = Instant::now();
        let duplicate = self.is_duplicate(app_index, &request, body, now);
        let (delivered_to, rate_limited) = if duplicate {
            self.stats.duplicates_suppressed += 1;
            (Vec::new(), Vec::new())
        } else {
            self.admit_members(app.agent_id, &valid_users, now)
        };
        self.stats.recipients_rate_limited += rate_limited.len() as u64;
        self.stats.app_accepted += 1;
        let msgid = format!("testkit_msg_{}", self.last_message_sequence + 1);
        let mut extra = Map::new();
        extra.insert("invaliduser".into(), Value::from(invalid_users.join("|")));
        extra.insert("invalidparty".into(), Value::from(invalid_parties.join("|")));
        extra.insert("invalidtag".into(), Value::from(invalid_tags.join("|")));
        extra.insert("unlicenseduser".into(), Value::from(""));
        extra.insert("msgid".into(), Value::from(msgid.clone()));
        self.record(WecomMessage {
            sequence: 0,
            mode: WecomMode::App,
            key: None,
            robot_name: None,
            agent_id: Some(app.agent_id),
            touser: recipients.users,
            toparty: recipients.parties,
            totag: recipients.tags,
            msgtype: message.msgtype,
            content: message.content,
            payload: message.payload,
            invaliduser: invalid_users,
            invalidparty: invalid_parties,
            invalidtag: invalid_tags,
            delivered_to,
            rate_limited,
            duplicate,
            msgid: Some(msgid),
            received_at_unix_ms: 0,
        });
        Answer::ok(extra)
    }

    fn check_access_token(&self, token: Option<&str>) -> Result<usize, i64> {
        let token = match token {
            Some(token) if !token.is_empty() => token,
            _ => return Err(ACCESS_TOKEN_MISSING),
        };
        match self.tokens.get(token) {
            None => Err(INVALID_ACCESS_TOKEN),
            Some(issued) if issued.invalidated => Err(INVALID_ACCESS_TOKEN),
            Some(issued) if issued.expires_at <= Instant::now() => Err(ACCESS_TOKEN_EXPIRED),
            Some(issued) => Ok(issued.app_index),
        }
    }

    fn is_duplicate(&mut self, app_index: usize, request: &Map<String, Value>, body: &[u8], now: Instant) -> bool {
        if request.get("enable_duplicate_check").and_then(Value::as_i64) != Some(1) {
            return false;
        }
        let interval = request
            .get("duplicate_check_interval")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_DUPLICATE_CHECK_INTERVAL)
            .min(MAX_DUPLICATE_CHECK_INTERVAL);
        let key = (app_index, String::from_utf8_lossy(body).into_owned());
        match self.delivered_bodies.get(&key) {
            Some(delivered_at) if now.saturating_duration_since(*delivered_at) < interval => true,
            _ => {
                self.delivered_bodies.insert(key, now);
                false
            }
        }
    }

    fn admit_members(&mut self, agent_id: i64, users: &[String], now: Instant) -> (Vec<String>, Vec<String>) {
        let limits = self.rate_limits;
        let mut delivered = Vec::new();
        let mut dropped = Vec::new();
        for user in users {
            let key = (agent_id, user.clone());
            let minute = self.member_minute_windows.entry(key.clone()).or_default();
            let minute_room = minute.has_room(limits.user_minute_limit, limits.user_minute_window, now);
            let hour = self.member_hour_windows.entry(key.clone()).or_default();
            let hour_room = hour.has_room(limits.user_hour_limit, limits.user_hour_window, now);
            if minute_room && hour_room {
                hour.admit(now);
                self.member_minute_windows.entry(key).or_default().admit(now);
                delivered.push(user.clone());
            } else {
                dropped.push(user.clone());
            }
        }
        (delivered, dropped)
    }

    fn robot_send(&mut self, query: &Query, body: &[u8]) -> Answer {
        self.stats.robot_requests += 1;
        let Some(robot) = query.get("key").and_then(|key| self.robots.get(key)).cloned() else {
            return Answer::error(INVALID_WEBHOOK_URL);
        };
        match robot.state {
            RobotState::Active => {}
            RobotState::Disabled => return Answer::error(ROBOT_DISABLED),
            RobotState::NotInGroup => return Answer::error(ROBOT_NOT_IN_GROUP),
        }
        if let Some(fault) = self.take_fault(Api::Robot) {
            return fault;
        }
        let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
            return Answer::error(DATA_FORMAT_ERROR);
        };
        let ValidMessage { msgtype, content, payload } = match validate_robot_message(&request) {
            Ok(message) => message,
            Err(rejection) => return rejection.into(),
        };
        let limits = self.rate_limits;
        let window = self.robot_windows.entry(robot.key.clone()).or_default();
        if !window.try_admit(limits.robot_limit, limits.robot_window, Instant::now()) {
            self.stats.robot_rate_limited += 1;
            return Answer::error(FREQUENCY_LIMIT);
        }
        self.stats.robot_accepted += 1;
        self.record(WecomMessage {
            sequence: 0,
            mode: WecomMode::Robot,
            key: Some(robot.key),
            robot_name: Some(robot.name),
            agent_id: None,
            touser: Vec::new(),
            toparty: Vec::new(),
            totag: Vec::new(),
            msgtype,
            content,
            payload,
            invaliduser: Vec::new(),
            invalidparty: Vec::new(),
            invalidtag: Vec::new(),
            delivered_to: Vec::new(),
            rate_limited: Vec::new(),
            duplicate: false,
            msgid: None,
            received_at_unix_ms: 0,
        });
        Answer::ok(Map::new())
    }

    fn record(&mut self, mut message: WecomMessage) {
        self.last_message_sequence += 1;
        message.sequence = self.last_message_sequence;
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        message.received_at_unix_ms = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
        self.messages.push(message);
    }
}

struct Shared {
    state: Mutex<WecomState>,
    accepted_message_count: watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WecomState> {
        // A panic under the lock can only be a bug in this file; keep serving
        // the recorded state rather than failing every later request.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Configures and starts a WeCom emulator.
#[derive(Debug, Clone)]
pub struct WecomEmulatorBuilder {
    apps: Vec<WecomApp>,
    robots: Vec<WecomRobot>,
    token_lifetime: Duration,
    rate_limits: WecomRateLimits,
}

impl Default for WecomEmulatorBuilder {
    fn default() -> WecomEmulatorBuilder {
        WecomEmulatorBuilder {
            apps: Vec::new(),
            robots: Vec::new(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            rate_limits: WecomRateLimits::default(),
        }
    }
}

impl WecomEmulatorBuilder {
    pub fn app(mut self, app: WecomApp) -> WecomEmulatorBuilder {
        self.apps.push(app);
        self
    }

    pub fn robot(mut self, robot: WecomRobot) -> WecomEmulatorBuilder {
        self.robots.push(robot);
        self
    }

    /// `expires_in` of new access tokens (whole seconds, at least one).
    pub fn token_lifetime(mut self, lifetime: Duration) -> WecomEmulatorBuilder {
        self.token_lifetime = lifetime;
        self
    }

    pub fn rate_limits(mut self, limits: WecomRateLimits) -> WecomEmulatorBuilder {
        self.rate_limits = limits;
        self
    }

    /// Shorthand: each robot may send `limit` messages per sliding `window`.
    pub fn robot_rate_limit(mut self, limit: u32, window: Duration) -> WecomEmulatorBuilder {
        self.rate_limits.robot_limit = limit;
        self.rate_limits.robot_window = window;
        self
    }

    /// The router and its control handle, for serving on a custom harness.
    pub fn build(self) -> Result<(Router, WecomControl), WecomConfigError> {
        validate_apps(&self.apps)?;
        validate_robots(&self.robots)?;
        validate_token_lifetime(self.token_lifetime)?;
        self.rate_limits.validate()?;
        let state = WecomState {
            apps: self.apps,
            robots: self.robots.into_iter().map(|robot| (robot.key.clone(), robot)).collect(),
            token_lifetime: self.token_lifetime,
            tokens: HashMap::new(),
            rate_limits: self.rate_limits,
            robot_windows: HashMap::new(),
            member_minute_windows: HashMap::new(),
            member_hour_windows: HashMap::new(),
            delivered_bodies: HashMap::new(),
            faults: VecDeque::new(),
            messages: Vec::new(),
            stats: WecomStats::default(),
            last_token_serial: 0,
            last_message_sequence: 0,
        };
        let shared = Arc::new(Shared { state: Mutex::new(state), accepted_message_count: watch::Sender::new(0) });
        let router = Router::new().fallback(dispatch).with_state(Arc::clone(&shared));
        Ok((router, WecomControl { shared }))
    }

    /// Serves on 127.0.0.1 with a port the OS picks.
    pub async fn start(self) -> Result<WecomEmulator, WecomStartError> {
        self.start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(self, address: SocketAddr) -> Result<WecomEmulator, WecomStartError> {
        let (router, control) = self.build()?;
        let server = EmulatorServer::start_on(address, router).await?;
        Ok(WecomEmulator { server, control })
    }
}

/// A running WeCom emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct WecomEmulator {
    server: EmulatorServer,
    control: WecomControl,
}

impl WecomEmulator {
    pub fn builder() -> WecomEmulatorBuilder {
        WecomEmulatorBuilder::default()
    }

    /// `http://127.0.0.1:PORT`, standing in for `https://qyapi.weixin.qq.com`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn address(&self) -> SocketAddr {
        self.server.address()
    }

    pub fn control(&self) -> &WecomControl {
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
pub struct WecomControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WecomControl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("WecomControl").finish_non_exhaustive()
    }
}

impl WecomControl {
    /// Every accepted message (errcode 0), in order.
    pub fn messages(&self) -> Vec<WecomMessage> {
        self.shared.lock().messages.clone()
    }

    pub fn stats(&self) -> WecomStats {
        self.shared.lock().stats.clone()
    }

    /// Gettoken requests so far, successful or not.
    pub fn gettoken_calls(&self) -> u64 {
        self.shared.lock().stats.gettoken_calls
    }

    /// Waits until at least `count` messages were accepted, then returns them all.
    pub async fn wait_for_messages(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<WecomMessage>, WecomWaitTimedOut> {
        let mut receiver = self.shared.accepted_message_count.subscribe();
        let reached = tokio::time::timeout(timeout, receiver.wait_for(|accepted| *accepted >= count)).await;
        match reached {
            Ok(Ok(_)) => Ok(self.messages()),
            _ => Err(WecomWaitTimedOut { wanted: count, received: self.messages().len(), timeout }),
        }
    }

    /// Applies `fault` to the next `count` calls `target` covers. App faults
    /// apply after the token check, robot faults after the key check.
    pub fn fail_next(
        &self,
        count: usize,
        target: WecomFaultTarget,
        fault: WecomFault,
    ) -> Result<(), WecomControlError> {
        match fault {
            WecomFault::Errcode { errcode: OK } => return Err(WecomControlError::SuccessIsNotAFault),
            WecomFault::HttpStatus { status } if StatusCode::from_u16(status).is_err() => {
                return Err(WecomControlError::InvalidStatus(status))
            }
            _ => {}
        }
        if count > 0 {
            self.shared.lock().faults.push_back(ScheduledFault { target, remaining: count, fault });
        }
        Ok(())
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.iter().map(|scheduled| scheduled.remaining).sum()
    }

    /// Makes every issued token expired now (42001); returns how many.
    pub fn expire_tokens(&self) -> usize {
        let now = Instant::now();
        let mut state = self.shared.lock();
        state.tokens.values_mut().for_each(|issued| issued.expires_at = issued.expires_at.min(now));
        state.tokens.len()
    }

    /// Makes every issued token invalid (40014), as WeCom may do early; returns how many.
    pub fn invalidate_tokens(&self) -> usize {
        let mut state = self.shared.lock();
        state.tokens.values_mut().for_each(|issued| issued.invalidated = true);
        state.tokens.len()
    }

    /// `expires_in` of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) -> Result<(), WecomControlError> {
        validate_token_lifetime(lifetime)?;
        self.shared.lock().token_lifetime = lifetime;
        Ok(())
    }

    pub fn rate_limits(&self) -> WecomRateLimits {
        self.shared.lock().rate_limits
    }

    /// New limits apply to the windows as they stand (past sends still count).
    pub fn set_rate_limits(&self, limits: WecomRateLimits) -> Result<(), WecomControlError> {
        limits.validate()?;
        self.shared.lock().rate_limits = limits;
        Ok(())
    }

    /// Returns whether a robot with this key exists.
    pub fn set_robot_state(&self, key: &str, robot_state: RobotState) -> bool {
        match self.shared.lock().robots.get_mut(key) {
            Some(robot) => {
                robot.state = robot_state;
                true
            }
            None => false,
        }
    }

    /// Forgets messages, counts, faults, rate windows and duplicate history.
    /// Apps, robots, issued tokens and limits stay.
    pub fn reset(&self) {
        let mut state = self.shared.lock();
        state.messages.clear();
        state.stats = WecomStats::default();
        state.faults.clear();
        state.robot_windows.clear();
        state.member_minute_windows.clear();
        state.member_hour_windows.clear();
        state.delivered_bodies.clear();
        state.last_message_sequence = 0;
        self.shared.accepted_message_count.send_replace(0);
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
    // The harness has already buffered the body; an error means it was cut short.
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return plain_response(StatusCode::BAD_REQUEST, "request body could not be read");
    };
    let path = parts.uri.path();
    if let Some(control_path) = path.strip_prefix("/_testkit/") {
        return control_request(&shared, &parts.method, control_path, &body);
    }
    let (api, method) = match path {
        "/cgi-bin/gettoken" => (Api::GetToken, Method::GET),
        "/cgi-bin/message/send" => (Api::App, Method::POST),
        "/cgi-bin/webhook/send" => (Api::Robot, Method::POST),
        _ => return plain_response(StatusCode::NOT_FOUND, "not found"),
    };
    if parts.method != method {
        return plain_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let query = Query::parse(parts.uri.query());
    let client_ip = client_ip(&parts.headers);
    let mut state = shared.lock();
    let answer = match api {
        Api::GetToken => state.gettoken(&query),
        Api::App => state.app_send(&query, &body),
        Api::Robot => state.robot_send(&query, &body),
    };
    shared.accepted_message_count.send_replace(state.messages.len());
    match answer {
        Answer::Reply { errcode, detail, extra } => {
            if errcode != OK {
                *state.stats.rejected_by_errcode.entry(errcode).or_default() += 1;
            }
            let mut reply = Map::new();
            reply.insert("errcode".into(), Value::from(errcode));
            reply.insert("errmsg".into(), Value::from(decorated_errmsg(errcode, detail.as_deref(), &client_ip)));
            reply.extend(extra);
            json_response(&Value::Object(reply))
        }
        Answer::HttpStatus(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            plain_response(status, status.canonical_reason().unwrap_or("error"))
        }
        Answer::Drop => {
            state.stats.dropped_connections += 1;
            dropped_connection_response()
        }
    }
}

fn client_ip(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
        .unwrap_or(FALLBACK_CLIENT_IP)
        .to_string()
}

fn json_response(body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .body(Body::from(body.to_string()))
        .expect("static response parts are valid")
}

fn control_json(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = json_response(body);
    *response.status_mut() = status;
    response
}

fn plain_response(status: StatusCode, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(text))
        .expect("static response parts are valid")
}

// No `deny_unknown_fields`: serde does not support it together with `flatten`.
#[derive(Deserialize)]
struct FaultRequest {
    count: usize,
    #[serde(default)]
    target: WecomFaultTarget,
    #[serde(flatten)]
    fault: WecomFault,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LifetimeRequest {
    expires_in_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RobotStateRequest {
    key: String,
    state: RobotState,
}

fn control_request(shared: &Arc<Shared>, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
    let control = WecomControl { shared: Arc::clone(shared) };
    let done = || control_json(StatusCode::OK, &json!({ "ok": true }));
    match (method.as_str(), path) {
        ("GET", "messages") => control_json(StatusCode::OK, &json!(control.messages())),
        ("GET", "stats") => control_json(StatusCode::OK, &json!(control.stats())),
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
        ("POST", "tokens/expire") => control_json(StatusCode::OK, &json!({ "expired": control.expire_tokens() })),
        ("POST", "tokens/invalidate") => {
            control_json(StatusCode::OK, &json!({ "invalidated": control.invalidate_tokens() }))
        }
        ("PUT", "tokens/lifetime") => with_json(body, |request: LifetimeRequest| {
            control.set_token_lifetime(Duration::from_secs(request.expires_in_secs)).map(|()| done())
        }),
        ("GET", "rate_limits") => control_json(StatusCode::OK, &json!(control.rate_limits())),
        ("PUT", "rate_limits") => {
            with_json(body, |limits: WecomRateLimits| control.set_rate_limits(limits).map(|()| done()))
        }
        ("PUT", "robot_state") => with_json(body, |request: RobotStateRequest| {
            if control.set_robot_state(&request.key, request.state) {
                Ok(done())
            } else {
                Ok(control_json(StatusCode::NOT_FOUND, &json!({ "error": "WeCom emulator: no robot with that key" })))
            }
        }),
        _ => control_json(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("WeCom emulator: no control endpoint {method} /_testkit/{path}") }),
        ),
    }
}

fn with_json<T, F>(body: &[u8], apply: F) -> Response<Body>
where
    T: serde::de::DeserializeOwned,
    F: FnOnce(T) -> Result<Response<Body>, WecomControlError>,
{
    match serde_json::from_slice::<T>(body) {
        Ok(request) => apply(request)
            .unwrap_or_else(|error| control_json(StatusCode::BAD_REQUEST, &json!({ "error": error.to_string() }))),
        Err(error) => control_json(
            StatusCode::BAD_REQUEST,
            &json!({ "error": format!("WeCom emulator: control body is not valid: {error}") }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> WecomState {
        let (router, control) = WecomEmulator::builder()
            .app(WecomApp::new("corp", "secret", 1000002).users(["alice", "bob"]))
            .robot(WecomRobot::new("key"))
            .build()
            .unwrap();
        drop(router);
        let shared = Arc::try_unwrap(control.shared).ok().expect("the only handle");
        shared.state.into_inner().unwrap()
    }

    fn errcode(answer: &Answer) -> i64 {
        match answer {
            Answer::Reply { errcode, .. } => *errcode,
            _ => panic!("expected an errcode reply"),
        }
    }

    #[test]
    fn tokens_are_long_distinct_and_url_safe() {
        let mut state = state();
        let first = state.next_token();
        let second = state.next_token();
        assert_eq!(first.len(), ACCESS_TOKEN_LENGTH);
        assert_ne!(first, second);
        assert!(first.bytes().all(|byte| TOKEN_ALPHABET.contains(&byte)));
    }

    #[test]
    fn gettoken_reuses_a_live_token() {
        let mut state = state();
        let query = Query::parse(Some("corpid=corp&corpsecret=secret"));
        let Answer::Reply { extra: first, .. } = state.gettoken(&query) else { panic!("reply expected") };
        let Answer::Reply { extra: second, .. } = state.gettoken(&query) else { panic!("reply expected") };
        assert_eq!(first["access_token"], second["access_token"]);
        assert_eq!(first["expires_in"], json!(7200));
        assert_eq!((state.stats.gettoken_calls, state.stats.tokens_issued), (2, 1));
    }

    #[test]
    fn member_limits_drop_only_the_members_over_their_limit() {
        let mut state = state();
        state.rate_limits.user_minute_limit = 1;
        let now = Instant::now();
        let (delivered, dropped) = state.admit_members(1, &["alice".into()], now);
        assert_eq!((delivered.len(), dropped.len()), (1, 0));
        let (delivered, dropped) = state.admit_members(1, &["alice".into(), "bob".into()], now);
        assert_eq!(delivered, vec!["bob"]);
        assert_eq!(dropped, vec!["alice"]);
    }

    #[test]
    fn unknown_robot_key_is_93000() {
        let mut state = state();
        assert_eq!(errcode(&state.robot_send(&Query::parse(Some("key=other")), b"{}")), INVALID_WEBHOOK_URL);
        assert_eq!(errcode(&state.robot_send(&Query::parse(None), b"{}")), INVALID_WEBHOOK_URL);
    }

    #[test]
    fn client_ip_prefers_forwarded_for() {
        let mut headers = HeaderMap::new();
        assert_eq!(client_ip(&headers), "127.0.0.1");
        headers.insert("x-forwarded-for", "10.1.2.3, 10.0.0.1".parse().unwrap());
        assert_eq!(client_ip(&headers), "10.1.2.3");
    }
}
