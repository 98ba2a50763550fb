//! `pipelines/alerts.toml` end to end: documents in the Elasticsearch
//! emulator → poller → the seed rule → route by host → one WeCom app per
//! route (WeCom emulator), plus ElastAlert writeback documents.

use std::path::Path;

use serde_json::{json, Map, Value};
use testkit::es::{EsConfig, EsEmulator, Fixture, FixtureDocument};
use testkit::wecom::{WecomApp, WecomEmulator};

use super::support::{wait_for, Pipe, Scratch};

const CORP: &str = "ww-test-corp";
/// (route, agent id, secret)
const AGENTS: [(&str, i64, &str); 4] = [
    ("WALLET", 1000011, "wallet-secret"),
    ("ENGINE", 1000012, "engine-secret"),
    ("API", 1000013, "api-secret"),
    ("DEFAULT", 1000014, "default-secret"),
];

const OVERLAY: &str = r#"
[api]
address = "127.0.0.1:0"
"#;

fn document(offset_seconds: f64, host: &str, source: &str, message: &str) -> FixtureDocument {
    let doc = json!({
        "host": { "name": host },
        "fields": { "feature": host },
        "source": source,
        "message": message,
    });
    let Value::Object(doc) = doc else { unreachable!() };
    FixtureDocument { offset_seconds, id: None, doc: Map::from_iter(doc) }
}

#[tokio::test]
async fn alerts_reach_the_agent_of_their_host_and_qa_wallet_alerts_reach_nobody() {
    let es = EsEmulator::start(EsConfig::elasticsearch("8.15.0").unwrap()).await.expect("es emulator");
    es.handle()
        .load(&Fixture {
            index: "logstash-%Y.%m.%d".into(),
            timestamp_field: "@timestamp".into(),
            refresh: true,
            docs: vec![
                document(
                    -40.0,
                    "wallet-qa-01",
                    "/data/logs/wallet/app.log",
                    "java.lang.NullPointerException at Transfer",
                ),
                document(
                    -35.0,
                    "wallet-prod-02",
                    "/data/logs/wallet/app.log",
                    "Traceback (most recent call last): KeyError",
                ),
                document(
                    -30.0,
                    "engine-prod-04",
                    "/data/logs/engine/app.log",
                    "java.lang.IllegalStateException: pool exhausted",
                ),
                document(-25.0, "api-prod-03", "/data/logs/api/app.log", "java.io.IOException: Connection reset"),
                document(-20.0, "php-web-02", "/data/logs/php/app.log", "PHP Exception in checkout"),
                document(-15.0, "search-prod-05", "/opt/DefendAgent/logs/DefendAgent.log", "blocked suspicious login"),
                document(-10.0, "api-prod-03", "/data/logs/api/app.log", "request completed in 12 ms"),
            ],
        })
        .expect("fixtures load");
    let mut wecom = WecomEmulator::builder();
    for (_, agent, secret) in AGENTS {
        wecom = wecom.app(WecomApp::new(CORP, secret, agent));
    }
    let wecom = wecom.start().await.expect("wecom emulator");

    let scratch = Scratch::new();
    let overlay = scratch.write("overlay.toml", OVERLAY);
    let alerts_toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/alerts.toml");
    let data_dir = scratch.path("data").display().to_string();
    let es_url = es.url();
    let wecom_url = wecom.url();
    let mut envs: Vec<(String, String)> = vec![
        ("ES_ENDPOINT".into(), es_url),
        ("WECOM_ENDPOINT".into(), wecom_url),
        ("WECOM_CORP_ID".into(), CORP.into()),
        ("ALERT_RUN_EVERY".into(), "1s".into()),
        ("ALERT_BUFFER_TIME".into(), "5m".into()),
        ("WECOM_GROUP_WAIT".into(), "1s".into()),
        ("PIPE_DATA_DIR".into(), data_dir),
    ];
    for (route, agent, secret) in AGENTS {
        envs.push((format!("WECOM_{route}_AGENT_ID"), agent.to_string()));
        envs.push((format!("WECOM_{route}_SECRET"), secret.to_string()));
    }
    let env_refs: Vec<(&str, &str)> = envs.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    let mut pipe = Pipe::start(&["run", alerts_toml.to_str().unwrap(), overlay.to_str().unwrap()], &env_refs);

    let messages = wait_for("a message for every agent", || {
        let messages = wecom.control().messages();
        let agents: std::collections::BTreeSet<i64> = messages.iter().filter_map(|message| message.agent_id).collect();
        (agents.len() == AGENTS.len()).then_some(messages)
    })
    .await;
    let text_for = |agent: i64| {
        messages
            .iter()
            .filter(|message| message.agent_id == Some(agent))
            .filter_map(|message| message.content.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let wallet = text_for(AGENTS[0].1);
    let engine = text_for(AGENTS[1].1);
    let api = text_for(AGENTS[2].1);
    let default = text_for(AGENTS[3].1);
    assert!(wallet.contains("wallet-prod-02") && !wallet.contains("engine"), "{wallet}");
    assert!(engine.contains("engine-prod-04"), "{engine}");
    assert!(api.contains("api-prod-03") && api.contains("php-web-02"), "{api}");
    assert!(default.contains("search-prod-05"), "{default}");
    let everything = [&wallet, &engine, &api, &default].map(|text| text.as_str()).join("\n");
    assert!(!everything.contains("wallet-qa-01"), "QA wallet alerts go nowhere: {everything}");
    assert!(!everything.contains("request completed"), "non-matching documents raise no alert");
    assert!(everything.contains("xxxxx Alert Log"), "the rule name is in the alert: {everything}");

    // Every alert, the QA one included, is in ElastAlert's writeback index.
    let writeback = wait_for("six writeback alert documents", || {
        let documents = es.handle().documents("elastalert").ok()?;
        (documents.len() >= 6).then_some(documents)
    })
    .await;
    assert!(writeback.iter().all(|document| document.source["rule_name"] == "xxxxx Alert Log"));
    assert!(writeback.iter().any(|document| document.source["match_body"]["host"]["name"] == "wallet-qa-01"));

    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}
