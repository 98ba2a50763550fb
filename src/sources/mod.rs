//! Sources: components that read from the outside world and emit batches.
//!
//! Registration: one variant of `SourceConfig` per type, tagged by `type`.
//! Adding a source is one file plus one variant (and its name in `TYPES`).
//!
//! Every source attaches a finalizer to each event it emits (acknowledgements
//! are always on) and moves its checkpoint only when `checkpoint` says the
//! batches before it were delivered.

pub mod checkpoint;
pub mod decoding;
pub mod demo;
pub mod elasticsearch_poller;
pub mod file;
pub mod sls;
pub mod stdin;

use serde::Deserialize;

use crate::topology::{BuildContext, BuildError, Source};

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    Demo(demo::DemoSourceConfig),
    ElasticsearchPoller(Box<elasticsearch_poller::ElasticsearchPollerConfig>),
    File(file::FileSourceConfig),
    Sls(sls::SlsSourceConfig),
    Stdin(stdin::StdinSourceConfig),
}

impl SourceConfig {
    /// Every `type` a source may have, for error messages.
    pub const TYPES: &'static [&'static str] = &["demo", "elasticsearch_poller", "file", "sls", "stdin"];

    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::Demo(_) => "demo",
            SourceConfig::ElasticsearchPoller(_) => "elasticsearch_poller",
            SourceConfig::File(_) => "file",
            SourceConfig::Sls(_) => "sls",
            SourceConfig::Stdin(_) => "stdin",
        }
    }

    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        match self {
            SourceConfig::Demo(config) => config.build(cx),
            SourceConfig::ElasticsearchPoller(config) => config.build(cx),
            SourceConfig::File(config) => config.build(cx),
            SourceConfig::Sls(config) => config.build(cx),
            SourceConfig::Stdin(config) => config.build(cx),
        }
    }
}
