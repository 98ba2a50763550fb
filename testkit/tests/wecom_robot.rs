//! The WeCom emulator's group robot webhook over real HTTP: keys, robot
//! states, message types and byte limits, the sliding 20/min window, the
//! `/_testkit/` control endpoints and the `pipe-testkit wecom` command.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::wecom::{RobotState, WecomEmulator, WecomMessage, WecomMode, WecomRobot};

const KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";
const OTHER_KEY: &str = "11111111-2222-3333-4444-555555555555";

async fn emulator() -> WecomEmulator {
    WecomEmulator::builder()
        .robot(WecomRobot::new(KEY).name("ops"))
        .robot(WecomRobot::new(OTHER_KEY).name("dev"))
        .start()
        .await
        .expect("the emulator starts")
}

async fn post(wecom: &WecomEmulator, key: Option<&str>, body: impl Into<reqwest::Body>) -> Value {
    let mut url = format!("{}/cgi-bin/webhook/send", wecom.url());
    if let Some(key) = key {
        url = format!("{url}?key={key}");
    }
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the emulator answers");
    assert_eq!(response.status(), 200, "WeCom answers errors with HTTP 200");
    response.json().await.unwrap()
}

async fn robot_send(wecom: &WecomEmulator, key: &str, body: Value) -> Value {
    post(wecom, Some(key), body.to_string()).await
}

fn text(content: &str) -> Value {
    json!({"msgtype": "text", "text": {"content": content, "mentioned_list": ["@all"]}})
}

fn markdown(content: String) -> Value {
    json!({"msgtype": "markdown", "markdown": {"content": content}})
}

fn errcode(answer: &Value) -> i64 {
    answer["errcode"].as_i64().unwrap_or_else(|| panic!("no errcode in {answer}"))
}

#[tokio::test]
async fn accepted_messages_are_recorded_with_their_robot() {
    let wecom = emulator().await;
    let answer = robot_send(&wecom, KEY, text("disk full on web-1")).await;
    assert_eq!(answer, json!({"errcode": 0, "errmsg": "ok"}));
    robot_send(&wecom, OTHER_KEY, markdown("# title\n<font color=\"warning\">hot</font>".into())).await;
    let messages = wecom.control().messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].mode, WecomMode::Robot);
    assert_eq!(messages[0].key.as_deref(), Some(KEY));
    assert_eq!(messages[0].robot_name.as_deref(), Some("ops"));
    assert_eq!(messages[0].msgtype, "text");
    assert_eq!(messages[0].content.as_deref(), Some("disk full on web-1"));
    assert_eq!(messages[0].payload["mentioned_list"], json!(["@all"]));
    assert_eq!(messages[1].robot_name.as_deref(), Some("dev"));
    assert!(messages[1].received_at_unix_ms >= messages[0].received_at_unix_ms);
    assert!(!format!("{:?}", messages[0]).contains(KEY), "Debug redacts the key");
}

#[tokio::test]
async fn keys_and_robot_states() {
    let wecom = emulator().await;
    let unknown = robot_send(&wecom, "nope", text("x")).await;
    assert_eq!(errcode(&unknown), 93000);
    let errmsg = unknown["errmsg"].as_str().unwrap();
    assert!(errmsg.starts_with("invalid webhook url, hint: ["), "{errmsg}");
    assert!(errmsg.contains("from ip: "));
    assert_eq!(errcode(&post(&wecom, None, text("x").to_string()).await), 93000);

    assert!(wecom.control().set_robot_state(KEY, RobotState::Disabled));
    assert_eq!(errcode(&robot_send(&wecom, KEY, text("x")).await), 93004);
    assert!(wecom.control().set_robot_state(KEY, RobotState::NotInGroup));
    assert_eq!(errcode(&robot_send(&wecom, KEY, text("x")).await), 93008);
    assert!(wecom.control().set_robot_state(KEY, RobotState::Active));
    assert_eq!(errcode(&robot_send(&wecom, KEY, text("x")).await), 0);
    assert!(!wecom.control().set_robot_state("missing", RobotState::Disabled));
}

