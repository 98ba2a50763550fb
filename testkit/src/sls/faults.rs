//! SLS-specific fault injection: real SLS error answers (quota, busy,
//! internal error, invalid cursor), corrupt PullLogs bodies, latency and
//! dropped connections, scoped to an API, logstore, shard or consumer group.
//!
//! Faults apply after authentication, in the order they were added; each
//! applies to the next `times` matching requests (or to every matching request
//! until cleared when `times` is `None`). Error answers carry the real JSON
//! body and an `x-log-requestid`, unlike the generic `http::FaultPlan`, whose
//! canned answers bypass the emulator. Corrupt-body faults only fire on pulls
//! that return data, and keep every header valid (`x-log-cursor`,
//! `x-log-count`, `x-log-bodyrawsize`), so only body decoding fails. Never
//! changes stored data or checkpoints.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The SLS APIs the emulator serves, for scoping faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlsApi {
    ListLogStores,
    ListShards,
    GetCursor,
    GetCursorTime,
    PullLogs,
    SplitShard,
    CreateConsumerGroup,
    ListConsumerGroups,
    UpdateConsumerGroup,
    DeleteConsumerGroup,
    Heartbeat,
    UpdateCheckpoint,
    GetCheckpoint,
}

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultEffect {
    /// Answer with this SLS error instead of serving the request.
    Error { status: u16, code: String, message: String },
    /// Answer 400 `InvalidCursor`, as for an expired cursor.
    InvalidCursor,
    /// PullLogs: valid headers, a body that is not a valid LZ4 block.
    CorruptLz4,
    /// PullLogs: valid headers and LZ4, but the decompressed bytes are not a
    /// `LogGroupList`.
    CorruptProtobuf,
    /// Wait, then serve normally.
    Latency(Duration),
    /// Close the connection without answering.
    DropConnection,
}

impl FaultEffect {
    /// 403 `ReadQuotaExceed`, the project read quota.
    pub fn read_quota_exceed() -> FaultEffect {
        FaultEffect::error(403, "ReadQuotaExceed", "Read QPS Exceed")
    }

    /// 403 `ShardReadQuotaExceed`, the per-shard read quota.
    pub fn shard_read_quota_exceed() -> FaultEffect {
        FaultEffect::error(403, "ShardReadQuotaExceed", "shard read quota exceed")
    }

    /// 503 `ServerBusy`.
    pub fn server_busy() -> FaultEffect {
        FaultEffect::error(503, "ServerBusy", "server is busy, please try again later")
    }

    /// 500 `InternalServerError`.
    pub fn internal_server_error() -> FaultEffect {
        FaultEffect::error(500, "InternalServerError", "internal server error")
    }

    pub fn error(status: u16, code: &str, message: &str) -> FaultEffect {
        FaultEffect::Error { status, code: code.to_string(), message: message.to_string() }
    }

    fn phase(&self) -> FaultPhase {
        match self {
            FaultEffect::Latency(_) => FaultPhase::Latency,
            FaultEffect::CorruptLz4 | FaultEffect::CorruptProtobuf => FaultPhase::PullBody,
            FaultEffect::Error { .. } | FaultEffect::InvalidCursor | FaultEffect::DropConnection => FaultPhase::Answer,
        }
    }
}

/// When during a request a fault is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultPhase {
    Latency,
    Answer,
    PullBody,
}

/// A fault and the requests it applies to. Scope fields left `None` match
/// any request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlsFault {
    pub effect: FaultEffect,
    pub api: Option<SlsApi>,
    pub project: Option<String>,
    pub logstore: Option<String>,
    pub shard: Option<u32>,
    pub consumer_group: Option<String>,
    /// How many matching requests it applies to; `None` means all of them
    /// until the faults are cleared.
    pub times: Option<u64>,
}

impl SlsFault {
    /// `effect` on every request, until cleared; narrow it with the `on_*`
    /// methods and `times`.
    pub fn new(effect: FaultEffect) -> SlsFault {
        SlsFault { effect, api: None, project: None, logstore: None, shard: None, consumer_group: None, times: None }
    }

    pub fn on_api(mut self, api: SlsApi) -> SlsFault {
        self.api = Some(api);
        self
    }

    pub fn on_project(mut self, project: &str) -> SlsFault {
        self.project = Some(project.to_string());
        self
    }

    pub fn on_logstore(mut self, logstore: &str) -> SlsFault {
        self.logstore = Some(logstore.to_string());
        self
    }

    pub fn on_shard(mut self, shard: u32) -> SlsFault {
        self.shard = Some(shard);
        self
    }

