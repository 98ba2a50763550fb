//! Which product and release the emulator pretends to be, and every
//! behaviour that depends on it.
//!
//! `Product` answers questions such as "does this release have point in
//! time?" or "is `hits.total` a number?"; handlers ask it instead of comparing
//! version numbers themselves, so the version rules live in one place. It also
//! renders the `GET /` body. Facts marked unverified in the reference are
//! noted where they are used.

use std::fmt;
use std::str::FromStr;

use serde_json::{json, Value};

use super::error::EsEmulatorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    Elasticsearch,
    OpenSearch,
}

impl FromStr for Distribution {
    type Err = EsEmulatorError;

    fn from_str(text: &str) -> Result<Distribution, EsEmulatorError> {
        match text.to_ascii_lowercase().as_str() {
            "elasticsearch" | "es" => Ok(Distribution::Elasticsearch),
            "opensearch" | "os" => Ok(Distribution::OpenSearch),
            _ => Err(EsEmulatorError::UnknownDistribution { text: text.to_string() }),
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Elasticsearch => "Elasticsearch",
            Distribution::OpenSearch => "OpenSearch",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version { major, minor, patch }
    }

    fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl FromStr for Version {
    type Err = EsEmulatorError;

    fn from_str(text: &str) -> Result<Version, EsEmulatorError> {
        let invalid = || EsEmulatorError::InvalidVersion { text: text.to_string() };
        let mut parts = text.trim().split('.');
        let mut next =
            || -> Result<u32, EsEmulatorError> { parts.next().ok_or_else(invalid)?.parse().map_err(|_| invalid()) };
        let version = Version { major: next()?, minor: next()?, patch: next()? };
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The emulated product: distribution plus release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    pub distribution: Distribution,
    pub version: Version,
}

/// How `_type` (mapping types) is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingTypeRule {
    /// 6.x: every document has a type; `_type` is required in bulk metadata.
    Required,
    /// 7.x and OpenSearch 1.x: `_type` accepted (deprecated), hits show it.
    Deprecated,
    /// 8.x and OpenSearch 2.x: `_type` in bulk metadata is an error.
    Removed,
}

impl Product {
    pub fn new(distribution: Distribution, version: Version) -> Result<Product, EsEmulatorError> {
        let supported = match distribution {
            Distribution::Elasticsearch => matches!(version.major, 6..=8),
            Distribution::OpenSearch => matches!(version.major, 1 | 2),
        };
        if !supported {
            return Err(EsEmulatorError::UnsupportedVersion {
                distribution: distribution.to_string(),
                version: version.to_string(),
            });
        }
        Ok(Product { distribution, version })
    }

    pub fn elasticsearch(version: &str) -> Result<Product, EsEmulatorError> {
        Product::new(Distribution::Elasticsearch, version.parse()?)
    }

    pub fn opensearch(version: &str) -> Result<Product, EsEmulatorError> {
        Product::new(Distribution::OpenSearch, version.parse()?)
    }

    pub fn is_elasticsearch(&self) -> bool {
        self.distribution == Distribution::Elasticsearch
    }

    /// The Elasticsearch major whose REST shapes this release follows;
    /// OpenSearch answers like Elasticsearch 7.10.
    pub fn shape_major(&self) -> u32 {
        match self.distribution {
            Distribution::Elasticsearch => self.version.major,
            Distribution::OpenSearch => 7,
        }
    }

    /// Elasticsearch 7.14+ sends `X-Elastic-Product: Elasticsearch`; the
    /// official 8.x clients refuse 2xx answers without it.
    pub fn sends_product_header(&self) -> bool {
        self.is_elasticsearch() && self.version.at_least(7, 14)
    }

    pub fn mapping_types(&self) -> MappingTypeRule {
        match (self.distribution, self.version.major) {
            (Distribution::Elasticsearch, 6) => MappingTypeRule::Required,
            (Distribution::Elasticsearch, 7) | (Distribution::OpenSearch, 1) => MappingTypeRule::Deprecated,
            // OpenSearch 2.x removed type parameters; how strictly `_type` in
            // bulk metadata is rejected is unverified, so we reject it like 8.x.
            _ => MappingTypeRule::Removed,
        }
    }

    /// `hits.total` as a bare number (6.x) instead of `{value, relation}`.
    pub fn total_hits_as_number(&self) -> bool {
        self.shape_major() == 6
    }

    /// Elasticsearch point in time (`/_pit`) from 7.10.
    pub fn has_elasticsearch_pit(&self) -> bool {
        self.is_elasticsearch() && self.version.at_least(7, 10)
    }

    /// OpenSearch point in time (`/_search/point_in_time`) from 2.4.
    pub fn has_opensearch_pit(&self) -> bool {
        self.distribution == Distribution::OpenSearch && self.version.at_least(2, 4)
    }

    pub fn has_any_pit(&self) -> bool {
        self.has_elasticsearch_pit() || self.has_opensearch_pit()
    }

    /// Whether a PIT search gets the implicit `_shard_doc` tiebreaker.
    /// Elasticsearch from 7.12 (unverified minor); OpenSearch unverified, so
    /// not emulated there.
    pub fn has_shard_doc_sort(&self) -> bool {
        self.is_elasticsearch() && self.version.at_least(7, 12)
    }

    /// 8.x rejects sorting on `_id` unless a cluster setting is changed.
    pub fn rejects_id_sort(&self) -> bool {
        self.is_elasticsearch() && self.version.major >= 8
    }

    /// 8.x reports document mapping failures as `document_parsing_exception`
    /// with a `[line:col]` prefix (from 8.8); earlier releases use
    /// `mapper_parsing_exception`.
    pub fn document_parsing_exception(&self) -> bool {
        self.is_elasticsearch() && self.version.at_least(8, 8)
    }

    /// 7.x and later name the document in mapping failures.
    pub fn mapping_error_names_document(&self) -> bool {
        self.shape_major() >= 7
    }

    /// 8.x refuses wildcard index deletion by default
    /// (`action.destructive_requires_name: true`).
    pub fn destructive_requires_name(&self) -> bool {
        self.is_elasticsearch() && self.version.major >= 8
    }

    /// Default `number_of_shards` for new indices.
    pub fn default_shards(&self) -> u32 {
        if self.shape_major() == 6 {
            5
        } else {
            1
        }
    }

    /// The `compatible-with` versions this release accepts in
    /// `application/vnd.elasticsearch+json` media types. Empty when the
    /// release answers 406 to any versioned media type.
    pub fn accepted_compatible_versions(&self) -> Vec<u32> {
        match self.distribution {
            Distribution::Elasticsearch if self.version.major >= 8 => vec![self.version.major - 1, self.version.major],
            // 7.11+ parse the versioned media type and accept their own major
            // (elastic/elasticsearch#63071; first release unverified).
            Distribution::Elasticsearch if self.version.at_least(7, 11) => vec![7],
            _ => Vec::new(),
        }
    }

    /// The `GET /` body.
    pub fn root_document(&self, node_name: &str, cluster_name: &str, cluster_uuid: &str) -> Value {
        let number = self.version.to_string();
        match self.distribution {
            Distribution::Elasticsearch => {
                let (lucene, wire, index) = match self.version.major {
                    6 => ("7.7.3", "5.6.0", "5.0.0"),
                    7 => ("8.11.1", "6.8.0", "6.0.0-beta1"),
                    _ => ("9.11.1", "7.17.0", "7.0.0"),
                };
                json!({
                    "name": node_name,
                    "cluster_name": cluster_name,
                    "cluster_uuid": cluster_uuid,
                    "version": {
                        "number": number,
                        "build_flavor": "default",
                        "build_type": "docker",
                        "build_hash": "0000000000000000000000000000000000000000",
                        "build_date": "2024-08-05T10:05:34.233336849Z",
                        "build_snapshot": false,
                        "lucene_version": lucene,
                        "minimum_wire_compatibility_version": wire,
                        "minimum_index_compatibility_version": index
                    },
                    "tagline": "You Know, for Search"
                })
            }
            Distribution::OpenSearch => {
                let (lucene, wire, index) = match self.version.major {
                    1 => ("8.10.1", "6.8.0", "6.0.0-beta1"),
                    _ => ("9.7.0", "7.10.0", "7.0.0"),
                };
                json!({
                    "name": node_name,
                    "cluster_name": cluster_name,
                    "cluster_uuid": cluster_uuid,
                    "version": {
                        "distribution": "opensearch",
                        "number": number,
                        "build_type": "tar",
                        "build_hash": "0000000000000000000000000000000000000000",
                        "build_date": "2023-10-13T02:55:55.511945994Z",
                        "build_snapshot": false,
                        "lucene_version": lucene,
                        "minimum_wire_compatibility_version": wire,
                        "minimum_index_compatibility_version": index
                    },
                    "tagline": "The OpenSearch Project: https://opensearch.org/"
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_and_rejects_garbage() {
        assert_eq!("8.15.0".parse::<Version>().unwrap(), Version::new(8, 15, 0));
        assert!("8.15".parse::<Version>().is_err());
        assert!("8.x.0".parse::<Version>().is_err());
        assert!(Product::elasticsearch("5.6.0").is_err());
        assert!(Product::opensearch("3.0.0").is_err());
    }

    #[test]
    fn capabilities_follow_the_reference_table() {
        let es6 = Product::elasticsearch("6.8.23").unwrap();
        let es7 = Product::elasticsearch("7.17.0").unwrap();
        let es79 = Product::elasticsearch("7.9.3").unwrap();
        let es8 = Product::elasticsearch("8.15.0").unwrap();
        let os1 = Product::opensearch("1.3.0").unwrap();
        let os2 = Product::opensearch("2.11.0").unwrap();
        assert!(es6.total_hits_as_number() && !es7.total_hits_as_number() && !os2.total_hits_as_number());
        assert!(!es6.has_any_pit() && !es79.has_any_pit() && es7.has_elasticsearch_pit());
        assert!(os2.has_opensearch_pit() && !os2.has_elasticsearch_pit() && !os1.has_any_pit());
        assert_eq!(es6.mapping_types(), MappingTypeRule::Required);
        assert_eq!(os1.mapping_types(), MappingTypeRule::Deprecated);
        assert_eq!(es8.mapping_types(), MappingTypeRule::Removed);
        assert!(es7.sends_product_header() && !os2.sends_product_header() && !es6.sends_product_header());
        assert_eq!(es8.accepted_compatible_versions(), vec![7, 8]);
        assert!(os2.accepted_compatible_versions().is_empty());
        assert_eq!(os2.root_document("n", "c", "u")["version"]["distribution"], "opensearch");
    }
}
