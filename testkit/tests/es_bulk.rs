//! `_bulk` over HTTP: per-item results, conflicts, generated ids, `_type`
//! per version, mapping errors, injected item faults, gzip bodies, whole-
//! request errors and harness faults.

mod es_support;
// Re-exported so shared helpers this file does not call are not reported
// as unused in this test crate.
pub use es_support::*;

use std::io::Write;

use serde_json::{json, Value};
use testkit::es::{EsConfig, EsEmulator, ItemFaultKind};

async fn emulator(config: EsConfig) -> EsEmulator {
    EsEmulator::start(config.with_refresh_interval(None)).await.expect("emulator starts")
}

#[tokio::test]
async fn items_report_status_result_ids_and_conflicts_like_elasticsearch_8() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    let body = concat!(
        "{\"index\":{\"_index\":\"logs\",\"_id\":\"a\"}}\n{\"message\":\"one\",\"n\":1}\n",
        "{\"create\":{\"_index\":\"logs\",\"_id\":\"a\"}}\n{\"message\":\"dup\",\"n\":2}\n",
        "{\"index\":{\"_index\":\"logs\",\"_id\":\"a\"}}\n{\"message\":\"two\",\"n\":3}\n",
        "{\"create\":{\"_index\":\"logs\"}}\n{\"message\":\"auto\",\"n\":4}\n",
        "{\"delete\":{\"_index\":\"logs\",\"_id\":\"missing\"}}\n",
    );
    let answer = bulk(&format!("{}/_bulk", es.url()), body).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-elastic-product"], "Elasticsearch");
    let response = answer.body;
    assert_eq!(response["errors"], true);
    assert!(response["took"].is_u64());
    let items = response["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(
        items[0],
        json!({"index": {"_index": "logs", "_id": "a", "_version": 1, "result": "created", "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": 0, "_primary_term": 1, "status": 201}})
    );
    let conflict = &items[1]["create"];
    assert_eq!(conflict["status"], 409);
    assert_eq!(conflict["error"]["type"], "version_conflict_engine_exception");
    assert_eq!(conflict["error"]["reason"], "[a]: version conflict, document already exists (current version [1])");
    assert_eq!(conflict["error"]["index"], "logs");
    assert!(conflict.get("result").is_none());
    assert_eq!(items[2]["index"]["result"], "updated");
    assert_eq!(items[2]["index"]["_version"], 2);
    assert_eq!(items[2]["index"]["status"], 200);
    let generated = items[3]["create"]["_id"].as_str().unwrap();
    assert_eq!(generated.len(), 20);
    assert_eq!(items[3]["create"]["status"], 201);
    assert_eq!(items[4]["delete"]["status"], 404);
    assert_eq!(items[4]["delete"]["result"], "not_found");

    let stats = es.handle().stats();
    assert_eq!(stats.bulk_requests, 1);
    assert_eq!(stats.bulk_items["created"], 2);
    assert_eq!(stats.bulk_items["failed"], 1);
    assert_eq!(stats.bulk_item_statuses["409"], 1);
    let documents = es.handle().documents("logs").unwrap();
    assert_eq!(documents.len(), 2);
    assert!(documents.iter().all(|document| !document.searchable), "no refresh was requested");
}

#[tokio::test]
async fn type_handling_follows_the_version() {
    let es7 = emulator(EsConfig::elasticsearch("7.17.0").unwrap()).await;
    let answer = bulk(
        &format!("{}/logs/_bulk", es7.url()),
        "{\"index\":{\"_type\":\"_doc\"}}\n{\"a\":1}\n{\"index\":{}}\n{\"a\":2}\n",
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["items"][0]["index"]["_type"], "_doc");
    assert_eq!(answer.body["items"][1]["index"]["_index"], "logs");

    let es8 = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    let rejected =
        bulk(&format!("{}/_bulk", es8.url()), "{\"index\":{\"_index\":\"logs\",\"_type\":\"_doc\"}}\n{\"a\":1}\n")
            .await;
    assert_eq!(rejected.status, 400);
    assert_eq!(rejected.body["error"]["type"], "illegal_argument_exception");
    assert_eq!(rejected.body["error"]["reason"], "Action/metadata line [1] contains an unknown parameter [_type]");
    assert_eq!(rejected.body["status"], 400);

    let compat = send(
        es_support::client()
            .post(format!("{}/_bulk", es8.url()))
            .header("content-type", "application/vnd.elasticsearch+x-ndjson; compatible-with=7")
            .header("accept", "application/vnd.elasticsearch+json; compatible-with=7")
            .body("{\"index\":{\"_index\":\"logs\",\"_type\":\"_doc\"}}\n{\"a\":1}\n"),
    )
    .await;
    assert_eq!(compat.status, 200, "{}", compat.body);
    assert_eq!(compat.body["items"][0]["index"]["_type"], "_doc");
    assert_eq!(compat.headers["content-type"], "application/vnd.elasticsearch+json;compatible-with=7");

    let es6 = emulator(EsConfig::elasticsearch("6.8.23").unwrap()).await;
    let untyped = bulk(&format!("{}/_bulk", es6.url()), "{\"index\":{\"_index\":\"logs\"}}\n{\"a\":1}\n").await;
    assert_eq!(untyped.status, 400);
    assert_eq!(untyped.body["error"]["type"], "action_request_validation_exception");
    let typed =
        bulk(&format!("{}/_bulk", es6.url()), "{\"index\":{\"_index\":\"logs\",\"_type\":\"doc\"}}\n{\"a\":1}\n").await;
    assert_eq!(typed.body["items"][0]["index"]["_type"], "doc");
    assert!(typed.headers.get("x-elastic-product").is_none(), "6.x never sent the product header");
}

