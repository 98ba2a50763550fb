//! The WeCom emulator's app path over real HTTP: gettoken, token caching,
//! expiry and invalidation, message/send validation, recipients, duplicate
//! check, per-member rate limits and errcode injection.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::wecom::{WecomApp, WecomEmulator, WecomFault, WecomFaultTarget, WecomMessage, WecomMode, WecomRateLimits};

const CORP: &str = "ww0123456789abcdef";
const SECRET: &str = "app-secret-for-alerts";
const OTHER_CORP: &str = "ww_other_corp";
const OTHER_SECRET: &str = "secret-of-another-corp";
const AGENT_ID: i64 = 1000002;

async fn emulator() -> WecomEmulator {
    WecomEmulator::builder()
        .app(
            WecomApp::new(CORP, SECRET, AGENT_ID).users(["zhangsan", "lisi", "wangwu"]).parties(["1", "2"]).tags(["7"]),
        )
        .app(WecomApp::new(OTHER_CORP, OTHER_SECRET, 5))
        .start()
        .await
        .expect("the emulator starts")
}

async fn gettoken(wecom: &WecomEmulator, corp: &str, secret: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{}/cgi-bin/gettoken", wecom.url()))
        .query(&[("corpid", corp), ("corpsecret", secret)])
        .send()
        .await
        .expect("the emulator answers");
    assert_eq!(response.status(), 200, "WeCom answers errors with HTTP 200");
    response.json().await.unwrap()
}

async fn token(wecom: &WecomEmulator) -> String {
    let answer = gettoken(wecom, CORP, SECRET).await;
    assert_eq!(answer["errcode"], json!(0), "{answer}");
    answer["access_token"].as_str().unwrap().to_string()
}

