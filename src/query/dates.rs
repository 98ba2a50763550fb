//! Dates for range queries: ISO 8601 parsing with the precision that was
//! written, Elasticsearch date math (`now-5m/m`, `2024-05-01||+1M/d`), and
//! epoch numbers.
//!
//! Guarantees: every instant is epoch milliseconds (UTC); a date without an
//! offset is read in the given fixed offset (UTC by default); rounding up
//! yields the last millisecond of the unit, as Elasticsearch does for `gt`
//! and `lte` bounds. Never: reads time-zone databases (only fixed offsets),
//! or reads the clock (callers pass `now`).

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike,
};

use super::EpochUnit;

/// Calendar units, from coarsest to finest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Unit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

impl Unit {
    fn from_letter(letter: char) -> Option<Unit> {
        Some(match letter {
            'y' => Unit::Year,
            'M' => Unit::Month,
            'w' => Unit::Week,
            'd' => Unit::Day,
            'h' | 'H' => Unit::Hour,
            'm' => Unit::Minute,
            's' => Unit::Second,
            _ => return None,
        })
    }
}

/// Epoch milliseconds from an epoch number.
pub(crate) fn epoch_to_millis(number: f64, unit: EpochUnit) -> i64 {
    let seconds = match unit {
        EpochUnit::Seconds => true,
        EpochUnit::Milliseconds => false,
        // 1e11 seconds is the year 5138; 1e11 milliseconds is 1973. Log
        // timestamps sit far from both, so the magnitude tells them apart.
        EpochUnit::Guess => number.abs() < 1e11,
    };
    if seconds {
        (number * 1000.0) as i64
    } else {
        number as i64
    }
}

/// Parses an ISO 8601 date or date-time (`T` or space between the parts, `-`
/// or `/` between date fields, optional fraction and offset). Returns the
/// first millisecond it denotes and the finest unit written.
pub(crate) fn parse_iso(text: &str, default_offset_seconds: i32) -> Option<(i64, Unit)> {
    let bytes = text.trim().as_bytes();
    let mut cursor = Cursor { bytes, position: 0 };
    let year = cursor.digits(4, 4)? as i32;
    let mut precision = Unit::Year;
    // Month, day, hour, minute and second, each two digits after one of its
    // separators; each is optional once the previous one is written, and
    // the finest one present sets the precision.
    const PARTS: [(&[u8], Unit); 5] =
        [(b"-/", Unit::Month), (b"-/", Unit::Day), (b"T ", Unit::Hour), (b":", Unit::Minute), (b":", Unit::Second)];
    let mut parts = [1, 1, 0, 0, 0];
    let mut millisecond = 0;
    'parts: {
        for (part, (separators, unit)) in parts.iter_mut().zip(PARTS) {
            if !cursor.eat_any(separators) {
                break 'parts;
            }
            *part = cursor.digits(2, 2)?;
            precision = unit;
        }
        if !cursor.eat_any(b".,") {
            break 'parts;
        }
        let start = cursor.position;
        let fraction = cursor.digits(1, 9)?;
        let written = cursor.position - start;
        millisecond = (fraction as u64 * 1000 / 10u64.pow(written as u32)) as u32;
        precision = Unit::Millisecond;
    }
    let [month, day, hour, minute, second] = parts;
    let offset_seconds = match cursor.peek() {
        None => default_offset_seconds,
        Some(b'Z' | b'z') => {
            cursor.position += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            cursor.position += 1;
            let hours = cursor.digits(2, 2)? as i32;
            cursor.eat_any(b":");
            let minutes = if cursor.peek().is_some() { cursor.digits(2, 2)? as i32 } else { 0 };
            let magnitude = hours * 3600 + minutes * 60;
            if sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        Some(_) => return None,
    };
    if cursor.peek().is_some() {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let time = NaiveTime::from_hms_milli_opt(hour, minute, second, millisecond)?;
    let local = NaiveDateTime::new(date, time);
    let offset = FixedOffset::east_opt(offset_seconds)?;
    let instant = offset.from_local_datetime(&local).single()?;
    Some((instant.timestamp_millis(), precision))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn eat_any(&mut self, choices: &[u8]) -> bool {
        match self.peek() {
            Some(byte) if choices.contains(&byte) => {
                self.position += 1;
                true
            }
            _ => false,
        }
    }

    fn digits(&mut self, minimum: usize, maximum: usize) -> Option<u32> {
        let start = self.position;
        while self.position - start < maximum && self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            self.position += 1;
        }
        if self.position - start < minimum {
            return None;
        }
        std::str::from_utf8(&self.bytes[start..self.position]).ok()?.parse().ok()
    }
}

