//! Configuration: from TOML files to a validated pipeline description.
//!
//! The path is raw input first, validated form second (as ripgrep's
//! low-level/high-level args):
//! 1. `loader` reads each file, interpolates the environment
//!    (`interpolate`), parses TOML and deep-merges the files in order.
//! 2. `PipelineConfig::from_table` splits the merged table into global
//!    options and component tables, and deserialises each component into its
//!    kind's `type`-tagged enum (`deny_unknown_fields` throughout).
//! 3. `graph::validate` checks the wiring (unknown inputs, cycles, missing
//!    inputs, named outputs) and builds every component once, which runs the
//!    component's own checks without starting anything.
//!
//! Every problem is collected, not just the first, and each message names the
//! file(s), the component id and the key, and says what to do.

pub mod graph;
pub mod interpolate;
mod loader;
pub mod secret;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

pub use loader::{load_files, load_text, ConfigSource, EMBEDDED_DEMO};

use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::topology::buffer::BufferOptions;
use crate::transforms::TransformConfig;

/// The three kinds of component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    Source,
    Transform,
    Sink,
}

impl ComponentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Source => "source",
            ComponentKind::Transform => "transform",
            ComponentKind::Sink => "sink",
        }
    }

    fn table_name(self) -> &'static str {
        match self {
            ComponentKind::Source => "sources",
            ComponentKind::Transform => "transforms",
            ComponentKind::Sink => "sinks",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configuration problem, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file(s) the problem comes from, joined with ", ".
    pub files: String,
    /// `source "id"`, `sink "id"`, or empty for file-level problems.
    pub component: String,
    pub message: String,
}

impl ConfigError {
    pub fn file_level(files: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { files: files.into(), component: String::new(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.files.is_empty(), self.component.is_empty()) {
            (false, false) => write!(f, "{}: {}: {}", self.files, self.component, self.message),
            (false, true) => write!(f, "{}: {}", self.files, self.message),
            (true, false) => write!(f, "{}: {}", self.component, self.message),
            (true, true) => f.write_str(&self.message),
        }
    }
}

/// All the problems found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

pub const DEFAULT_API_ADDRESS: &str = "127.0.0.1:9598";
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_DATA_DIR: &str = "data";

/// Settings that are not components.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalOptions {
    /// Local state: file checkpoints, dead letters, pending alerts.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub api: ApiOptions,
    /// How long a graceful shutdown may take before pipe forces it.
    #[serde(default = "default_shutdown_timeout", with = "units::duration")]
    pub shutdown_timeout: Duration,
}

impl Default for GlobalOptions {
    fn default() -> Self {
        GlobalOptions {
            data_dir: default_data_dir(),
            api: ApiOptions::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

fn default_shutdown_timeout() -> Duration {
    DEFAULT_SHUTDOWN_TIMEOUT
}

/// The HTTP listener for `/metrics` and `/health`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiOptions {
    #[serde(default = "default_api_address")]
    pub address: SocketAddr,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions { address: default_api_address(), enabled: true }
    }
}

fn default_api_address() -> SocketAddr {
    DEFAULT_API_ADDRESS.parse().expect("valid default address")
}

fn default_true() -> bool {
    true
}

/// A source as configured.
#[derive(Debug, Clone)]
pub struct SourceOuter {
    pub config: SourceConfig,
}

/// A transform as configured: its inputs and its type-specific settings.
#[derive(Debug, Clone)]
pub struct TransformOuter {
    pub inputs: Vec<String>,
    pub config: TransformConfig,
}

/// A sink as configured: inputs, input buffer and type-specific settings.
#[derive(Debug, Clone)]
pub struct SinkOuter {
    pub inputs: Vec<String>,
    pub buffer: BufferOptions,
    pub config: SinkConfig,
}

/// A whole pipeline, deserialised but not yet wired.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub global: GlobalOptions,
    pub sources: IndexMap<String, SourceOuter>,
    pub transforms: IndexMap<String, TransformOuter>,
    pub sinks: IndexMap<String, SinkOuter>,
    /// For each component id, the files that define or override it.
    pub origins: BTreeMap<String, Vec<String>>,
    /// Every file that was read, in order (what `--watch` watches).
    pub files: Vec<PathBuf>,
    /// Components whose own settings failed to deserialise, with their kind
    /// and raw inputs, so wiring problems around them are still reported.
    pub broken: BTreeMap<String, (ComponentKind, Vec<String>)>,
}