#[tokio::test]
async fn types_and_byte_limits() {
    let wecom = emulator().await;
    assert_eq!(errcode(&robot_send(&wecom, KEY, text("")).await), 44004);
    assert_eq!(errcode(&robot_send(&wecom, KEY, json!({"msgtype": "text", "text": {}})).await), 44004);
    let long_text = robot_send(&wecom, KEY, text(&"警".repeat(683))).await;
    assert_eq!(errcode(&long_text), 40058);
    assert!(long_text["errmsg"].as_str().unwrap().starts_with("text.content exceed max length 2048"));
    assert_eq!(errcode(&robot_send(&wecom, KEY, text(&"警".repeat(682))).await), 0);

    let long_markdown = robot_send(&wecom, KEY, markdown("中".repeat(1366))).await; // 4098 bytes
    assert_eq!(errcode(&long_markdown), 40058);
    assert!(long_markdown["errmsg"].as_str().unwrap().starts_with("markdown.content exceed max length 4096"));
    assert_eq!(errcode(&robot_send(&wecom, KEY, markdown("中".repeat(1365))).await), 0);
    let v2 = json!({"msgtype": "markdown_v2", "markdown_v2": {"content": "a".repeat(4097)}});
    let v2_answer = robot_send(&wecom, KEY, v2).await;
    assert!(v2_answer["errmsg"].as_str().unwrap().starts_with("markdown_v2.content exceed max length 4096"));

    assert_eq!(errcode(&robot_send(&wecom, KEY, json!({"msgtype": "telegram"})).await), 40008);
    assert_eq!(errcode(&post(&wecom, Some(KEY), "{\"msgtype\":").await), 47001);

    let news =
        json!({"msgtype": "news", "news": {"articles": [{"title": "t".repeat(200), "url": "https://example.com"}]}});
    assert_eq!(errcode(&robot_send(&wecom, KEY, news).await), 0);
    let recorded = wecom.control().messages().pop().unwrap();
    assert_eq!(recorded.payload["articles"][0]["title"].as_str().unwrap().len(), 128);
    assert_eq!(wecom.control().stats().robot_accepted, 3);
}

#[tokio::test]
async fn the_sliding_window_answers_45009_then_clears() {
    let window = Duration::from_millis(600);
    let wecom = WecomEmulator::builder()
        .robot(WecomRobot::new(KEY))
        .robot(WecomRobot::new(OTHER_KEY))
        .robot_rate_limit(3, window)
        .start()
        .await
        .unwrap();
    let first_accepted_at = Instant::now();
    for _ in 0..3 {
        assert_eq!(errcode(&robot_send(&wecom, KEY, text("x")).await), 0);
    }
    let limited = robot_send(&wecom, KEY, text("x")).await;
    assert_eq!(errcode(&limited), 45009);
    assert!(limited["errmsg"].as_str().unwrap().starts_with("api freq out of limit"));
    assert_eq!(errcode(&robot_send(&wecom, OTHER_KEY, text("x")).await), 0, "windows are per key");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = robot_send(&wecom, KEY, text("x")).await;
        if errcode(&answer) == 0 {
            break;
        }
        assert_eq!(errcode(&answer), 45009);
        assert!(Instant::now() < deadline, "the window never cleared");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(first_accepted_at.elapsed() >= window, "the window cleared early");
    let stats = wecom.control().stats();
    assert!(stats.robot_rate_limited >= 1);
    assert_eq!(stats.robot_accepted, 5);
}

#[tokio::test]
async fn default_limit_is_twenty_per_minute() {
    let wecom = emulator().await;
    for _ in 0..20 {
        assert_eq!(errcode(&robot_send(&wecom, KEY, text("x")).await), 0);
    }
    assert_eq!(errcode(&robot_send(&wecom, KEY, text("x")).await), 45009);
}

