//! Event time: parsing `timestamp_field` values and rendering times the way
//! ElastAlert prints them.
//!
//! Internally every time is an `EventTime`, nanoseconds since the Unix epoch
//! in UTC (an `i64`, cheap to compare and store in windows). This module
//! converts in both directions:
//! - parsing per `timestamp_type`: `iso` (RFC 3339 and the common ISO-8601
//!   variants; a value without offset is UTC), `unix` (seconds, integer, float
//!   or a string of digits as SLS sends `__time__`), `unix_ms`, `custom`
//!   (strptime directives);
//! - rendering a match's timestamp back into text (`dt_to_ts`: `Z` for UTC,
//!   3 fractional digits for whole milliseconds, 6 otherwise, none for zero),
//!   the human form `YYYY-MM-DD HH:MM TZ` used in alert text, and Python's
//!   `timedelta` text (`0:10:00`, `1 day, 0:00:00`).
//!
//! Never panics on input: an unparseable value is `None`.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};

use crate::event::Value;

/// Nanoseconds since the Unix epoch, UTC.
pub type EventTime = i64;

/// How `timestamp_field` values are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampType {
    Iso,
    Unix,
    UnixMs,
    /// strptime/strftime format as configured (`timestamp_format`).
    Custom(String),
}

pub fn to_datetime(time: EventTime) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(time)
}

pub fn from_datetime(time: DateTime<Utc>) -> EventTime {
    time.timestamp_nanos_opt().unwrap_or(if time.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

/// A `Duration` in nanoseconds, saturating (durations are config values).
pub fn duration_nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// Parses an event's timestamp value.
pub fn parse_event_time(value: &Value, timestamp_type: &TimestampType) -> Option<EventTime> {
    match timestamp_type {
        TimestampType::Iso => match value {
            Value::String(text) => parse_iso(text).map(|time| from_datetime(time.with_timezone(&Utc))),
            _ => None,
        },
        TimestampType::Unix => unix_value(value, 1e9),
        TimestampType::UnixMs => unix_value(value, 1e6),
        TimestampType::Custom(format) => match value {
            Value::String(text) => parse_custom(text, format).map(|time| from_datetime(time.with_timezone(&Utc))),
            _ => None,
        },
    }
}

fn unix_value(value: &Value, nanos_per_unit: f64) -> Option<EventTime> {
    if let Value::Integer(whole) = value {
        return whole.checked_mul(nanos_per_unit as i64);
    }
    if let Value::String(text) = value {
        if let Ok(whole) = text.trim().parse::<i64>() {
            return whole.checked_mul(nanos_per_unit as i64);
        }
    }
    let number = value.as_f64()?;
    let nanos = number * nanos_per_unit;
    nanos.is_finite().then_some(nanos as i64)
}

/// ISO-8601 as upstream's dateutil accepts it in practice: RFC 3339, a space
/// instead of `T`, no offset (UTC), an offset without colon, a bare date.
pub fn parse_iso(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time);
    }
    for format in
        ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z"]
    {
        if let Ok(time) = DateTime::parse_from_str(text, format) {
            return Some(time);
        }
    }
    let utc = Utc.fix();
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(utc.from_utc_datetime(&naive));
        }
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?))
}

/// strptime with Python's `%f` (microseconds) mapped to chrono's.
fn parse_custom(text: &str, python_format: &str) -> Option<DateTime<FixedOffset>> {
    let format = chrono_format(python_format);
    if let Ok(time) = DateTime::parse_from_str(text, &format) {
        return Some(time);
    }
    let naive = NaiveDateTime::parse_from_str(text, &format).ok()?;
    Some(Utc.fix().from_utc_datetime(&naive))
}

fn chrono_format(python_format: &str) -> String {
    python_format.replace(".%f", "%.f").replace("%f", "%6f")
}

/// Renders a match timestamp as upstream writes it back into the match.
/// `original` is the event's own value when the match came from an event, so
/// a non-UTC offset is kept as written.
pub fn render_match_time(time: EventTime, original: Option<&Value>, timestamp_type: &TimestampType) -> Value {
    match timestamp_type {
        TimestampType::Iso => {
            let with_offset = original
                .and_then(Value::as_str)
                .and_then(parse_iso)
                .filter(|parsed| from_datetime(parsed.with_timezone(&Utc)) == time)
                .unwrap_or_else(|| to_datetime(time).fixed_offset());
            Value::from(iso_text(&with_offset))
        }
        TimestampType::Unix => Value::Integer(time.div_euclid(1_000_000_000)),
        TimestampType::UnixMs => Value::Integer(time.div_euclid(1_000_000)),
        TimestampType::Custom(format) => {
            let rendered = to_datetime(time).format(&chrono_format(format)).to_string();
            Value::from(rendered)
        }
    }
}

/// `dt_to_ts` for an ISO rule: microsecond precision, trailing `000` dropped,
/// `Z` for UTC.
pub fn iso_text(time: &DateTime<FixedOffset>) -> String {
    let micros = time.timestamp_subsec_micros();
    let base = time.format("%Y-%m-%dT%H:%M:%S").to_string();
    let fraction = if micros == 0 {
        String::new()
    } else if micros % 1000 == 0 {
        format!(".{:03}", micros / 1000)
    } else {
        format!(".{micros:06}")
    };
    let offset_seconds = time.offset().local_minus_utc();
    let zone = if offset_seconds == 0 { "Z".to_owned() } else { time.format("%:z").to_string() };
    format!("{base}{fraction}{zone}")
}

