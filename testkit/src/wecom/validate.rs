//! Validation of WeCom message bodies: the robot webhook's message types,
//! the app API's recipients and message types (reference §1, §2.2).
//!
//! Guarantees: lengths are UTF-8 **bytes**, never characters. Over-long
//! robot `text` and `markdown`/`markdown_v2` answer 40058 with an errmsg
//! naming the field (`text.content exceed max length 2048`); over-long app
//! `text` answers 45002 (the global error list) and app `markdown` 40058.
//! News titles and descriptions are truncated silently at a character
//! boundary, as WeCom does. Pure: no IO, no state.
//!
//! Choices where the reference is unverified: a robot image must decode from
//! base64 to at most 2 MiB of JPG or PNG with a 32-hex-digit `md5` (the md5
//! itself is not recomputed); `file`/`voice` need a non-empty `media_id`
//! (there is no upload endpoint to check it against); app `textcard` limits
//! are title 128 bytes, description 512 bytes, url 2048 bytes, btntxt 4
//! characters.

use base64::Engine;
use serde_json::{Map, Value};

use super::codes::{
    CONTENT_TOO_LARGE, EMPTY_CONTENT, INVALID_MSGTYPE, INVALID_PARAMETER, NO_RECIPIENTS, TOO_MANY_PARTIES,
    TOO_MANY_TAGS, TOO_MANY_USERS,
};

pub(crate) const TEXT_MAX_BYTES: usize = 2048;
pub(crate) const ROBOT_MARKDOWN_MAX_BYTES: usize = 4096;
pub(crate) const APP_MARKDOWN_MAX_BYTES: usize = 2048;
const IMAGE_MAX_BYTES: usize = 2 * 1024 * 1024;
const NEWS_MAX_ARTICLES: usize = 8;
const NEWS_TITLE_MAX_BYTES: usize = 128;
const NEWS_DESCRIPTION_MAX_BYTES: usize = 512;
const TEXTCARD_TITLE_MAX_BYTES: usize = 128;
const TEXTCARD_DESCRIPTION_MAX_BYTES: usize = 512;
const TEXTCARD_URL_MAX_BYTES: usize = 2048;
const TEXTCARD_BUTTON_MAX_CHARACTERS: usize = 4;
const MAX_USERS: usize = 1000;
const MAX_PARTIES: usize = 100;
const MAX_TAGS: usize = 100;

const APP_MEDIA_TYPES: [&str; 8] =
    ["image", "voice", "video", "file", "news", "mpnews", "miniprogram_notice", "template_card"];

/// Why a message is refused: the errcode and, for 40058, the field detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub errcode: i64,
    pub detail: Option<String>,
}

impl Rejection {
    fn code(errcode: i64) -> Rejection {
        Rejection { errcode, detail: None }
    }

    fn parameter(detail: impl Into<String>) -> Rejection {
        Rejection { errcode: INVALID_PARAMETER, detail: Some(detail.into()) }
    }
}

/// A message that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValidMessage {
    pub msgtype: String,
    /// The text of `text`, `markdown` and `markdown_v2` messages.
    pub content: Option<String>,
    /// The type-specific object as it will be delivered (news truncated).
    pub payload: Value,
}

