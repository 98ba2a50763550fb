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
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    match Cli::parse().emulator {
        Emulator::BlackholeHttp { addr } => {
            let (router, _stats) = testkit::blackhole::router();
            EmulatorServer::start_on(addr, router).await?.serve_forever().await;
        }
    }
    Ok(())
}
