//! Transforms: components that change, route or consume events in flight.
//!
//! Registration: one variant of `TransformConfig` per type, tagged by `type`;
//! adding a transform is one file plus one variant (and its name in `TYPES`).
//!
//! Transforms do no IO. An event a transform drops or consumes on purpose is
//! settled as delivered (`LogEvent::settle`), so its source can move on.

pub mod json_expand;
pub mod truncate;

use serde::Deserialize;

use crate::topology::{BuildContext, BuildError, Transform};

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformConfig {
    JsonExpand(json_expand::JsonExpandConfig),
    Truncate(truncate::TruncateConfig),
}

impl TransformConfig {
    /// Every `type` a transform may have, for error messages.
    pub const TYPES: &'static [&'static str] = &["json_expand", "truncate"];

    pub fn type_name(&self) -> &'static str {
        match self {
            TransformConfig::JsonExpand(_) => "json_expand",
            TransformConfig::Truncate(_) => "truncate",
        }
    }

    /// The outputs other components can read: `None` is the default output,
    /// named outputs are wired as `ID.NAME`.
    pub fn outputs(&self) -> Vec<Option<String>> {
        match self {
            TransformConfig::JsonExpand(_) | TransformConfig::Truncate(_) => vec![None],
        }
    }

    pub fn build(&self, cx: &BuildContext) -> Result<Transform, BuildError> {
        match self {
            TransformConfig::JsonExpand(config) => config.build(cx),
            TransformConfig::Truncate(config) => config.build(cx),
        }
    }
}
