//! Point in time over HTTP, for Elasticsearch and OpenSearch: response
//! shapes, snapshot isolation, id rotation, the implicit `_shard_doc`
//! tiebreaker, closing, expiry, and absence on old releases.

mod es_support;
// Re-exported so shared helpers this file does not call are not reported
// as unused in this test crate.
pub use es_support::*;

use std::time::Duration;

use serde_json::{json, Value};
use testkit::es::{EsConfig, EsEmulator, Fixture};

async fn emulator(config: EsConfig) -> EsEmulator {
    let es = EsEmulator::start(config.with_refresh_interval(None)).await.expect("emulator starts");
    let docs: Vec<Value> =
        (0..12).map(|n| json!({"offset_seconds": -100 + n / 3, "id": format!("d{n:02}"), "doc": {"n": n}})).collect();
    let fixture: Fixture = serde_json::from_value(json!({"index": "logs-1", "docs": docs})).unwrap();
    es.handle().load(&fixture).unwrap();
    es
}

#[tokio::test]
async fn elasticsearch_pit_is_a_snapshot_with_rotating_ids_and_a_tiebreaker() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    let missing_keep_alive = post(&format!("{}/logs-*/_pit", es.url()), &json!({})).await;
    assert_eq!(missing_keep_alive.status, 400);
    assert_eq!(missing_keep_alive.body["error"]["reason"], "Validation Failed: 1: [keep_alive] is not specified;");

    let opened = post(&format!("{}/logs-*/_pit?keep_alive=1m", es.url()), &json!({})).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let first_id = opened.body["id"].as_str().unwrap().to_string();
    assert_eq!(opened.body["_shards"], json!({"total": 1, "successful": 1, "skipped": 0, "failed": 0}));
    assert_eq!(es.handle().stats().pits_open, 1);

    // Written and refreshed after the PIT opened: invisible through it.
    let written = bulk(
        &format!("{}/_bulk?refresh=true", es.url()),
        "{\"index\":{\"_index\":\"logs-1\",\"_id\":\"late\"}}\n{\"n\":99}\n",
    )
    .await;
    assert_eq!(written.body["errors"], false);

    let mut pit_id = first_id.clone();
    let mut seen = Vec::new();
    let mut after: Option<Value> = None;
    let mut ids_returned = Vec::new();
    loop {
        let mut body = json!({"size": 5, "pit": {"id": pit_id, "keep_alive": "1m"}, "sort": [{"@timestamp": "asc"}]});
        if let Some(after) = &after {
            body["search_after"] = after.clone();
        }
        let answer = post(&format!("{}/_search", es.url()), &body).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        pit_id = answer.body["pit_id"].as_str().unwrap().to_string();
        ids_returned.push(pit_id.clone());
        let hits = answer.body["hits"]["hits"].as_array().unwrap().clone();
        if hits.is_empty() {
            break;
        }
        for hit in &hits {
            let sort = hit["sort"].as_array().unwrap();
            assert_eq!(sort.len(), 2, "the implicit _shard_doc tiebreaker is appended: {sort:?}");
            assert!(sort[0].is_i64() && sort[1].is_i64());
            seen.push(hit["_id"].as_str().unwrap().to_string());
        }
        after = Some(hits.last().unwrap()["sort"].clone());
    }
    let expected: Vec<String> = (0..12).map(|n| format!("d{n:02}")).collect();
    assert_eq!(seen, expected, "every snapshot document once, the late one never");
    assert_ne!(ids_returned[0], first_id, "responses carry a fresh pit_id");
    let plain = get(&format!("{}/logs-1/_count", es.url())).await;
    assert_eq!(plain.body["count"], 13, "outside the PIT the late document is visible");

    let with_index = post(&format!("{}/logs-1/_search", es.url()), &json!({"pit": {"id": pit_id}})).await;
    assert_eq!(with_index.status, 400);
    assert_eq!(with_index.body["error"]["type"], "action_request_validation_exception");

    let closed = request("DELETE", &format!("{}/_pit", es.url()), Some(&json!({"id": pit_id}))).await;
    assert_eq!(closed.status, 200);
    assert_eq!(closed.body, json!({"succeeded": true, "num_freed": 1}));
    let closed_again = request("DELETE", &format!("{}/_pit", es.url()), Some(&json!({"id": first_id}))).await;
    assert_eq!(closed_again.status, 404);
    assert_eq!(closed_again.body, json!({"succeeded": true, "num_freed": 0}));
    let after_close = post(&format!("{}/_search", es.url()), &json!({"pit": {"id": first_id}})).await;
    assert_eq!(after_close.status, 404);
    assert_eq!(after_close.body["error"]["root_cause"][0]["type"], "search_context_missing_exception");
    let stats = es.handle().stats();
    assert_eq!((stats.pits_open, stats.pits_opened, stats.pits_closed), (0, 1, 1));
}

