//! Whole-pipeline tests: the real `pipe` binary and real topologies over
//! loopback sockets. One test binary, so the workspace links once.

mod alerts;
mod config_validation;
mod elasticsearch;
mod file_source;
mod lifecycle;
mod routing;
mod rules;
mod sls;
mod sls_to_splunk;
mod splunk_hec;
mod support;
mod topology;
mod wecom;
mod writeback;
