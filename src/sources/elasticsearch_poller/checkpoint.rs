//! The poller's checkpoint file: `DATA_DIR/<source id>/checkpoint.json`.
//!
//! Format (version 1): `{"version":1,"window_end":"2026-01-01T10:15:00.000Z"}`,
//! the end of the last window whose every hit was delivered. A write is all
//! or nothing (temporary file, fsync, rename, directory fsync). Never
//! decides what is safe to store: the caller passes only delivered ends.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    version: u32,
    window_end: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read the checkpoint {path}: {source}; check the permissions of data_dir")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the checkpoint {path} is not valid ({reason}); fix or delete it (deleting it makes the source start with the last buffer_time)")]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot write the checkpoint {path}: {source}; check that data_dir is writable and not full")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The stored window end; `None` when there is no checkpoint yet.
pub fn load(path: &Path) -> Result<Option<DateTime<Utc>>, CheckpointError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CheckpointError::Read { path: path.to_path_buf(), source }),
    };
    let malformed = |reason: String| CheckpointError::Malformed { path: path.to_path_buf(), reason };
    let parsed: CheckpointFile = serde_json::from_str(&text).map_err(|error| malformed(error.to_string()))?;
    if parsed.version != FORMAT_VERSION {
        return Err(malformed(format!("version {} is not the supported version {FORMAT_VERSION}", parsed.version)));
    }
    let end =
        DateTime::parse_from_rfc3339(&parsed.window_end).map_err(|error| malformed(format!("window_end: {error}")))?;
    Ok(Some(end.with_timezone(&Utc)))
}

/// Replaces the checkpoint atomically and durably. Blocking.
pub fn store(path: &Path, window_end: DateTime<Utc>) -> Result<(), CheckpointError> {
    let body = serde_json::to_vec(&CheckpointFile {
        version: FORMAT_VERSION,
        window_end: window_end.to_rfc3339_opts(SecondsFormat::Millis, true),
    })
    .expect("a checkpoint is plain strings and numbers");
    crate::sources::checkpoint::replace_file_durably(path, &body)
        .map_err(|source| CheckpointError::Write { path: path.to_path_buf(), source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_checkpoint_loads_back_and_garbage_is_an_error() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("es_in").join("checkpoint.json");
        assert_eq!(load(&path).unwrap(), None);
        let end = DateTime::parse_from_rfc3339("2026-01-01T10:15:00.123Z").unwrap().with_timezone(&Utc);
        store(&path, end).unwrap();
        assert_eq!(load(&path).unwrap(), Some(end));
        std::fs::write(&path, "{\"version\":1,\"window_end\":\"yesterday\"}").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("checkpoint.json"));
    }
}
