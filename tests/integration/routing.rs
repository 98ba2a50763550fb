//! `filter` and `route` in real pipelines, run by the `pipe` binary.

use super::support::{read_ndjson, Pipe, Scratch};

#[tokio::test]
async fn filter_and_route_split_the_demo_stream_and_acknowledge_everything() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "pipe.toml",
        r#"
data_dir = "{dir}/data"
[api]
address = "127.0.0.1:0"

[sources.demo]
type = "demo"
count = 3000
seed = 9

[transforms.errors]
type = "filter"
inputs = ["demo"]
condition = "message:'Traceback' OR message:*Exception* OR source:*Defend*"

[transforms.by_host]
type = "route"
inputs = ["errors"]
mode = "first"
keyword_fields = ["host"]
routes = [
  { name = "qa_wallet", condition = "host:*wallet* AND host:*qa*" },
  { name = "wallet", condition = "host:*wallet*" },
]

[sinks.wallet]
type = "file"
inputs = ["by_host.wallet"]
path = "{dir}/wallet.ndjson"

[sinks.other]
type = "file"
inputs = ["by_host._unmatched"]
path = "{dir}/other.ndjson"

[sinks.silenced]
type = "blackhole"
inputs = ["by_host.qa_wallet"]
"#,
    );
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    assert!(!pipe.stderr().contains("is not consumed"), "every output is wired: {}", pipe.stderr());

    let wallet = read_ndjson(&scratch.path("wallet.ndjson"));
    let other = read_ndjson(&scratch.path("other.ndjson"));
    assert!(!wallet.is_empty() && !other.is_empty());
    for event in &wallet {
        assert_eq!(event["host"], "wallet-prod-02", "{event}");
    }
    for event in wallet.iter().chain(&other) {
        let message = event["message"].as_str().unwrap_or_default().to_lowercase();
        let source = event["source"].as_str().unwrap_or_default();
        assert!(message.contains("traceback") || message.contains("exception") || source.contains("Defend"), "{event}");
        assert!(!event["host"].as_str().unwrap().contains("wallet-qa"), "{event}");
    }
}
