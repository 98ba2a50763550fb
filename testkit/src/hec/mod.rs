//! Splunk HTTP Event Collector emulator (reference `splunk-hec.md`).
//!
//! Owns: the HEC routes (`/services/collector[/event[/1.0]]`, `/raw[/1.0]`,
//! `/health[/1.0]`, `/ack`), token authentication, channels, envelope
//! validation with partial failure, indexer acknowledgements, fault
//! injection, and a record of every accepted event.
//!
//! Guarantees: answers follow real Splunk where the reference records it,
//! not Vector's emulator (403/4 for an unknown token, no metadata carried
//! between envelopes, `null` event is code 6). Token values never appear in
//! records, stats, errors or `Debug` output. Never shares code with `pipe`.
//!
//! Control endpoints (all JSON; errors are 400 `{"error": "..."}`):
//! - `GET /_testkit/stats`, `GET /_testkit/events`, `POST /_testkit/reset`
//! - `POST /_testkit/faults` `{"count":N,"target":"data|ack|any","kind":...}`
//!   (see `HecFault`), `DELETE /_testkit/faults`
//! - `PUT /_testkit/busy` `{"busy":true}`, `PUT /_testkit/latency` `{"latency_ms":N}`,
//!   `PUT /_testkit/health` `{"code":18}`
//! - `GET|PUT /_testkit/acks` (`AckSettings`: `delay_ms`, `loss_fraction`,
//!   `lose_next`, `expiry_ms`), `POST /_testkit/acks/lose_next` `{"count":N}`
//! - `PUT /_testkit/token_state` `{"token":"...","disabled":true}`

mod acks;
mod auth;
mod cli;
mod codes;
mod config;
mod envelope;
mod server;

pub use acks::{AckCounts, AckSettings, InvalidLossFraction};
pub use cli::{parse_duration, HecArgs};
pub use codes::{HecCode, UnknownHecCode};
pub use config::{
    HecConfigError, HecToken, DEFAULT_MAX_CONTENT_LENGTH, SPLUNK_DEFAULT_INDEX, SPLUNK_DEFAULT_SOURCETYPE,
};
pub use server::{
    HecControl, HecControlError, HecEmulator, HecEmulatorBuilder, HecEndpoint, HecFault, HecFaultTarget,
    HecRecordedEvent, HecStartError, HecStats, HecWaitTimedOut,
};
