//! Date parsing, formatting and date math, as Elasticsearch applies them to
//! `date` fields, range bounds and index-name patterns.
//!
//! Everything is UTC epoch milliseconds (`i64`). Supported formats: the ISO
//! family (`strict_date_optional_time`, `date_optional_time`, `date_time`,
//! ...), `epoch_millis`, `epoch_second`, and simple java-time patterns
//! (`yyyy-MM-dd HH:mm:ss`, `yyyy.MM.dd`, `'T'` literals, `SSS`, `XXX`/`Z`),
//! joined with `||`. Date math: `now`, `<date>||`, then `+N<unit>`, `-N<unit>`,
//! `/<unit>` with units `y M w d h H m s`. Like Elasticsearch, parsing a bound
//! with "round up" (for `gt` and `lte`) fills missing fields with their
//! largest value, so `lte: "2024-01-01"` covers the whole day. Named time
//! zones are not supported (no tz database); offsets like `+08:00` are.

use chrono::{
    DateTime, Datelike, Duration as ChronoDuration, Months, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc,
};
use serde_json::Value;

/// The format of a `date` field when the mapping gives none.
pub const DEFAULT_DATE_FORMAT: &str = "strict_date_optional_time||epoch_millis";

/// Epoch milliseconds now.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2026-08-21T10:00:00.123Z`: how the emulator writes timestamps.
pub fn format_iso_millis(millis: i64) -> String {
    match Utc.timestamp_millis_opt(millis).single() {
        Some(time) => time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => millis.to_string(),
    }
}

/// Expands strftime fields (`%Y`, `%m`, `%d`, `%H`, ...) in an index-name
/// pattern with a UTC time. A pattern with an invalid field is an error.
pub fn format_index_pattern(pattern: &str, millis: i64) -> Result<String, String> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item<'_>> = StrftimeItems::new(pattern).collect();
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(format!("index pattern {pattern:?} has an invalid %-field; use %Y, %m, %d, %H"));
    }
    let time =
        Utc.timestamp_millis_opt(millis).single().ok_or_else(|| format!("timestamp {millis} is out of range"))?;
    Ok(time.format_with_items(items.into_iter()).to_string())
}

/// A parsed instant plus how far it extends when rounded up (the last
/// millisecond covered by the fields that were given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParsedSpan {
    start: i64,
    last: i64,
}

/// Parses a date value from a document or a query with a `||`-separated
/// format list. Numbers are accepted when an epoch format is in the list.
pub fn parse_date_value(value: &Value, format: &str) -> Result<i64, String> {
    match value {
        Value::String(text) => parse_date(text, format, false, 0),
        Value::Number(number) => {
            let as_float = number.as_f64().ok_or_else(|| format!("number {number} is out of range"))?;
            // The first epoch format listed decides the unit.
            for name in format.split("||").map(str::trim) {
                match name {
                    "epoch_millis" => return Ok(as_float as i64),
                    "epoch_second" => return Ok((as_float * 1000.0) as i64),
                    _ => {}
                }
            }
            parse_date(&number.to_string(), format, false, 0)
        }
        other => Err(format!("failed to parse date field [{other}] with format [{format}]")),
    }
}

/// Parses `text` with the first matching format. `round_up` fills missing
/// fields with their largest value. `offset_millis` applies to values that
/// carry no zone.
pub fn parse_date(text: &str, format: &str, round_up: bool, offset_millis: i64) -> Result<i64, String> {
    for name in format.split("||").map(str::trim) {
        if let Some(span) = parse_with(text, name, offset_millis) {
            return Ok(if round_up { span.last } else { span.start });
        }
    }
    Err(format!("failed to parse date field [{text}] with format [{format}]"))
}

fn parse_with(text: &str, name: &str, offset_millis: i64) -> Option<ParsedSpan> {
    match name {
        "epoch_millis" => parse_epoch(text, 1).map(|millis| ParsedSpan { start: millis, last: millis }),
        "epoch_second" => parse_epoch(text, 1000).map(|millis| ParsedSpan { start: millis, last: millis + 999 }),
        "strict_date_optional_time"
        | "date_optional_time"
        | "dateOptionalTime"
        | "strict_date_optional_time_nanos"
        | "strictDateOptionalTime"
        | "date_time"
        | "strict_date_time"
        | "date_time_no_millis"
        | "strict_date_time_no_millis"
        | "dateTime"
        | "iso8601" => parse_iso(text, name.starts_with("strict"), offset_millis),
        "strict_date" | "date" | "year_month_day" | "strict_year_month_day" => {
            parse_pattern(text, "yyyy-MM-dd", offset_millis)
        }
        "basic_date" => parse_pattern(text, "yyyyMMdd", offset_millis),
        "strict_date_hour_minute_second" | "date_hour_minute_second" => {
            parse_pattern(text, "yyyy-MM-dd'T'HH:mm:ss", offset_millis)
        }
        pattern => parse_pattern(text, pattern, offset_millis),
    }
}

