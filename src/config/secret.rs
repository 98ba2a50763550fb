//! `Secret`: a configuration string that must never be shown (tokens, access
//! keys, webhook keys).
//!
//! Guarantees: `Debug` prints `***`, there is no `Display`, and the value is
//! only reachable through `expose`, so a secret cannot reach a log line, an
//! error message or a `{:?}` of a config struct by accident. It deserialises
//! from a plain string, so `token = "${HEC_TOKEN}"` works as usual.

use serde::Deserialize;

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call it only where the value goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        #[derive(Debug, Deserialize)]
        struct Holder {
            token: Secret,
        }
        let holder: Holder = toml::from_str("token = \"abc-123-secret\"").unwrap();
        let rendered = format!("{holder:?}");
        assert!(!rendered.contains("abc-123-secret"), "{rendered}");
        assert!(rendered.contains("***"));
        assert_eq!(holder.token.expose(), "abc-123-secret");
    }
}
