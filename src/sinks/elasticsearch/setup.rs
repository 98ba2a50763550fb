//! `pipe es setup`: creates ElastAlert's writeback indices with their
//! mappings, the counterpart of `elastalert-create-index`.
//!
//! Idempotent: an index that already exists is not recreated (its documents
//! stay); its mapping is put again, which Elasticsearch accepts when it is
//! the same or only adds fields, and refuses (reported, naming the index)
//! when it conflicts. Like `elastalert-create-index`, it needs
//! Elasticsearch 7+ or OpenSearch (typeless mappings); it never deletes.

use reqwest::Method;
use serde_json::json;

use super::writeback::WritebackIndices;
use crate::config::secret::Secret;
use crate::elasticsearch::client::{encode_path_segment, RequestBody};
use crate::elasticsearch::connection::DEFAULT_REQUEST_TIMEOUT;
use crate::elasticsearch::{
    EsAuthConfig, EsAuthStrategy, EsClient, EsConnectionConfig, EsError, EsTlsConfig, ServerInfo,
};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Connection(String),
    #[error("{message}")]
    Request { message: String },
    #[error("{server} keeps mapping types; pipe es setup (like elastalert-create-index) needs Elasticsearch 7 or later, or OpenSearch")]
    Unsupported { server: ServerInfo },
    #[error("index {index} exists with a mapping that conflicts with the writeback mapping ({error}); delete it or choose another --prefix")]
    Conflict { index: String, error: EsError },
}

/// What `create_writeback_indices` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    pub server: String,
    pub created: Vec<String>,
    pub existing: Vec<String>,
}

/// The `pipe es setup` command: connects to `endpoint` (basic
/// authentication when `user` is given) and creates the indices.
pub async fn run(
    endpoint: &str,
    prefix: &str,
    user: Option<String>,
    password: Option<String>,
) -> Result<SetupReport, SetupError> {
    let auth = user.map(|user| EsAuthConfig {
        strategy: EsAuthStrategy::Basic,
        user: Some(user),
        password: password.map(Secret::new),
        api_key: None,
        token: None,
    });
    let connection = EsConnectionConfig::new(
        &[endpoint.to_string()],
        auth.as_ref(),
        &EsTlsConfig::default(),
        DEFAULT_REQUEST_TIMEOUT,
    )
    .map_err(SetupError::Connection)?;
    let client = EsClient::new(&connection).map_err(SetupError::Connection)?;
    create_writeback_indices(&client, prefix).await
}

fn request_error(client: &EsClient, error: EsError) -> SetupError {
    SetupError::Request { message: error.with_hint(client.auth_strategy()) }
}

/// Creates `<prefix>`, `<prefix>_status`, `<prefix>_silence`,
/// `<prefix>_error` and `<prefix>_past` with their mappings, skipping
/// those that exist (their mappings are put again).
pub async fn create_writeback_indices(client: &EsClient, prefix: &str) -> Result<SetupReport, SetupError> {
    let server = client.server_info().await.map_err(|error| request_error(client, error))?;
    if !server.typeless_mappings() {
        return Err(SetupError::Unsupported { server });
    }
    let indices = WritebackIndices::new(prefix);
    let mut report = SetupReport { server: server.to_string(), created: Vec::new(), existing: Vec::new() };
    for (index, mapping) in indices.with_mappings() {
        let path = format!("/{}", encode_path_segment(index));
        let body = json!({"mappings": mapping});
        let response = client
            .send(Method::PUT, &path, Some(RequestBody::json(&body)))
            .await
            .map_err(|error| request_error(client, error))?;
        if response.is_success() {
            report.created.push(index.to_string());
            continue;
        }
        let error = response.into_error();
        if error.error_type() != Some("resource_already_exists_exception") {
            return Err(request_error(client, error));
        }
        let mapping_path = format!("/{}/_mapping", encode_path_segment(index));
        let response = client
            .send(Method::PUT, &mapping_path, Some(RequestBody::json(&mapping)))
            .await
            .map_err(|error| request_error(client, error))?;
        if !response.is_success() {
            let error = response.into_error();
            if error.is_auth() || error.is_transient() {
                return Err(request_error(client, error));
            }
            return Err(SetupError::Conflict { index: index.to_string(), error });
        }
        report.existing.push(index.to_string());
    }
    Ok(report)
}
