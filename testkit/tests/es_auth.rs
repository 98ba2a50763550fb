//! Authentication and REST-compatibility headers over HTTP.

mod es_support;
// Re-exported so shared helpers this file does not call are not reported
// as unused in this test crate.
pub use es_support::*;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;
use testkit::es::{EsConfig, EsEmulator};

#[tokio::test]
async fn basic_api_key_and_bearer_credentials_are_checked() {
    let config = EsConfig::elasticsearch("8.15.0")
        .unwrap()
        .with_basic_auth("elastic", "s3cret")
        .with_api_key("key-id:key-secret")
        .with_bearer_token("token-1");
    assert!(!format!("{config:?}").contains("s3cret"), "secrets stay out of Debug output");
    let es = EsEmulator::start(config).await.unwrap();
    let url = es.url();

    let missing = get(&url).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.body["error"]["type"], "security_exception");
    assert_eq!(missing.body["error"]["reason"], "missing authentication credentials for REST request [/]");
    assert_eq!(missing.body["error"]["root_cause"][0]["type"], "security_exception");
    let challenges: Vec<&str> =
        missing.headers.get_all("www-authenticate").iter().map(|value| value.to_str().unwrap()).collect();
    assert!(challenges.iter().any(|challenge| challenge.starts_with("Basic realm=\"security\"")), "{challenges:?}");
    assert!(challenges.contains(&"ApiKey"));
    assert!(missing.headers.get("x-elastic-product").is_none(), "401s carry no product header");

    let wrong = send(es_support::client().get(format!("{url}/_search")).basic_auth("elastic", Some("nope"))).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body["error"]["reason"], "unable to authenticate user [elastic] for REST request [/_search]");
    assert!(!wrong.body.to_string().contains("nope"));

    let basic = send(es_support::client().get(&url).basic_auth("elastic", Some("s3cret"))).await;
    assert_eq!(basic.status, 200);
    let api_key = send(
        es_support::client()
            .get(&url)
            .header("authorization", format!("ApiKey {}", STANDARD.encode("key-id:key-secret"))),
    )
    .await;
    assert_eq!(api_key.status, 200);
    let bad_key = send(es_support::client().get(&url).header("authorization", "ApiKey bm9wZQ==")).await;
    assert_eq!(bad_key.status, 401);
    let bearer = send(es_support::client().get(&url).bearer_auth("token-1")).await;
    assert_eq!(bearer.status, 200);

    let control = get(&format!("{url}/_testkit/stats")).await;
    assert_eq!(control.status, 200, "control endpoints need no credentials");
    assert_eq!(control.body["auth_failures"], 3);
}

#[tokio::test]
async fn open_when_unconfigured_and_opensearch_answers_plain_text() {
    let open = EsEmulator::start(EsConfig::elasticsearch("8.15.0").unwrap()).await.unwrap();
    assert_eq!(get(&open.url()).await.status, 200);
    let with_anything = send(es_support::client().get(open.url()).basic_auth("who", Some("ever"))).await;
    assert_eq!(with_anything.status, 200);

    let opensearch =
        EsEmulator::start(EsConfig::opensearch("2.11.0").unwrap().with_basic_auth("admin", "admin")).await.unwrap();
    let denied = get(&opensearch.url()).await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.body, json!("Unauthorized"));
    assert_eq!(denied.headers["www-authenticate"], "Basic realm=\"OpenSearch Security\"");
    let allowed = send(es_support::client().get(opensearch.url()).basic_auth("admin", Some("admin"))).await;
    assert_eq!(allowed.body["version"]["distribution"], "opensearch");
}

#[tokio::test]
async fn compatibility_headers_are_accepted_or_rejected_per_release() {
    let es8 = EsEmulator::start(EsConfig::elasticsearch("8.15.0").unwrap()).await.unwrap();
    let vnd = |version: u32| format!("application/vnd.elasticsearch+json; compatible-with={version}");
    for version in [7, 8] {
        let answer = send(
            es_support::client()
                .post(format!("{}/_count", es8.url()))
                .header("accept", vnd(version))
                .header("content-type", vnd(version))
                .body("{}"),
        )
        .await;
        assert_eq!(answer.status, 200, "compatible-with={version}: {}", answer.body);
        assert_eq!(
            answer.headers["content-type"].to_str().unwrap(),
            format!("application/vnd.elasticsearch+json;compatible-with={version}")
        );
    }
    let too_new = send(es_support::client().get(es8.url()).header("accept", vnd(9))).await;
    assert_eq!(too_new.status, 400);
    assert_eq!(too_new.body["error"]["type"], "media_type_header_exception");
    assert_eq!(too_new.body["error"]["caused_by"]["reason"], "Accept version must be either version 8 or 7, but found 9. Accept=application/vnd.elasticsearch+json; compatible-with=9");
    let mismatch = send(
        es_support::client()
            .post(format!("{}/_count", es8.url()))
            .header("accept", vnd(8))
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(mismatch.status, 400);
    assert!(mismatch.body["error"]["caused_by"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("A compatible version is required on both Content-Type and Accept headers"));

    let es710 = EsEmulator::start(EsConfig::elasticsearch("7.10.2").unwrap()).await.unwrap();
    let refused = send(
        es_support::client()
            .post(format!("{}/_count", es710.url()))
            .header("accept", vnd(8))
            .header("content-type", vnd(8))
            .body("{}"),
    )
    .await;
    assert_eq!(refused.status, 406);
    assert_eq!(
        refused.body,
        json!({"error": "Content-Type header [application/vnd.elasticsearch+json; compatible-with=8] is not supported", "status": 406})
    );
    let es717 = EsEmulator::start(EsConfig::elasticsearch("7.17.0").unwrap()).await.unwrap();
    let accepted = send(
        es_support::client()
            .post(format!("{}/_count", es717.url()))
            .header("accept", vnd(7))
            .header("content-type", vnd(7))
            .body("{}"),
    )
    .await;
    assert_eq!(accepted.status, 200);
    assert_eq!(accepted.headers["x-elastic-product"], "Elasticsearch");
}