#[tokio::test]
async fn an_expired_pit_is_gone() {
    let es = emulator(EsConfig::elasticsearch("7.17.0").unwrap()).await;
    let opened = post(&format!("{}/logs-1/_pit?keep_alive=50ms", es.url()), &json!({})).await;
    assert!(opened.body.get("_shards").is_none(), "7.x answers with the id only");
    let id = opened.body["id"].as_str().unwrap().to_string();
    let url = format!("{}/_search", es.url());
    let expired = wait_until(Duration::from_secs(5), || {
        let url = url.clone();
        let id = id.clone();
        async move { post(&url, &json!({"pit": {"id": id}})).await.status == 404 }
    })
    .await;
    assert!(expired, "the PIT expires after its keep_alive");
    assert_eq!(es.handle().stats().pits_expired, 1);
}

#[tokio::test]
async fn opensearch_pit_uses_its_own_paths_and_shapes() {
    let es = emulator(EsConfig::opensearch("2.11.0").unwrap()).await;
    let wrong_path = post(&format!("{}/logs-1/_pit?keep_alive=1m", es.url()), &json!({})).await;
    assert_eq!(wrong_path.status, 400, "OpenSearch has no /_pit route");
    let opened = post(&format!("{}/logs-1/_search/point_in_time?keep_alive=1m", es.url()), &json!({})).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let pit_id = opened.body["pit_id"].as_str().unwrap().to_string();
    assert!(opened.body["creation_time"].is_i64());
    assert_eq!(opened.body["_shards"]["successful"], 1);
    assert!(opened.headers.get("x-elastic-product").is_none());

    bulk(&format!("{}/_bulk?refresh=true", es.url()), "{\"index\":{\"_index\":\"logs-1\"}}\n{\"n\":99}\n").await;
    let answer = post(
        &format!("{}/_search", es.url()),
        &json!({"size": 100, "pit": {"id": pit_id, "keep_alive": "1m"}, "sort": [{"n": "asc"}]}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["pit_id"], pit_id.as_str());
    assert_eq!(answer.body["hits"]["hits"].as_array().unwrap().len(), 12);
    assert_eq!(
        answer.body["hits"]["hits"][0]["sort"].as_array().unwrap().len(),
        1,
        "no implicit tiebreaker emulated for OpenSearch"
    );

    let listed = get(&format!("{}/_search/point_in_time/_all", es.url())).await;
    assert_eq!(listed.body["pits"][0]["pit_id"], pit_id.as_str());
    let closed =
        request("DELETE", &format!("{}/_search/point_in_time", es.url()), Some(&json!({"pit_id": [pit_id]}))).await;
    assert_eq!(closed.status, 200);
    assert_eq!(closed.body, json!({"pits": [{"successful": true, "pit_id": pit_id}]}));
    let closed_again =
        request("DELETE", &format!("{}/_search/point_in_time", es.url()), Some(&json!({"pit_id": [pit_id]}))).await;
    assert_eq!(closed_again.status, 404);
}

#[tokio::test]
async fn old_releases_have_no_point_in_time() {
    for config in [
        EsConfig::elasticsearch("6.8.23").unwrap(),
        EsConfig::elasticsearch("7.9.3").unwrap(),
        EsConfig::opensearch("2.3.0").unwrap(),
    ] {
        let label = format!("{:?}", config.product);
        let es = emulator(config).await;
        let es_path = post(&format!("{}/logs-1/_pit?keep_alive=1m", es.url()), &json!({})).await;
        let os_path = post(&format!("{}/logs-1/_search/point_in_time?keep_alive=1m", es.url()), &json!({})).await;
        assert_eq!(es_path.status, 400, "{label}");
        assert!(
            es_path.body["error"].as_str().unwrap().starts_with("no handler found for uri"),
            "{label}: {}",
            es_path.body
        );
        assert_eq!(os_path.status, 400, "{label}");
        let pit_in_body = post(&format!("{}/_search", es.url()), &json!({"pit": {"id": "x"}})).await;
        assert_eq!(pit_in_body.status, 400, "{label}");
        assert_eq!(pit_in_body.body["error"]["type"], "parsing_exception", "{label}");
    }
}
