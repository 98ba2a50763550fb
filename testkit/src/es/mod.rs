//! Elasticsearch / OpenSearch emulator (work in progress).
pub mod dates;
pub mod error;
pub mod mapping;
pub mod query;
pub mod query_string;
pub mod search;
pub mod store;
pub mod version;
