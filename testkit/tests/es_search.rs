//! `_search` and `_count` over HTTP: search_after paging, date-range
//! formats, `hits.total` per version, target resolution, shard failures,
//! malformed responses, and the seed ElastAlert query over demo documents.

mod es_support;
// Re-exported so shared helpers this file does not call are not reported
// as unused in this test crate.
pub use es_support::*;

use std::collections::HashSet;

use serde_json::{json, Value};
use testkit::es::{DemoFixture, EsConfig, EsEmulator, Fixture};

async fn emulator(config: EsConfig) -> EsEmulator {
    EsEmulator::start(config.with_refresh_interval(None)).await.expect("emulator starts")
}

/// 95 documents over three daily indices, with runs of equal timestamps.
fn paging_fixture(index: &str) -> Fixture {
    let docs: Vec<Value> = (0..95)
        .map(|position| json!({"offset_seconds": -1000.0 + (position / 5) as f64, "id": format!("event-{position:03}"), "doc": {"event_id": format!("event-{position:03}"), "n": position}}))
        .collect();
    serde_json::from_value(json!({"index": index, "docs": docs})).unwrap()
}

async fn page_through(url: &str, path: &str, sort: Value, size: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<Value> = None;
    for _ in 0..100 {
        let mut body = json!({"size": size, "sort": sort, "query": {"bool": {"filter": [{"range": {"@timestamp": {"gte": "now-1h", "lte": "now"}}}]}}});
        if let Some(after) = &after {
            body["search_after"] = after.clone();
        }
        let answer = post(&format!("{url}{path}"), &body).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let hits = answer.body["hits"]["hits"].as_array().unwrap().clone();
        if hits.is_empty() {
            return seen;
        }
        for hit in &hits {
            assert!(hit["sort"][0].is_i64(), "dates come back as epoch millis in sort: {}", hit["sort"]);
            seen.push(format!("{}/{}", hit["_index"].as_str().unwrap(), hit["_id"].as_str().unwrap()));
        }
        after = Some(hits.last().unwrap()["sort"].clone());
    }
    panic!("paging did not finish within 100 pages");
}

#[tokio::test]
async fn search_after_pages_through_every_document_exactly_once() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    es.handle().load(&paging_fixture("events-a")).unwrap();
    es.handle().load(&paging_fixture("events-b")).unwrap();
    let seen =
        page_through(&es.url(), "/events-*/_search", json!([{"@timestamp": "asc"}, {"event_id.keyword": "asc"}]), 7)
            .await;
    assert_eq!(seen.len(), 190, "two indices of 95 documents");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 190, "no document twice");
    let descending =
        page_through(&es.url(), "/events-a/_search", json!([{"@timestamp": {"order": "desc"}}, {"n": "desc"}]), 10)
            .await;
    let expected: Vec<String> = (0..95).rev().map(|position| format!("events-a/event-{position:03}")).collect();
    assert_eq!(descending, expected);
}

#[tokio::test]
async fn range_bounds_accept_iso_epoch_millis_and_epoch_seconds() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    es.handle().create_index("win", json!({"mappings": {"properties": {"@timestamp": {"type": "date"}}}})).unwrap();
    let fixture: Fixture = serde_json::from_value(json!({"index": "win", "docs": [
        {"offset_seconds": -120, "id": "old", "doc": {}},
        {"offset_seconds": -60, "id": "edge", "doc": {}},
        {"offset_seconds": -10, "id": "new", "doc": {}}
    ]}))
    .unwrap();
    es.handle().load(&fixture).unwrap();
    let edge = es.handle().documents("win").unwrap().into_iter().find(|document| document.id == "edge").unwrap();
    let edge_text = edge.source["@timestamp"].as_str().unwrap().to_string();
    let edge_millis = testkit::es::dates::parse_date(&edge_text, "strict_date_optional_time", false, 0).unwrap();
    let ids = |answer: &Answer| -> Vec<String> {
        answer.body["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["_id"].as_str().unwrap().to_string())
            .collect()
    };
    let search = |range: Value| {
        let url = format!("{}/win/_search", es.url());
        async move { post(&url, &json!({"query": {"range": {"@timestamp": range}}, "sort": ["@timestamp"]})).await }
    };
    assert_eq!(ids(&search(json!({"gt": edge_text, "format": "strict_date_optional_time"})).await), vec!["new"]);
    assert_eq!(ids(&search(json!({"gte": edge_text})).await), vec!["edge", "new"]);
    assert_eq!(ids(&search(json!({"lt": edge_millis, "format": "epoch_millis"})).await), vec!["old"]);
    assert_eq!(ids(&search(json!({"lte": edge_millis, "format": "epoch_millis"})).await), vec!["old", "edge"]);
    assert_eq!(
        ids(&search(json!({"gte": edge_millis / 1000 - 1, "lt": edge_millis / 1000 + 30, "format": "epoch_second"}))
            .await),
        vec!["edge"]
    );
    assert_eq!(ids(&search(json!({"gt": "now-90s", "lte": "now"})).await), vec!["edge", "new"]);
    let bad = search(json!({"gte": "not a date"})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["type"], "search_phase_execution_exception");
    assert_eq!(bad.body["error"]["root_cause"][0]["type"], "parse_exception");
}

