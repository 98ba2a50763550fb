//! WeCom apps, robots and rate limits as a test or the CLI declares them,
//! and their validation.
//!
//! Guarantees: secrets and webhook keys never appear in `Debug` output or
//! error messages (errors name the app by agent id, the robot by name).
//! A built configuration has unique (corp id, secret) pairs and robot keys,
//! and no zero-length rate window.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// WeCom's documented `expires_in` for access tokens.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);

/// One self-built app (自建应用): its corp, secret, agent id and the members,
/// departments and tags inside its visible range.
#[derive(Clone, PartialEq, Eq)]
pub struct WecomApp {
    pub(crate) corp_id: String,
    pub(crate) secret: String,
    pub(crate) agent_id: i64,
    pub(crate) users: Option<BTreeSet<String>>,
    pub(crate) parties: Option<BTreeSet<String>>,
    pub(crate) tags: Option<BTreeSet<String>>,
}

impl std::fmt::Debug for WecomApp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WecomApp")
            .field("corp_id", &self.corp_id)
            .field("secret", &"<redacted>")
            .field("agent_id", &self.agent_id)
            .field("users", &self.users)
            .field("parties", &self.parties)
            .field("tags", &self.tags)
            .finish()
    }
}

impl WecomApp {
    /// An app whose visible range holds every user, department and tag.
    pub fn new(corp_id: impl Into<String>, secret: impl Into<String>, agent_id: i64) -> WecomApp {
        WecomApp { corp_id: corp_id.into(), secret: secret.into(), agent_id, users: None, parties: None, tags: None }
    }

    /// Only these userids exist in the visible range (compared case-insensitively);
    /// others come back in `invaliduser`.
    pub fn users<I, S>(mut self, users: I) -> WecomApp
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.users = Some(users.into_iter().map(|user| user.into().to_lowercase()).collect());
        self
    }

    /// Only these department ids are valid; others come back in `invalidparty`.
    pub fn parties<I, S>(mut self, parties: I) -> WecomApp
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.parties = Some(parties.into_iter().map(Into::into).collect());
        self
    }

    /// Only these tag ids are valid; others come back in `invalidtag`.
    pub fn tags<I, S>(mut self, tags: I) -> WecomApp
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    pub fn corp_id(&self) -> &str {
        &self.corp_id
    }

    pub fn agent_id(&self) -> i64 {
        self.agent_id
    }
}

/// Whether a robot can post to its group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RobotState {
    #[default]
    Active,
    /// Stopped by an admin: 93004.
    Disabled,
    /// Removed from its group chat: 93008.
    NotInGroup,
}

/// One group robot (群机器人) reachable at `/cgi-bin/webhook/send?key=<key>`.
#[derive(Clone, PartialEq, Eq)]
pub struct WecomRobot {
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) state: RobotState,
}

impl std::fmt::Debug for WecomRobot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WecomRobot")
            .field("key", &"<redacted>")
            .field("name", &self.name)
            .field("state", &self.state)
            .finish()
    }
}

impl WecomRobot {
    /// An active robot named `robot`.
    pub fn new(key: impl Into<String>) -> WecomRobot {
        WecomRobot { key: key.into(), name: "robot".to_string(), state: RobotState::Active }
    }

    /// A label for records and errors, so the key itself need not be shown.
    pub fn name(mut self, name: impl Into<String>) -> WecomRobot {
        self.name = name.into();
        self
    }

