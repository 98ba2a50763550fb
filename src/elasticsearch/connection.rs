//! The connection keys of every Elasticsearch component, and their checks.
//!
//! Keys: `endpoints` (one or more `http(s)://host:port[/prefix]` URLs, tried
//! in turn when one fails), `auth.strategy` = `basic` (`auth.user`,
//! `auth.password`), `api_key` (`auth.api_key`: the `encoded` value of the
//! create-API-key response, or `id:key`, which is encoded here) or `bearer`
//! (`auth.token`); `tls.verify` (default true), `tls.ca_file` (PEM bundle
//! added to the trusted roots), `tls.crt_file` + `tls.key_file` (PEM client
//! certificate and key); `request_timeout` (default 60 s, per HTTP attempt).
//!
//! Components keep these keys at their top level (serde's `flatten` cannot
//! be combined with `deny_unknown_fields`) and hand them to
//! `EsConnectionConfig::new`, which validates without IO. Certificate files
//! are read when the component starts (`EsClient::new`).

use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use crate::config::secret::Secret;

pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EsAuthStrategy {
    Basic,
    ApiKey,
    Bearer,
}

/// `auth.*` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsAuthConfig {
    pub strategy: EsAuthStrategy,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default)]
    pub token: Option<Secret>,
}

/// `tls.*` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsTlsConfig {
    #[serde(default = "default_verify")]
    pub verify: bool,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub crt_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

fn default_verify() -> bool {
    true
}

impl Default for EsTlsConfig {
    fn default() -> EsTlsConfig {
        EsTlsConfig { verify: true, ca_file: None, crt_file: None, key_file: None }
    }
}

/// The validated connection: endpoints without trailing slashes, the
/// `Authorization` header value, TLS files to load.
#[derive(Clone)]
pub struct EsConnectionConfig {
    pub endpoints: Vec<String>,
    /// The whole `Authorization` header value; a secret.
    pub(crate) authorization: Option<Secret>,
    /// What kind of credentials are configured, for error hints.
    pub auth_strategy: Option<EsAuthStrategy>,
    pub tls: EsTlsConfig,
    pub request_timeout: Duration,
}