impl PipelineConfig {
    /// The files a component came from, for error messages.
    pub fn origin_of(&self, id: &str) -> String {
        self.origins.get(id).map(|files| files.join(", ")).unwrap_or_default()
    }

    pub fn component_count(&self) -> usize {
        self.sources.len() + self.transforms.len() + self.sinks.len()
    }

    /// Splits a merged table into components, collecting every problem.
    /// Components that fail are left out (and listed in `broken`).
    fn from_table(
        mut table: toml::Table,
        origins: BTreeMap<String, Vec<String>>,
        files: Vec<PathBuf>,
    ) -> (PipelineConfig, Vec<ConfigError>) {
        let all_files = files.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ");
        let mut errors = Vec::new();
        let origin = |id: &str| origins.get(id).map(|files| files.join(", ")).unwrap_or_else(|| all_files.clone());

        let mut take_kind = |kind: ComponentKind, errors: &mut Vec<ConfigError>| -> toml::Table {
            match table.remove(kind.table_name()) {
                None => toml::Table::new(),
                Some(toml::Value::Table(components)) => components,
                Some(other) => {
                    errors.push(ConfigError::file_level(
                        all_files.clone(),
                        format!("`{}` must be a table of components, found a {}", kind.table_name(), other.type_str()),
                    ));
                    toml::Table::new()
                }
            }
        };
        let source_tables = take_kind(ComponentKind::Source, &mut errors);
        let transform_tables = take_kind(ComponentKind::Transform, &mut errors);
        let sink_tables = take_kind(ComponentKind::Sink, &mut errors);

        let global = match GlobalOptions::deserialize(toml::Value::Table(table)) {
            Ok(global) => global,
            Err(error) => {
                errors.push(ConfigError::file_level(
                    all_files.clone(),
                    format!(
                        "{}; top-level keys are data_dir, api, shutdown_timeout, sources, transforms and sinks",
                        error.message()
                    ),
                ));
                GlobalOptions::default()
            }
        };

        let mut broken = BTreeMap::new();
        let mut seen: BTreeMap<String, ComponentKind> = BTreeMap::new();
        let mut check_unique = |id: &str, kind: ComponentKind, errors: &mut Vec<ConfigError>| {
            if let Some(previous) = seen.insert(id.to_string(), kind) {
                errors.push(ConfigError {
                    files: origin(id),
                    component: format!("{kind} \"{id}\""),
                    message: format!("the id \"{id}\" is also used by a {previous}; component ids must be unique across sources, transforms and sinks, so rename one of them"),
                });
            }
            if id.is_empty() || id.contains(['.', ' ']) {
                errors.push(ConfigError {
                    files: origin(id),
                    component: format!("{kind} \"{id}\""),
                    message: "component ids must be non-empty and contain no dots or spaces (a dot separates a named output: ID.NAME)".to_string(),
                });
            }
        };

        let mut sources = IndexMap::new();
        for (id, value) in source_tables {
            check_unique(&id, ComponentKind::Source, &mut errors);
            let component = format!("source \"{id}\"");
            let Some(mut component_table) = component_table(value, &origin(&id), &component, &mut errors) else {
                continue;
            };
            if component_table.remove("inputs").is_some() {
                errors.push(ConfigError {
                    files: origin(&id),
                    component: component.clone(),
                    message: "sources take no `inputs`; remove the key".to_string(),
                });
            }
            match deserialize_component::<SourceConfig>(component_table, SourceConfig::TYPES) {
                Ok(config) => {
                    sources.insert(id, SourceOuter { config });
                }
                Err(message) => {
                    errors.push(ConfigError { files: origin(&id), component, message });
                    broken.insert(id, (ComponentKind::Source, Vec::new()));
                }
            }
        }

        let mut transforms = IndexMap::new();
        for (id, value) in transform_tables {
            check_unique(&id, ComponentKind::Transform, &mut errors);
            let component = format!("transform \"{id}\"");
            let Some(mut component_table) = component_table(value, &origin(&id), &component, &mut errors) else {
                continue;
            };
            let inputs = take_inputs(&mut component_table, &origin(&id), &component, &mut errors);
            match deserialize_component::<TransformConfig>(component_table, TransformConfig::TYPES) {
                Ok(config) => {
                    transforms.insert(id, TransformOuter { inputs, config });
                }
                Err(message) => {
                    errors.push(ConfigError { files: origin(&id), component, message });
                    broken.insert(id, (ComponentKind::Transform, inputs));
                }
            }
        }

        let mut sinks = IndexMap::new();
        for (id, value) in sink_tables {
            check_unique(&id, ComponentKind::Sink, &mut errors);
            let component = format!("sink \"{id}\"");
            let Some(mut component_table) = component_table(value, &origin(&id), &component, &mut errors) else {
                continue;
            };
            let inputs = take_inputs(&mut component_table, &origin(&id), &component, &mut errors);
            let buffer = match component_table.remove("buffer") {
                None => BufferOptions::default(),
                Some(value) => match BufferOptions::deserialize(value) {
                    Ok(buffer) if buffer.max_events == 0 => {
                        errors.push(ConfigError {
                            files: origin(&id),
                            component: component.clone(),
                            message: "\"buffer.max_events\" is 0; set it above 0".to_string(),
                        });
                        buffer
                    }
                    Ok(buffer) => buffer,
                    Err(error) => {
                        errors.push(ConfigError {
                            files: origin(&id),
                            component: component.clone(),
                            message: format!("\"buffer\": {}", error.message()),
                        });
                        BufferOptions::default()
                    }
                },
            };
            match deserialize_component::<SinkConfig>(component_table, SinkConfig::TYPES) {
                Ok(config) => {
                    sinks.insert(id, SinkOuter { inputs, buffer, config });
                }
                Err(message) => {
                    errors.push(ConfigError { files: origin(&id), component, message });
                    broken.insert(id, (ComponentKind::Sink, inputs));
                }
            }
        }

        (PipelineConfig { global, sources, transforms, sinks, origins, files, broken }, errors)
    }
}

