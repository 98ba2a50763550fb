//! `pipe-testkit`: starts one emulator per invocation, prints
//! `listening on http://ADDR` when ready, and serves until killed.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use testkit::http::EmulatorServer;
use testkit::sls::{DemoData, SlsEmulator};

#[derive(Parser)]
#[command(name = "pipe-testkit", version, about = "Protocol-faithful emulators for testing pipe")]
struct Cli {
    #[command(subcommand)]
    emulator: Emulator,
}

#[derive(Subcommand)]
enum Emulator {
    /// Accept any POST and count requests and bytes (GET /_testkit/stats).
    BlackholeHttp {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
    /// Splunk HTTP Event Collector: tokens, channels, indexer acks, partial failures, faults.
    Hec(testkit::hec::HecArgs),
    /// WeCom (企业微信): gettoken, app message/send, group robot webhook, rate limits, errcode faults.
    Wecom(testkit::wecom::WecomArgs),
    /// Alibaba Cloud Log Service (consumer groups, PullLogs) preloaded with
    /// deterministic demo logs. Control endpoints live under /_testkit/.
    Sls {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// Project name (clients send it as the first label of Host).
        #[arg(long, default_value = "demo-project")]
        project: String,
        /// Logstore to create; repeat for several.
        #[arg(long = "logstore", default_value = "demo-logstore")]
        logstores: Vec<String>,
        /// Shards per logstore.
        #[arg(long, default_value_t = 2)]
        shards: u32,
        /// Demo log groups preloaded into every shard.
        #[arg(long, default_value_t = 100)]
        log_groups_per_shard: usize,
        /// Logs per demo log group.
        #[arg(long, default_value_t = 10)]
        logs_per_group: usize,
        /// Seed of the demo log generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Verify v1 signatures with this AccessKeyId (needs the secret too).
        #[arg(long, requires = "access_key_secret")]
        access_key_id: Option<String>,
        /// The AccessKeySecret matching --access-key-id.
        #[arg(long, requires = "access_key_id")]
        access_key_secret: Option<String>,
        /// Byte budget of the compressed pull-response cache, in MiB.
        #[arg(long, default_value_t = 512)]
        pull_cache_mib: usize,
    },
    /// Elasticsearch / OpenSearch emulator (control API under /_testkit/).
    Es(Box<EsArgs>),
}

#[derive(clap::Args)]
struct EsArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// elasticsearch or opensearch.
    #[arg(long, default_value = "elasticsearch")]
    distribution: String,
    /// Release to emulate, MAJOR.MINOR.PATCH (ES 6.8/7.x/8.x, OpenSearch 1.x/2.x).
    #[arg(long, default_value = "8.15.0")]
    version: String,
    /// Require basic auth with this user (with --password).
    #[arg(long, requires = "password")]
    user: Option<String>,
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// Accept `Authorization: ApiKey <value>`; base64(id:key) or id:key.
    #[arg(long)]
    api_key: Option<String>,
    /// Accept `Authorization: Bearer <token>`.
    #[arg(long)]
    bearer_token: Option<String>,
    /// Default index refresh interval (`1s`, `250ms`, `-1` for manual only).
    #[arg(long, default_value = "1s", allow_hyphen_values = true)]
    refresh_interval: String,
    /// Preload this many demo documents (DemoLogGenerator).
    #[arg(long, default_value_t = 0)]
    demo_docs: usize,
    /// Index (strftime pattern allowed) for demo documents.
    #[arg(long, default_value = "logstash-%Y.%m.%d")]
    demo_index: String,
    /// Seed for demo documents.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn es_config(args: &EsArgs) -> Result<testkit::es::EsConfig, Box<dyn std::error::Error>> {
    let distribution: testkit::es::Distribution = args.distribution.parse()?;
    let mut config = match distribution {
        testkit::es::Distribution::Elasticsearch => testkit::es::EsConfig::elasticsearch(&args.version)?,
        testkit::es::Distribution::OpenSearch => testkit::es::EsConfig::opensearch(&args.version)?,
    };
    let interval = testkit::es::store::parse_time_value(&args.refresh_interval).ok_or_else(|| {
        format!("--refresh-interval {:?} is not a duration; use 1s, 250ms or -1", args.refresh_interval)
    })?;
    config = config.with_refresh_interval(interval);
    if let (Some(user), Some(password)) = (&args.user, &args.password) {
        config = config.with_basic_auth(user, password);
    }
    if let Some(key) = &args.api_key {
        config = config.with_api_key(key);
    }
    if let Some(token) = &args.bearer_token {
        config = config.with_bearer_token(token);
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().emulator {
        Emulator::BlackholeHttp { addr } => {
            let (router, _stats) = testkit::blackhole::router();
            EmulatorServer::start_on(addr, router).await?.serve_forever().await;
        }
        Emulator::Hec(args) => {
            let mut builder = args.builder();
            if let Some(path) = &args.tls_ca_out {
                let identity = testkit::tls::TlsIdentity::generate().map_err(std::io::Error::other)?;
                std::fs::write(path, identity.ca_pem())?;
                builder = builder.tls(identity);
            }
            let emulator = builder.start_on(args.addr).await.map_err(std::io::Error::other)?;
            emulator.serve_forever().await;
        }
        Emulator::Wecom(args) => {
            let builder = args.builder().map_err(std::io::Error::other)?;
            let emulator = builder.start_on(args.addr).await.map_err(std::io::Error::other)?;
            emulator.serve_forever().await;
        }
        Emulator::Sls {
            addr,
            project,
            logstores,
            shards,
            log_groups_per_shard,
            logs_per_group,
            seed,
            access_key_id,
            access_key_secret,
            pull_cache_mib,
        } => {
            let mut builder =
                SlsEmulator::builder().address(addr).project(&project).pull_cache_bytes(pull_cache_mib * 1024 * 1024);
            if let (Some(id), Some(secret)) = (&access_key_id, &access_key_secret) {
                builder = builder.credentials(id, secret);
            }
            let demo = DemoData::new(seed, log_groups_per_shard, logs_per_group);
            for logstore in &logstores {
                builder = builder.logstore(&project, logstore, shards).demo_data(&project, logstore, demo);
            }
            builder.build().await?.serve_forever().await;
        }
        Emulator::Es(args) => {
            let config = es_config(&args)
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error.to_string()))?;
            let emulator = testkit::es::EsEmulator::start_on(args.addr, config).await?;
            if args.demo_docs > 0 {
                let demo = testkit::es::DemoFixture {
                    index: args.demo_index.clone(),
                    count: args.demo_docs,
                    seed: args.seed,
                    span_seconds: 600.0,
                    end_offset_seconds: 0.0,
                    timestamp_field: "@timestamp".to_string(),
                    refresh: true,
                };
                emulator
                    .handle()
                    .load_demo(&demo)
                    .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error.to_string()))?;
            }
            emulator.serve_forever().await;
        }
    }
    Ok(())
}