    pub fn on_consumer_group(mut self, consumer_group: &str) -> SlsFault {
        self.consumer_group = Some(consumer_group.to_string());
        self
    }

    pub fn times(mut self, times: u64) -> SlsFault {
        self.times = Some(times);
        self
    }

    fn matches(&self, request: &RequestScope<'_>) -> bool {
        fn field<T: PartialEq + ?Sized>(wanted: Option<&T>, actual: Option<&T>) -> bool {
            wanted.is_none_or(|wanted| actual == Some(wanted))
        }
        field(self.api.as_ref(), Some(&request.api))
            && field(self.project.as_deref(), Some(request.project))
            && field(self.logstore.as_deref(), request.logstore)
            && field(self.shard.as_ref(), request.shard.as_ref())
            && field(self.consumer_group.as_deref(), request.consumer_group)
    }
}

/// What a request is about, for matching faults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestScope<'a> {
    pub api: SlsApi,
    pub project: &'a str,
    pub logstore: Option<&'a str>,
    pub shard: Option<u32>,
    pub consumer_group: Option<&'a str>,
}

/// The faults still to apply, in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct FaultRules {
    rules: Vec<SlsFault>,
}

impl FaultRules {
    pub fn add(&mut self, fault: SlsFault) {
        if fault.times != Some(0) {
            self.rules.push(fault);
        }
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn pending(&self) -> Vec<SlsFault> {
        self.rules.clone()
    }

    /// Takes one application of the first fault of `phase` matching the
    /// request.
    pub fn take(&mut self, phase: FaultPhase, request: &RequestScope<'_>) -> Option<FaultEffect> {
        let index = self.rules.iter().position(|rule| rule.effect.phase() == phase && rule.matches(request))?;
        let rule = &mut self.rules[index];
        let effect = rule.effect.clone();
        if let Some(times) = rule.times.as_mut() {
            *times -= 1;
            if *times == 0 {
                self.rules.remove(index);
            }
        }
        Some(effect)
    }
}

/// A PullLogs body that no LZ4 block decoder accepts: one literal, then a
/// match whose offset points far before the start of the output.
pub(crate) const CORRUPT_LZ4_BODY: &[u8] = &[0x1f, b'x', 0xff, 0xff, 0x00, 0x00];

/// Bytes that are not a `LogGroupList`: field 1 announces a length far past
/// the end of the buffer.
pub(crate) const CORRUPT_PROTOBUF_RAW: &[u8] = &[0x0a, 0xff, 0xff, 0xff, 0x7f, 0x0a, 0x00];

/// A fault as JSON on `POST /_testkit/faults`:
/// `{"fault": "read_quota_exceed", "api": "pull_logs", "logstore": "L",
/// "shard": 0, "times": 3}`. `fault` is one of `read_quota_exceed`,
/// `shard_read_quota_exceed`, `server_busy`, `internal_server_error`,
/// `invalid_cursor`, `corrupt_lz4`, `corrupt_protobuf`, `latency` (with
/// `millis`), `drop_connection`, or `error` (with `status`, `error_code`,
/// `error_message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub fault: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<SlsApi>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logstore: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// A `FaultSpec` that names no valid fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault spec: {0}")]
pub struct FaultSpecError(String);

impl TryFrom<FaultSpec> for SlsFault {
    type Error = FaultSpecError;