#[tokio::test]
async fn control_endpoints_over_http() {
    let wecom = emulator().await;
    let client = reqwest::Client::new();
    let control_url = |path: &str| format!("{}/_testkit/{path}", wecom.url());

    let limits = client
        .put(control_url("rate_limits"))
        .json(&json!({"robot_limit": 1, "robot_window_ms": 60000}))
        .send()
        .await
        .unwrap();
    assert_eq!(limits.status(), 200);
    let current: Value = client.get(control_url("rate_limits")).send().await.unwrap().json().await.unwrap();
    assert_eq!(current["robot_limit"], json!(1));
    assert_eq!(current["user_minute_limit"], json!(30));
    assert_eq!(errcode(&robot_send(&wecom, KEY, text("one")).await), 0);
    assert_eq!(errcode(&robot_send(&wecom, KEY, text("two")).await), 45009);
    let zero = client.put(control_url("rate_limits")).json(&json!({"robot_window_ms": 0})).send().await.unwrap();
    assert_eq!(zero.status(), 400);

    let fault = client
        .post(control_url("faults"))
        .json(&json!({"count": 1, "target": "robot", "kind": "errcode", "errcode": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 200);
    assert_eq!(errcode(&robot_send(&wecom, OTHER_KEY, text("x")).await), -1);

    let state = client
        .put(control_url("robot_state"))
        .json(&json!({"key": OTHER_KEY, "state": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(state.status(), 200);
    assert_eq!(errcode(&robot_send(&wecom, OTHER_KEY, text("x")).await), 93004);

    let messages: Vec<WecomMessage> = client.get(control_url("messages")).send().await.unwrap().json().await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].content.as_deref(), Some("one"));
    let stats: Value = client.get(control_url("stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["rejected_by_errcode"]["45009"], json!(1));
    assert_eq!(stats["robot_requests"], json!(4));

    client.post(control_url("reset")).send().await.unwrap();
    assert!(wecom.control().messages().is_empty());
    assert_eq!(errcode(&robot_send(&wecom, KEY, text("after reset")).await), 0, "reset clears the windows");
    let expired: Value = client.post(control_url("tokens/expire")).send().await.unwrap().json().await.unwrap();
    assert_eq!(expired["expired"], json!(0));
    let lifetime =
        client.put(control_url("tokens/lifetime")).json(&json!({"expires_in_secs": 0})).send().await.unwrap();
    assert_eq!(lifetime.status(), 400);
}

#[tokio::test]
async fn wait_for_messages_returns_once_enough_arrived() {
    let wecom = emulator().await;
    let control = wecom.control().clone();
    let waiter = tokio::spawn(async move { control.wait_for_messages(1, Duration::from_secs(10)).await });
    robot_send(&wecom, KEY, text("x")).await;
    assert_eq!(waiter.await.unwrap().expect("one message arrives").len(), 1);
    let timed_out = wecom.control().wait_for_messages(3, Duration::from_millis(50)).await.unwrap_err();
    assert_eq!((timed_out.wanted, timed_out.received), (3, 1));
}

#[tokio::test]
async fn the_cli_prints_one_line_and_serves_both_apis() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pipe-testkit"))
        .args([
            "wecom",
            "--addr",
            "127.0.0.1:0",
            "--corp-id",
            "corp",
            "--corp-secret",
            "secret",
            "--agent-id",
            "1000002",
            "--webhook-key",
            KEY,
            "--robot-rate-per-minute",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the binary prints in time")
        .unwrap()
        .expect("one line");
    let url = line.strip_prefix("listening on ").expect("the documented line").to_string();
    let client = reqwest::Client::new();
    let send = |body: Value| client.post(format!("{url}/cgi-bin/webhook/send?key={KEY}")).json(&body).send();
    assert_eq!(errcode(&send(text("a")).await.unwrap().json().await.unwrap()), 0);
    assert_eq!(errcode(&send(text("b")).await.unwrap().json().await.unwrap()), 45009);
    let token: Value = client
        .get(format!("{url}/cgi-bin/gettoken?corpid=corp&corpsecret=secret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&token), 0);
    child.kill().await.unwrap();
}
