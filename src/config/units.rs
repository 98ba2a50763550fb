//! Durations and byte sizes as written in configuration files.
//!
//! Durations are strings made of one or more `<number><unit>` parts:
//! `"500ms"`, `"20s"`, `"5m"`, `"2h"`, `"2d"`, `"1h30m"`, `"1.5s"`. Units: `ns`,
//! `us`, `ms`, `s`, `m`, `h`, `d`, `w`. A bare number is rejected: the unit is
//! what tells a reader whether `30` meant seconds or milliseconds.
//!
//! Sizes are a plain integer number of bytes or a string with a unit: `"1MB"`
//! (10^6), `"512KiB"` (2^10 × 512), `"10 GB"`, `"64B"`. Units are
//! case-insensitive except that `b` alone means bytes.
//!
//! Every component uses these parsers (through the serde helpers below), so
//! the same spelling works everywhere and errors read the same.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("invalid duration {input:?}: {reason}; write it like \"500ms\", \"20s\", \"5m\", \"2h\" or \"2d\"")]
    Duration { input: String, reason: &'static str },
    #[error(
        "invalid size {input:?}: {reason}; write a number of bytes or a string like \"512KiB\", \"1MB\" or \"10MiB\""
    )]
    Size { input: String, reason: &'static str },
}

/// Parses a duration such as `"1h30m"` or `"250ms"`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let error = |reason| UnitError::Duration { input: input.to_string(), reason };
    let text = input.trim();
    if text.is_empty() {
        return Err(error("it is empty"));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_length = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_length == 0 {
            return Err(error("expected a number"));
        }
        let number: f64 = rest[..number_length].parse().map_err(|_| error("the number is malformed"))?;
        rest = rest[number_length..].trim_start();
        let unit_length = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_length] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "" => return Err(error("a unit is missing")),
            _ => return Err(error("the unit is unknown")),
        };
        total += number * seconds_per_unit;
        rest = rest[unit_length..].trim_start();
    }
    if !total.is_finite() || total > u64::MAX as f64 / 2.0 {
        return Err(error("it is too large"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Renders a duration in the shortest form `parse_duration` reads back.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 && !duration.is_zero() {
        return format!("{}us", duration.as_micros());
    }
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if millis >= size && millis % size == 0 {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// Parses a byte size such as `"512KiB"` or `"1MB"`.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let error = |reason| UnitError::Size { input: input.to_string(), reason };
    let text = input.trim();
    let number_length = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    if number_length == 0 {
        return Err(error("expected a number"));
    }
    let number: f64 = text[..number_length].parse().map_err(|_| error("the number is malformed"))?;
    let unit = text[number_length..].trim();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(error("the unit is unknown")),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(error("it is too large"));
    }
    if bytes.fract() != 0.0 {
        return Err(error("it is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// `#[serde(with = "crate::config::units::duration")]` for `Duration` fields.
pub mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("expected a duration string such as \"20s\" or \"500ms\""))?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*duration))
    }
}

/// `#[serde(default, with = "crate::config::units::optional_duration")]`.
pub mod optional_duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(deserializer).map(Some)
    }

    pub fn serialize<S: serde::Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => super::duration::serialize(duration, serializer),
            None => serializer.serialize_none(),
        }
    }
}

/// `#[serde(with = "crate::config::units::size")]` for byte-size fields (`u64`).
pub mod size {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum SizeInput {
        Bytes(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        match SizeInput::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("expected a byte size such as 1048576, \"512KiB\" or \"1MB\""))?
        {
            SizeInput::Bytes(bytes) => Ok(bytes),
            SizeInput::Text(text) => parse_size(&text).map_err(serde::de::Error::custom),
        }
    }

    pub fn serialize<S: serde::Serializer>(bytes: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(*bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn bad_durations_say_how_to_write_them() {
        for bad in ["", "30", "5 parsecs", "ms", "1..5s"] {
            let message = parse_duration(bad).unwrap_err().to_string();
            assert!(message.contains("\"20s\""), "{bad}: {message}");
        }
    }

    #[test]
    fn durations_round_trip_through_format() {
        for text in ["500ms", "20s", "5m", "2h", "2d", "90s"] {
            let duration = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(duration)).unwrap(), duration);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert_eq!(parse_size("512KiB").unwrap(), 524_288);
        assert_eq!(parse_size("10 MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("64").unwrap(), 64);
        assert!(parse_size("1.5B").is_err());
        assert!(parse_size("12XB").unwrap_err().to_string().contains("\"512KiB\""));
    }
}
