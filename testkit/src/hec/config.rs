//! HEC tokens and emulator settings as a test or the CLI declares them, and
//! their validation.
//!
//! Guarantees: a built configuration has unique, non-empty tokens and every
//! token's default index is inside its own allow-list. The token value never
//! appears in `Debug` output or error messages; errors name the token by its
//! `name`.

use std::collections::HashSet;

use super::acks::{AckSettings, InvalidLossFraction};

/// Splunk's default `max_content_length` on current Enterprise (800 MiB).
pub const DEFAULT_MAX_CONTENT_LENGTH: usize = 838_860_800;

/// The index an event lands in when neither the envelope nor the token names one.
pub const SPLUNK_DEFAULT_INDEX: &str = "main";

/// The sourcetype an event gets when neither the envelope nor the token names one.
pub const SPLUNK_DEFAULT_SOURCETYPE: &str = "httpevent";

/// One HEC token as `inputs.conf` would declare it.
#[derive(Clone, PartialEq, Eq)]
pub struct HecToken {
    pub(crate) value: String,
    pub(crate) name: String,
    pub(crate) use_ack: bool,
    pub(crate) disabled: bool,
    pub(crate) allow_query_string_auth: bool,
    pub(crate) allowed_indexes: Vec<String>,
    pub(crate) default_index: Option<String>,
    pub(crate) default_host: Option<String>,
    pub(crate) default_source: Option<String>,
    pub(crate) default_sourcetype: Option<String>,
}

impl std::fmt::Debug for HecToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HecToken")
            .field("value", &"<redacted>")
            .field("name", &self.name)
            .field("use_ack", &self.use_ack)
            .field("disabled", &self.disabled)
            .field("allow_query_string_auth", &self.allow_query_string_auth)
            .field("allowed_indexes", &self.allowed_indexes)
            .field("default_index", &self.default_index)
            .field("default_host", &self.default_host)
            .field("default_source", &self.default_source)
            .field("default_sourcetype", &self.default_sourcetype)
            .finish()
    }
}

impl HecToken {
    /// An enabled token named `testkit`, without acknowledgements or query-string
    /// auth, allowed to write to any index, defaulting to `main`.
    pub fn new(value: impl Into<String>) -> HecToken {
        HecToken {
            value: value.into(),
            name: "testkit".to_string(),
            use_ack: false,
            disabled: false,
            allow_query_string_auth: false,
            allowed_indexes: Vec::new(),
            default_index: None,
            default_host: None,
            default_source: None,
            default_sourcetype: None,
        }
    }

    /// The token's name; the default source is `http:<name>`.
    pub fn name(mut self, name: impl Into<String>) -> HecToken {
        self.name = name.into();
        self
    }

    /// `useACK`: accepted requests get an `ackId`, a channel becomes mandatory.
    pub fn use_ack(mut self, use_ack: bool) -> HecToken {
        self.use_ack = use_ack;
        self
    }

    pub fn disabled(mut self, disabled: bool) -> HecToken {
        self.disabled = disabled;
        self
    }

    /// `allowQueryStringAuth`: whether `?token=` is accepted for this token.
    pub fn allow_query_string_auth(mut self, allowed: bool) -> HecToken {
        self.allow_query_string_auth = allowed;
        self
    }

    /// `indexes`: the only indexes the token may write to. Empty means any.
    pub fn allowed_indexes<I, S>(mut self, indexes: I) -> HecToken
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_indexes = indexes.into_iter().map(Into::into).collect();
        self
    }

    pub fn default_index(mut self, index: impl Into<String>) -> HecToken {
        self.default_index = Some(index.into());
        self
    }

    pub fn default_host(mut self, host: impl Into<String>) -> HecToken {
        self.default_host = Some(host.into());
        self
    }

    pub fn default_source(mut self, source: impl Into<String>) -> HecToken {
        self.default_source = Some(source.into());
        self
    }

    pub fn default_sourcetype(mut self, sourcetype: impl Into<String>) -> HecToken {
        self.default_sourcetype = Some(sourcetype.into());
        self
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    pub fn token_name(&self) -> &str {
        &self.name
    }

    pub(crate) fn allows_index(&self, index: &str) -> bool {
        !index.is_empty()
            && (self.allowed_indexes.is_empty() || self.allowed_indexes.iter().any(|allowed| allowed == index))
    }

    pub(crate) fn effective_default_index(&self) -> &str {
        self.default_index.as_deref().unwrap_or(SPLUNK_DEFAULT_INDEX)
    }
}

/// A configuration the emulator refuses to start with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HecConfigError {
    #[error("HEC emulator: token \"{name}\" has an empty value; give every token a value")]
    EmptyToken { name: String },
    #[error("HEC emulator: token \"{name}\" has the same value as an earlier token; token values must be unique")]
    DuplicateToken { name: String },
    #[error(
        "HEC emulator: token \"{name}\" defaults to index \"{index}\", which is not in its allowed indexes; \
         add it to the allow-list or pick another default"
    )]
    DefaultIndexNotAllowed { name: String, index: String },
    #[error("HEC emulator: \"max_content_length\" is 0; set it above 0")]
    ZeroMaxContentLength,
    #[error(transparent)]
    AckSettings(#[from] InvalidLossFraction),
}

pub(crate) fn validate_tokens(tokens: &[HecToken]) -> Result<(), HecConfigError> {
    let mut seen = HashSet::new();
    for token in tokens {
        validate_token(token)?;
        if !seen.insert(token.value.as_str()) {
            return Err(HecConfigError::DuplicateToken { name: token.name.clone() });
        }
    }
    Ok(())
}

pub(crate) fn validate_token(token: &HecToken) -> Result<(), HecConfigError> {
    if token.value.is_empty() {
        return Err(HecConfigError::EmptyToken { name: token.name.clone() });
    }
    let default_index = token.effective_default_index();
    if !token.allows_index(default_index) {
        return Err(HecConfigError::DefaultIndexNotAllowed {
            name: token.name.clone(),
            index: default_index.to_string(),
        });
    }
    Ok(())
}

pub(crate) fn validate_ack_settings(settings: &AckSettings) -> Result<(), HecConfigError> {
    Ok(settings.validate()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let rendered = format!("{:?}", HecToken::new("super-secret-token").name("ops"));
        assert!(!rendered.contains("super-secret-token"), "{rendered}");
        assert!(rendered.contains("ops"));
    }

    #[test]
    fn validation_names_the_token_not_its_value() {
        let duplicate = validate_tokens(&[HecToken::new("v").name("a"), HecToken::new("v").name("b")]).unwrap_err();
        assert_eq!(duplicate, HecConfigError::DuplicateToken { name: "b".into() });
        assert!(!duplicate.to_string().contains("\"v\""));
        let outside = HecToken::new("v").allowed_indexes(["app"]).default_index("main");
        assert!(matches!(validate_token(&outside), Err(HecConfigError::DefaultIndexNotAllowed { .. })));
        assert!(validate_token(&HecToken::new("v").allowed_indexes(["app"]).default_index("app")).is_ok());
        assert!(matches!(validate_token(&HecToken::new("")), Err(HecConfigError::EmptyToken { .. })));
    }

    #[test]
    fn empty_allow_list_means_any_index() {
        let token = HecToken::new("v");
        assert!(token.allows_index("anything"));
        assert!(!token.allows_index(""));
        assert!(!HecToken::new("v").allowed_indexes(["a"]).allows_index("b"));
    }
}
