//! The HEC status table: every numbered code Splunk answers with, its HTTP
//! status and its text (reference `splunk-hec.md` §8).
//!
//! Guarantees: the texts are Splunk's wording, not an emulator's variant, so a
//! client that wrongly compares on `text` still sees real strings. Never holds
//! behaviour; the server decides when each code applies.

use serde::{Deserialize, Serialize};

/// One numbered HEC status. Serialises as its number (`9`, not `"ServerBusy"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub enum HecCode {
    Success,
    TokenDisabled,
    TokenRequired,
    InvalidAuthorization,
    InvalidToken,
    NoData,
    InvalidDataFormat,
    IncorrectIndex,
    InternalServerError,
    ServerBusy,
    DataChannelMissing,
    InvalidDataChannel,
    EventFieldRequired,
    EventFieldBlank,
    AckDisabled,
    IndexedFieldsError,
    QueryStringAuthorizationDisabled,
    Healthy,
    UnhealthyQueuesFull,
    UnhealthyAckUnavailable,
    UnhealthyQueuesFullAckUnavailable,
    HealthInvalidToken,
    HealthTokenDisabled,
}

const ALL_CODES: [HecCode; 23] = [
    HecCode::Success,
    HecCode::TokenDisabled,
    HecCode::TokenRequired,
    HecCode::InvalidAuthorization,
    HecCode::InvalidToken,
    HecCode::NoData,
    HecCode::InvalidDataFormat,
    HecCode::IncorrectIndex,
    HecCode::InternalServerError,
    HecCode::ServerBusy,
    HecCode::DataChannelMissing,
    HecCode::InvalidDataChannel,
    HecCode::EventFieldRequired,
    HecCode::EventFieldBlank,
    HecCode::AckDisabled,
    HecCode::IndexedFieldsError,
    HecCode::QueryStringAuthorizationDisabled,
    HecCode::Healthy,
    HecCode::UnhealthyQueuesFull,
    HecCode::UnhealthyAckUnavailable,
    HecCode::UnhealthyQueuesFullAckUnavailable,
    HecCode::HealthInvalidToken,
    HecCode::HealthTokenDisabled,
];

impl HecCode {
    /// The number in the `code` field of a response body.
    pub fn number(self) -> u16 {
        match self {
            HecCode::Success => 0,
            HecCode::TokenDisabled => 1,
            HecCode::TokenRequired => 2,
            HecCode::InvalidAuthorization => 3,
            HecCode::InvalidToken => 4,
            HecCode::NoData => 5,
            HecCode::InvalidDataFormat => 6,
            HecCode::IncorrectIndex => 7,
            HecCode::InternalServerError => 8,
            HecCode::ServerBusy => 9,
            HecCode::DataChannelMissing => 10,
            HecCode::InvalidDataChannel => 11,
            HecCode::EventFieldRequired => 12,
            HecCode::EventFieldBlank => 13,
            HecCode::AckDisabled => 14,
            HecCode::IndexedFieldsError => 15,
            HecCode::QueryStringAuthorizationDisabled => 16,
            HecCode::Healthy => 17,
            HecCode::UnhealthyQueuesFull => 18,
            HecCode::UnhealthyAckUnavailable => 19,
            HecCode::UnhealthyQueuesFullAckUnavailable => 20,
            HecCode::HealthInvalidToken => 21,
            HecCode::HealthTokenDisabled => 22,
        }
    }

    pub fn from_number(number: u16) -> Option<HecCode> {
        ALL_CODES.iter().copied().find(|code| code.number() == number)
    }

    /// The HTTP status Splunk pairs with this code.
    pub fn http_status(self) -> u16 {
        match self {
            HecCode::Success | HecCode::Healthy => 200,
            HecCode::TokenRequired | HecCode::InvalidAuthorization => 401,
            HecCode::TokenDisabled | HecCode::InvalidToken => 403,
            HecCode::InternalServerError => 500,
            HecCode::ServerBusy
            | HecCode::UnhealthyQueuesFull
            | HecCode::UnhealthyAckUnavailable
            | HecCode::UnhealthyQueuesFullAckUnavailable => 503,
            HecCode::NoData
            | HecCode::InvalidDataFormat
            | HecCode::IncorrectIndex
            | HecCode::DataChannelMissing
            | HecCode::InvalidDataChannel
            | HecCode::EventFieldRequired
            | HecCode::EventFieldBlank
            | HecCode::AckDisabled
            | HecCode::IndexedFieldsError
            | HecCode::QueryStringAuthorizationDisabled
            | HecCode::HealthInvalidToken
            | HecCode::HealthTokenDisabled => 400,
        }
    }