/// One step of date math after the anchor.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Add(i64, Unit),
    Round(Unit),
}

/// A compiled date expression: an anchor (`now` or a fixed date) and steps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DateExpression {
    /// `None` for `now`; otherwise the anchor's first millisecond and precision.
    anchor: Option<(i64, Unit)>,
    steps: Vec<Step>,
    offset_seconds: i32,
}

impl DateExpression {
    /// Parses `now...`, `<date>||...` or a plain ISO date. `None` when `text` is not a date.
    pub(crate) fn parse(text: &str, offset_seconds: i32) -> Option<DateExpression> {
        let text = text.trim();
        let (anchor, math) = if let Some(rest) = text.strip_prefix("now") {
            (None, rest)
        } else if let Some((date, rest)) = text.split_once("||") {
            (Some(parse_iso(date, offset_seconds)?), rest)
        } else {
            (Some(parse_iso(text, offset_seconds)?), "")
        };
        let steps = parse_steps(math)?;
        Some(DateExpression { anchor, steps, offset_seconds })
    }

    pub(crate) fn uses_now(&self) -> bool {
        self.anchor.is_none()
    }

    /// The instant in epoch milliseconds; `round_up` picks the last
    /// millisecond of partial anchors and `/unit` roundings.
    pub(crate) fn evaluate(&self, now_millis: i64, round_up: bool) -> Option<i64> {
        let offset = FixedOffset::east_opt(self.offset_seconds)?;
        let (start, precision) = self.anchor.unwrap_or((now_millis, Unit::Millisecond));
        let mut local = offset.timestamp_millis_opt(start).single()?;
        if round_up && precision < Unit::Millisecond {
            // A partial anchor rounds up before any math applies, as in Elasticsearch.
            local = end_of(local, precision)?;
        }
        for step in &self.steps {
            local = match *step {
                Step::Add(amount, unit) => add(local, amount, unit)?,
                Step::Round(unit) if round_up => end_of(start_of(local, unit)?, unit)?,
                Step::Round(unit) => start_of(local, unit)?,
            };
        }
        Some(local.timestamp_millis())
    }
}

fn parse_steps(mut math: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    while let Some(operator) = math.chars().next() {
        math = &math[1..];
        match operator {
            '+' | '-' => {
                let digits = math.chars().take_while(char::is_ascii_digit).count();
                let amount: i64 = if digits == 0 { 1 } else { math[..digits].parse().ok()? };
                math = &math[digits..];
                let unit = Unit::from_letter(math.chars().next()?)?;
                math = &math[1..];
                steps.push(Step::Add(if operator == '-' { -amount } else { amount }, unit));
            }
            '/' => {
                let unit = Unit::from_letter(math.chars().next()?)?;
                math = &math[1..];
                steps.push(Step::Round(unit));
            }
            _ => return None,
        }
    }
    Some(steps)
}

type Local = DateTime<FixedOffset>;

fn add(local: Local, amount: i64, unit: Unit) -> Option<Local> {
    match unit {
        Unit::Year | Unit::Month => {
            let months = if unit == Unit::Year { amount.checked_mul(12)? } else { amount };
            let magnitude = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
            if months >= 0 {
                local.checked_add_months(magnitude)
            } else {
                local.checked_sub_months(magnitude)
            }
        }
        Unit::Week => local.checked_add_signed(Duration::try_weeks(amount)?),
        Unit::Day => local.checked_add_signed(Duration::try_days(amount)?),
        Unit::Hour => local.checked_add_signed(Duration::try_hours(amount)?),
        Unit::Minute => local.checked_add_signed(Duration::try_minutes(amount)?),
        Unit::Second => local.checked_add_signed(Duration::try_seconds(amount)?),
        Unit::Millisecond => local.checked_add_signed(Duration::try_milliseconds(amount)?),
    }
}