#[tokio::test]
async fn hits_total_shape_follows_version_and_parameters() {
    for (config, expected_total, expected_type) in [
        (EsConfig::elasticsearch("6.8.23").unwrap(), json!(3), Some("doc")),
        (EsConfig::elasticsearch("7.17.0").unwrap(), json!({"value": 3, "relation": "eq"}), Some("_doc")),
        (EsConfig::elasticsearch("8.15.0").unwrap(), json!({"value": 3, "relation": "eq"}), None),
        (EsConfig::opensearch("1.3.0").unwrap(), json!({"value": 3, "relation": "eq"}), Some("_doc")),
        (EsConfig::opensearch("2.11.0").unwrap(), json!({"value": 3, "relation": "eq"}), None),
    ] {
        let label = format!("{:?}", config.product);
        let es = emulator(config).await;
        let fixture: Fixture = serde_json::from_value(
            json!({"index": "logs", "docs": [{"doc": {"a": 1}}, {"doc": {"a": 2}}, {"doc": {"a": 3}}]}),
        )
        .unwrap();
        es.handle().load(&fixture).unwrap();
        let answer = get(&format!("{}/logs/_search", es.url())).await;
        assert_eq!(answer.body["hits"]["total"], expected_total, "{label}");
        assert_eq!(answer.body["hits"]["hits"][0]["_type"].as_str(), expected_type, "{label}");
        let as_int = get(&format!("{}/logs/_search?rest_total_hits_as_int=true", es.url())).await;
        assert_eq!(as_int.body["hits"]["total"], 3, "{label}");
        let root = get(&es.url()).await;
        assert!(root.body["version"]["number"].is_string(), "{label}");
    }
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    let docs: Vec<Value> = (0..30).map(|n| json!({"doc": {"n": n}})).collect();
    es.handle().load(&serde_json::from_value(json!({"index": "many", "docs": docs})).unwrap()).unwrap();
    let capped = post(&format!("{}/many/_search", es.url()), &json!({"track_total_hits": 10, "size": 0})).await;
    assert_eq!(capped.body["hits"]["total"], json!({"value": 10, "relation": "gte"}));
    let untracked = post(&format!("{}/many/_search", es.url()), &json!({"track_total_hits": false, "size": 1})).await;
    assert!(untracked.body["hits"].get("total").is_none());
    let root = get(&es.url()).await;
    assert_eq!(root.body["version"]["number"], "8.15.0");
    assert_eq!(root.body["tagline"], "You Know, for Search");
}

#[tokio::test]
async fn targets_resolve_like_elasticsearch() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    es.handle().create_index("logs-1", json!({})).unwrap();
    let missing = get(&format!("{}/nope/_search", es.url())).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"]["type"], "index_not_found_exception");
    assert_eq!(missing.body["error"]["reason"], "no such index [nope]");
    let partly_missing = get(&format!("{}/logs-1,nope/_search", es.url())).await;
    assert_eq!(partly_missing.status, 404);
    let ignored = get(&format!("{}/logs-1,nope/_search?ignore_unavailable=true", es.url())).await;
    assert_eq!(ignored.status, 200);
    let empty_wildcard = get(&format!("{}/nothing-*/_search", es.url())).await;
    assert_eq!(empty_wildcard.status, 200);
    assert_eq!(empty_wildcard.body["hits"]["total"]["value"], 0);
    assert_eq!(empty_wildcard.body["_shards"]["total"], 0);
    let strict = get(&format!("{}/nothing-*/_search?allow_no_indices=false", es.url())).await;
    assert_eq!(strict.status, 404);
    let head_exists = request("HEAD", &format!("{}/logs-1", es.url()), None).await;
    let head_missing = request("HEAD", &format!("{}/nope", es.url()), None).await;
    assert_eq!((head_exists.status, head_missing.status), (200, 404));
    assert_eq!(head_missing.body, Value::Null);
    let wildcard_delete = request("DELETE", &format!("{}/logs-*", es.url()), None).await;
    assert_eq!(wildcard_delete.status, 400, "8.x requires names for deletion");
    let deleted = request("DELETE", &format!("{}/logs-1", es.url()), None).await;
    assert_eq!(deleted.body, json!({"acknowledged": true}));
    let unknown_route = get(&format!("{}/_nonsense_api", es.url())).await;
    assert_eq!(unknown_route.status, 400);
}

