//! The poller's checkpoint: the file `DATA_DIR/<source id>/checkpoint.json`
//! and, with `writeback` set, a document in ElastAlert's status index.
//!
//! File format (version 1):
//! `{"version":1,"window_end":"2026-01-01T10:15:00.000Z"}`, the end of the
//! last window whose every hit was delivered. A write is all or nothing
//! (temporary file, fsync, rename, directory fsync).
//!
//! Index document: `<writeback_index>_status/_doc/pipe_poller:<source id>`,
//! shaped like an ElastAlert status record (`rule_name` = the document id,
//! `endtime` = the window end, `@timestamp` = the write time), one per
//! source, replaced on every write so the index does not grow. It is read
//! by id (real time, no refresh needed), so a host taking over sees the
//! last write at once.
//!
//! Never decides what is safe to store: the caller passes only delivered
//! ends, and takes the newer of the two at start-up.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as JsonValue};

use crate::elasticsearch::client::{encode_path_segment, RequestBody};
use crate::elasticsearch::{EsClient, EsError};
use crate::sinks::elasticsearch::WritebackIndices;

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

/// The `rule_name` and `_id` of a poller's checkpoint document.
pub fn index_document_id(source_id: &str) -> String {
    format!("pipe_poller:{source_id}")
}

fn index_document_path(writeback_index: &str, source_id: &str) -> String {
    format!(
        "/{}/_doc/{}",
        encode_path_segment(&WritebackIndices::new(writeback_index).status),
        encode_path_segment(&index_document_id(source_id))
    )
}

/// The window end stored in the writeback index; `None` when the index or
/// the document does not exist. A document without a readable `endtime`
/// is an error (`Malformed`).
pub async fn load_from_index(
    client: &EsClient,
    writeback_index: &str,
    source_id: &str,
) -> Result<Option<DateTime<Utc>>, EsError> {
    let response = client.send(Method::GET, &index_document_path(writeback_index, source_id), None).await?;
    if response.status == 404 {
        return Ok(None);
    }
    let response = response.into_success()?;
    let document: JsonValue = response.json("checkpoint document")?;
    let malformed = |detail: String| EsError::Malformed {
        endpoint: std::sync::Arc::clone(&response.endpoint),
        what: "checkpoint document",
        detail,
    };
    if document.get("found") == Some(&JsonValue::Bool(false)) {
        return Ok(None);
    }
    let end = document
        .pointer("/_source/endtime")
        .and_then(JsonValue::as_str)
        .ok_or_else(|| malformed("no _source.endtime".into()))?;
    let end = DateTime::parse_from_rfc3339(end).map_err(|error| malformed(format!("endtime {end:?}: {error}")))?;
    Ok(Some(end.with_timezone(&Utc)))
}

/// Replaces the checkpoint document.
pub async fn store_in_index(
    client: &EsClient,
    writeback_index: &str,
    source_id: &str,
    window_end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), EsError> {
    let document = json!({
        "rule_name": index_document_id(source_id),
        "endtime": window_end.to_rfc3339_opts(SecondsFormat::Millis, true),
        "@timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    client
        .send(Method::PUT, &index_document_path(writeback_index, source_id), Some(RequestBody::json(&document)))
        .await?
        .into_success()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_index_checkpoint_round_trips_and_is_absent_at_first() {
        let es = testkit::es::EsEmulator::start(testkit::es::EsConfig::elasticsearch("8.15.0").unwrap()).await.unwrap();
        let connection = crate::elasticsearch::EsConnectionConfig::new(
            &[es.url()],
            None,
            &Default::default(),
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let client = EsClient::new(&connection).unwrap();
        assert_eq!(load_from_index(&client, "elastalert", "es_in").await.unwrap(), None, "no index yet");
        let end = DateTime::parse_from_rfc3339("2026-01-01T10:15:00.123Z").unwrap().with_timezone(&Utc);
        store_in_index(&client, "elastalert", "es_in", end, Utc::now()).await.unwrap();
        assert_eq!(load_from_index(&client, "elastalert", "other").await.unwrap(), None, "no document for this source");
        assert_eq!(load_from_index(&client, "elastalert", "es_in").await.unwrap(), Some(end));
        let later = end + chrono::Duration::minutes(1);
        store_in_index(&client, "elastalert", "es_in", later, Utc::now()).await.unwrap();
        assert_eq!(load_from_index(&client, "elastalert", "es_in").await.unwrap(), Some(later), "replaced");
        let documents = es.handle().documents("elastalert_status").unwrap();
        assert_eq!(documents.len(), 1, "one document per source");
        assert_eq!(documents[0].id, "pipe_poller:es_in");
        assert_eq!(documents[0].source["rule_name"], "pipe_poller:es_in");
        assert_eq!(documents[0].source["endtime"], "2026-01-01T10:16:00.123Z");
    }

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
