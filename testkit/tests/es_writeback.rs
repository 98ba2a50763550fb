//! The ElastAlert writeback flow against the emulator: what
//! `elastalert-create-index` does (create five indices, put their
//! mappings), then the writes and lookups the rule engine makes (status
//! records and the resume query, alert records with an unindexed
//! `match_body`, silences looked up by newest `until`).

mod es_support;
// Re-exported so shared helpers this file does not call are not reported
// as unused in this test crate.
pub use es_support::*;

use serde_json::{json, Value};
use testkit::es::{EsConfig, EsEmulator};

fn alert_mapping() -> Value {
    json!({
        "numeric_detection": true,
        "date_detection": false,
        "dynamic_templates": [{"strings_as_keyword": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 1024}}}],
        "properties": {
            "rule_name": {"type": "keyword"},
            "@timestamp": {"type": "date", "format": "date_optional_time"},
            "alert_time": {"type": "date", "format": "date_optional_time"},
            "match_time": {"type": "date", "format": "date_optional_time"},
            "match_body": {"type": "object", "enabled": false},
            "aggregate_id": {"type": "keyword"}
        }
    })
}

#[tokio::test]
async fn elastalert_create_index_then_status_alert_and_silence_round_trips() {
    let es = EsEmulator::start(EsConfig::elasticsearch("8.15.0").unwrap().with_refresh_interval(None)).await.unwrap();
    let url = es.url();
    assert_eq!(request("HEAD", &format!("{url}/elastalert_status"), None).await.status, 404);
    for suffix in ["", "_status", "_silence", "_error", "_past"] {
        let created = request("PUT", &format!("{url}/elastalert_status{suffix}"), Some(&json!({}))).await;
        assert_eq!(created.status, 200, "{}", created.body);
    }
    let mappings = [
        ("", alert_mapping()),
        (
            "_status",
            json!({"properties": {"rule_name": {"type": "keyword"}, "@timestamp": {"type": "date", "format": "date_optional_time"}}}),
        ),
        (
            "_silence",
            json!({"properties": {"rule_name": {"type": "keyword"}, "until": {"type": "date", "format": "date_optional_time"}, "@timestamp": {"type": "date", "format": "date_optional_time"}}}),
        ),
        (
            "_error",
            json!({"properties": {"data": {"type": "object", "enabled": false}, "@timestamp": {"type": "date", "format": "date_optional_time"}}}),
        ),
        (
            "_past",
            json!({"properties": {"rule_name": {"type": "keyword"}, "match_body": {"type": "object", "enabled": false}, "@timestamp": {"type": "date", "format": "date_optional_time"}, "aggregate_id": {"type": "keyword"}}}),
        ),
    ];
    for (suffix, mapping) in &mappings {
        let put = request("PUT", &format!("{url}/elastalert_status{suffix}/_mapping"), Some(mapping)).await;
        assert_eq!(put.body, json!({"acknowledged": true}), "{suffix}");
    }
    assert_eq!(request("HEAD", &format!("{url}/elastalert_status"), None).await.status, 200);

    for (end, started) in
        [("2026-01-01T00:01:00Z", "2026-01-01T00:00:00Z"), ("2026-01-01T00:02:00Z", "2026-01-01T00:01:00Z")]
    {
        let status = json!({"rule_name": "wallet errors", "starttime": started, "endtime": end, "matches": 2, "hits": 10, "@timestamp": end, "time_taken": 0.05});
        let written = post(&format!("{url}/elastalert_status_status/_doc?refresh=wait_for"), &status).await;
        assert_eq!(written.status, 201, "{}", written.body);
    }
    let resume = post(
        &format!("{url}/elastalert_status_status/_search"),
        &json!({"query": {"bool": {"filter": {"term": {"rule_name": "wallet errors"}}}}, "sort": {"@timestamp": {"order": "desc"}}, "size": 1}),
    )
    .await;
    assert_eq!(resume.body["hits"]["hits"][0]["_source"]["endtime"], "2026-01-01T00:02:00Z");

    let alert = json!({
        "rule_name": "wallet errors", "alert_sent": true, "alert_time": "2026-01-01T00:02:01Z", "match_time": "2026-01-01T00:01:30Z",
        "@timestamp": "2026-01-01T00:02:01Z", "alert_info": {"type": "wecom"}, "num_matches": "3",
        "match_body": {"message": "Traceback ...", "host": {"name": "wallet-qa-01"}, "count": "not a number", "@timestamp": "2026-01-01T00:01:30Z"}
    });
    let written = bulk(
        &format!("{url}/_bulk?refresh=true"),
        &format!("{{\"index\":{{\"_index\":\"elastalert_status\"}}}}\n{alert}\n"),
    )
    .await;
    assert_eq!(written.body["errors"], false, "{}", written.body);
    let mapping = get(&format!("{url}/elastalert_status/_mapping")).await;
    let properties = &mapping.body["elastalert_status"]["mappings"]["properties"];
    assert_eq!(properties["alert_info"]["properties"]["type"]["type"], "keyword", "strings map to keyword by template");
    assert_eq!(properties["num_matches"]["type"], "long", "numeric detection is on");
    assert!(properties["match_body"].get("properties").is_none(), "match_body is stored, not indexed");
    let by_sent = post(&format!("{url}/elastalert_status/_search"), &json!({"query": {"bool": {"filter": [{"term": {"alert_sent": true}}, {"range": {"alert_time": {"lte": "2026-01-01T00:03:00Z"}}}]}}})).await;
    assert_eq!(by_sent.body["hits"]["total"]["value"], 1);
    assert_eq!(by_sent.body["hits"]["hits"][0]["_source"]["match_body"]["host"]["name"], "wallet-qa-01");

    for until in ["2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"] {
        let silence = json!({"rule_name": "wallet errors.wallet-qa-01", "until": until, "exponent": 0, "@timestamp": "2026-01-01T00:02:01Z"});
        post(&format!("{url}/elastalert_status_silence/_doc?refresh=true"), &silence).await;
    }
    let silence = post(
        &format!("{url}/elastalert_status_silence/_search"),
        &json!({"query": {"term": {"rule_name": "wallet errors.wallet-qa-01"}}, "sort": [{"until": {"order": "desc"}}], "size": 1}),
    )
    .await;
    assert_eq!(silence.body["hits"]["hits"][0]["_source"]["until"], "2026-01-01T00:10:00Z");
}
