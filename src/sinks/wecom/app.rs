//! The app message client (`POST {endpoint}/cgi-bin/message/send?access_token=T`)
//! and the process-wide access-token cache (`GET {endpoint}/cgi-bin/gettoken`).
//!
//! Token cache guarantees:
//! - One cache per (endpoint, corp id, hash of the secret), shared by every
//!   sink in the process (and kept across reloads), because WeCom
//!   frequency-blocks apps that call gettoken often.
//! - Single flight: concurrent callers needing a token wait on one refresh
//!   (an async mutex held across the gettoken call) and all get its result.
//! - A token is used until `REFRESH_MARGIN` before its `expires_in` (half its
//!   lifetime for short-lived tokens), then fetched again.
//! - `invalidate` drops only the token the caller saw rejected, so a token
//!   another sink refreshed a moment ago is not thrown away.
//!
//! Send guarantees: on 40014/42001/41001 the client invalidates the token,
//! fetches a new one and retries once; a second token error is fatal (a
//! fresh token being refused means the credentials are wrong, not stale).
//! Content arrives split to the app limits (text 2048 bytes, markdown 2048
//! bytes). Partial recipient failures (`invaliduser`, `invalidparty`,
//! `invalidtag` with errcode 0) are logged as warnings and count as
//! delivered, as WeCom did deliver to the others.
//!
//! Never logs the secret, the token, or a URL holding either.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::api::{self, ErrcodeClass, SendError};
use super::message::MessageFormat;
use crate::sinks::redact::Secret;

/// App `text` content limit in UTF-8 bytes.
pub const APP_TEXT_LIMIT_BYTES: usize = 2048;
/// App `markdown` content limit in UTF-8 bytes (reference: unverified, the
/// emulator and the cautious reading agree on 2048).
pub const APP_MARKDOWN_LIMIT_BYTES: usize = 2048;
/// Refresh this long before `expires_in` runs out (Grafana's choice too), so
/// a token never expires between the check and the send.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// An access token. Prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("***")
    }
}

#[derive(Debug)]
struct CachedToken {
    token: AccessToken,
    refresh_at: Instant,
}

/// The access token of one app, shared process-wide (see the module doc).
pub struct TokenCache {
    gettoken_url: reqwest::Url,
    corp_id: String,
    secret: Secret,
    // An async mutex on purpose: it is held across the gettoken request so
    // concurrent callers share one refresh (single flight).
    cached: tokio::sync::Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TokenCache").field("corp_id", &self.corp_id).finish_non_exhaustive()
    }
}

type Registry = Mutex<HashMap<(String, String, u64), Arc<TokenCache>>>;

fn registry() -> &'static Registry {
    static CACHES: OnceLock<Registry> = OnceLock::new();
    CACHES.get_or_init(Registry::default)
}

impl TokenCache {
    /// A cache of its own, for tests.
    pub fn new(endpoint: &str, corp_id: &str, secret: &Secret) -> Result<TokenCache, String> {
        let gettoken_url = reqwest::Url::parse(&format!("{}/cgi-bin/gettoken", endpoint.trim_end_matches('/')))
            .map_err(|error| format!("\"endpoint\" is not a URL: {error}"))?;
        Ok(TokenCache {
            gettoken_url,
            corp_id: corp_id.to_string(),
            secret: secret.clone(),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The cache every sink of this process uses for this app.
    pub fn shared(endpoint: &str, corp_id: &str, secret: &Secret) -> Result<Arc<TokenCache>, String> {
        let mut hasher = DefaultHasher::new();
        secret.expose().hash(&mut hasher);
        let key = (endpoint.trim_end_matches('/').to_string(), corp_id.to_string(), hasher.finish());
        // A std mutex: held for a map lookup only, never across an await.
        let mut caches = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cache) = caches.get(&key) {
            return Ok(Arc::clone(cache));
        }
        let cache = Arc::new(TokenCache::new(endpoint, corp_id, secret)?);
        caches.insert(key, Arc::clone(&cache));
        Ok(cache)
    }

    /// A usable token, fetching one if none is cached or it is due for
    /// refresh. The flag says whether this call fetched it.
    pub async fn get(&self, client: &reqwest::Client) -> Result<(AccessToken, bool), SendError> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref() {
            if Instant::now() < current.refresh_at {
                return Ok((current.token.clone(), false));
            }
        }
        let fetched = self.fetch(client).await?;
        let token = fetched.token.clone();
        *cached = Some(fetched);
        Ok((token, true))
    }

    /// Forgets `stale` if it is still the cached token.
    pub async fn invalidate(&self, stale: &AccessToken) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|current| current.token == *stale) {
            *cached = None;
        }
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<CachedToken, SendError> {
        let mut url = self.gettoken_url.clone();
        url.query_pairs_mut().append_pair("corpid", &self.corp_id).append_pair("corpsecret", self.secret.expose());
        let fetched_at = Instant::now();
        let reply = api::call(client.get(url)).await?;
        match api::classify(reply.errcode) {
            ErrcodeClass::Ok => {}
            // gettoken has no per-message errors: any refusal other than a
            // transient one is about the credentials.
            ErrcodeClass::Retry | ErrcodeClass::FrequencyLimit => {
                return Err(SendError::Retryable {
                    label: reply.errcode.to_string(),
                    reason: format!("gettoken errcode {}: {}", reply.errcode, api::summarize_errmsg(&reply.errmsg)),
                })
            }
            ErrcodeClass::Token | ErrcodeClass::Message | ErrcodeClass::Fatal => {
                return Err(SendError::Fatal {
                    errcode: Some(reply.errcode),
                    reason: format!(
                        "WeCom gettoken for corp \"{}\" refused with errcode {} ({}): {}",
                        self.corp_id,
                        reply.errcode,
                        api::summarize_errmsg(&reply.errmsg),
                        api::fix_for(reply.errcode)
                    ),
                })
            }
        }
        if reply.access_token.is_empty() {
            // Alertmanager's reading too: success without a token means the
            // secret is not one that can issue tokens.
            return Err(SendError::Fatal {
                errcode: None,
                reason: format!(
                    "WeCom gettoken for corp \"{}\" returned no access_token; check corp_secret",
                    self.corp_id
                ),
            });
        }
        let lifetime = Duration::from_secs(reply.expires_in);
        let usable_for = if lifetime > 2 * REFRESH_MARGIN { lifetime - REFRESH_MARGIN } else { lifetime / 2 };
        tracing::debug!(corp_id = %self.corp_id, expires_in = reply.expires_in, "fetched a WeCom access token");
        Ok(CachedToken {
            token: AccessToken(Arc::from(reply.access_token.expose())),
            refresh_at: fetched_at + usable_for,
        })
    }
}

