//! Sinks: components that deliver events to the outside world.
//!
//! Registration: one variant of `SinkConfig` per type, tagged by `type`;
//! adding a sink is one file plus one variant (and its name in `TYPES`).
//!
//! Contract: a sink takes each event's finalizers before encoding it and
//! settles them only after the write is durable (fsync, an HTTP success, an
//! indexer acknowledgement). An event the destination refuses for good goes
//! to the dead-letter file (`dead_letter`) and is then settled as delivered;
//! if even that fails it is settled as rejected. Nothing is dropped silently.

pub mod blackhole;
pub mod console;
pub mod dead_letter;
pub mod elasticsearch;
pub mod file;
pub mod gzip;
pub mod http;
pub mod redact;
pub mod splunk_hec;
pub mod wecom;

use serde::Deserialize;

use crate::topology::{BuildContext, BuildError, Sink};

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    Blackhole(blackhole::BlackholeSinkConfig),
    Console(console::ConsoleSinkConfig),
    Elasticsearch(Box<elasticsearch::ElasticsearchSinkConfig>),
    File(file::FileSinkConfig),
    Http(http::HttpSinkConfig),
    // Boxed: the WeCom config is several times larger than the others.
    Wecom(Box<wecom::WecomSinkConfig>),
    // Boxed: its config is several times larger than the other variants.
    SplunkHec(Box<splunk_hec::SplunkHecSinkConfig>),
}

impl SinkConfig {
    /// Every `type` a sink may have, for error messages.
    pub const TYPES: &'static [&'static str] =
        &["blackhole", "console", "elasticsearch", "file", "http", "splunk_hec", "wecom"];

    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::Blackhole(_) => "blackhole",
            SinkConfig::Console(_) => "console",
            SinkConfig::Elasticsearch(_) => "elasticsearch",
            SinkConfig::File(_) => "file",
            SinkConfig::Http(_) => "http",
            SinkConfig::Wecom(_) => "wecom",
            SinkConfig::SplunkHec(_) => "splunk_hec",
        }
    }

    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
        match self {
            SinkConfig::Blackhole(config) => config.build(cx),
            SinkConfig::Console(config) => config.build(cx),
            SinkConfig::Elasticsearch(config) => config.build(cx),
            SinkConfig::File(config) => config.build(cx),
            SinkConfig::Http(config) => config.build(cx),
            SinkConfig::Wecom(config) => config.build(cx),
            SinkConfig::SplunkHec(config) => config.build(cx),
        }
    }
}
