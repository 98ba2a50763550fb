//! The condition shared by `filter` and `route`: a Lucene query string
//! (`condition = "message:*Exception* AND host:api*"`) or an Elasticsearch
//! query DSL table (`query = { bool = { must = [...] } }`), compiled once by
//! `crate::query` at build time. Matching semantics are the query module's:
//! strings behave like Elasticsearch text fields unless listed in
//! `keyword_fields` or addressed as `field.keyword`.

use serde::Deserialize;

use crate::query::{Query, QueryOptions};
use crate::topology::BuildError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// A Lucene `query_string`.
    #[serde(default)]
    pub condition: Option<String>,
    /// An Elasticsearch query DSL object.
    #[serde(default)]
    pub query: Option<serde_json::Value>,
    /// Fields matched as exact, case-sensitive values instead of text.
    #[serde(default)]
    pub keyword_fields: Vec<String>,
}

impl ConditionConfig {
    /// Compiles the condition; `what` names it in errors (`"condition"`,
    /// `"routes[2]"`).
    pub fn compile(&self, what: &str) -> Result<Query, BuildError> {
        let options = QueryOptions { keyword_fields: self.keyword_fields.clone() };
        match (&self.condition, &self.query) {
            (Some(text), None) => Query::parse_lucene(text, &options).map_err(|error| BuildError::new(format!("{what}: {error}"))),
            (None, Some(dsl)) => Query::from_dsl(dsl, &options).map_err(|error| BuildError::new(format!("{what}: {error}"))),
            (Some(_), Some(_)) => Err(BuildError::new(format!("{what}: set either \"condition\" (a query string) or \"query\" (query DSL), not both"))),
            (None, None) => Err(BuildError::new(format!(
                "{what}: no condition; set \"condition\" to a query string like \"level:ERROR\", or \"query\" to a query DSL table"
            ))),
        }
    }
}
