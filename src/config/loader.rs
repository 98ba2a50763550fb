//! Reading, interpolating and merging configuration files.
//!
//! Files merge in the order given: a later file overrides keys of an earlier
//! one deeply (tables merge key by key; any other value, arrays included, is
//! replaced), so one base pipeline plus a per-environment overlay needs no
//! token-substitution scripts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::interpolate::interpolate;
use super::{ConfigError, ConfigErrors, PipelineConfig};

/// The demo pipeline, compiled in so `pipe run` works with no files at all.
pub const EMBEDDED_DEMO: &str = include_str!("../../pipelines/demo.toml");

/// Where a configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Files(Vec<PathBuf>),
    /// `pipelines/demo.toml` as compiled into the binary.
    EmbeddedDemo,
}

impl ConfigSource {
    /// Loads the configuration; any problem is an error.
    pub fn load(&self) -> Result<PipelineConfig, ConfigErrors> {
        let (config, errors) = self.load_partial()?;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Loads what can be loaded: fatal problems (unreadable files, TOML
    /// syntax, interpolation) are an `Err`; component problems come back next
    /// to the components that did load, so wiring checks can still run.
    pub fn load_partial(&self) -> Result<(PipelineConfig, Vec<ConfigError>), ConfigErrors> {
        match self {
            ConfigSource::Files(paths) => load_files(paths),
            ConfigSource::EmbeddedDemo => load_text("<embedded pipelines/demo.toml>", EMBEDDED_DEMO),
        }
    }
}

/// Loads and merges `paths` in order, with the process environment.
pub fn load_files(paths: &[PathBuf]) -> Result<(PipelineConfig, Vec<ConfigError>), ConfigErrors> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => documents.push((path.display().to_string(), text)),
            Err(error) => errors
                .push(ConfigError::file_level(path.display().to_string(), format!("cannot read the file: {error}"))),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    load_documents(documents, paths.to_vec(), &|name| std::env::var(name).ok())
}

/// Loads one document given as text (the embedded demo, tests).
pub fn load_text(name: &str, text: &str) -> Result<(PipelineConfig, Vec<ConfigError>), ConfigErrors> {
    load_documents(vec![(name.to_string(), text.to_string())], Vec::new(), &|name| std::env::var(name).ok())
}

pub(crate) fn load_documents(
    documents: Vec<(String, String)>,
    files: Vec<PathBuf>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(PipelineConfig, Vec<ConfigError>), ConfigErrors> {
    let mut errors = Vec::new();
    let mut merged = toml::Table::new();
    let mut origins: BTreeMap<String, Vec<String>> = BTreeMap::new();

    for (name, text) in &documents {
        let interpolated = match interpolate(name, text, lookup) {
            Ok(interpolated) => interpolated,
            Err(problems) => {
                errors.extend(problems.into_iter().map(|problem| {
                    ConfigError::file_level(problem.file.clone(), format!("line {}: {}", problem.line, problem.message))
                }));
                continue;
            }
        };
        let table: toml::Table = match interpolated.parse() {
            Ok(table) => table,
            Err(error) => {
                errors.push(ConfigError::file_level(
                    name.clone(),
                    format!("invalid TOML: {}", error.to_string().trim_end()),
                ));
                continue;
            }
        };
        for kind in ["sources", "transforms", "sinks"] {
            if let Some(toml::Value::Table(components)) = table.get(kind) {
                for id in components.keys() {
                    let files = origins.entry(id.clone()).or_default();
                    if !files.contains(name) {
                        files.push(name.clone());
                    }
                }
            }
        }
        deep_merge(&mut merged, table);
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(PipelineConfig::from_table(merged, origins, files))
}

/// Merges `overlay` into `base`: tables recursively, everything else replaced.
pub fn deep_merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => deep_merge(existing, incoming),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_override_keys_deeply() {
        let mut base: toml::Table =
            "[sinks.out]\ntype = \"file\"\npath = \"a\"\n[sinks.out.buffer]\nmax_events = 10\n".parse().unwrap();
        let overlay: toml::Table = "[sinks.out]\npath = \"b\"\n".parse().unwrap();
        deep_merge(&mut base, overlay);
        let out = &base["sinks"]["out"];
        assert_eq!(out["path"].as_str(), Some("b"));
        assert_eq!(out["type"].as_str(), Some("file"));
        assert_eq!(out["buffer"]["max_events"].as_integer(), Some(10));
    }
}