fn parse_epoch(text: &str, scale: i64) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '.') {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    Some((value * scale as f64) as i64)
}

/// Fields read from a date text, `None` when absent.
#[derive(Debug, Default)]
struct Fields {
    year: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
    hour: Option<u32>,
    minute: Option<u32>,
    second: Option<u32>,
    /// Nanoseconds and how many fraction digits were given.
    fraction: Option<(u32, usize)>,
    offset_seconds: Option<i32>,
}

impl Fields {
    fn span(&self, default_offset_millis: i64) -> Option<ParsedSpan> {
        let year = self.year?;
        let month = self.month.unwrap_or(1);
        let day = self.day.unwrap_or(1);
        let date = NaiveDate::from_ymd_opt(year, month, day)?;
        let nanos = self.fraction.map(|(nanos, _)| nanos).unwrap_or(0);
        let time =
            date.and_hms_nano_opt(self.hour.unwrap_or(0), self.minute.unwrap_or(0), self.second.unwrap_or(0), nanos)?;
        let offset_millis = self.offset_seconds.map(|seconds| seconds as i64 * 1000).unwrap_or(default_offset_millis);
        let start = time.and_utc().timestamp_millis() - offset_millis;
        let end_exclusive = if self.fraction.is_some() {
            let (_, digits) = self.fraction.unwrap_or((0, 3));
            start + if digits >= 3 { 1 } else { 10_i64.pow(3 - digits as u32) }
        } else if self.second.is_some() {
            start + 1000
        } else if self.minute.is_some() {
            start + 60_000
        } else if self.hour.is_some() {
            start + 3_600_000
        } else if self.day.is_some() {
            start + 86_400_000
        } else if self.month.is_some() {
            add_months(time, 1)?.and_utc().timestamp_millis() - offset_millis
        } else {
            add_months(time, 12)?.and_utc().timestamp_millis() - offset_millis
        };
        Some(ParsedSpan { start, last: end_exclusive - 1 })
    }
}

fn add_months(time: NaiveDateTime, months: u32) -> Option<NaiveDateTime> {
    time.checked_add_months(Months::new(months))
}

/// Reads `count` digits (exactly when `exact`, else 1..=count).
fn take_digits(bytes: &[u8], position: &mut usize, count: usize, exact: bool) -> Option<u32> {
    let start = *position;
    while *position < bytes.len() && *position - start < count && bytes[*position].is_ascii_digit() {
        *position += 1;
    }
    let taken = *position - start;
    if taken == 0 || (exact && taken != count) {
        *position = start;
        return None;
    }
    std::str::from_utf8(&bytes[start..*position]).ok()?.parse().ok()
}

fn take_fraction(bytes: &[u8], position: &mut usize) -> Option<(u32, usize)> {
    let start = *position;
    while *position < bytes.len() && bytes[*position].is_ascii_digit() && *position - start < 9 {
        *position += 1;
    }
    let digits = *position - start;
    if digits == 0 {
        return None;
    }
    let text = std::str::from_utf8(&bytes[start..*position]).ok()?;
    let value: u32 = text.parse().ok()?;
    Some((value * 10_u32.pow(9 - digits as u32), digits))
}

/// `Z`, `+08:00`, `+0800`, `+08`.
fn take_offset(bytes: &[u8], position: &mut usize) -> Option<i32> {
    match bytes.get(*position)? {
        b'Z' | b'z' => {
            *position += 1;
            Some(0)
        }
        sign @ (b'+' | b'-') => {
            let negative = *sign == b'-';
            *position += 1;
            let hours = take_digits(bytes, position, 2, true)? as i32;
            if bytes.get(*position) == Some(&b':') {
                *position += 1;
            }
            let minutes = take_digits(bytes, position, 2, true).unwrap_or(0) as i32;
            let seconds = hours * 3600 + minutes * 60;
            Some(if negative { -seconds } else { seconds })
        }
        _ => None,
    }
}