    pub fn state(mut self, state: RobotState) -> WecomRobot {
        self.state = state;
        self
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Rate limits. Windows are sliding; a test shortens them to see a limit
/// clear without waiting a real minute. JSON fields: `robot_limit`,
/// `robot_window_ms`, `user_minute_limit`, `user_minute_window_ms`,
/// `user_hour_limit`, `user_hour_window_ms`; missing ones take WeCom's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WecomRateLimits {
    /// Messages per robot per window; above it the robot answers 45009.
    pub robot_limit: u32,
    #[serde(rename = "robot_window_ms", with = "millis")]
    pub robot_window: Duration,
    /// App messages per member per short window; excess is dropped silently.
    pub user_minute_limit: u32,
    #[serde(rename = "user_minute_window_ms", with = "millis")]
    pub user_minute_window: Duration,
    /// App messages per member per long window; excess is dropped silently.
    pub user_hour_limit: u32,
    #[serde(rename = "user_hour_window_ms", with = "millis")]
    pub user_hour_window: Duration,
}

impl Default for WecomRateLimits {
    fn default() -> WecomRateLimits {
        WecomRateLimits {
            robot_limit: 20,
            robot_window: Duration::from_secs(60),
            user_minute_limit: 30,
            user_minute_window: Duration::from_secs(60),
            user_hour_limit: 1000,
            user_hour_window: Duration::from_secs(3600),
        }
    }
}

impl WecomRateLimits {
    pub fn validate(&self) -> Result<(), WecomConfigError> {
        let windows = [
            ("robot_window", self.robot_window),
            ("user_minute_window", self.user_minute_window),
            ("user_hour_window", self.user_hour_window),
        ];
        match windows.iter().find(|(_, window)| window.is_zero()) {
            Some((name, _)) => Err(WecomConfigError::ZeroWindow { name }),
            None => Ok(()),
        }
    }
}

/// A configuration the emulator refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WecomConfigError {
    #[error("WeCom emulator: app with agent id {agent_id} has an empty corp id or secret; set both")]
    EmptyAppCredential { agent_id: i64 },
    #[error("WeCom emulator: two apps share corp \"{corp_id}\" and the same secret; give each app its own secret")]
    DuplicateSecret { corp_id: String },
    #[error("WeCom emulator: robot \"{name}\" has an empty key; give every robot a key")]
    EmptyRobotKey { name: String },
    #[error("WeCom emulator: robot \"{name}\" has the same key as an earlier robot; keys must be unique")]
    DuplicateRobotKey { name: String },
    #[error("WeCom emulator: rate limit \"{name}\" is zero; set a window above zero")]
    ZeroWindow { name: &'static str },
    #[error("WeCom emulator: token lifetime {0:?} is under one second; expires_in is whole seconds")]
    TokenLifetimeTooShort(Duration),
}

pub(crate) fn validate_apps(apps: &[WecomApp]) -> Result<(), WecomConfigError> {
    let mut seen = HashSet::new();
    for app in apps {
        if app.corp_id.is_empty() || app.secret.is_empty() {
            return Err(WecomConfigError::EmptyAppCredential { agent_id: app.agent_id });
        }
        if !seen.insert((app.corp_id.as_str(), app.secret.as_str())) {
            return Err(WecomConfigError::DuplicateSecret { corp_id: app.corp_id.clone() });
        }
    }
    Ok(())
}

pub(crate) fn validate_robots(robots: &[WecomRobot]) -> Result<(), WecomConfigError> {
    let mut seen = HashSet::new();
    for robot in robots {
        if robot.key.is_empty() {
            return Err(WecomConfigError::EmptyRobotKey { name: robot.name.clone() });
        }
        if !seen.insert(robot.key.as_str()) {
            return Err(WecomConfigError::DuplicateRobotKey { name: robot.name.clone() });
        }
    }
    Ok(())
}

pub(crate) fn validate_token_lifetime(lifetime: Duration) -> Result<(), WecomConfigError> {
    if lifetime < Duration::from_secs(1) {
        return Err(WecomConfigError::TokenLifetimeTooShort(lifetime));
    }
    Ok(())
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets_and_keys() {
        let app = format!("{:?}", WecomApp::new("corp", "very-secret", 1000002));
        assert!(!app.contains("very-secret"), "{app}");
        let robot = format!("{:?}", WecomRobot::new("hook-key-123").name("ops"));
        assert!(!robot.contains("hook-key-123") && robot.contains("ops"), "{robot}");
    }

    #[test]
    fn validation() {
        let apps = [WecomApp::new("c", "s", 1), WecomApp::new("c", "s", 2)];
        assert_eq!(validate_apps(&apps), Err(WecomConfigError::DuplicateSecret { corp_id: "c".into() }));
        assert!(validate_apps(&[WecomApp::new("c", "s", 1), WecomApp::new("d", "s", 2)]).is_ok());
        let robots = [WecomRobot::new("k").name("a"), WecomRobot::new("k").name("b")];
        let error = validate_robots(&robots).unwrap_err();
        assert!(!error.to_string().contains("\"k\""));
        assert!(WecomRateLimits { robot_window: Duration::ZERO, ..WecomRateLimits::default() }.validate().is_err());
        assert!(validate_token_lifetime(Duration::from_millis(10)).is_err());
    }

    #[test]
    fn rate_limits_from_partial_json() {
        let limits: WecomRateLimits = serde_json::from_str(r#"{"robot_limit":3,"robot_window_ms":500}"#).unwrap();
        assert_eq!(limits.robot_limit, 3);
        assert_eq!(limits.robot_window, Duration::from_millis(500));
        assert_eq!(limits.user_minute_limit, 30);
    }
}