#[tokio::test]
async fn shard_failures_and_malformed_responses_are_injectable() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    es.handle().create_index("sharded", json!({"settings": {"number_of_shards": 2}})).unwrap();
    let docs: Vec<Value> = (0..40).map(|n| json!({"id": format!("d{n}"), "doc": {"n": n}})).collect();
    es.handle().load(&serde_json::from_value(json!({"index": "sharded", "docs": docs})).unwrap()).unwrap();
    es.handle().faults().fail_shards(1, 1, None);
    let partial = post(&format!("{}/sharded/_search", es.url()), &json!({"size": 100})).await;
    assert_eq!(partial.status, 200);
    assert_eq!(partial.body["_shards"]["total"], 2);
    assert_eq!(partial.body["_shards"]["failed"], 1);
    assert_eq!(partial.body["_shards"]["successful"], 1);
    assert_eq!(partial.body["_shards"]["failures"][0]["reason"]["type"], "node_not_connected_exception");
    let partial_hits = partial.body["hits"]["hits"].as_array().unwrap().len();
    assert!(partial_hits > 0 && partial_hits < 40, "a failed shard's documents are missing: {partial_hits}");
    let whole = post(&format!("{}/sharded/_search", es.url()), &json!({"size": 100})).await;
    assert_eq!(whole.body["hits"]["hits"].as_array().unwrap().len(), 40, "the fault applied to one search only");

    let scheduled = post(
        &format!("{}/_testkit/faults/shards", es.url()),
        &json!({"searches": 1, "failed_shards": 2, "type": "search_context_missing_exception", "reason": "gone"}),
    )
    .await;
    assert_eq!(scheduled.status, 200);
    let all_failed = post(&format!("{}/sharded/_search", es.url()), &json!({})).await;
    assert_eq!(all_failed.body["error"]["type"], "search_phase_execution_exception");
    assert_eq!(all_failed.body["error"]["root_cause"][0]["type"], "search_context_missing_exception");

    post(&format!("{}/_testkit/faults/malformed", es.url()), &json!({"count": 1, "path_contains": "/_search"})).await;
    let malformed = send(es_support::client().get(format!("{}/sharded/_search", es.url()))).await;
    assert_eq!(malformed.status, 200);
    assert!(malformed.body.is_string(), "the body no longer parses as JSON");
    let count = get(&format!("{}/sharded/_count", es.url())).await;
    assert_eq!(count.body["count"], 40);
    let stats = get(&format!("{}/_testkit/stats", es.url())).await;
    assert_eq!(stats.body["injected_shard_failures"], 2);
    assert_eq!(stats.body["injected_malformed_responses"], 1);
    assert_eq!(stats.body["counts"], 1);
}

#[tokio::test]
async fn the_seed_elastalert_query_finds_tracebacks_exceptions_and_defend_lines() {
    let es = emulator(EsConfig::elasticsearch("7.17.0").unwrap()).await;
    let report = es
        .handle()
        .load_demo(&DemoFixture {
            index: "logstash-%Y.%m.%d".into(),
            count: 300,
            seed: 11,
            span_seconds: 600.0,
            end_offset_seconds: -5.0,
            timestamp_field: "@timestamp".into(),
            refresh: true,
        })
        .unwrap();
    assert_eq!(report.loaded, 300);
    let body = json!({
        "query": {"bool": {"filter": {"bool": {"must": [
            {"range": {"@timestamp": {"gt": "now-15m", "lte": "now"}}},
            {"query_string": {"query": "message:'Traceback' OR message:*Exception* OR source:*Defend*"}}
        ]}}}},
        "sort": [{"@timestamp": {"order": "asc"}}],
        "size": 1000,
        "_source": ["message", "source", "host", "fields", "@timestamp"]
    });
    let answer = post(&format!("{}/logstash-*/_search?ignore_unavailable=true", es.url()), &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let hits = answer.body["hits"]["hits"].as_array().unwrap();
    assert!(hits.len() > 10, "the demo mix has matching lines: {}", hits.len());
    for hit in hits {
        let message = hit["_source"]["message"].as_str().unwrap();
        let source = hit["_source"]["source"].as_str().unwrap();
        assert!(
            message.to_lowercase().contains("traceback")
                || message.to_lowercase().contains("exception")
                || source.to_lowercase().contains("defend"),
            "unexpected match: {message} / {source}"
        );
        assert!(hit["_source"]["fields"]["feature"].is_string() && hit["_source"]["host"]["name"].is_string());
    }
    let everything = get(&format!("{}/logstash-*/_count", es.url())).await;
    let matching = post(&format!("{}/logstash-*/_count", es.url()), &json!({"query": body["query"].clone()})).await;
    assert_eq!(everything.body["count"], 300);
    assert_eq!(matching.body["count"].as_u64().unwrap() as usize, hits.len());
    let values = hit_values(&answer, "@timestamp");
    let mut sorted = values.clone();
    sorted.sort_by_key(|value| value.as_str().unwrap_or_default().to_string());
    assert_eq!(values, sorted, "hits come back in timestamp order");
}
