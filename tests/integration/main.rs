//! Whole-pipeline tests: the real `pipe` binary and real topologies over
//! loopback sockets. One test binary, so the workspace links once.

mod alerts;
mod config_validation;
mod elasticsearch;
mod file_source;
mod lifecycle;
mod routing;
mod splunk_hec;
mod sls;
mod sls_to_splunk;
mod rules;
mod support;
mod topology;
mod wecom;
mod writeback;
