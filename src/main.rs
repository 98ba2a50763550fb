//! The `pipe` command line.
//!
//! `anyhow` lives here only; library code returns typed errors. Logs go to
//! standard error so standard output carries only what a console sink or a
//! subcommand prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use pipe::config::{graph, ConfigSource};
use pipe::runtime::{self, RunOptions};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "pipe", version, about = "Stream-processing pipelines for log shipping and alerting")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// More logging: -v for debug, -vv for trace. RUST_LOG, when set, wins.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline. Several files merge in order (later files override
    /// keys of earlier ones); with no file, the embedded demo pipeline runs.
    Run {
        /// Configuration files (TOML).
        configs: Vec<PathBuf>,
        /// Reload when a configuration file changes (SIGHUP always reloads).
        #[arg(long)]
        watch: bool,
    },
    /// Check configuration files without starting anything; prints every
    /// error and exits non-zero if there is one.
    Validate {
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Print the pipeline graph in Graphviz DOT.
    Graph {
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Elasticsearch tools.
    Es {
        #[command(subcommand)]
        command: EsCommand,
    },
}

#[derive(Subcommand)]
enum EsCommand {
    /// Create ElastAlert's writeback indices with their mappings
    /// (idempotent; the counterpart of elastalert-create-index).
    Setup {
        /// Elasticsearch URL, such as https://es.example.com:9200.
        endpoint: String,
        /// Writeback index prefix: creates PREFIX, PREFIX_status,
        /// PREFIX_silence, PREFIX_error and PREFIX_past.
        #[arg(long, default_value = pipe::sinks::elasticsearch::DEFAULT_WRITEBACK_INDEX)]
        prefix: String,
        /// Basic authentication user.
        #[arg(long, requires = "password")]
        user: Option<String>,
        /// Basic authentication password.
        #[arg(long, env = "PIPE_ES_PASSWORD", hide_env_values = true, requires = "user")]
        password: Option<String>,
    },
}

fn config_source(configs: Vec<PathBuf>) -> ConfigSource {
    if configs.is_empty() {
        ConfigSource::EmbeddedDemo
    } else {
        ConfigSource::Files(configs)
    }
}

fn init_logging(format: LogFormat, verbose: u8) {
    let default_level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.verbose);
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Run { configs, watch } => {
            let source = config_source(configs);
            let initial = match runtime::load_and_build(&source) {
                Ok(loaded) => loaded,
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("the configuration has {} error(s); nothing was started", errors.0.len());
                    return Ok(1);
                }
            };
            let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .context("cannot install the metrics recorder")?;
            let upkeep_handle = prometheus.clone();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
            let code = runtime.block_on(async move {
                // Keeps summaries from growing without bound between scrapes.
                tokio::spawn(async move {
                    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(5));
                    loop {
                        ticker.tick().await;
                        upkeep_handle.run_upkeep();
                    }
                });
                runtime::run(RunOptions { source, watch, prometheus: Some(prometheus) }, initial).await
            })?;
            // Tasks still blocked on stdin or a socket must not hold the exit.
            runtime.shutdown_background();
            Ok(code as u8)
        }
        Command::Validate { configs } => {
            let source = config_source(configs);
            match runtime::load_and_build(&source) {
                Ok((config, built)) => {
                    for warning in &built.warnings {
                        println!("warning: {warning}");
                    }
                    println!(
                        "valid: {} source(s), {} transform(s), {} sink(s)",
                        config.sources.len(),
                        config.transforms.len(),
                        config.sinks.len()
                    );
                    Ok(0)
                }
                Err(errors) => {
                    for error in &errors.0 {
                        println!("error: {error}");
                    }
                    println!("invalid: {} error(s)", errors.0.len());
                    Ok(1)
                }
            }
        }
        Command::Graph { configs } => {
            let config = match config_source(configs).load() {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(1);
                }
            };
            print!("{}", graph::to_dot(&config));
            Ok(0)
        }
        Command::Es { command: EsCommand::Setup { endpoint, prefix, user, password } } => es_setup(endpoint, &prefix, user, password),
    }
}

fn es_setup(endpoint: String, prefix: &str, user: Option<String>, password: Option<String>) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let report = runtime.block_on(pipe::sinks::elasticsearch::setup::run(&endpoint, prefix, user, password))?;
    println!("{}", report.server);
    for index in &report.created {
        println!("created {index}");
    }
    for index in &report.existing {
        println!("exists  {index} (mapping updated)");
    }
    Ok(0)
}