fn component_table(
    value: toml::Value,
    files: &str,
    component: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<toml::Table> {
    match value {
        toml::Value::Table(table) => Some(table),
        other => {
            errors.push(ConfigError {
                files: files.to_string(),
                component: component.to_string(),
                message: format!("expected a table of settings, found a {}", other.type_str()),
            });
            None
        }
    }
}

fn take_inputs(table: &mut toml::Table, files: &str, component: &str, errors: &mut Vec<ConfigError>) -> Vec<String> {
    match table.remove("inputs") {
        None => Vec::new(),
        Some(value) => match Vec::<String>::deserialize(value) {
            Ok(inputs) => inputs,
            Err(_) => {
                errors.push(ConfigError {
                    files: files.to_string(),
                    component: component.to_string(),
                    message: "\"inputs\" must be a list of component ids, like inputs = [\"my_source\"]".to_string(),
                });
                Vec::new()
            }
        },
    }
}

/// Deserialises a component table into its kind's tagged enum, turning serde's
/// messages into ones that list what is known.
fn deserialize_component<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    known_types: &[&str],
) -> Result<T, String> {
    let type_name = match table.get("type") {
        None => return Err(format!("missing \"type\"; set it to one of: {}", known_types.join(", "))),
        Some(toml::Value::String(type_name)) => type_name.clone(),
        Some(_) => return Err(format!("\"type\" must be a string, one of: {}", known_types.join(", "))),
    };
    if !known_types.contains(&type_name.as_str()) {
        return Err(format!("unknown type \"{type_name}\"; known types are: {}", known_types.join(", ")));
    }
    T::deserialize(toml::Value::Table(table)).map_err(|error| error.message().to_string())
}

/// Parses `ID` or `ID.NAME` input references.
pub fn split_input(input: &str) -> (&str, Option<&str>) {
    match input.split_once('.') {
        Some((id, output)) => (id, Some(output)),
        None => (input, None),
    }
}
