//! Transforms: components that change, route or consume events in flight.
//!
//! Registration: one variant of `TransformConfig` per type, tagged by `type`;
//! adding a transform is one file plus one variant (and its name in `TYPES`).
//!
//! Transforms do no IO, with one exception: a `rules` transform with a
//! `writeback` table reads its realert silences from Elasticsearch once, at
//! start-up, in its task (never in `build`). An event a transform drops or
//! consumes on purpose is settled as delivered (`LogEvent::settle`), so its
//! source can move on.

pub mod condition;
pub mod filter;
pub mod json_expand;
pub mod route;
pub mod rules;
pub mod truncate;

use serde::Deserialize;

use crate::topology::{BuildContext, BuildError, Transform};

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformConfig {
    Filter(filter::FilterConfig),
    JsonExpand(json_expand::JsonExpandConfig),
    Route(route::RouteConfig),
    Rules(rules::RulesConfig),
    Truncate(truncate::TruncateConfig),
}

impl TransformConfig {
    /// Every `type` a transform may have, for error messages.
    pub const TYPES: &'static [&'static str] = &["filter", "json_expand", "route", "rules", "truncate"];

    pub fn type_name(&self) -> &'static str {
        match self {
            TransformConfig::Filter(_) => "filter",
            TransformConfig::JsonExpand(_) => "json_expand",
            TransformConfig::Route(_) => "route",
            TransformConfig::Rules(_) => "rules",
            TransformConfig::Truncate(_) => "truncate",
        }
    }

    /// The outputs other components can read: `None` is the default output,
    /// named outputs are wired as `ID.NAME`.
    pub fn outputs(&self) -> Vec<Option<String>> {
        match self {
            TransformConfig::Route(config) => config.outputs(),
            TransformConfig::Rules(config) => config.outputs(),
            TransformConfig::Filter(_) | TransformConfig::JsonExpand(_) | TransformConfig::Truncate(_) => vec![None],
        }
    }

    /// Named outputs that may go unconsumed without a validation warning:
    /// the transform builds nothing for them then (the `rules` transform's
    /// `writeback` records are an opt-in extra, not events being lost).
    pub fn optional_outputs(&self) -> &'static [&'static str] {
        match self {
            TransformConfig::Rules(_) => &[rules::WRITEBACK_OUTPUT],
            TransformConfig::Filter(_)
            | TransformConfig::JsonExpand(_)
            | TransformConfig::Route(_)
            | TransformConfig::Truncate(_) => &[],
        }
    }

    pub fn build(&self, cx: &BuildContext) -> Result<Transform, BuildError> {
        match self {
            TransformConfig::Filter(config) => config.build(cx),
            TransformConfig::JsonExpand(config) => config.build(cx),
            TransformConfig::Route(config) => config.build(cx),
            TransformConfig::Rules(config) => config.build(cx),
            TransformConfig::Truncate(config) => config.build(cx),
        }
    }
}
