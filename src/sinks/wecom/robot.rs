//! The group robot webhook client: `POST {endpoint}/cgi-bin/webhook/send?key=KEY`.
//!
//! Owns the request body (`{"msgtype":"text","text":{"content",
//! "mentioned_list","mentioned_mobile_list"}}` or `{"msgtype":"markdown",
//! "markdown":{"content"}}`) and one send attempt. Content arrives already
//! split to the robot limits (text 2048 bytes, markdown 4096 bytes).
//!
//! Never logs or reports the webhook URL unredacted: the key in it is the
//! whole credential (anyone holding the URL can post to the group).

use serde_json::json;

use super::api::{self, SendError};
use super::message::MessageFormat;
use crate::sinks::redact::{redact_url, Secret};

/// Robot `text` content limit in UTF-8 bytes.
pub const ROBOT_TEXT_LIMIT_BYTES: usize = 2048;
/// Robot `markdown` content limit in UTF-8 bytes.
pub const ROBOT_MARKDOWN_LIMIT_BYTES: usize = 4096;

pub struct RobotClient {
    client: reqwest::Client,
    url: reqwest::Url,
    redacted_url: String,
    mentioned_list: Vec<String>,
    mentioned_mobile_list: Vec<String>,
}

impl std::fmt::Debug for RobotClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RobotClient").field("url", &self.redacted_url).finish_non_exhaustive()
    }
}

impl RobotClient {
    /// `endpoint` is validated by the sink config (`http(s)://host[:port][/prefix]`).
    pub fn new(
        client: reqwest::Client,
        endpoint: &str,
        key: &Secret,
        mentioned_list: Vec<String>,
        mentioned_mobile_list: Vec<String>,
    ) -> Result<RobotClient, String> {
        let mut url = reqwest::Url::parse(&format!("{}/cgi-bin/webhook/send", endpoint.trim_end_matches('/')))
            .map_err(|error| format!("\"endpoint\" is not a URL: {error}"))?;
        url.query_pairs_mut().append_pair("key", key.expose());
        let redacted_url = redact_url(url.as_str());
        Ok(RobotClient { client, url, redacted_url, mentioned_list, mentioned_mobile_list })
    }

    pub fn limit_bytes(format: MessageFormat) -> usize {
        match format {
            MessageFormat::Text => ROBOT_TEXT_LIMIT_BYTES,
            MessageFormat::Markdown => ROBOT_MARKDOWN_LIMIT_BYTES,
        }
    }

    /// The webhook URL with the key masked, for logs.
    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// One attempt to post `content`.
    pub async fn send(&self, format: MessageFormat, content: &str) -> Result<(), SendError> {
        let body = match format {
            MessageFormat::Text => {
                let mut text = json!({ "content": content });
                if !self.mentioned_list.is_empty() {
                    text["mentioned_list"] = json!(self.mentioned_list);
                }
                if !self.mentioned_mobile_list.is_empty() {
                    text["mentioned_mobile_list"] = json!(self.mentioned_mobile_list);
                }
                json!({ "msgtype": "text", "text": text })
            }
            MessageFormat::Markdown => json!({ "msgtype": "markdown", "markdown": { "content": content } }),
        };
        // serde_json writes non-ASCII as raw UTF-8, never as \u escapes, which
        // WeCom may refuse (40033).
        let body = serde_json::to_vec(&body).expect("serialising a JSON value to memory cannot fail");
        let request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body);
        let reply = api::call(request).await?;
        api::check(&reply, "robot webhook")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::wecom::{WecomEmulator, WecomRobot};

    const KEY: &str = "0f6b2c1e-robot-unit-key";

    #[tokio::test]
    async fn sends_text_with_mentions_and_markdown() {
        let wecom = WecomEmulator::builder().robot(WecomRobot::new(KEY)).start().await.unwrap();
        let robot =
            RobotClient::new(reqwest::Client::new(), &wecom.url(), &Secret::new(KEY), vec!["@all".into()], vec![])
                .unwrap();
        robot.send(MessageFormat::Text, "磁盘告警").await.unwrap();
        robot.send(MessageFormat::Markdown, "**bold**").await.unwrap();
        let messages = wecom.control().messages();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].content.as_deref(), Some("磁盘告警"));
        assert_eq!(messages[0].payload["mentioned_list"][0], "@all");
        assert_eq!(messages[1].msgtype, "markdown");
        assert!(!format!("{robot:?}").contains(KEY));
        assert!(robot.redacted_url().ends_with("key=***"), "{}", robot.redacted_url());
    }

    #[tokio::test]
    async fn an_unknown_key_is_fatal_and_the_error_hides_the_key() {
        let wecom = WecomEmulator::builder().robot(WecomRobot::new(KEY)).start().await.unwrap();
        let robot =
            RobotClient::new(reqwest::Client::new(), &wecom.url(), &Secret::new("wrong-key-123"), vec![], vec![])
                .unwrap();
        let error = robot.send(MessageFormat::Text, "x").await.unwrap_err();
        assert!(matches!(error, SendError::Fatal { errcode: Some(93000), .. }), "{error:?}");
        assert!(!error.to_string().contains("wrong-key-123"), "{error}");
    }
}