/// Who an app message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipients {
    pub to_user: String,
    pub to_party: String,
    pub to_tag: String,
}

pub struct AppClient {
    client: reqwest::Client,
    send_url: reqwest::Url,
    tokens: Arc<TokenCache>,
    agent_id: i64,
    recipients: Recipients,
    duplicate_check_interval: Option<Duration>,
    token_fetches: metrics::Counter,
}

impl std::fmt::Debug for AppClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AppClient")
            .field("send_url", &self.send_url.as_str())
            .field("agent_id", &self.agent_id)
            .field("recipients", &self.recipients)
            .finish_non_exhaustive()
    }
}

impl AppClient {
    pub fn new(
        client: reqwest::Client,
        endpoint: &str,
        tokens: Arc<TokenCache>,
        agent_id: i64,
        recipients: Recipients,
        duplicate_check_interval: Option<Duration>,
        token_fetches: metrics::Counter,
    ) -> Result<AppClient, String> {
        let send_url = reqwest::Url::parse(&format!("{}/cgi-bin/message/send", endpoint.trim_end_matches('/')))
            .map_err(|error| format!("\"endpoint\" is not a URL: {error}"))?;
        Ok(AppClient { client, send_url, tokens, agent_id, recipients, duplicate_check_interval, token_fetches })
    }

    pub fn limit_bytes(format: MessageFormat) -> usize {
        match format {
            MessageFormat::Text => APP_TEXT_LIMIT_BYTES,
            MessageFormat::Markdown => APP_MARKDOWN_LIMIT_BYTES,
        }
    }

    /// One logical attempt: with at most one token refresh inside it.
    pub async fn send(&self, format: MessageFormat, content: &str) -> Result<(), SendError> {
        let token = self.token().await?;
        match self.post(&token, format, content).await {
            Err(SendError::TokenRejected { errcode, summary }) => {
                tracing::info!(errcode, %summary, "WeCom refused the cached access token; fetching a new one");
                self.tokens.invalidate(&token).await;
                let fresh = self.token().await?;
                match self.post(&fresh, format, content).await {
                    Err(SendError::TokenRejected { errcode, summary }) => Err(SendError::Fatal {
                        errcode: Some(errcode),
                        reason: format!(
                            "WeCom app message/send refused a freshly fetched access token (errcode {errcode}: {summary}); check corp_id, corp_secret and agent_id"
                        ),
                    }),
                    other => other,
                }
            }
            other => other,
        }
    }

    async fn token(&self) -> Result<AccessToken, SendError> {
        let (token, fetched) = self.tokens.get(&self.client).await?;
        if fetched {
            self.token_fetches.increment(1);
        }
        Ok(token)
    }

