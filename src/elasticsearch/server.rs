//! What is on the other end: distribution and version from `GET /`, and the
//! request/response differences that follow.
//!
//! OpenSearch is recognised by `version.distribution == "opensearch"` before
//! the number is looked at, because its 1.x/2.x numbers mean nothing on
//! Elasticsearch's scale (it answers like Elasticsearch 7.10). Every
//! version rule lives in `ServerInfo`'s methods so callers never compare
//! numbers themselves.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    Elasticsearch,
    OpenSearch,
}

/// Which point-in-time API a server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PitApi {
    /// `POST /{index}/_pit`, `DELETE /_pit` with `{"id"}` (Elasticsearch 7.10+).
    Elasticsearch,
    /// `POST /{index}/_search/point_in_time`, `DELETE /_search/point_in_time`
    /// with `{"pit_id": [..]}` (OpenSearch 2.4+).
    OpenSearch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerInfo {
    pub distribution: Distribution,
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

#[derive(Deserialize)]
struct RootDocument {
    version: RootVersion,
}

#[derive(Deserialize)]
struct RootVersion {
    number: String,
    #[serde(default)]
    distribution: Option<String>,
}

impl ServerInfo {
    pub fn elasticsearch(major: u32, minor: u32, patch: u32) -> ServerInfo {
        ServerInfo { distribution: Distribution::Elasticsearch, major, minor, patch }
    }

    pub fn opensearch(major: u32, minor: u32, patch: u32) -> ServerInfo {
        ServerInfo { distribution: Distribution::OpenSearch, major, minor, patch }
    }

    /// Reads a `GET /` body. Errors say what was wrong with it.
    pub fn from_root_body(body: &[u8]) -> Result<ServerInfo, String> {
        let root: RootDocument = serde_json::from_slice(body)
            .map_err(|error| format!("the GET / answer is not the expected JSON ({error})"))?;
        let distribution = match root.version.distribution.as_deref() {
            Some(name) if name.eq_ignore_ascii_case("opensearch") => Distribution::OpenSearch,
            _ => Distribution::Elasticsearch,
        };
        // Snapshot and pre-release numbers look like "8.16.0-SNAPSHOT".
        let numeric = root.version.number.split(['-', '+']).next().unwrap_or_default();
        let mut parts = numeric.split('.').map(str::parse::<u32>);
        let mut next = || parts.next().and_then(Result::ok);
        let major = next().ok_or_else(|| format!("version.number {:?} is not a version", root.version.number))?;
        let minor = next().unwrap_or(0);
        let patch = next().unwrap_or(0);
        Ok(ServerInfo { distribution, major, minor, patch })
    }

    fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    pub fn is_elasticsearch(&self) -> bool {
        self.distribution == Distribution::Elasticsearch
    }

    pub fn pit_api(&self) -> Option<PitApi> {
        match self.distribution {
            Distribution::Elasticsearch if self.at_least(7, 10) => Some(PitApi::Elasticsearch),
            Distribution::OpenSearch if self.at_least(2, 4) => Some(PitApi::OpenSearch),
            _ => None,
        }
    }

    /// `_shard_doc` as an explicit sort tiebreaker inside a PIT
    /// (Elasticsearch 7.12+; unverified minor, unverified for OpenSearch).
    pub fn has_shard_doc_sort(&self) -> bool {
        self.is_elasticsearch() && self.at_least(7, 12)
    }

    /// Elasticsearch 8 disables field data on `_id`, so it cannot sort on it.
    pub fn allows_id_sort(&self) -> bool {
        !(self.is_elasticsearch() && self.major >= 8)
    }

    /// `track_total_hits` exists from Elasticsearch 7 (and in OpenSearch);
    /// 6.x rejects it as an unknown key.
    pub fn has_track_total_hits(&self) -> bool {
        !(self.is_elasticsearch() && self.major < 7)
    }

    /// The `_type` bulk action metadata needs, if any (6.x requires one).
    pub fn bulk_type_name(&self) -> Option<&'static str> {
        (self.is_elasticsearch() && self.major < 7).then_some("_doc")
    }

    /// Index creation takes typeless `mappings` (7+, OpenSearch).
    pub fn typeless_mappings(&self) -> bool {
        !(self.is_elasticsearch() && self.major < 7)
    }
}

impl std::fmt::Display for ServerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.distribution {
            Distribution::Elasticsearch => "Elasticsearch",
            Distribution::OpenSearch => "OpenSearch",
        };
        write!(f, "{name} {}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_distribution_before_comparing_numbers() {
        let es8 = ServerInfo::from_root_body(
            br#"{"name":"n","version":{"number":"8.15.0","build_flavor":"default"},"tagline":"You Know, for Search"}"#,
        )
        .unwrap();
        assert_eq!(es8, ServerInfo::elasticsearch(8, 15, 0));
        let os2 =
            ServerInfo::from_root_body(br#"{"version":{"distribution":"opensearch","number":"2.11.0"}}"#).unwrap();
        assert_eq!(os2, ServerInfo::opensearch(2, 11, 0));
        let snapshot = ServerInfo::from_root_body(br#"{"version":{"number":"8.16.0-SNAPSHOT"}}"#).unwrap();
        assert_eq!(snapshot, ServerInfo::elasticsearch(8, 16, 0));
        assert!(ServerInfo::from_root_body(b"{\"version\":{\"number\":\"x\"}}").is_err());
        assert!(ServerInfo::from_root_body(b"<html>").is_err());
    }

    #[test]
    fn capabilities_follow_the_reference_table() {
        let es6 = ServerInfo::elasticsearch(6, 8, 23);
        let es79 = ServerInfo::elasticsearch(7, 9, 3);
        let es710 = ServerInfo::elasticsearch(7, 10, 2);
        let es8 = ServerInfo::elasticsearch(8, 15, 0);
        let os1 = ServerInfo::opensearch(1, 3, 0);
        let os2 = ServerInfo::opensearch(2, 11, 0);
        assert_eq!(es6.pit_api(), None);
        assert_eq!(es79.pit_api(), None);
        assert_eq!(es710.pit_api(), Some(PitApi::Elasticsearch));
        assert_eq!(os1.pit_api(), None);
        assert_eq!(os2.pit_api(), Some(PitApi::OpenSearch));
        assert!(!es710.has_shard_doc_sort() && es8.has_shard_doc_sort() && !os2.has_shard_doc_sort());
        assert!(es6.allows_id_sort() && es710.allows_id_sort() && !es8.allows_id_sort() && os2.allows_id_sort());
        assert!(!es6.has_track_total_hits() && es710.has_track_total_hits() && os1.has_track_total_hits());
        assert_eq!(es6.bulk_type_name(), Some("_doc"));
        assert_eq!(es8.bulk_type_name(), None);
        assert_eq!(os1.bulk_type_name(), None);
    }
}