fn parse_iso(text: &str, strict: bool, offset_millis: i64) -> Option<ParsedSpan> {
    let bytes = text.trim().as_bytes();
    let mut position = 0;
    let mut fields = Fields { year: Some(take_digits(bytes, &mut position, 4, strict)? as i32), ..Fields::default() };
    let two = |position: &mut usize| take_digits(bytes, position, 2, strict);
    if bytes.get(position) == Some(&b'-') {
        position += 1;
        fields.month = Some(two(&mut position)?);
        if bytes.get(position) == Some(&b'-') {
            position += 1;
            fields.day = Some(two(&mut position)?);
        }
    }
    if matches!(bytes.get(position), Some(b'T') | Some(b't')) && fields.day.is_some() {
        position += 1;
        fields.hour = Some(two(&mut position)?);
        if bytes.get(position) == Some(&b':') {
            position += 1;
            fields.minute = Some(two(&mut position)?);
            if bytes.get(position) == Some(&b':') {
                position += 1;
                fields.second = Some(two(&mut position)?);
                if matches!(bytes.get(position), Some(b'.') | Some(b',')) {
                    position += 1;
                    fields.fraction = Some(take_fraction(bytes, &mut position)?);
                }
            }
        }
        if position < bytes.len() {
            fields.offset_seconds = Some(take_offset(bytes, &mut position)?);
        }
    }
    if position != bytes.len() {
        return None;
    }
    fields.span(offset_millis)
}

/// A java-time pattern such as `yyyy-MM-dd HH:mm:ss.SSS`.
fn parse_pattern(text: &str, pattern: &str, offset_millis: i64) -> Option<ParsedSpan> {
    let bytes = text.trim().as_bytes();
    let pattern: Vec<char> = pattern.chars().collect();
    let mut fields = Fields::default();
    let mut position = 0;
    let mut index = 0;
    while index < pattern.len() {
        let letter = pattern[index];
        if letter == '\'' {
            let mut literal_end = index + 1;
            while literal_end < pattern.len() && pattern[literal_end] != '\'' {
                literal_end += 1;
            }
            for literal in &pattern[index + 1..literal_end] {
                let mut buffer = [0; 4];
                for byte in literal.encode_utf8(&mut buffer).bytes() {
                    if bytes.get(position) != Some(&byte) {
                        return None;
                    }
                    position += 1;
                }
            }
            index = literal_end + 1;
            continue;
        }
        let mut run = 1;
        while index + run < pattern.len() && pattern[index + run] == letter {
            run += 1;
        }
        match letter {
            'y' | 'u' => {
                fields.year = Some(take_digits(bytes, &mut position, if run == 2 { 2 } else { 4 }, run != 1)? as i32)
            }
            'M' => fields.month = Some(take_digits(bytes, &mut position, 2, run == 2)?),
            'd' => fields.day = Some(take_digits(bytes, &mut position, 2, run == 2)?),
            'H' => fields.hour = Some(take_digits(bytes, &mut position, 2, run == 2)?),
            'm' => fields.minute = Some(take_digits(bytes, &mut position, 2, run == 2)?),
            's' => fields.second = Some(take_digits(bytes, &mut position, 2, run == 2)?),
            'S' => fields.fraction = Some(take_fraction(bytes, &mut position)?),
            'X' | 'Z' | 'x' => fields.offset_seconds = Some(take_offset(bytes, &mut position)?),
            other if other.is_ascii_alphabetic() => return None,
            other => {
                for _ in 0..run {
                    let mut buffer = [0; 4];
                    for byte in other.encode_utf8(&mut buffer).bytes() {
                        if bytes.get(position) != Some(&byte) {
                            return None;
                        }
                        position += 1;
                    }
                }
            }
        }
        index += run;
    }
    if position != bytes.len() {
        return None;
    }
    if let Some(year) = fields.year {
        if year < 100 && pattern.iter().filter(|c| **c == 'y').count() == 2 {
            fields.year = Some(2000 + year);
        }
    }
    fields.span(offset_millis)
}