fn start_of(local: Local, unit: Unit) -> Option<Local> {
    let date = local.date_naive();
    let naive = match unit {
        Unit::Year => NaiveDate::from_ymd_opt(date.year(), 1, 1)?.and_hms_opt(0, 0, 0)?,
        Unit::Month => NaiveDate::from_ymd_opt(date.year(), date.month(), 1)?.and_hms_opt(0, 0, 0)?,
        Unit::Week => {
            let monday =
                date.checked_sub_signed(Duration::try_days(i64::from(date.weekday().num_days_from_monday()))?)?;
            monday.and_hms_opt(0, 0, 0)?
        }
        Unit::Day => date.and_hms_opt(0, 0, 0)?,
        Unit::Hour => date.and_hms_opt(local.hour(), 0, 0)?,
        Unit::Minute => date.and_hms_opt(local.hour(), local.minute(), 0)?,
        Unit::Second => date.and_hms_opt(local.hour(), local.minute(), local.second())?,
        Unit::Millisecond => return Some(local),
    };
    local.offset().from_local_datetime(&naive).single()
}

/// The last millisecond of the `unit` that starts at or contains `local`.
fn end_of(local: Local, unit: Unit) -> Option<Local> {
    let start = start_of(local, unit)?;
    add(start, 1, unit)?.checked_sub_signed(Duration::try_milliseconds(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
    }

    #[test]
    fn iso_forms_and_precision() {
        assert_eq!(parse_iso("2024-05-01T10:20:30Z", 0), Some((millis("2024-05-01T10:20:30Z"), Unit::Second)));
        assert_eq!(
            parse_iso("2024-05-01T10:20:30.5+08:00", 0),
            Some((millis("2024-05-01T02:20:30.500Z"), Unit::Millisecond))
        );
        assert_eq!(parse_iso("2024-05-01 10:20", 0), Some((millis("2024-05-01T10:20:00Z"), Unit::Minute)));
        assert_eq!(parse_iso("2024/05/01", 0), Some((millis("2024-05-01T00:00:00Z"), Unit::Day)));
        assert_eq!(parse_iso("2024", 0), Some((millis("2024-01-01T00:00:00Z"), Unit::Year)));
        assert_eq!(parse_iso("2024-05-01T10:00:00", 3600).map(|(at, _)| at), Some(millis("2024-05-01T09:00:00Z")));
        assert_eq!(parse_iso("2024-13-01", 0), None);
        assert_eq!(parse_iso("hello", 0), None);
        assert_eq!(parse_iso("1700000000", 0), None);
    }

    #[test]
    fn date_math_and_rounding() {
        let now = millis("2024-05-15T10:20:30.400Z");
        let expression = DateExpression::parse("now-5m", 0).unwrap();
        assert!(expression.uses_now());
        assert_eq!(expression.evaluate(now, false), Some(millis("2024-05-15T10:15:30.400Z")));
        let day = DateExpression::parse("now/d", 0).unwrap();
        assert_eq!(day.evaluate(now, false), Some(millis("2024-05-15T00:00:00Z")));
        assert_eq!(day.evaluate(now, true), Some(millis("2024-05-15T23:59:59.999Z")));
        let anchored = DateExpression::parse("2024-01-31||+1M/d", 0).unwrap();
        assert_eq!(anchored.evaluate(now, false), Some(millis("2024-02-29T00:00:00Z")));
        let partial = DateExpression::parse("2024-05", 0).unwrap();
        assert_eq!(partial.evaluate(now, true), Some(millis("2024-05-31T23:59:59.999Z")));
        assert_eq!(partial.evaluate(now, false), Some(millis("2024-05-01T00:00:00Z")));
        let week = DateExpression::parse("now/w", 0).unwrap();
        assert_eq!(week.evaluate(now, false), Some(millis("2024-05-13T00:00:00Z")));
        assert!(DateExpression::parse("now-5x", 0).is_none());
        assert!(DateExpression::parse("abc", 0).is_none());
    }

    #[test]
    fn epoch_guess() {
        assert_eq!(epoch_to_millis(1_700_000_000.0, EpochUnit::Guess), 1_700_000_000_000);
        assert_eq!(epoch_to_millis(1_700_000_000_000.0, EpochUnit::Guess), 1_700_000_000_000);
        assert_eq!(epoch_to_millis(5.0, EpochUnit::Milliseconds), 5);
    }
}
