//! Refresh semantics over HTTP: writes are invisible to search and count
//! until a refresh (manual, `?refresh=`, or the refresh interval), while
//! get-by-id is real-time.

mod es_support;
// Re-exported so shared helpers this file does not call are not reported
// as unused in this test crate.
pub use es_support::*;

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::es::{EsConfig, EsEmulator};

async fn count(url: &str) -> u64 {
    get(&format!("{url}/logs/_count")).await.body["count"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn documents_appear_only_after_a_refresh() {
    let es = EsEmulator::start(EsConfig::elasticsearch("8.15.0").unwrap().with_refresh_interval(None)).await.unwrap();
    let url = es.url();
    bulk(&format!("{url}/_bulk"), "{\"index\":{\"_index\":\"logs\",\"_id\":\"1\"}}\n{\"m\":1}\n").await;
    assert_eq!(count(&url).await, 0, "not refreshed yet");
    let search = get(&format!("{url}/logs/_search")).await;
    assert_eq!(search.body["hits"]["total"]["value"], 0);
    let real_time = get(&format!("{url}/logs/_doc/1")).await;
    assert_eq!(real_time.body["found"], true, "get by id does not wait for a refresh");
    let documents = get(&format!("{url}/_testkit/documents?index=logs")).await;
    assert_eq!(documents.body["documents"][0]["searchable"], false);

    let refreshed = post(&format!("{url}/logs/_refresh"), &json!({})).await;
    assert_eq!(refreshed.body["_shards"]["successful"], 1);
    assert_eq!(count(&url).await, 1);

    let single = request("PUT", &format!("{url}/logs/_doc/2?refresh=true"), Some(&json!({"m": 2}))).await;
    assert_eq!(single.status, 201);
    assert_eq!(single.body["result"], "created");
    assert_eq!(single.body["forced_refresh"], true);
    assert_eq!(count(&url).await, 2);

    request("DELETE", &format!("{url}/logs/_doc/1"), None).await;
    assert_eq!(count(&url).await, 2, "a delete is also invisible until refreshed");
    post(&format!("{url}/_testkit/refresh?index=logs"), &json!({})).await;
    assert_eq!(count(&url).await, 1);
}

#[tokio::test]
async fn the_refresh_interval_makes_writes_visible_on_its_own() {
    let interval = Duration::from_millis(500);
    let es =
        EsEmulator::start(EsConfig::opensearch("2.11.0").unwrap().with_refresh_interval(Some(interval))).await.unwrap();
    let url = es.url();
    let written_at = Instant::now();
    bulk(&format!("{url}/_bulk"), "{\"index\":{\"_index\":\"logs\"}}\n{\"m\":1}\n").await;
    let early = count(&url).await;
    // Only meaningful when the machine answered within the interval.
    if written_at.elapsed() < interval {
        assert_eq!(early, 0, "visible only after the interval");
    }
    assert!(
        wait_until(Duration::from_secs(5), || {
            let url = url.clone();
            async move { count(&url).await == 1 }
        })
        .await
    );

    // A per-index setting overrides the default: -1 never refreshes by itself.
    request("PUT", &format!("{url}/manual"), Some(&json!({"settings": {"index": {"refresh_interval": "-1"}}}))).await;
    bulk(
        &format!("{url}/_bulk"),
        "{\"index\":{\"_index\":\"manual\"}}\n{\"m\":1}\n{\"index\":{\"_index\":\"logs\"}}\n{\"m\":2}\n",
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(5), || {
            let url = url.clone();
            async move { count(&url).await == 2 }
        })
        .await
    );
    assert_eq!(get(&format!("{url}/manual/_count")).await.body["count"], 0);
    let settings = get(&format!("{url}/manual/_settings")).await;
    assert_eq!(settings.body["manual"]["settings"]["index"]["refresh_interval"], "-1");
}
