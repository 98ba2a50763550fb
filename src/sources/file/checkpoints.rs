//! The `file` source's checkpoint store: `DATA_DIR/<source id>/checkpoints.json`.
//!
//! Owns the on-disk format and its atomic replacement. Guarantees: a write is
//! all or nothing (a temporary file is written, fsynced and renamed over the
//! old one, then the directory is fsynced so the rename itself survives a
//! crash); a reader sees either the previous or the new checkpoints, never a
//! mix. Never decides which offsets are safe to store: callers pass only
//! offsets whose batches were delivered.
//!
//! Format (version 1):
//! `{"version":1,"files":[{"device":D,"inode":I,"offset":O,"path":"..."}]}`.
//! Files are keyed by device and inode; the path is recorded for humans only.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const CHECKPOINTS_FILE_NAME: &str = "checkpoints.json";
const FORMAT_VERSION: u32 = 1;

/// Identifies a file independently of its name, so a renamed file (rotation)
/// is recognised as the same file.
///
/// Device and inode were chosen over a content fingerprint because they cost
/// one `stat` and work for empty files and files whose first lines are
/// identical (common for headers). Their weakness is inode reuse: once a file
/// is deleted and closed, the filesystem may give its inode to a new file. The
/// source limits the damage: a file it stops tracking loses its checkpoint
/// entry, so a file that reuses the inode later is read from the beginning;
/// and a checkpoint larger than the file it is found on (reuse across a
/// restart, or a truncation) restarts that file at offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    pub device: u64,
    pub inode: u64,
}

impl FileId {
    pub fn of(metadata: &std::fs::Metadata) -> FileId {
        FileId { device: metadata.dev(), inode: metadata.ino() }
    }
}

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "device {} inode {}", self.device, self.inode)
    }
}

/// One file's committed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    #[serde(flatten)]
    pub id: FileId,
    /// Every byte before this offset was delivered.
    pub offset: u64,
    /// Where the file was last seen; informational.
    pub path: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    version: u32,
    files: Vec<FileCheckpoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoints {path}: {source}; check the permissions of data_dir")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("checkpoints {path} are not valid ({reason}); fix or delete the file (deleting it makes the source read every file again from \"start_at\")")]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot write checkpoints {path}: {source}; check that data_dir is writable and not full")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Loads the checkpoints at `path`; a missing file means no checkpoints.
pub fn load(path: &Path) -> Result<HashMap<FileId, FileCheckpoint>, CheckpointError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(source) => return Err(CheckpointError::Read { path: path.to_path_buf(), source }),
    };
    let parsed: CheckpointFile = serde_json::from_str(&text)
        .map_err(|error| CheckpointError::Malformed { path: path.to_path_buf(), reason: error.to_string() })?;
    if parsed.version != FORMAT_VERSION {
        return Err(CheckpointError::Malformed {
            path: path.to_path_buf(),
            reason: format!("version {} is not the supported version {FORMAT_VERSION}", parsed.version),
        });
    }
    Ok(parsed.files.into_iter().map(|checkpoint| (checkpoint.id, checkpoint)).collect())
}

/// Replaces the checkpoints at `path` with `files`, atomically and durably.
/// Blocking: call it from a blocking thread.
pub fn store(path: &Path, files: &[FileCheckpoint]) -> Result<(), CheckpointError> {
    let body = serde_json::to_vec_pretty(&CheckpointFile { version: FORMAT_VERSION, files: files.to_vec() })
        .expect("checkpoints are plain numbers and strings");
    crate::sources::checkpoint::replace_file_durably(path, &body)
        .map_err(|source| CheckpointError::Write { path: path.to_path_buf(), source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_checkpoints_load_back() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("source").join(CHECKPOINTS_FILE_NAME);
        assert!(load(&path).expect("missing is empty").is_empty());
        let files = vec![
            FileCheckpoint { id: FileId { device: 1, inode: 2 }, offset: 30, path: "/var/log/a.log".into() },
            FileCheckpoint { id: FileId { device: 1, inode: 3 }, offset: 0, path: "/var/log/b.log".into() },
        ];
        store(&path, &files).expect("stored");
        let loaded = load(&path).expect("loads");
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[&FileId { device: 1, inode: 2 }], files[0]);
        assert!(!path.with_extension("json.tmp").exists(), "the temporary file is renamed away");
        store(&path, &files[1..]).expect("replaced");
        assert_eq!(load(&path).expect("loads").len(), 1);
    }

    #[test]
    fn malformed_checkpoints_are_an_error_that_names_the_file() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join(CHECKPOINTS_FILE_NAME);
        std::fs::write(&path, "{not json").expect("written");
        let error = load(&path).expect_err("malformed");
        assert!(error.to_string().contains(CHECKPOINTS_FILE_NAME), "{error}");
        std::fs::write(&path, r#"{"version":9,"files":[]}"#).expect("written");
        assert!(load(&path).expect_err("unknown version").to_string().contains("version 9"));
    }
}
