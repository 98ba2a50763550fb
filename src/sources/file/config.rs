//! `[sources.ID]` with `type = "file"`: the raw keys and their validation.
//!
//! Owns parsing and checking only; `build` turns a valid config into the
//! runtime `FileSource` and does no IO (checkpoints are loaded when the source
//! starts running).

use std::time::Duration;

use serde::Deserialize;

use super::source::{FileSource, FileSourceSettings};
use crate::config::units;
use crate::sources::decoding::Decoding;
use crate::topology::{BuildContext, BuildError, Source};

const DEFAULT_GLOB_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_MAX_LINE_BYTES: u64 = 1 << 20;
const DEFAULT_FILE_FIELD: &str = "file";

/// Where to start reading a file that has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    #[default]
    Beginning,
    /// Only for files found by the first scan after start-up; files that
    /// appear later are new and are always read from their beginning, or the
    /// first lines after a rotation would be lost.
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Glob patterns of the files to tail.
    pub include: Vec<String>,
    /// Glob patterns of matched files to leave alone (compressed rotations, say).
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub decoding: Decoding,
    #[serde(default)]
    pub start_at: StartAt,
    /// How often the globs are expanded again to find new, renamed and deleted files.
    #[serde(default = "default_glob_interval", with = "units::duration")]
    pub glob_interval: Duration,
    /// How long an idle source waits before looking for appended data again.
    #[serde(default = "default_poll_interval", with = "units::duration")]
    pub poll_interval: Duration,
    /// Longer lines are cut to this many bytes and counted as `line_too_long`.
    #[serde(default = "default_max_line_bytes", with = "units::size")]
    pub max_line_bytes: u64,
    /// At most how often checkpoints are written to disk.
    #[serde(default = "default_checkpoint_interval", with = "units::duration")]
    pub checkpoint_interval: Duration,
    /// Name of the event field that holds the file's path.
    #[serde(default = "default_file_field")]
    pub file_field: String,
}

fn default_glob_interval() -> Duration {
    DEFAULT_GLOB_INTERVAL
}

fn default_poll_interval() -> Duration {
    DEFAULT_POLL_INTERVAL
}

fn default_checkpoint_interval() -> Duration {
    DEFAULT_CHECKPOINT_INTERVAL
}

fn default_max_line_bytes() -> u64 {
    DEFAULT_MAX_LINE_BYTES
}

fn default_file_field() -> String {
    DEFAULT_FILE_FIELD.to_string()
}

impl FileSourceConfig {
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(FileSource::new(self.settings(cx)?)))
    }

    /// Validates every key and produces the runtime settings.
    pub(super) fn settings(&self, cx: &BuildContext) -> Result<FileSourceSettings, BuildError> {
        if self.include.is_empty() {
            return Err(BuildError::new(
                "\"include\" is empty; list at least one glob pattern such as \"/var/log/app/*.log\"",
            ));
        }
        compile_patterns("include", &self.include)?;
        let exclude = compile_patterns("exclude", &self.exclude)?;
        for (key, value) in [
            ("glob_interval", self.glob_interval),
            ("poll_interval", self.poll_interval),
            ("checkpoint_interval", self.checkpoint_interval),
        ] {
            if value.is_zero() {
                return Err(BuildError::new(format!("\"{key}\" is 0; set it above 0, such as \"1s\"")));
            }
        }
        if self.max_line_bytes == 0 {
            return Err(BuildError::new("\"max_line_bytes\" is 0; set it above 0, such as \"1MiB\""));
        }
        let max_line_bytes = usize::try_from(self.max_line_bytes).map_err(|_| {
            BuildError::new(format!("\"max_line_bytes\" is {}; set it below {}", self.max_line_bytes, usize::MAX))
        })?;
        if self.file_field.is_empty() {
            return Err(BuildError::new(
                "\"file_field\" is empty; name the field that should hold the path, such as \"file\"",
            ));
        }
        Ok(FileSourceSettings {
            include_patterns: self.include.clone(),
            exclude,
            decoding: self.decoding,
            start_at: self.start_at,
            glob_interval: self.glob_interval,
            poll_interval: self.poll_interval,
            max_line_bytes,
            checkpoint_interval: self.checkpoint_interval,
            file_field: self.file_field.as_str().into(),
            checkpoint_path: cx.data_dir.join(&cx.id).join(super::checkpoints::CHECKPOINTS_FILE_NAME),
        })
    }
}

fn compile_patterns(key: &str, patterns: &[String]) -> Result<Vec<glob::Pattern>, BuildError> {
    patterns
        .iter()
        .map(|pattern| {
            glob::Pattern::new(pattern).map_err(|error| {
                BuildError::new(format!("\"{key}\": {pattern:?} is not a valid glob pattern ({}); fix it, escaping literal brackets as \"[[]\"", error.msg))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> FileSourceConfig {
        toml::from_str(text).expect("test config parses")
    }

    fn build_context() -> BuildContext {
        BuildContext { id: "logs".into(), data_dir: "data".into() }
    }

    #[test]
    fn defaults_follow_the_documented_values() {
        let settings = parse(r#"include = ["/var/log/*.log"]"#).settings(&build_context()).expect("valid");
        assert_eq!(settings.decoding, Decoding::Text);
        assert_eq!(settings.start_at, StartAt::Beginning);
        assert_eq!(settings.glob_interval, Duration::from_secs(1));
        assert_eq!(settings.poll_interval, Duration::from_millis(250));
        assert_eq!(settings.checkpoint_interval, Duration::from_secs(1));
        assert_eq!(settings.max_line_bytes, 1 << 20);
        assert_eq!(&*settings.file_field, "file");
        assert_eq!(settings.checkpoint_path, std::path::Path::new("data/logs/checkpoints.json"));
    }

    #[test]
    fn units_and_options_parse() {
        let config = parse(
            r#"
            include = ["a/*.log"]
            exclude = ["a/*.gz"]
            decoding = "json"
            start_at = "end"
            glob_interval = "5s"
            poll_interval = "100ms"
            max_line_bytes = "64KiB"
            checkpoint_interval = "2s"
            file_field = "path"
            "#,
        );
        let settings = config.settings(&build_context()).expect("valid");
        assert_eq!(settings.start_at, StartAt::End);
        assert_eq!(settings.max_line_bytes, 64 * 1024);
        assert_eq!(settings.poll_interval, Duration::from_millis(100));
        assert!(settings.exclude[0].matches("a/b.gz"));
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            (r#"include = []"#, "\"include\""),
            (r#"include = ["a/[*.log"]"#, "\"include\""),
            ("include = [\"a\"]\nexclude = [\"[\"]", "\"exclude\""),
            ("include = [\"a\"]\npoll_interval = \"0s\"", "\"poll_interval\""),
            ("include = [\"a\"]\nmax_line_bytes = 0", "\"max_line_bytes\""),
            ("include = [\"a\"]\nfile_field = \"\"", "\"file_field\""),
        ];
        for (text, key) in cases {
            let error =
                parse(text).settings(&build_context()).err().unwrap_or_else(|| panic!("{text} must be rejected"));
            assert!(error.0.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn unknown_keys_and_missing_include_are_rejected() {
        assert!(toml::from_str::<FileSourceConfig>("include = [\"a\"]\nstart = \"end\"").is_err());
        assert!(toml::from_str::<FileSourceConfig>("decoding = \"json\"").is_err());
    }
}
