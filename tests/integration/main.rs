//! Whole-pipeline tests: the real `pipe` binary and real topologies over
//! loopback sockets. One test binary, so the workspace links once.

mod config_validation;
mod lifecycle;
mod routing;
mod rules;
mod support;
mod topology;
mod wecom;