impl std::fmt::Debug for EsConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsConnectionConfig")
            .field("endpoints", &self.endpoints)
            .field("auth_strategy", &self.auth_strategy)
            .field("tls", &self.tls)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl EsConnectionConfig {
    /// Validates the connection keys. Errors name the key and the fix.
    pub fn new(
        endpoints: &[String],
        auth: Option<&EsAuthConfig>,
        tls: &EsTlsConfig,
        request_timeout: Duration,
    ) -> Result<EsConnectionConfig, String> {
        if endpoints.is_empty() {
            return Err("\"endpoints\" is empty; list at least one URL such as \"http://127.0.0.1:9200\"".into());
        }
        let mut normalized = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let url = reqwest::Url::parse(endpoint).map_err(|error| {
                format!(
                    "\"endpoints\": {endpoint:?} is not a URL ({error}); write it like \"https://es.example.com:9200\""
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("\"endpoints\": {endpoint:?} must start with http:// or https://"));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(format!("\"endpoints\": {endpoint:?} has a query or fragment; give only scheme, host, port and an optional path prefix"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err("\"endpoints\": an endpoint carries credentials in its URL; move them to auth.user / auth.password so they are never logged".into());
            }
            normalized.push(endpoint.trim_end_matches('/').to_string());
        }
        if request_timeout.is_zero() {
            return Err("\"request_timeout\" is 0; set it above 0, such as \"60s\"".into());
        }
        if tls.crt_file.is_some() != tls.key_file.is_some() {
            return Err("\"tls.crt_file\" and \"tls.key_file\" go together; set both or neither".into());
        }
        let authorization = auth.map(authorization_header).transpose()?;
        Ok(EsConnectionConfig {
            endpoints: normalized,
            authorization,
            auth_strategy: auth.map(|auth| auth.strategy),
            tls: tls.clone(),
            request_timeout,
        })
    }
}

fn authorization_header(auth: &EsAuthConfig) -> Result<Secret, String> {
    let unexpected = |key: &str, strategy: &str| {
        format!("\"auth.{key}\" is set but \"auth.strategy\" is \"{strategy}\"; remove it or change the strategy")
    };
    match auth.strategy {
        EsAuthStrategy::Basic => {
            if auth.api_key.is_some() {
                return Err(unexpected("api_key", "basic"));
            }
            if auth.token.is_some() {
                return Err(unexpected("token", "basic"));
            }
            let user = auth
                .user
                .as_deref()
                .filter(|user| !user.is_empty())
                .ok_or("\"auth.user\" is missing; basic authentication needs a user and a password")?;
            let password = auth
                .password
                .as_ref()
                .ok_or("\"auth.password\" is missing; basic authentication needs a user and a password")?;
            Ok(Secret::new(format!("Basic {}", STANDARD.encode(format!("{user}:{}", password.expose())))))
        }
        EsAuthStrategy::ApiKey => {
            if auth.user.is_some() || auth.password.is_some() {
                return Err(unexpected("user/password", "api_key"));
            }
            if auth.token.is_some() {
                return Err(unexpected("token", "api_key"));
            }
            let key = auth.api_key.as_ref().filter(|key| !key.expose().is_empty()).ok_or(
                "\"auth.api_key\" is missing; give the \"encoded\" value of the create-API-key response, or \"id:api_key\"",
            )?;
            let encoded =
                if key.expose().contains(':') { STANDARD.encode(key.expose()) } else { key.expose().to_string() };
            Ok(Secret::new(format!("ApiKey {encoded}")))
        }
        EsAuthStrategy::Bearer => {
            if auth.user.is_some() || auth.password.is_some() {
                return Err(unexpected("user/password", "bearer"));
            }
            if auth.api_key.is_some() {
                return Err(unexpected("api_key", "bearer"));
            }
            let token = auth
                .token
                .as_ref()
                .filter(|token| !token.expose().is_empty())
                .ok_or("\"auth.token\" is missing; bearer authentication needs a token")?;
            Ok(Secret::new(format!("Bearer {}", token.expose())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(text: &str) -> EsAuthConfig {
        toml::from_str(text).expect("auth parses")
    }

    #[test]
    fn each_strategy_builds_its_header_and_debug_hides_it() {
        let endpoints = vec!["http://127.0.0.1:9200/".to_string()];
        let tls = EsTlsConfig::default();
        let basic = auth("strategy = \"basic\"\nuser = \"elastic\"\npassword = \"s3cret-pass\"");
        let connection = EsConnectionConfig::new(&endpoints, Some(&basic), &tls, DEFAULT_REQUEST_TIMEOUT).unwrap();
        assert_eq!(connection.endpoints, ["http://127.0.0.1:9200"]);
        assert_eq!(
            connection.authorization.as_ref().unwrap().expose(),
            format!("Basic {}", STANDARD.encode("elastic:s3cret-pass"))
        );
        let rendered = format!("{connection:?} {basic:?}");
        assert!(
            !rendered.contains("s3cret-pass") && !rendered.contains(&STANDARD.encode("elastic:s3cret-pass")),
            "{rendered}"
        );

        let api_key = auth("strategy = \"api_key\"\napi_key = \"id1:key1\"");
        let connection = EsConnectionConfig::new(&endpoints, Some(&api_key), &tls, DEFAULT_REQUEST_TIMEOUT).unwrap();
        assert_eq!(connection.authorization.unwrap().expose(), format!("ApiKey {}", STANDARD.encode("id1:key1")));
        let encoded = auth("strategy = \"api_key\"\napi_key = \"ZW5jb2RlZA==\"");
        let connection = EsConnectionConfig::new(&endpoints, Some(&encoded), &tls, DEFAULT_REQUEST_TIMEOUT).unwrap();
        assert_eq!(connection.authorization.unwrap().expose(), "ApiKey ZW5jb2RlZA==");
        let bearer = auth("strategy = \"bearer\"\ntoken = \"tok\"");
        let connection = EsConnectionConfig::new(&endpoints, Some(&bearer), &tls, DEFAULT_REQUEST_TIMEOUT).unwrap();
        assert_eq!(connection.authorization.unwrap().expose(), "Bearer tok");
    }

    #[test]
    fn invalid_connections_name_the_key() {
        let tls = EsTlsConfig::default();
        let cases: Vec<(Vec<String>, Option<EsAuthConfig>, EsTlsConfig, &str)> = vec![
            (vec![], None, tls.clone(), "\"endpoints\""),
            (vec!["ftp://x".into()], None, tls.clone(), "\"endpoints\""),
            (vec!["http://user:pw@host:9200".into()], None, tls.clone(), "auth.user"),
            (
                vec!["http://h:9200".into()],
                Some(auth("strategy = \"basic\"\nuser = \"u\"")),
                tls.clone(),
                "\"auth.password\"",
            ),
            (
                vec!["http://h:9200".into()],
                Some(auth("strategy = \"bearer\"\ntoken = \"t\"\nuser = \"u\"")),
                tls.clone(),
                "auth.user",
            ),
            (vec!["http://h:9200".into()], Some(auth("strategy = \"api_key\"")), tls.clone(), "\"auth.api_key\""),
            (
                vec!["http://h:9200".into()],
                None,
                EsTlsConfig { crt_file: Some("c.pem".into()), ..EsTlsConfig::default() },
                "\"tls.crt_file\"",
            ),
        ];
        for (endpoints, auth, tls, key) in cases {
            let error = EsConnectionConfig::new(&endpoints, auth.as_ref(), &tls, DEFAULT_REQUEST_TIMEOUT).unwrap_err();
            assert!(error.contains(key), "{error} should name {key}");
        }
    }
}
