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
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().emulator {
        Emulator::BlackholeHttp { addr } => {
            let (router, _stats) = testkit::blackhole::router();
            EmulatorServer::start_on(addr, router).await?.serve_forever().await;
        }
        Emulator::Hec(args) => {
            let emulator = args.builder().start_on(args.addr).await.map_err(std::io::Error::other)?;
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
            let mut builder = SlsEmulator::builder().address(addr).project(&project).pull_cache_bytes(pull_cache_mib * 1024 * 1024);
            if let (Some(id), Some(secret)) = (&access_key_id, &access_key_secret) {
                builder = builder.credentials(id, secret);
            }
            let demo = DemoData::new(seed, log_groups_per_shard, logs_per_group);
            for logstore in &logstores {
                builder = builder.logstore(&project, logstore, shards).demo_data(&project, logstore, demo);
            }
            builder.build().await?.serve_forever().await;
        }
    }
    Ok(())
}