/// Parses a `time_zone` parameter: `UTC`, `Z`, `+08:00`, `-0500`.
pub fn parse_time_zone(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    if matches!(trimmed, "UTC" | "Z" | "GMT" | "Etc/UTC") {
        return Ok(0);
    }
    let bytes = trimmed.as_bytes();
    let mut position = 0;
    match take_offset(bytes, &mut position) {
        Some(seconds) if position == bytes.len() => Ok(seconds as i64 * 1000),
        _ => Err(format!("time_zone [{text}] is not supported by the emulator; use UTC or an offset like +08:00")),
    }
}

/// Resolves a range bound with date math (`now-5m`, `now/d`,
/// `2024-01-01||+1M/d`). `round_up` applies to `gt` and `lte` bounds.
pub fn resolve_date_math(
    text: &str,
    format: &str,
    now: i64,
    round_up: bool,
    offset_millis: i64,
) -> Result<i64, String> {
    let (mut time, operations) = if let Some(rest) = text.strip_prefix("now") {
        (Utc.timestamp_millis_opt(now).single().ok_or("now is out of range")?, rest)
    } else if let Some((anchor, rest)) = text.split_once("||") {
        let millis = parse_date(anchor, format, false, offset_millis)?;
        (Utc.timestamp_millis_opt(millis).single().ok_or("date is out of range")?, rest)
    } else {
        return parse_date(text, format, round_up, offset_millis);
    };
    let bytes = operations.as_bytes();
    let mut position = 0;
    let invalid = || {
        format!("operation in date math [{text}] is not understood; use +N<unit>, -N<unit> or /<unit> with units y M w d h H m s")
    };
    while position < bytes.len() {
        let operator = bytes[position];
        position += 1;
        match operator {
            b'+' | b'-' => {
                let start = position;
                while position < bytes.len() && bytes[position].is_ascii_digit() {
                    position += 1;
                }
                let amount: i64 =
                    if start == position { 1 } else { operations[start..position].parse().map_err(|_| invalid())? };
                let amount = if operator == b'-' { -amount } else { amount };
                let unit = *bytes.get(position).ok_or_else(invalid)?;
                position += 1;
                time = add_unit(time, unit, amount).ok_or_else(invalid)?;
            }
            b'/' => {
                let unit = *bytes.get(position).ok_or_else(invalid)?;
                position += 1;
                time = round_to(time, unit, round_up).ok_or_else(invalid)?;
            }
            _ => return Err(invalid()),
        }
    }
    Ok(time.timestamp_millis())
}

fn add_unit(time: DateTime<Utc>, unit: u8, amount: i64) -> Option<DateTime<Utc>> {
    let months = |count: i64| -> Option<DateTime<Utc>> {
        if count >= 0 {
            time.checked_add_months(Months::new(count as u32))
        } else {
            time.checked_sub_months(Months::new((-count) as u32))
        }
    };
    match unit {
        b'y' => months(amount * 12),
        b'M' => months(amount),
        b'w' => time.checked_add_signed(ChronoDuration::weeks(amount)),
        b'd' => time.checked_add_signed(ChronoDuration::days(amount)),
        b'h' | b'H' => time.checked_add_signed(ChronoDuration::hours(amount)),
        b'm' => time.checked_add_signed(ChronoDuration::minutes(amount)),
        b's' => time.checked_add_signed(ChronoDuration::seconds(amount)),
        _ => None,
    }
}

fn round_to(time: DateTime<Utc>, unit: u8, round_up: bool) -> Option<DateTime<Utc>> {
    let start = match unit {
        b'y' => Utc.with_ymd_and_hms(time.year(), 1, 1, 0, 0, 0).single()?,
        b'M' => Utc.with_ymd_and_hms(time.year(), time.month(), 1, 0, 0, 0).single()?,
        b'w' => {
            let day = Utc.with_ymd_and_hms(time.year(), time.month(), time.day(), 0, 0, 0).single()?;
            day - ChronoDuration::days(time.weekday().num_days_from_monday() as i64)
        }
        b'd' => Utc.with_ymd_and_hms(time.year(), time.month(), time.day(), 0, 0, 0).single()?,
        b'h' | b'H' => Utc.with_ymd_and_hms(time.year(), time.month(), time.day(), time.hour(), 0, 0).single()?,
        b'm' => Utc.with_ymd_and_hms(time.year(), time.month(), time.day(), time.hour(), time.minute(), 0).single()?,
        b's' => Utc
            .with_ymd_and_hms(time.year(), time.month(), time.day(), time.hour(), time.minute(), time.second())
            .single()?,
        _ => return None,
    };
    if !round_up {
        return Some(start);
    }
    let next = add_unit(start, unit, 1)?;
    Some(next - ChronoDuration::milliseconds(1))
}