#[tokio::test]
async fn a_string_into_a_mapped_long_is_a_per_item_mapping_error() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    let created = request(
        "PUT",
        &format!("{}/metrics", es.url()),
        Some(&json!({"mappings": {"properties": {"count": {"type": "long"}}}})),
    )
    .await;
    assert_eq!(created.body, json!({"acknowledged": true, "shards_acknowledged": true, "index": "metrics"}));
    let answer = bulk(
        &format!("{}/metrics/_bulk", es.url()),
        "{\"index\":{\"_id\":\"ok\"}}\n{\"count\":5}\n{\"index\":{\"_id\":\"bad\"}}\n{\"count\":\"lots\"}\n{\"index\":{\"_id\":\"dyn\"}}\n{\"level\":\"x\"}\n{\"index\":{\"_id\":\"clash\"}}\n{\"level\":{\"nested\":1}}\n",
    )
    .await;
    let items = answer.body["items"].as_array().unwrap();
    assert_eq!(items[0]["index"]["status"], 201);
    let error = &items[1]["index"]["error"];
    assert_eq!(items[1]["index"]["status"], 400);
    assert_eq!(error["type"], "document_parsing_exception");
    assert_eq!(error["reason"], "[1:10] failed to parse field [count] of type [long] in document with id 'bad'. Preview of field's value: 'lots'");
    assert_eq!(error["caused_by"]["type"], "illegal_argument_exception");
    assert_eq!(items[2]["index"]["status"], 201);
    assert_eq!(items[3]["index"]["status"], 400, "an object into a dynamically mapped text field fails");
    let mapping = get(&format!("{}/metrics/_mapping", es.url())).await;
    assert_eq!(mapping.body["metrics"]["mappings"]["properties"]["level"]["type"], "text");
    assert_eq!(mapping.body["metrics"]["mappings"]["properties"]["level"]["fields"]["keyword"]["ignore_above"], 256);

    let es7 = emulator(EsConfig::elasticsearch("7.17.0").unwrap()).await;
    request(
        "PUT",
        &format!("{}/metrics", es7.url()),
        Some(&json!({"mappings": {"properties": {"count": {"type": "long"}}}})),
    )
    .await;
    let older =
        bulk(&format!("{}/metrics/_bulk", es7.url()), "{\"index\":{\"_id\":\"bad\"}}\n{\"count\":\"lots\"}\n").await;
    assert_eq!(older.body["items"][0]["index"]["error"]["type"], "mapper_parsing_exception");
}

