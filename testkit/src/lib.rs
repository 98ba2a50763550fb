//! Emulators of the remote services pipe talks to, for tests, benches and
//! local development. Never linked into the `pipe` binary.
//!
//! Every emulator is an axum `Router` served by `http::EmulatorServer`, which
//! binds 127.0.0.1:0 (or a given address), records every request, and applies
//! a `http::FaultPlan` (fail the next N requests, add latency, drop
//! connections) before the emulator sees the request; it serves plain HTTP,
//! or HTTPS with a per-run CA (`tls::TlsIdentity`, used by the HEC emulator's
//! `tls` option and `pipe-testkit hec --tls-ca-out`). Emulators implement the
//! real wire formats from `../shared/reference/`; they share no protocol code
//! with `pipe`, so a bug in pipe's client cannot be mirrored by the emulator.

pub mod blackhole;
mod connection_drop;
pub mod es;
pub mod hec;
pub mod http;
pub mod sls;
pub mod tls;
pub mod wecom;