/// How human-readable times in alert text are printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrettyTime {
    /// `use_local_time` (default true): convert to the host's zone.
    pub use_local_time: bool,
    /// `custom_pretty_ts_format` (strftime), replacing `%Y-%m-%d %H:%M %Z`.
    pub custom_format: Option<String>,
}

impl PrettyTime {
    pub fn render(&self, time: EventTime) -> String {
        let utc = to_datetime(time);
        let zoned: DateTime<FixedOffset> = if self.use_local_time {
            let local = Local.from_utc_datetime(&utc.naive_utc());
            local.fixed_offset()
        } else {
            utc.fixed_offset()
        };
        // chrono knows offsets, not zone names: UTC prints as `UTC` like
        // Python; other zones print their numeric offset.
        let zone_name =
            if zoned.offset().local_minus_utc() == 0 { "UTC".to_owned() } else { zoned.format("%:z").to_string() };
        let format = self.custom_format.as_deref().unwrap_or("%Y-%m-%d %H:%M %Z");
        zoned.format(&format.replace("%Z", &zone_name)).to_string()
    }
}

/// Python's `str(timedelta)`: `H:MM:SS`, days prefixed (`1 day, `,
/// `2 days, `), microseconds appended when present.
pub fn python_timedelta(duration: Duration) -> String {
    let total_seconds = duration.as_secs();
    let days = total_seconds / 86_400;
    let hours = (total_seconds % 86_400) / 3600;
    let minutes = (total_seconds % 3600) / 60;
    let seconds = total_seconds % 60;
    let micros = duration.subsec_micros();
    let mut out = String::new();
    if days == 1 {
        out.push_str("1 day, ");
    } else if days > 1 {
        out.push_str(&format!("{days} days, "));
    }
    out.push_str(&format!("{hours}:{minutes:02}:{seconds:02}"));
    if micros > 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> EventTime {
        from_datetime(DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc))
    }

    #[test]
    fn iso_variants_parse_and_naive_values_are_utc() {
        let expected = at("2024-01-01T00:01:00Z");
        for text in [
            "2024-01-01T00:01:00Z",
            "2024-01-01T00:01:00",
            "2024-01-01 00:01:00",
            "2024-01-01T08:01:00+08:00",
            "2024-01-01T08:01:00+0800",
        ] {
            assert_eq!(parse_event_time(&Value::from(text), &TimestampType::Iso), Some(expected), "{text}");
        }
        assert_eq!(parse_event_time(&Value::from("yesterday"), &TimestampType::Iso), None);
    }

    #[test]
    fn unix_accepts_sls_digit_strings_numbers_and_millis() {
        let expected = at("2023-11-14T22:13:20Z");
        assert_eq!(parse_event_time(&Value::from("1700000000"), &TimestampType::Unix), Some(expected));
        assert_eq!(parse_event_time(&Value::Integer(1_700_000_000), &TimestampType::Unix), Some(expected));
        assert_eq!(
            parse_event_time(&Value::Float(1_700_000_000.5), &TimestampType::Unix),
            Some(expected + 500_000_000)
        );
        assert_eq!(parse_event_time(&Value::Integer(1_700_000_000_000), &TimestampType::UnixMs), Some(expected));
        assert_eq!(parse_event_time(&Value::from("x"), &TimestampType::Unix), None);
    }

    #[test]
    fn custom_formats_use_strptime_directives() {
        let custom = TimestampType::Custom("%d/%m/%Y %H:%M:%S.%f".into());
        assert_eq!(
            parse_event_time(&Value::from("01/01/2024 00:01:00.250000"), &custom),
            Some(at("2024-01-01T00:01:00.25Z"))
        );
    }

    #[test]
    fn match_times_render_like_dt_to_ts() {
        assert_eq!(
            render_match_time(at("2024-01-01T00:01:00Z"), None, &TimestampType::Iso),
            Value::from("2024-01-01T00:01:00Z")
        );
        assert_eq!(
            render_match_time(at("2024-01-01T00:01:00.123Z"), None, &TimestampType::Iso),
            Value::from("2024-01-01T00:01:00.123Z")
        );
        assert_eq!(
            render_match_time(at("2024-01-01T00:01:00.123456Z"), None, &TimestampType::Iso),
            Value::from("2024-01-01T00:01:00.123456Z")
        );
        let original = Value::from("2024-01-01T02:01:00+02:00");
        assert_eq!(
            render_match_time(at("2024-01-01T00:01:00Z"), Some(&original), &TimestampType::Iso),
            Value::from("2024-01-01T02:01:00+02:00")
        );
        assert_eq!(
            render_match_time(at("2024-01-01T00:01:00Z"), None, &TimestampType::Unix),
            Value::Integer(1_704_067_260)
        );
    }

    #[test]
    fn pretty_time_and_timedelta_text() {
        let pretty = PrettyTime { use_local_time: false, custom_format: None };
        assert_eq!(pretty.render(at("2024-01-01T00:01:00Z")), "2024-01-01 00:01 UTC");
        assert_eq!(python_timedelta(Duration::from_secs(600)), "0:10:00");
        assert_eq!(python_timedelta(Duration::from_secs(86_400)), "1 day, 0:00:00");
        assert_eq!(python_timedelta(Duration::from_secs(2 * 86_400 + 3661)), "2 days, 1:01:01");
    }
}