#[tokio::test]
async fn injected_item_faults_fail_only_their_items() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    es.handle().faults().reject_next_items(2);
    es.handle().faults().fail_items_where("level", json!("POISON"), ItemFaultKind::Mapping, None);
    let body: String = (0..5)
        .map(|position| {
            let level = if position == 3 { "POISON" } else { "INFO" };
            format!("{{\"index\":{{\"_index\":\"logs\",\"_id\":\"{position}\"}}}}\n{{\"level\":\"{level}\"}}\n")
        })
        .collect();
    let answer = bulk(&format!("{}/_bulk", es.url()), &body).await;
    let statuses: Vec<u64> =
        answer.body["items"].as_array().unwrap().iter().map(|item| item["index"]["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![429, 429, 201, 400, 201]);
    assert_eq!(answer.body["items"][0]["index"]["error"]["type"], "es_rejected_execution_exception");
    assert_eq!(answer.body["items"][3]["index"]["error"]["type"], "document_parsing_exception");
    let stored: Vec<String> = es.handle().documents("logs").unwrap().into_iter().map(|document| document.id).collect();
    assert_eq!(stored, vec!["2", "4"], "faulted items are not written");

    // The same faults through the HTTP control API.
    let scheduled = post(&format!("{}/_testkit/faults/items", es.url()), &json!({"count": 1, "fault": {"custom": {"status": 503, "error_type": "unavailable_shards_exception", "reason": "primary shard is not active"}}})).await;
    assert_eq!(scheduled.status, 200, "{}", scheduled.body);
    let answer =
        bulk(&format!("{}/_bulk", es.url()), "{\"index\":{\"_index\":\"logs\",\"_id\":\"9\"}}\n{\"level\":\"INFO\"}\n")
            .await;
    assert_eq!(answer.body["items"][0]["index"]["status"], 503);
    assert_eq!(answer.body["items"][0]["index"]["error"]["type"], "unavailable_shards_exception");
    let cleared = request("DELETE", &format!("{}/_testkit/faults", es.url()), None).await;
    assert_eq!(cleared.status, 200);
    let answer = bulk(
        &format!("{}/_bulk", es.url()),
        "{\"index\":{\"_index\":\"logs\",\"_id\":\"p\"}}\n{\"level\":\"POISON\"}\n",
    )
    .await;
    assert_eq!(answer.body["errors"], false);
    assert_eq!(es.handle().stats().injected_item_faults, 4);
}

#[tokio::test]
async fn gzip_bodies_refresh_wait_for_and_filter_path() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    let ndjson = "{\"index\":{\"_index\":\"zipped\",\"_id\":\"1\"}}\n{\"message\":\"compressed\"}\n";
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(ndjson.as_bytes()).unwrap();
    let compressed = encoder.finish().unwrap();
    let answer = send(
        es_support::client()
            .post(format!("{}/_bulk?refresh=wait_for&filter_path=errors,items.*.status", es.url()))
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", "gzip")
            .body(compressed),
    )
    .await;
    assert_eq!(answer.body, json!({"errors": false, "items": [{"index": {"status": 201}}]}));
    let count = get(&format!("{}/zipped/_count", es.url())).await;
    assert_eq!(count.body["count"], 1, "refresh=wait_for makes the write searchable before answering");

    let forced = bulk(
        &format!("{}/_bulk?refresh=true", es.url()),
        "{\"index\":{\"_index\":\"zipped\",\"_id\":\"2\"}}\n{\"message\":\"x\"}\n",
    )
    .await;
    assert_eq!(forced.body["items"][0]["index"]["forced_refresh"], true);
}

#[tokio::test]
async fn whole_request_errors_and_harness_faults() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    let url = format!("{}/_bulk", es.url());
    let unterminated = bulk(&url, "{\"index\":{\"_index\":\"logs\"}}\n{\"a\":1}").await;
    assert_eq!(unterminated.status, 400);
    assert_eq!(unterminated.body["error"]["reason"], "The bulk request must be terminated by a newline [\\n]");
    let empty = bulk(&url, "").await;
    assert_eq!(empty.body["error"]["reason"], "Validation Failed: 1: no requests added;");
    let bad_action = bulk(&url, "{\"upsert\":{}}\n{}\n").await;
    assert_eq!(bad_action.body["error"]["type"], "illegal_argument_exception");
    let bad_name = bulk(&url, "{\"index\":{\"_index\":\"Logs\"}}\n{}\n").await;
    assert_eq!(bad_name.body["items"][0]["index"]["error"]["type"], "invalid_index_name_exception");
    let wrong_type =
        send(es_support::client().post(&url).header("content-type", "text/plain").body("{\"index\":{}}\n{}\n")).await;
    assert_eq!(wrong_type.status, 406);
    assert_eq!(wrong_type.body, json!({"error": "Content-Type header [text/plain] is not supported", "status": 406}));

    let scheduled = post(
        &format!("{}/_testkit/faults/http", es.url()),
        &json!({"count": 1, "status": 429, "path_prefix": "/_bulk"}),
    )
    .await;
    assert_eq!(scheduled.body["http_pending"], 1);
    let rejected = bulk(&url, "{\"index\":{\"_index\":\"logs\"}}\n{}\n").await;
    assert_eq!(rejected.status, 429);
    assert_eq!(rejected.body["error"]["type"], "es_rejected_execution_exception");
    es.http_faults().drop_next(1);
    let dropped = es_support::client()
        .post(&url)
        .header("content-type", "application/x-ndjson")
        .body("{\"index\":{\"_index\":\"logs\"}}\n{}\n")
        .send()
        .await;
    assert!(dropped.is_err(), "the connection closes without an answer");
    let fine = bulk(&url, "{\"index\":{\"_index\":\"logs\"}}\n{}\n").await;
    assert_eq!(fine.status, 200);
    assert_eq!(fine.body["errors"], Value::Bool(false));
}