async fn send(wecom: &WecomEmulator, token: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/cgi-bin/message/send", wecom.url()))
        .query(&[("access_token", token)])
        .json(&body)
        .send()
        .await
        .expect("the emulator answers");
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn text_to(users: &str, content: &str) -> Value {
    json!({"touser": users, "msgtype": "text", "agentid": AGENT_ID, "text": {"content": content}})
}

fn assert_errcode(answer: &Value, errcode: i64) {
    assert_eq!(answer["errcode"], json!(errcode), "{answer}");
    let errmsg = answer["errmsg"].as_str().unwrap();
    if errcode == 0 {
        assert_eq!(errmsg, "ok");
    } else {
        assert!(errmsg.contains(", hint: ["), "{errmsg}");
        assert!(errmsg.ends_with(&format!("query?e={errcode}")), "{errmsg}");
    }
}

#[tokio::test]
async fn gettoken_checks_corp_and_secret_and_caches() {
    let wecom = emulator().await;
    assert_errcode(&gettoken(&wecom, "unknown-corp", SECRET).await, 40013);
    assert_errcode(&gettoken(&wecom, CORP, "wrong").await, 40001);
    assert_errcode(&gettoken(&wecom, CORP, OTHER_SECRET).await, 40091);
    assert_errcode(&gettoken(&wecom, "", SECRET).await, 41002);
    assert_errcode(&gettoken(&wecom, CORP, "").await, 41004);

    let first = gettoken(&wecom, CORP, SECRET).await;
    assert_errcode(&first, 0);
    assert_eq!(first["expires_in"], json!(7200));
    assert!(first["access_token"].as_str().unwrap().len() >= 64);
    let second = gettoken(&wecom, CORP, SECRET).await;
    assert_eq!(first["access_token"], second["access_token"], "a live token is handed out again");
    assert_ne!(gettoken(&wecom, OTHER_CORP, OTHER_SECRET).await["access_token"], first["access_token"]);
    let stats = wecom.control().stats();
    assert_eq!((stats.gettoken_calls, stats.tokens_issued), (8, 2));
    assert_eq!(wecom.control().gettoken_calls(), 8);
}

#[tokio::test]
async fn token_checks_come_first() {
    let wecom = emulator().await;
    let body = text_to("zhangsan", "hi");
    let no_token = reqwest::Client::new()
        .post(format!("{}/cgi-bin/message/send", wecom.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_errcode(&no_token, 41001);
    assert_errcode(&send(&wecom, "made-up-token", body.clone()).await, 40014);

    let token = token(&wecom).await;
    assert_errcode(&send(&wecom, &token, body.clone()).await, 0);
    assert_eq!(wecom.control().expire_tokens(), 1);
    assert_errcode(&send(&wecom, &token, body.clone()).await, 42001);

    let renewed = self::token(&wecom).await;
    assert_ne!(renewed, token, "an expired token is replaced");
    assert_errcode(&send(&wecom, &renewed, body.clone()).await, 0);
    wecom.control().invalidate_tokens();
    assert_errcode(&send(&wecom, &renewed, body.clone()).await, 40014);
    let again = self::token(&wecom).await;
    assert_errcode(&send(&wecom, &again, body).await, 0);
}

#[tokio::test]
async fn short_token_lifetimes_expire_on_their_own() {
    let wecom = WecomEmulator::builder()
        .app(WecomApp::new(CORP, SECRET, AGENT_ID))
        .token_lifetime(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let answer = gettoken(&wecom, CORP, SECRET).await;
    assert_eq!(answer["expires_in"], json!(1));
    let token = answer["access_token"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = send(&wecom, &token, text_to("zhangsan", "tick")).await;
        if answer["errcode"] == json!(42001) {
            break;
        }
        assert_errcode(&answer, 0);
        assert!(std::time::Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn agentid_recipients_and_partial_invalid_users() {
    let wecom = emulator().await;
    let token = token(&wecom).await;
    let wrong_agent = json!({"touser": "zhangsan", "msgtype": "text", "agentid": 9, "text": {"content": "x"}});
    assert_errcode(&send(&wecom, &token, wrong_agent).await, 40056);
    let as_string =
        json!({"touser": "zhangsan", "msgtype": "text", "agentid": AGENT_ID.to_string(), "text": {"content": "x"}});
    assert_errcode(&send(&wecom, &token, as_string).await, 0);

    let nobody = json!({"touser": "", "toparty": "", "msgtype": "text", "agentid": AGENT_ID, "text": {"content": "x"}});
    assert_errcode(&send(&wecom, &token, nobody).await, 82001);
    assert_errcode(&send(&wecom, &token, text_to("ghost|phantom", "x")).await, 81013);

    let partial = send(&wecom, &token, text_to("ZhangSan|Ghost|lisi", "partial")).await;
    assert_errcode(&partial, 0);
    assert_eq!(partial["invaliduser"], json!("ghost"));
    assert_eq!(partial["invalidparty"], json!(""));
    assert!(partial["msgid"].is_string());

    let parties =
        json!({"toparty": "1|9", "totag": "7|8", "msgtype": "text", "agentid": AGENT_ID, "text": {"content": "x"}});
    let answer = send(&wecom, &token, parties).await;
    assert_eq!((answer["invalidparty"].as_str(), answer["invalidtag"].as_str()), (Some("9"), Some("8")));

    let everyone = send(&wecom, &token, text_to("@all", "broadcast")).await;
    assert_errcode(&everyone, 0);

    let messages = wecom.control().messages();
    let partial_record = messages.iter().find(|message| message.content.as_deref() == Some("partial")).unwrap();
    assert_eq!(partial_record.delivered_to, vec!["zhangsan", "lisi"]);
    assert_eq!(partial_record.invaliduser, vec!["ghost"]);
    assert_eq!(partial_record.mode, WecomMode::App);
    assert_eq!(partial_record.agent_id, Some(AGENT_ID));
    assert_eq!(messages.last().unwrap().delivered_to, vec!["@all"]);
}

#[tokio::test]
async fn content_validation_counts_bytes() {
    let wecom = emulator().await;
    let token = token(&wecom).await;
    assert_errcode(&send(&wecom, &token, text_to("lisi", "")).await, 44004);
    let chinese = "告".repeat(683); // 683 characters, 2049 bytes
    assert_errcode(&send(&wecom, &token, text_to("lisi", &chinese)).await, 45002);
    assert_errcode(&send(&wecom, &token, text_to("lisi", &"告".repeat(682))).await, 0);

    let markdown = |content: String| json!({"touser": "lisi", "msgtype": "markdown", "agentid": AGENT_ID, "markdown": {"content": content}});
    let over = send(&wecom, &token, markdown("a".repeat(2049))).await;
    assert_errcode(&over, 40058);
    assert!(over["errmsg"].as_str().unwrap().starts_with("markdown.content exceed max length 2048"));
    assert_errcode(&send(&wecom, &token, markdown("**ok**".to_string())).await, 0);

    let unknown = json!({"touser": "lisi", "msgtype": "hologram", "agentid": AGENT_ID});
    assert_errcode(&send(&wecom, &token, unknown).await, 40008);
    let broken = reqwest::Client::new()
        .post(format!("{}/cgi-bin/message/send?access_token={token}", wecom.url()))
        .body("{not json")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_errcode(&broken, 47001);
    let stats = wecom.control().stats();
    assert_eq!(stats.app_accepted, 2);
    assert_eq!(stats.rejected_by_errcode.get(&44004), Some(&1));
}

#[tokio::test]
async fn duplicate_check_suppresses_identical_bodies() {
    let wecom = emulator().await;
    let token = token(&wecom).await;
    let mut body = text_to("lisi", "same alert");
    body["enable_duplicate_check"] = json!(1);
    body["duplicate_check_interval"] = json!(600);
    assert_errcode(&send(&wecom, &token, body.clone()).await, 0);
    assert_errcode(&send(&wecom, &token, body).await, 0);
    let messages = wecom.control().messages();
    assert_eq!((messages[0].duplicate, messages[1].duplicate), (false, true));
    assert!(messages[1].delivered_to.is_empty());
    assert_eq!(wecom.control().stats().duplicates_suppressed, 1);
}

#[tokio::test]
async fn member_rate_limits_drop_silently() {
    let wecom = emulator().await;
    wecom.control().set_rate_limits(WecomRateLimits { user_minute_limit: 2, ..WecomRateLimits::default() }).unwrap();
    let token = token(&wecom).await;
    for _ in 0..2 {
        assert_errcode(&send(&wecom, &token, text_to("lisi", "x")).await, 0);
    }
    let third = send(&wecom, &token, text_to("lisi|wangwu", "x")).await;
    assert_errcode(&third, 0);
    let last: WecomMessage = wecom.control().messages().pop().unwrap();
    assert_eq!(last.delivered_to, vec!["wangwu"]);
    assert_eq!(last.rate_limited, vec!["lisi"]);
    assert_eq!(wecom.control().stats().recipients_rate_limited, 1);
}

#[tokio::test]
async fn injected_errcodes_follow_the_token_check() {
    let wecom = emulator().await;
    let token = token(&wecom).await;
    let control = wecom.control();
    control.fail_next(1, WecomFaultTarget::App, WecomFault::Errcode { errcode: 45009 }).unwrap();
    control.fail_next(1, WecomFaultTarget::App, WecomFault::Errcode { errcode: -1 }).unwrap();
    assert_errcode(&send(&wecom, "made-up", text_to("lisi", "x")).await, 40014);
    assert_errcode(&send(&wecom, &token, text_to("lisi", "x")).await, 45009);
    let busy = send(&wecom, &token, text_to("lisi", "x")).await;
    assert_errcode(&busy, -1);
    assert!(busy["errmsg"].as_str().unwrap().starts_with("system busy"));
    assert_errcode(&send(&wecom, &token, text_to("lisi", "x")).await, 0);
    assert_eq!(control.messages().len(), 1);

    control.fail_next(1, WecomFaultTarget::GetToken, WecomFault::Errcode { errcode: -1 }).unwrap();
    assert_errcode(&gettoken(&wecom, CORP, SECRET).await, -1);
    assert!(control.fail_next(1, WecomFaultTarget::Any, WecomFault::Errcode { errcode: 0 }).is_err());

    control.fail_next(1, WecomFaultTarget::App, WecomFault::HttpStatus { status: 502 }).unwrap();
    let gateway = reqwest::Client::new()
        .post(format!("{}/cgi-bin/message/send?access_token={token}", wecom.url()))
        .json(&text_to("lisi", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(gateway.status(), 502);
    control.fail_next(1, WecomFaultTarget::App, WecomFault::DropConnection).unwrap();
    let dropped = reqwest::Client::new()
        .post(format!("{}/cgi-bin/message/send?access_token={token}", wecom.url()))
        .json(&text_to("lisi", "x"))
        .send()
        .await;
    assert!(dropped.is_err());
    assert_eq!(control.stats().dropped_connections, 1);
    assert_eq!(control.messages().len(), 1);
}
