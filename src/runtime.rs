//! The `pipe run` lifecycle: load, validate, serve the API, run the
//! topology, reload on SIGHUP or file changes, shut down on SIGINT/SIGTERM.
//!
//! Reload is drain-and-restart: the new configuration is loaded and built
//! first; if that fails the error is logged, counted in
//! `pipe_config_reloads_total{result="rejected"}` and the running pipeline
//! is left untouched. If it succeeds, the running topology is stopped
//! gracefully (sources commit what was delivered, everything in flight
//! drains) and the new one starts, so acknowledged data is neither lost nor
//! duplicated. The API listener keeps running across reloads unless its
//! address changed.
//!
//! Exit status: 0 after a clean stop or when every component finished on its
//! own; 1 when a component failed or had to be forced at `shutdown_timeout`;
//! a second SIGINT/SIGTERM exits at once with 130.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

use crate::config::graph::{self, BuiltPipeline};
use crate::config::{ConfigErrors, ConfigSource, PipelineConfig};
use crate::observability::progress::PROGRESS_INTERVAL;
use crate::observability::{api, Telemetry};
use crate::topology::RunningTopology;

/// How often `--watch` looks at the configuration files.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub struct RunOptions {
    pub source: ConfigSource,
    pub watch: bool,
    pub prometheus: Option<PrometheusHandle>,
}

/// Loads and builds a configuration, logging its warnings.
pub fn load_and_build(source: &ConfigSource) -> Result<(PipelineConfig, BuiltPipeline), ConfigErrors> {
    let (config, built) = graph::load_and_build(source)?;
    for warning in &built.warnings {
        tracing::warn!("{warning}");
    }
    Ok((config, built))
}

enum Event {
    Stop,
    Reload,
    Finished,
}

struct ApiServer {
    address: std::net::SocketAddr,
    task: JoinHandle<()>,
}

async fn start_api(
    config: &PipelineConfig,
    prometheus: Option<PrometheusHandle>,
    telemetry: &Telemetry,
) -> std::io::Result<Option<ApiServer>> {
    if !config.global.api.enabled {
        return Ok(None);
    }
    let requested = config.global.api.address;
    let (bound, serve) = api::bind(requested, prometheus, telemetry.clone()).await.map_err(|error| {
        std::io::Error::new(error.kind(), format!("cannot listen on [api] address {requested}: {error}; choose another address or stop the process using it"))
    })?;
    tracing::info!(address = %bound, "api listening on http://{bound}");
    let task = tokio::spawn(async move {
        if let Err(error) = serve.await {
            tracing::error!(%error, "the api listener stopped");
        }
    });
    Ok(Some(ApiServer { address: requested, task }))
}

/// Runs until stopped; returns the process exit code.
pub async fn run(options: RunOptions, initial: (PipelineConfig, BuiltPipeline)) -> std::io::Result<i32> {
    let telemetry = Telemetry::default();
    let (mut config, built) = initial;
    let mut api_server = start_api(&config, options.prometheus.clone(), &telemetry).await?;
    let progress = {
        let progress = telemetry.progress.clone();
        tokio::spawn(async move { progress.log_periodically(PROGRESS_INTERVAL).await })
    };
    let reloads_applied = metrics::counter!("pipe_config_reloads_total", "result" => "applied");
    let reloads_rejected = metrics::counter!("pipe_config_reloads_total", "result" => "rejected");

    tracing::info!(components = config.component_count(), "pipeline starting");
    let mut topology = RunningTopology::start(built, telemetry.clone());
    let mut signals = Signals::new()?;
    let mut watched = file_stamps(&config.files);

    let exit_code = loop {
        let event = tokio::select! {
            // Every arm is cancel-safe: signal streams and sleeps lose nothing
            // when another arm wins, and `finished` only awaits join handles.
            signal = signals.next() => match signal {
                SignalKind::Stop => Event::Stop,
                SignalKind::Reload => Event::Reload,
            },
            _ = tokio::time::sleep(WATCH_INTERVAL), if options.watch => {
                let current = file_stamps(&config.files);
                if current == watched { continue }
                watched = current;
                Event::Reload
            }
            _ = topology.finished() => Event::Finished,
        };
        match event {
            Event::Finished => {
                let report = topology.stop(config.global.shutdown_timeout).await;
                tracing::info!("every component has finished");
                break if report.is_clean() { 0 } else { 1 };
            }
            Event::Stop => {
                tracing::info!(timeout = ?config.global.shutdown_timeout, "shutting down: stopping sources and draining; send the signal again to exit at once");
                let stop = topology.stop(config.global.shutdown_timeout);
                let second_stop_signal = async {
                    while let SignalKind::Reload = signals.next().await {
                        tracing::warn!("ignoring SIGHUP while shutting down");
                    }
                };
                let report = tokio::select! {
                    // A second stop signal abandons the drain on purpose.
                    _ = second_stop_signal => {
                        tracing::error!("second signal: exiting without draining; unacknowledged events will be read again");
                        return Ok(130);
                    }
                    report = stop => report,
                };
                if report.is_clean() {
                    tracing::info!("shutdown complete");
                    break 0;
                }
                tracing::error!(failed = ?report.failed, forced = ?report.forced, "shutdown finished with errors");
                break 1;
            }
            Event::Reload => {
                tracing::info!("reloading configuration");
                let (new_config, new_built) = match load_and_build(&options.source) {
                    Ok(loaded) => loaded,
                    Err(errors) => {
                        reloads_rejected.increment(1);
                        tracing::error!(
                            "the new configuration is invalid; the running pipeline is unchanged:\n{errors}"
                        );
                        continue;
                    }
                };
                let report = topology.stop(config.global.shutdown_timeout).await;
                if !report.is_clean() {
                    tracing::warn!(failed = ?report.failed, forced = ?report.forced, "the old pipeline did not stop cleanly");
                }
                telemetry.health.clear();
                if api_server.as_ref().map(|server| server.address)
                    != new_config.global.api.enabled.then_some(new_config.global.api.address)
                {
                    if let Some(server) = api_server.take() {
                        server.task.abort();
                    }
                    api_server = start_api(&new_config, options.prometheus.clone(), &telemetry).await?;
                }
                config = new_config;
                watched = file_stamps(&config.files);
                topology = RunningTopology::start(new_built, telemetry.clone());
                reloads_applied.increment(1);
                tracing::info!(components = config.component_count(), "configuration reloaded");
            }
        }
    };
    progress.abort();
    if let Some(server) = api_server {
        server.task.abort();
    }
    Ok(exit_code)
}

fn file_stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|path| std::fs::metadata(path).ok().and_then(|meta| Some((meta.modified().ok()?, meta.len()))))
        .collect()
}

enum SignalKind {
    Stop,
    Reload,
}

struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind as Kind};
        Ok(Signals {
            interrupt: signal(Kind::interrupt())?,
            terminate: signal(Kind::terminate())?,
            hangup: signal(Kind::hangup())?,
        })
    }

    async fn next(&mut self) -> SignalKind {
        tokio::select! {
            _ = self.interrupt.recv() => SignalKind::Stop,
            _ = self.terminate.recv() => SignalKind::Stop,
            _ = self.hangup.recv() => SignalKind::Reload,
        }
    }
}