/// Validates a robot webhook body.
pub(crate) fn validate_robot_message(body: &Map<String, Value>) -> Result<ValidMessage, Rejection> {
    let msgtype = msgtype_of(body)?;
    let payload = body.get(msgtype.as_str()).cloned().unwrap_or(Value::Null);
    match msgtype.as_str() {
        "text" => {
            let content = text_content(&payload, "text", TEXT_MAX_BYTES, INVALID_PARAMETER)?;
            for list in ["mentioned_list", "mentioned_mobile_list"] {
                if let Some(value) = payload.get(list) {
                    let strings = value.as_array().is_some_and(|items| items.iter().all(Value::is_string));
                    if !strings {
                        return Err(Rejection::parameter(format!("text.{list} must be an array of strings")));
                    }
                }
            }
            Ok(ValidMessage { msgtype, content: Some(content), payload })
        }
        "markdown" | "markdown_v2" => {
            let content = text_content(&payload, &msgtype, ROBOT_MARKDOWN_MAX_BYTES, INVALID_PARAMETER)?;
            Ok(ValidMessage { msgtype, content: Some(content), payload })
        }
        "image" => {
            validate_image(&payload)?;
            Ok(ValidMessage { msgtype, content: None, payload })
        }
        "news" => {
            let payload = truncated_news(&payload)?;
            Ok(ValidMessage { msgtype, content: None, payload })
        }
        "file" | "voice" => {
            required_string(&payload, &msgtype, "media_id")?;
            Ok(ValidMessage { msgtype, content: None, payload })
        }
        "template_card" => {
            let card_type = required_string(&payload, "template_card", "card_type")?;
            if card_type != "text_notice" && card_type != "news_notice" {
                return Err(Rejection::parameter("template_card.card_type must be text_notice or news_notice"));
            }
            if card_type == "text_notice" && payload.get("card_action").is_none() {
                return Err(Rejection::parameter("template_card.card_action missing"));
            }
            Ok(ValidMessage { msgtype, content: None, payload })
        }
        _ => Err(Rejection::code(INVALID_MSGTYPE)),
    }
}

/// Validates the type-specific part of an app `message/send` body.
pub(crate) fn validate_app_message(body: &Map<String, Value>) -> Result<ValidMessage, Rejection> {
    let msgtype = msgtype_of(body)?;
    let payload = body.get(msgtype.as_str()).cloned().unwrap_or(Value::Null);
    match msgtype.as_str() {
        "text" => {
            let content = text_content(&payload, "text", TEXT_MAX_BYTES, CONTENT_TOO_LARGE)?;
            Ok(ValidMessage { msgtype, content: Some(content), payload })
        }
        "markdown" => {
            let content = text_content(&payload, "markdown", APP_MARKDOWN_MAX_BYTES, INVALID_PARAMETER)?;
            Ok(ValidMessage { msgtype, content: Some(content), payload })
        }
        "textcard" => {
            validate_textcard(&payload)?;
            Ok(ValidMessage { msgtype, content: None, payload })
        }
        known if APP_MEDIA_TYPES.contains(&known) => {
            if !payload.is_object() {
                return Err(Rejection::parameter(format!("{msgtype} missing")));
            }
            Ok(ValidMessage { msgtype, content: None, payload })
        }
        _ => Err(Rejection::code(INVALID_MSGTYPE)),
    }
}

fn msgtype_of(body: &Map<String, Value>) -> Result<String, Rejection> {
    match body.get("msgtype") {
        Some(Value::String(msgtype)) if !msgtype.is_empty() => Ok(msgtype.clone()),
        _ => Err(Rejection::code(INVALID_MSGTYPE)),
    }
}

/// `<msgtype>.content`: present and non-empty (else 44004), at most
/// `max_bytes` (else `over_limit_code`, with the field named for 40058).
fn text_content(payload: &Value, msgtype: &str, max_bytes: usize, over_limit_code: i64) -> Result<String, Rejection> {
    let content = match payload.get("content") {
        None | Some(Value::Null) => return Err(Rejection::code(EMPTY_CONTENT)),
        Some(Value::String(content)) => content,
        Some(_) => return Err(Rejection::parameter(format!("{msgtype}.content must be a string"))),
    };
    if content.is_empty() {
        return Err(Rejection::code(EMPTY_CONTENT));
    }
    if content.len() > max_bytes {
        let detail = format!("{msgtype}.content exceed max length {max_bytes}");
        return Err(Rejection { errcode: over_limit_code, detail: Some(detail) });
    }
    Ok(content.clone())
}