    fn try_from(spec: FaultSpec) -> Result<SlsFault, FaultSpecError> {
        let effect = match spec.fault.as_str() {
            "read_quota_exceed" => FaultEffect::read_quota_exceed(),
            "shard_read_quota_exceed" => FaultEffect::shard_read_quota_exceed(),
            "server_busy" => FaultEffect::server_busy(),
            "internal_server_error" => FaultEffect::internal_server_error(),
            "invalid_cursor" => FaultEffect::InvalidCursor,
            "corrupt_lz4" => FaultEffect::CorruptLz4,
            "corrupt_protobuf" => FaultEffect::CorruptProtobuf,
            "drop_connection" => FaultEffect::DropConnection,
            "latency" => {
                let millis = spec.millis.ok_or_else(|| FaultSpecError("\"latency\" needs \"millis\"".to_string()))?;
                FaultEffect::Latency(Duration::from_millis(millis))
            }
            "error" => {
                let status = spec.status.ok_or_else(|| FaultSpecError("\"error\" needs \"status\"".to_string()))?;
                if !(400..=599).contains(&status) {
                    return Err(FaultSpecError(format!("\"status\" {status} is not an error status; use 400..=599")));
                }
                let code = spec.error_code.clone().ok_or_else(|| FaultSpecError("\"error\" needs \"error_code\"".to_string()))?;
                FaultEffect::Error { status, code, message: spec.error_message.clone().unwrap_or_default() }
            }
            other => {
                return Err(FaultSpecError(format!(
                    "unknown fault {other:?}; known: read_quota_exceed, shard_read_quota_exceed, server_busy, internal_server_error, invalid_cursor, corrupt_lz4, corrupt_protobuf, latency, drop_connection, error"
                )))
            }
        };
        Ok(SlsFault {
            effect,
            api: spec.api,
            project: spec.project,
            logstore: spec.logstore,
            shard: spec.shard,
            consumer_group: spec.consumer_group,
            times: spec.times,
        })
    }
}

impl From<&SlsFault> for FaultSpec {
    fn from(fault: &SlsFault) -> FaultSpec {
        let mut spec = FaultSpec {
            fault: String::new(),
            api: fault.api,
            project: fault.project.clone(),
            logstore: fault.logstore.clone(),
            shard: fault.shard,
            consumer_group: fault.consumer_group.clone(),
            times: fault.times,
            millis: None,
            status: None,
            error_code: None,
            error_message: None,
        };
        spec.fault = match &fault.effect {
            FaultEffect::Error { status, code, message } => {
                spec.status = Some(*status);
                spec.error_code = Some(code.clone());
                spec.error_message = Some(message.clone());
                "error"
            }
            FaultEffect::InvalidCursor => "invalid_cursor",
            FaultEffect::CorruptLz4 => "corrupt_lz4",
            FaultEffect::CorruptProtobuf => "corrupt_protobuf",
            FaultEffect::Latency(latency) => {
                spec.millis = Some(latency.as_millis() as u64);
                "latency"
            }
            FaultEffect::DropConnection => "drop_connection",
        }
        .to_string();
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sls::proto::{decode_log_group_list, lz4_block_compress, lz4_block_decompress};

    fn pull_on(shard: u32) -> RequestScope<'static> {
        RequestScope {
            api: SlsApi::PullLogs,
            project: "p",
            logstore: Some("l"),
            shard: Some(shard),
            consumer_group: None,
        }
    }

    #[test]
    fn scoped_faults_apply_only_to_matching_requests_and_count_down() {
        let mut rules = FaultRules::default();
        rules.add(SlsFault::new(FaultEffect::read_quota_exceed()).on_api(SlsApi::PullLogs).on_shard(1).times(2));
        assert_eq!(rules.take(FaultPhase::Answer, &pull_on(0)), None);
        assert_eq!(rules.take(FaultPhase::Latency, &pull_on(1)), None);
        assert_eq!(rules.take(FaultPhase::Answer, &pull_on(1)), Some(FaultEffect::read_quota_exceed()));
        assert_eq!(rules.take(FaultPhase::Answer, &pull_on(1)), Some(FaultEffect::read_quota_exceed()));
        assert_eq!(rules.take(FaultPhase::Answer, &pull_on(1)), None);
        assert!(rules.pending().is_empty());
    }

    #[test]
    fn unlimited_faults_stay_until_cleared() {
        let mut rules = FaultRules::default();
        rules.add(SlsFault::new(FaultEffect::server_busy()));
        for _ in 0..5 {
            assert!(rules.take(FaultPhase::Answer, &pull_on(0)).is_some());
        }
        rules.clear();
        assert!(rules.take(FaultPhase::Answer, &pull_on(0)).is_none());
    }

    #[test]
    fn json_specs_round_trip_and_unknown_names_list_the_known_ones() {
        let spec: FaultSpec =
            serde_json::from_str(r#"{"fault":"latency","millis":250,"api":"heartbeat","times":1}"#).unwrap();
        let fault = SlsFault::try_from(spec.clone()).unwrap();
        assert_eq!(fault.effect, FaultEffect::Latency(Duration::from_millis(250)));
        assert_eq!(FaultSpec::from(&fault), spec);
        let unknown: FaultSpec = serde_json::from_str(r#"{"fault":"explode"}"#).unwrap();
        let error = SlsFault::try_from(unknown).unwrap_err().to_string();
        assert!(error.contains("read_quota_exceed"), "{error}");
        assert!(serde_json::from_str::<FaultSpec>(r#"{"fault":"server_busy","shards":1}"#).is_err());
    }

    #[test]
    fn corrupt_bodies_fail_to_decode() {
        assert!(lz4_block_decompress(CORRUPT_LZ4_BODY, 4096).is_err());
        let compressed = lz4_block_compress(CORRUPT_PROTOBUF_RAW);
        let raw = lz4_block_decompress(&compressed, CORRUPT_PROTOBUF_RAW.len()).unwrap();
        assert!(decode_log_group_list(&raw).is_err());
    }
}