    /// Splunk's wording for the `text` field.
    pub fn text(self) -> &'static str {
        match self {
            HecCode::Success => "Success",
            HecCode::TokenDisabled => "Token disabled",
            HecCode::TokenRequired => "Token is required",
            HecCode::InvalidAuthorization => "Invalid authorization",
            HecCode::InvalidToken => "Invalid token",
            HecCode::NoData => "No data",
            HecCode::InvalidDataFormat => "Invalid data format",
            HecCode::IncorrectIndex => "Incorrect index",
            HecCode::InternalServerError => "Internal server error",
            HecCode::ServerBusy => "Server is busy",
            HecCode::DataChannelMissing => "Data channel is missing",
            HecCode::InvalidDataChannel => "Invalid data channel",
            HecCode::EventFieldRequired => "Event field is required",
            HecCode::EventFieldBlank => "Event field cannot be blank",
            HecCode::AckDisabled => "ACK is disabled",
            HecCode::IndexedFieldsError => "Error in handling indexed fields",
            HecCode::QueryStringAuthorizationDisabled => "Query string authorization is not enabled",
            HecCode::Healthy => "HEC is healthy",
            HecCode::UnhealthyQueuesFull => "HEC is unhealthy, queues are full",
            HecCode::UnhealthyAckUnavailable => "HEC is unhealthy, ack service unavailable",
            HecCode::UnhealthyQueuesFullAckUnavailable => "HEC is unhealthy, queues are full, ack service unavailable",
            HecCode::HealthInvalidToken => "Invalid token",
            HecCode::HealthTokenDisabled => "Token disabled",
        }
    }

    /// Whether the health endpoint may be switched to answer this code.
    pub fn is_health_state(self) -> bool {
        matches!(
            self,
            HecCode::Healthy
                | HecCode::UnhealthyQueuesFull
                | HecCode::UnhealthyAckUnavailable
                | HecCode::UnhealthyQueuesFullAckUnavailable
        )
    }
}

impl From<HecCode> for u16 {
    fn from(code: HecCode) -> u16 {
        code.number()
    }
}

/// A number outside Splunk's status table (0 to 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HEC code {0} is not in Splunk's status table; use a number from 0 to 22")]
pub struct UnknownHecCode(pub u16);

impl TryFrom<u16> for HecCode {
    type Error = UnknownHecCode;

    fn try_from(number: u16) -> Result<HecCode, UnknownHecCode> {
        HecCode::from_number(number).ok_or(UnknownHecCode(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_are_dense() {
        for (position, code) in ALL_CODES.iter().enumerate() {
            assert_eq!(usize::from(code.number()), position);
            assert_eq!(HecCode::from_number(code.number()), Some(*code));
        }
        assert_eq!(HecCode::from_number(23), None);
    }

    #[test]
    fn statuses_follow_the_reference_table() {
        assert_eq!(HecCode::TokenDisabled.http_status(), 403);
        assert_eq!(HecCode::InvalidToken.http_status(), 403);
        assert_eq!(HecCode::TokenRequired.http_status(), 401);
        assert_eq!(HecCode::ServerBusy.http_status(), 503);
        assert_eq!(HecCode::InternalServerError.http_status(), 500);
        assert_eq!(HecCode::QueryStringAuthorizationDisabled.http_status(), 400);
    }

    #[test]
    fn serialises_as_a_number() {
        assert_eq!(serde_json::to_string(&HecCode::ServerBusy).unwrap(), "9");
        assert_eq!(serde_json::from_str::<HecCode>("14").unwrap(), HecCode::AckDisabled);
        assert!(serde_json::from_str::<HecCode>("99").is_err());
    }
}