fn required_string<'a>(payload: &'a Value, msgtype: &str, field: &str) -> Result<&'a str, Rejection> {
    match payload.get(field) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        _ => Err(Rejection::parameter(format!("{msgtype}.{field} missing"))),
    }
}

fn validate_image(payload: &Value) -> Result<(), Rejection> {
    let encoded = required_string(payload, "image", "base64")?;
    let md5 = required_string(payload, "image", "md5")?;
    let image = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| Rejection::parameter("image.base64 is not valid base64"))?;
    if image.len() > IMAGE_MAX_BYTES {
        return Err(Rejection::parameter(format!("image.base64 exceed max size {IMAGE_MAX_BYTES}")));
    }
    let is_jpeg = image.starts_with(&[0xFF, 0xD8, 0xFF]);
    let is_png = image.starts_with(&[0x89, b'P', b'N', b'G']);
    if !is_jpeg && !is_png {
        return Err(Rejection::parameter("image.base64 must hold a JPG or PNG image"));
    }
    if md5.len() != 32 || !md5.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(Rejection::parameter("image.md5 must be 32 hex digits"));
    }
    Ok(())
}

fn truncated_news(payload: &Value) -> Result<Value, Rejection> {
    let articles = match payload.get("articles") {
        Some(Value::Array(articles)) if (1..=NEWS_MAX_ARTICLES).contains(&articles.len()) => articles,
        _ => return Err(Rejection::parameter(format!("news.articles must hold 1 to {NEWS_MAX_ARTICLES} articles"))),
    };
    let mut truncated = Vec::with_capacity(articles.len());
    for article in articles {
        let title = required_string(article, "news.articles[]", "title")?;
        required_string(article, "news.articles[]", "url")?;
        let mut article = article.clone();
        article["title"] = Value::from(truncate_utf8(title, NEWS_TITLE_MAX_BYTES));
        if let Some(Value::String(description)) = article.get("description") {
            let description = truncate_utf8(description, NEWS_DESCRIPTION_MAX_BYTES).to_string();
            article["description"] = Value::from(description);
        }
        truncated.push(article);
    }
    let mut payload = payload.clone();
    payload["articles"] = Value::Array(truncated);
    Ok(payload)
}

fn validate_textcard(payload: &Value) -> Result<(), Rejection> {
    let title = required_string(payload, "textcard", "title")?;
    let description = required_string(payload, "textcard", "description")?;
    let url = required_string(payload, "textcard", "url")?;
    let limits = [
        ("title", title, TEXTCARD_TITLE_MAX_BYTES),
        ("description", description, TEXTCARD_DESCRIPTION_MAX_BYTES),
        ("url", url, TEXTCARD_URL_MAX_BYTES),
    ];
    for (field, value, max_bytes) in limits {
        if value.len() > max_bytes {
            return Err(Rejection::parameter(format!("textcard.{field} exceed max length {max_bytes}")));
        }
    }
    if let Some(button) = payload.get("btntxt").and_then(Value::as_str) {
        if button.chars().count() > TEXTCARD_BUTTON_MAX_CHARACTERS {
            return Err(Rejection::parameter(format!(
                "textcard.btntxt exceed max length {TEXTCARD_BUTTON_MAX_CHARACTERS}"
            )));
        }
    }
    Ok(())
}

