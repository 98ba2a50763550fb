//! Fidelity check: the official `elasticsearch` Python client (version
//! pinned in `testkit/python/requirements.txt`) talks to the emulator
//! pretending to be Elasticsearch 8 with basic auth. The client checks the
//! product header and content types itself, so a passing run means a real
//! client accepts the emulator's answers. The test fails, naming the pip
//! command, when Python or the client is missing; it never passes silently.

use std::path::PathBuf;

use serde_json::Value;
use testkit::es::{EsConfig, EsEmulator};

const INSTALL_HINT: &str = "python3 -m pip install -r testkit/python/requirements.txt";

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_indexes_bulks_pages_and_uses_pit() {
    let probe = tokio::process::Command::new(python())
        .args(["-c", "import elasticsearch; print(elasticsearch.__versionstr__)"])
        .output()
        .await;
    match &probe {
        Err(error) => panic!("cannot run {}: {error}; install Python 3 and then run: {INSTALL_HINT}", python()),
        Ok(output) if !output.status.success() => panic!(
            "the official 'elasticsearch' Python client is not installed for {}; run: {INSTALL_HINT}\n{}",
            python(),
            String::from_utf8_lossy(&output.stderr)
        ),
        Ok(_) => {}
    }

    let es = EsEmulator::start(EsConfig::elasticsearch("8.15.0").unwrap().with_basic_auth("elastic", "changeme"))
        .await
        .unwrap();
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "python", "es_client_check.py"].iter().collect();
    let output = tokio::process::Command::new(python())
        .arg(&script)
        .args([es.url().as_str(), "elastic", "changeme"])
        .output()
        .await
        .expect("the check script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code() != Some(3), "{stderr}\nrun: {INSTALL_HINT}");
    assert!(
        output.status.success(),
        "es_client_check.py failed ({:?})\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("no JSON report ({error}): {stdout}"));

    assert_eq!(report["server_version"], "8.15.0");
    assert!(report["client_version"].as_str().unwrap().starts_with("8."), "{report}");
    assert_eq!(report["index_exists"], true);
    assert_eq!(report["single_result"], "created");
    assert_eq!(report["bulk_succeeded"], 60);
    assert_eq!(report["bulk_errors"], 0);
    assert_eq!(report["bad_succeeded"], 0);
    assert_eq!(report["bad_error_type"], "document_parsing_exception");
    assert_eq!(report["bad_status"], 400);
    assert_eq!(report["count"], 61);
    assert_eq!(report["filtered_total"], 13);
    assert_eq!(report["search_after_ids"], 61);
    assert_eq!(report["search_after_unique"], 61);
    assert_eq!(report["search_after_ordered"], true);
    assert_eq!(report["pit_supported"], true, "elasticsearch-py 8.x has open_point_in_time");
    assert_eq!(report["pit_ids"], 61, "the PIT pages over the snapshot only");
    assert_eq!(report["pit_saw_late"], false);
    assert_eq!(report["pit_closed"], true);
    assert_eq!(report["closed_pit_error"], 404);
    assert_eq!(report["missing_index_error"], "index_not_found_exception");

    let stats = es.handle().stats();
    assert_eq!(stats.pits_opened, 1);
    assert_eq!(stats.pits_open, 0);
    assert!(stats.bulk_requests >= 2);
    let requests = es.requests().snapshot();
    let bulk_request = requests.iter().find(|request| request.path == "/_bulk").expect("helpers.bulk posts to /_bulk");
    let content_type =
        bulk_request.headers.get("content-type").and_then(|value| value.to_str().ok()).unwrap_or_default();
    assert!(content_type.contains("x-ndjson"), "the client sent {content_type}");
}