/// Formats epoch millis for a sort value with an explicit `format`.
pub fn format_with(millis: i64, format: &str) -> Value {
    let first = format.split("||").next().unwrap_or(format).trim();
    match first {
        "epoch_millis" => Value::String(millis.to_string()),
        "epoch_second" => Value::String((millis / 1000).to_string()),
        "strict_date_optional_time_nanos" => match Utc.timestamp_millis_opt(millis).single() {
            Some(time) => Value::String(time.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()),
            None => Value::from(millis),
        },
        _ => Value::String(format_iso_millis(millis)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: i64 = 1_767_268_800_000; // 2026-01-01T12:00:00Z

    #[test]
    fn iso_parsing_covers_zones_fractions_and_partial_dates() {
        let parse = |text: &str| parse_date(text, DEFAULT_DATE_FORMAT, false, 0).unwrap();
        assert_eq!(parse("2026-01-01T12:00:00Z"), NOON);
        assert_eq!(parse("2026-01-01T12:00:00.250Z"), NOON + 250);
        assert_eq!(parse("2026-01-01T20:00:00+08:00"), NOON);
        assert_eq!(parse("2026-01-01T12:00:00.123456789Z"), NOON + 123);
        assert_eq!(parse("2026-01-01T12:00"), NOON);
        assert_eq!(parse("2026-01-01"), NOON - 12 * 3_600_000);
        assert_eq!(parse("1767268800000"), NOON);
        assert!(parse_date("yesterday", DEFAULT_DATE_FORMAT, false, 0).is_err());
        assert!(parse_date("2026-1-1", "strict_date_optional_time", false, 0).is_err());
    }

    #[test]
    fn rounding_up_fills_missing_fields() {
        let end_of_day = parse_date("2026-01-01", DEFAULT_DATE_FORMAT, true, 0).unwrap();
        assert_eq!(end_of_day, NOON + 12 * 3_600_000 - 1);
        let end_of_second = parse_date("2026-01-01T12:00:00Z", DEFAULT_DATE_FORMAT, true, 0).unwrap();
        assert_eq!(end_of_second, NOON + 999);
    }

    #[test]
    fn epoch_formats_and_patterns() {
        assert_eq!(parse_date("1767268800", "epoch_second", false, 0).unwrap(), NOON);
        assert_eq!(parse_date_value(&serde_json::json!(1767268800), "epoch_second").unwrap(), NOON);
        assert_eq!(parse_date("2026/01/01 12:00:00", "yyyy/MM/dd HH:mm:ss", false, 0).unwrap(), NOON);
        assert_eq!(parse_date("2026-01-01 20:00:00", "yyyy-MM-dd HH:mm:ss", false, 8 * 3_600_000).unwrap(), NOON);
    }

    #[test]
    fn date_math_adds_subtracts_and_rounds() {
        let math = |text: &str, up: bool| resolve_date_math(text, DEFAULT_DATE_FORMAT, NOON, up, 0).unwrap();
        assert_eq!(math("now", false), NOON);
        assert_eq!(math("now-5m", false), NOON - 300_000);
        assert_eq!(math("now/d", false), NOON - 12 * 3_600_000);
        assert_eq!(math("now/d", true), NOON + 12 * 3_600_000 - 1);
        assert_eq!(math("2026-01-01T12:00:00Z||+1h", false), NOON + 3_600_000);
        assert_eq!(math("now-1M/M", false), parse_date("2025-12-01", DEFAULT_DATE_FORMAT, false, 0).unwrap());
        assert!(resolve_date_math("now*2", DEFAULT_DATE_FORMAT, NOON, false, 0).is_err());
    }

    #[test]
    fn formats_index_names_and_timestamps() {
        assert_eq!(format_index_pattern("logstash-%Y.%m.%d", NOON).unwrap(), "logstash-2026.01.01");
        assert!(format_index_pattern("logs-%Q", NOON).is_err());
        assert_eq!(format_iso_millis(NOON + 5), "2026-01-01T12:00:00.005Z");
        assert_eq!(parse_time_zone("+08:00").unwrap(), 8 * 3_600_000);
        assert!(parse_time_zone("Europe/Berlin").is_err());
    }
}