/// The longest prefix of `text` within `max_bytes` that ends on a character boundary.
pub(crate) fn truncate_utf8(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The recipients of an app message, split on `|`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Recipients {
    pub users: Vec<String>,
    pub parties: Vec<String>,
    pub tags: Vec<String>,
    /// `touser` was `@all`; parties and tags are then ignored.
    pub everyone: bool,
}

pub(crate) fn parse_recipients(body: &Map<String, Value>) -> Result<Recipients, Rejection> {
    let users = split_list(body, "touser")?;
    let everyone = users.iter().any(|user| user == "@all");
    let (parties, tags) =
        if everyone { (Vec::new(), Vec::new()) } else { (split_list(body, "toparty")?, split_list(body, "totag")?) };
    if users.is_empty() && parties.is_empty() && tags.is_empty() {
        return Err(Rejection::code(NO_RECIPIENTS));
    }
    if users.len() > MAX_USERS {
        return Err(Rejection::code(TOO_MANY_USERS));
    }
    if parties.len() > MAX_PARTIES {
        return Err(Rejection::code(TOO_MANY_PARTIES));
    }
    if tags.len() > MAX_TAGS {
        return Err(Rejection::code(TOO_MANY_TAGS));
    }
    Ok(Recipients { users: if everyone { vec!["@all".to_string()] } else { users }, parties, tags, everyone })
}

fn split_list(body: &Map<String, Value>, field: &str) -> Result<Vec<String>, Rejection> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(joined)) => {
            Ok(joined.split('|').map(str::trim).filter(|item| !item.is_empty()).map(str::to_string).collect())
        }
        Some(_) => Err(Rejection::parameter(format!("{field} must be a string joined by |"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn robot(value: Value) -> Result<ValidMessage, Rejection> {
        validate_robot_message(&object(value))
    }

    fn app(value: Value) -> Result<ValidMessage, Rejection> {
        validate_app_message(&object(value))
    }

    #[test]
    fn robot_text_limits_count_bytes_not_characters() {
        let fits = "中".repeat(682); // 2046 bytes
        assert!(robot(json!({"msgtype":"text","text":{"content": fits}})).is_ok());
        let too_long = "中".repeat(683); // 2049 bytes, 683 characters
        let rejection = robot(json!({"msgtype":"text","text":{"content": too_long}})).unwrap_err();
        assert_eq!(rejection.errcode, 40058);
        assert_eq!(rejection.detail.as_deref(), Some("text.content exceed max length 2048"));
        assert_eq!(robot(json!({"msgtype":"text","text":{"content":""}})).unwrap_err().errcode, 44004);
        assert_eq!(robot(json!({"msgtype":"text","text":{}})).unwrap_err().errcode, 44004);
        assert_eq!(robot(json!({"msgtype":"text"})).unwrap_err().errcode, 44004);
        let bad_mentions = json!({"msgtype":"text","text":{"content":"x","mentioned_list":"all"}});
        assert_eq!(robot(bad_mentions).unwrap_err().errcode, 40058);
    }

    #[test]
    fn robot_markdown_limits_and_types() {
        let exactly = "a".repeat(4096);
        assert!(robot(json!({"msgtype":"markdown","markdown":{"content": exactly}})).is_ok());
        let over = "a".repeat(4097);
        let rejection = robot(json!({"msgtype":"markdown_v2","markdown_v2":{"content": over}})).unwrap_err();
        assert_eq!(rejection.detail.as_deref(), Some("markdown_v2.content exceed max length 4096"));
        assert_eq!(robot(json!({"msgtype":"sticker"})).unwrap_err().errcode, 40008);
        assert_eq!(robot(json!({"text":{"content":"x"}})).unwrap_err().errcode, 40008);
        assert_eq!(robot(json!({"msgtype":"file","file":{}})).unwrap_err().errcode, 40058);
        assert!(robot(json!({"msgtype":"voice","voice":{"media_id":"m"}})).is_ok());
        assert!(robot(json!({"msgtype":"template_card","template_card":{"card_type":"news_notice"}})).is_ok());
        assert_eq!(
            robot(json!({"msgtype":"template_card","template_card":{"card_type":"text_notice"}})).unwrap_err().errcode,
            40058
        );
    }

    #[test]
    fn robot_images_and_news() {
        let png = base64::engine::general_purpose::STANDARD.encode([0x89, b'P', b'N', b'G', 0, 0]);
        let md5 = "0123456789abcdef0123456789abcdef";
        assert!(robot(json!({"msgtype":"image","image":{"base64": png, "md5": md5}})).is_ok());
        let text = base64::engine::general_purpose::STANDARD.encode("hello");
        assert_eq!(robot(json!({"msgtype":"image","image":{"base64": text, "md5": md5}})).unwrap_err().errcode, 40058);
        assert_eq!(robot(json!({"msgtype":"image","image":{"base64": png, "md5": "x"}})).unwrap_err().errcode, 40058);

        let long_title = "标".repeat(50); // 150 bytes
        let news =
            robot(json!({"msgtype":"news","news":{"articles":[{"title": long_title, "url":"https://e"}]}})).unwrap();
        let title = news.payload["articles"][0]["title"].as_str().unwrap();
        assert_eq!(title.len(), 126, "cut at the last whole character within 128 bytes");
        assert_eq!(robot(json!({"msgtype":"news","news":{"articles":[]}})).unwrap_err().errcode, 40058);
        let nine: Vec<Value> = (0..9).map(|_| json!({"title":"t","url":"u"})).collect();
        assert_eq!(robot(json!({"msgtype":"news","news":{"articles": nine}})).unwrap_err().errcode, 40058);
        assert_eq!(robot(json!({"msgtype":"news","news":{"articles":[{"title":"t"}]}})).unwrap_err().errcode, 40058);
    }

    #[test]
    fn app_limits() {
        let rejection = app(json!({"msgtype":"text","text":{"content":"a".repeat(2049)}})).unwrap_err();
        assert_eq!(rejection.errcode, 45002);
        let rejection = app(json!({"msgtype":"markdown","markdown":{"content":"a".repeat(2049)}})).unwrap_err();
        assert_eq!(rejection.errcode, 40058);
        assert!(app(json!({"msgtype":"markdown","markdown":{"content":"a".repeat(2048)}})).is_ok());
        assert_eq!(app(json!({"msgtype":"markdown","markdown":{"content":""}})).unwrap_err().errcode, 44004);
        assert_eq!(app(json!({"msgtype":"markdown_v2","markdown_v2":{"content":"x"}})).unwrap_err().errcode, 40008);
        let card =
            json!({"msgtype":"textcard","textcard":{"title":"t","description":"d","url":"u","btntxt":"更多详情呀"}});
        assert_eq!(app(card).unwrap_err().detail.as_deref(), Some("textcard.btntxt exceed max length 4"));
        assert!(app(json!({"msgtype":"textcard","textcard":{"title":"t","description":"d","url":"u"}})).is_ok());
        assert_eq!(app(json!({"msgtype":"image"})).unwrap_err().errcode, 40058);
    }

    #[test]
    fn recipients() {
        let parsed = parse_recipients(&object(json!({"touser":"a| b ||c","toparty":"1","totag":""}))).unwrap();
        assert_eq!(parsed.users, vec!["a", "b", "c"]);
        assert_eq!(parsed.parties, vec!["1"]);
        assert!(parsed.tags.is_empty());
        let everyone = parse_recipients(&object(json!({"touser":"@all","toparty":"1"}))).unwrap();
        assert!(everyone.everyone && everyone.parties.is_empty());
        assert_eq!(parse_recipients(&object(json!({"touser":""}))).unwrap_err().errcode, 82001);
        assert_eq!(parse_recipients(&object(json!({}))).unwrap_err().errcode, 82001);
        let parties = (0..101).map(|party| party.to_string()).collect::<Vec<_>>().join("|");
        assert_eq!(parse_recipients(&object(json!({"toparty": parties}))).unwrap_err().errcode, 82002);
        assert_eq!(parse_recipients(&object(json!({"touser": 5}))).unwrap_err().errcode, 40058);
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_utf8("abc", 5), "abc");
        assert_eq!(truncate_utf8("中文", 4), "中");
        assert_eq!(truncate_utf8("中文", 6), "中文");
    }
}