    async fn post(&self, token: &AccessToken, format: MessageFormat, content: &str) -> Result<(), SendError> {
        let mut body = json!({
            "touser": self.recipients.to_user,
            "toparty": self.recipients.to_party,
            "totag": self.recipients.to_tag,
            "msgtype": format.msgtype(),
            "agentid": self.agent_id,
            format.msgtype(): { "content": content },
            "safe": 0,
        });
        if let Some(interval) = self.duplicate_check_interval {
            body["enable_duplicate_check"] = json!(1);
            body["duplicate_check_interval"] = json!(interval.as_secs());
        }
        let body = serde_json::to_vec(&body).expect("serialising a JSON value to memory cannot fail");
        let mut url = self.send_url.clone();
        url.query_pairs_mut().append_pair("access_token", token.expose());
        let request =
            self.client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8").body(body);
        let reply = api::call(request).await?;
        api::check(&reply, "app message/send")?;
        let recipient_lists = [&reply.invaliduser, &reply.invalidparty, &reply.invalidtag, &reply.unlicenseduser];
        if recipient_lists.iter().any(|list| !list.is_empty()) {
            tracing::warn!(
                agent_id = self.agent_id,
                invaliduser = %reply.invaliduser,
                invalidparty = %reply.invalidparty,
                invalidtag = %reply.invalidtag,
                unlicenseduser = %reply.unlicenseduser,
                "WeCom delivered the app message, but some recipients are invalid; check to_user, to_party and to_tag"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::wecom::{WecomApp, WecomEmulator, WecomFault, WecomFaultTarget};

    const CORP: &str = "ww-unit-corp";
    const SECRET: &str = "unit-secret-value";

    async fn emulator() -> WecomEmulator {
        WecomEmulator::builder().app(WecomApp::new(CORP, SECRET, 1000002)).start().await.unwrap()
    }

    fn client(wecom: &WecomEmulator, tokens: Arc<TokenCache>) -> AppClient {
        let recipients = Recipients { to_user: "@all".into(), to_party: String::new(), to_tag: String::new() };
        AppClient::new(
            reqwest::Client::new(),
            &wecom.url(),
            tokens,
            1000002,
            recipients,
            None,
            metrics::Counter::noop(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_gettoken() {
        let wecom = emulator().await;
        let cache = Arc::new(TokenCache::new(&wecom.url(), CORP, &Secret::new(SECRET)).unwrap());
        let http = reqwest::Client::new();
        let calls = (0..16).map(|_| {
            let cache = Arc::clone(&cache);
            let http = http.clone();
            tokio::spawn(async move { cache.get(&http).await.map(|(token, _)| token) })
        });
        let tokens: Vec<AccessToken> =
            futures::future::join_all(calls).await.into_iter().map(|joined| joined.unwrap().unwrap()).collect();
        assert_eq!(wecom.control().gettoken_calls(), 1, "single flight: one refresh for 16 callers");
        assert!(tokens.windows(2).all(|pair| pair[0] == pair[1]));
        assert_eq!(format!("{:?}", tokens[0]), "***");

        cache.invalidate(&tokens[0]).await;
        cache.get(&http).await.unwrap();
        assert_eq!(wecom.control().gettoken_calls(), 2, "an invalidated token is fetched again");
    }

    #[tokio::test]
    async fn the_shared_cache_is_keyed_by_endpoint_corp_and_secret() {
        let first = TokenCache::shared("http://127.0.0.1:1", CORP, &Secret::new("shared-secret-a")).unwrap();
        let same = TokenCache::shared("http://127.0.0.1:1/", CORP, &Secret::new("shared-secret-a")).unwrap();
        let other_secret = TokenCache::shared("http://127.0.0.1:1", CORP, &Secret::new("shared-secret-b")).unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        assert!(!Arc::ptr_eq(&first, &other_secret));
        assert!(!format!("{first:?}").contains("shared-secret-a"));
    }

    #[tokio::test]
    async fn an_expired_token_is_refreshed_once_and_the_send_retried() {
        let wecom = emulator().await;
        let app = client(&wecom, Arc::new(TokenCache::new(&wecom.url(), CORP, &Secret::new(SECRET)).unwrap()));
        app.send(MessageFormat::Text, "first").await.unwrap();
        wecom.control().expire_tokens();
        app.send(MessageFormat::Text, "second").await.unwrap();
        assert_eq!(wecom.control().gettoken_calls(), 2);
        assert_eq!(wecom.control().messages().len(), 2);
    }

    #[tokio::test]
    async fn a_second_token_error_is_fatal() {
        let wecom = emulator().await;
        let app = client(&wecom, Arc::new(TokenCache::new(&wecom.url(), CORP, &Secret::new(SECRET)).unwrap()));
        wecom.control().fail_next(2, WecomFaultTarget::App, WecomFault::Errcode { errcode: 42001 }).unwrap();
        let error = app.send(MessageFormat::Text, "x").await.unwrap_err();
        assert!(matches!(error, SendError::Fatal { errcode: Some(42001), .. }), "{error:?}");
        assert_eq!(wecom.control().gettoken_calls(), 2, "exactly one refresh");
    }

    #[tokio::test]
    async fn a_bad_secret_is_fatal_without_the_secret_in_the_message() {
        let wecom = emulator().await;
        let app =
            client(&wecom, Arc::new(TokenCache::new(&wecom.url(), CORP, &Secret::new("wrong-secret-xyz")).unwrap()));
        let error = app.send(MessageFormat::Text, "x").await.unwrap_err();
        assert!(matches!(error, SendError::Fatal { errcode: Some(40001), .. }), "{error:?}");
        assert!(!error.to_string().contains("wrong-secret-xyz"), "{error}");
        assert!(error.to_string().contains("corp_secret"), "{error}");
    }
}
