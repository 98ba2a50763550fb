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

/// mimalloc instead of the system allocator: events are allocated by a source
/// task and freed by a sink task on another thread, many small blocks at a
/// time, which mimalloc's per-thread free lists handle without the lock
/// traffic and heap trimming of glibc's malloc (see BENCHMARKS.md).
/// `pipe::memory::tune` sets its options first thing in `main`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// ElastAlert rule tools.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
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

#[derive(Subcommand)]
enum RuleCommand {
    /// Replay recorded events through rule files with the engine the `rules`
    /// transform runs (the counterpart of elastalert-test-rule). Prints each
    /// match (or alert) as one JSON object per line; a summary on stderr.
    Test {
        /// ElastAlert rule files (YAML).
        #[arg(required = true)]
        rule_files: Vec<PathBuf>,
        /// Recorded events, one JSON object per line.
        #[arg(long)]
        events: PathBuf,
        /// Run every rule on this schedule instead of its run_every ("30s", "5m").
        #[arg(long, value_parser = parse_duration_argument)]
        run_every: Option<std::time::Duration>,
        /// First run starts here (RFC 3339); default: the first event's time.
        #[arg(long, value_parser = parse_time_argument)]
        start: Option<chrono::DateTime<chrono::Utc>>,
        /// Runs go on until one ends here (RFC 3339); default: the last
        /// event's time plus the rule's timeframe.
        #[arg(long, value_parser = parse_time_argument)]
        end: Option<chrono::DateTime<chrono::Utc>>,
        /// Print alert events (after realert and aggregation) instead of matches.
        #[arg(long)]
        alerts: bool,
        /// An ElastAlert config.yaml whose keys are defaults for every rule.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn parse_duration_argument(text: &str) -> Result<std::time::Duration, String> {
    pipe::config::units::parse_duration(text).map_err(|error| error.to_string())
}

fn parse_time_argument(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    pipe::rules::time::parse_iso(text)
        .map(|time| time.with_timezone(&chrono::Utc))
        .ok_or_else(|| format!("{text:?} is not a time; write it like 2024-01-01T00:00:00Z"))
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
    pipe::memory::tune();
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
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
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
        Command::Es { command: EsCommand::Setup { endpoint, prefix, user, password } } => {
            es_setup(endpoint, &prefix, user, password)
        }
        Command::Rule { command: RuleCommand::Test { rule_files, events, run_every, start, end, alerts, config } } => {
            rule_test(
                &rule_files,
                &events,
                run_every,
                pipe::rules::ReplayOptions { start, end, alerts },
                config.as_deref(),
            )
        }
    }
}

fn es_setup(endpoint: String, prefix: &str, user: Option<String>, password: Option<String>) -> anyhow::Result<u8> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
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

/// `pipe rule test`: load every rule (reporting each failure), replay, print.
fn rule_test(
    rule_files: &[PathBuf],
    events_path: &std::path::Path,
    run_every: Option<std::time::Duration>,
    options: pipe::rules::ReplayOptions,
    config: Option<&std::path::Path>,
) -> anyhow::Result<u8> {
    use pipe::rules::{config::DurationSetting, load_global_config, load_rule_file, replay, RuleDefinition};
    use std::io::Write as _;

    let defaults = config.map(load_global_config).transpose()?;
    let mut definitions = Vec::new();
    let mut failed = 0;
    for path in rule_files {
        let loaded = load_rule_file(path, defaults.as_ref()).and_then(|mut rule| {
            if let Some(run_every) = run_every {
                rule.run_every = Some(DurationSetting(run_every));
            }
            RuleDefinition::from_config(rule)
        });
        match loaded {
            Ok(definition) => definitions.push(definition),
            Err(error) => {
                eprintln!("error: {error}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} rule file(s) failed to load; nothing was replayed");
        return Ok(1);
    }
    let text = std::fs::read_to_string(events_path)
        .with_context(|| format!("cannot read the events file {:?}", events_path.display().to_string()))?;
    let events = pipe::rules::replay::parse_ndjson(&text, "rule_test")
        .with_context(|| format!("events file {:?}", events_path.display().to_string()))?;
    let output = replay(definitions, &events, &options)?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for record in &output.records {
        writeln!(stdout, "{record}")?;
    }
    stdout.flush()?;
    let summary = &output.summary;
    let mut line = format!("events: {}, runs: {}, matches: {}", summary.events, summary.runs, summary.matches);
    if options.alerts {
        line.push_str(&format!(", alerts: {}", summary.alerts));
    }
    if summary.events_without_timestamp > 0 {
        line.push_str(&format!(", events without a timestamp (skipped): {}", summary.events_without_timestamp));
    }
    eprintln!("{line}");
    Ok(0)
}
