//! `pipe-testkit`: starts one emulator per invocation, prints
//! `listening on http://ADDR` when ready, and serves until killed.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use testkit::http::EmulatorServer;

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
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
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
    }
    Ok(())
}
