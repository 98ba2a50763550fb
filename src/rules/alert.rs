//! `Alert`: one or more matches ready to send, with the subject and body
//! text ElastAlert's alerters would produce, and its conversion into an
//! alert event.
//!
//! Text follows ElastAlert 2's `create_title` and `create_alert_body`
//! (reference section 8.3): the aggregation summary table when
//! `summary_table_fields` is set, then per match the rule name (only without
//! `alert_text`), the formatted `alert_text`, the rule type's paragraph, and
//! every match field sorted by name as `name: value`, lists and maps as
//! pretty JSON (indent 4, sorted keys). Python's `str.format` and `%`
//! formatting are reproduced for the subset rule files use (positional and
//! named fields, `{:,.2f}`-style specs, `%.2f`). Differences: the ascii
//! summary table never wraps cells at 80 columns, and local zone names print
//! as numeric offsets (UTC prints as `UTC`).
//!
//! Pure: no IO, no clock reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::event::{LogEvent, ObjectMap, Value};
use crate::rules::config::{AlertTextType, RuleDefinition, RuleKind, SummaryTableType};
use crate::rules::fields::{self, python_float, python_str, write_python_string_repr};
use crate::rules::time::{self, python_timedelta};
use crate::rules::Match;

/// Matches that passed silencing, sent together (one unless aggregated).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub rule_index: usize,
    pub rule_name: Arc<str>,
    /// When the alert is sent: the processing time, or an aggregation's
    /// scheduled send time.
    pub alert_time: DateTime<Utc>,
    /// The aggregation_key value the matches were grouped by.
    pub aggregation_key: Option<String>,
    /// At least one match, oldest first.
    pub matches: Vec<Match>,
    /// `alert_subject` with its args, or the rule name.
    pub subject: String,
    /// The full alert body.
    pub text: String,
}

impl Alert {
    pub(crate) fn build(
        rule: &RuleDefinition,
        rule_index: usize,
        alert_time: DateTime<Utc>,
        aggregation_key: Option<String>,
        matches: Vec<Match>,
    ) -> Alert {
        let subject = render_subject(rule, &matches);
        let text = render_body(rule, &matches);
        Alert {
            rule_index,
            rule_name: Arc::from(rule.name.as_str()),
            alert_time,
            aggregation_key,
            matches,
            subject,
            text,
        }
    }

    /// The alert event's fields: the first match's body at the top level,
    /// then `rule_name`, `alert_subject`, `alert_text`, `alert_time`,
    /// `match_time`, plus `aggregation_key` and `aggregated_matches` (every
    /// match body) for aggregated alerts.
    pub fn to_fields(&self) -> ObjectMap {
        let mut fields = self.matches.first().map(|first| first.body.clone()).unwrap_or_default();
        fields.insert("rule_name".into(), Value::from(&*self.rule_name));
        fields.insert("alert_subject".into(), Value::from(self.subject.as_str()));
        fields.insert("alert_text".into(), Value::from(self.text.as_str()));
        fields.insert("alert_time".into(), Value::from(time::iso_text(&self.alert_time.fixed_offset())));
        if let Some(first) = self.matches.first() {
            fields.insert("match_time".into(), Value::from(time::iso_text(&first.time.fixed_offset())));
        }
        if let Some(key) = &self.aggregation_key {
            fields.insert("aggregation_key".into(), Value::from(key.as_str()));
        }
        if self.matches.len() > 1 {
            let bodies = self.matches.iter().map(|matched| Value::Object(matched.body.clone())).collect();
            fields.insert("aggregated_matches".into(), Value::Array(bodies));
        }
        fields
    }

    /// The alert as an event owned by `component_id` (no finalizer).
    pub fn to_event(&self, component_id: &str) -> LogEvent {
        LogEvent::from_fields(component_id, self.to_fields())
    }
}

/// Looks an argument up in the match, then among the rule's options (when
/// truthy), else `None` (the caller substitutes `alert_missing_value`).
fn argument_value(rule: &RuleDefinition, body: &ObjectMap, path: &str) -> Option<Value> {
    match fields::lookup(body, path) {
        Some(value) if !value.is_null() => Some(value.clone()),
        _ => rule.option(path).filter(|option| json_truthy(option)).map(|option| Value::from(option.clone())),
    }
}

fn json_truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(flag) => *flag,
        serde_json::Value::Number(number) => number.as_f64() != Some(0.0),
        serde_json::Value::String(text) => !text.is_empty(),
        serde_json::Value::Array(items) => !items.is_empty(),
        serde_json::Value::Object(map) => !map.is_empty(),
    }
}

/// `create_title`.
pub(crate) fn render_subject(rule: &RuleDefinition, matches: &[Match]) -> String {
    let settings = &rule.alerting;
    let Some(subject) = &settings.alert_subject else {
        return rule.name.clone();
    };
    let empty = ObjectMap::default();
    let first = matches.first().map_or(&empty, |first| &first.body);
    let mut rendered = if settings.alert_subject_args.is_empty() {
        subject.clone()
    } else {
        let missing = Value::from(settings.alert_missing_value.as_str());
        let values: Vec<Value> = settings
            .alert_subject_args
            .iter()
            .map(|path| argument_value(rule, first, path).unwrap_or_else(|| missing.clone()))
            .collect();
        python_format(subject, &values, &[])
    };
    if let Some((cut, _)) = rendered.char_indices().nth(settings.alert_subject_max_len) {
        rendered.truncate(cut);
    }
    rendered
}

/// `create_alert_body`.
pub(crate) fn render_body(rule: &RuleDefinition, matches: &[Match]) -> String {
    let mut body = summary_text(rule, matches);
    if rule.alerting.alert_text_type != AlertTextType::AggregationSummaryOnly {
        for matched in matches {
            body.push_str(&match_text(rule, matched));
            if matches.len() > 1 {
                body.push_str("\n----------------------------------------\n");
            }
        }
    }
    body
}

fn ensure_blank_line(text: &mut String) {
    while !text.ends_with("\n\n") {
        text.push('\n');
    }
}

/// `BasicMatchString`: one match's text.
fn match_text(rule: &RuleDefinition, matched: &Match) -> String {
    let settings = &rule.alerting;
    let mut text = String::new();
    if settings.alert_text.is_none() {
        text.push_str(&rule.name);
        text.push_str("\n\n");
    }
    text.push_str(&custom_alert_text(rule, &matched.body));
    ensure_blank_line(&mut text);
    if settings.alert_text_type == AlertTextType::AlertTextOnly {
        return text;
    }
    text.push_str(&rule_type_paragraph(rule, matched));
    ensure_blank_line(&mut text);
    if !settings.top_count_keys.is_empty() {
        for (key, counts) in
            matched.body.iter().filter_map(|(key, value)| Some((key.strip_prefix("top_events_")?, value)))
        {
            let _ = writeln!(text, "{key}:");
            let mut entries: Vec<(String, f64, String)> = match counts {
                Value::Object(map) => map
                    .iter()
                    .map(|(term, count)| (term.to_string(), count.as_f64().unwrap_or(0.0), python_str(count)))
                    .collect(),
                _ => Vec::new(),
            };
            if entries.is_empty() {
                text.push_str("No events found.\n");
            }
            entries.sort_by(|left, right| right.1.total_cmp(&left.1));
            for (term, _, count) in entries {
                let _ = writeln!(text, "{term}: {count}");
            }
            text.push('\n');
        }
    }
    if settings.alert_text_type != AlertTextType::ExcludeFields {
        let mut items: Vec<(&str, &Value)> = matched
            .body
            .iter()
            .map(|(key, value)| (key.as_str(), value))
            .filter(|(key, _)| !key.starts_with("top_events_"))
            .collect();
        items.sort_by(|left, right| left.0.cmp(right.0));
        for (key, value) in items {
            let rendered = match value {
                Value::Array(_) | Value::Object(_) => pretty_json(value),
                other => python_str(other),
            };
            let _ = writeln!(text, "{key}: {rendered}");
        }
    }
    text
}

fn custom_alert_text(rule: &RuleDefinition, body: &ObjectMap) -> String {
    let settings = &rule.alerting;
    let template = settings.alert_text.clone().unwrap_or_default();
    let missing = Value::from(settings.alert_missing_value.as_str());
    if let Some(arguments) = &settings.alert_text_args {
        let values: Vec<Value> =
            arguments.iter().map(|path| argument_value(rule, body, path).unwrap_or_else(|| missing.clone())).collect();
        return python_format(&template, &values, &[]);
    }
    if let Some(keywords) = &settings.alert_text_kw {
        let named: Vec<(String, Value)> = keywords
            .iter()
            .map(|(path, placeholder)| {
                (placeholder.clone(), argument_value(rule, body, path).unwrap_or_else(|| missing.clone()))
            })
            .collect();
        return python_format(&template, &[], &named);
    }
    template
}

fn option_text(rule: &RuleDefinition, name: &str) -> String {
    rule.option(name).map_or_else(|| "None".to_owned(), |value| python_str(&Value::from(value.clone())))
}

fn body_number(body: &ObjectMap, name: &str) -> f64 {
    body.get(name).and_then(Value::as_f64).unwrap_or(0.0)
}

/// The rule type's `get_match_str` paragraph.
fn rule_type_paragraph(rule: &RuleDefinition, matched: &Match) -> String {
    let pretty = &rule.alerting.pretty_time;
    let match_time = time::from_datetime(matched.time);
    let body = &matched.body;
    match &rule.kind {
        RuleKind::Frequency { num_events, timeframe, .. } => format!(
            "At least {num_events} events occurred between {} and {}\n\n",
            pretty.render(match_time.saturating_sub(time::duration_nanos(*timeframe))),
            pretty.render(match_time)
        ),
        RuleKind::Flatline { timeframe, .. } => format!(
            "An abnormally low number of events occurred around {}.\nBetween {} and {}, there were less than {} events.\n\n",
            pretty.render(match_time),
            pretty.render(match_time.saturating_sub(time::duration_nanos(*timeframe))),
            pretty.render(match_time),
            option_text(rule, "threshold")
        ),
        RuleKind::Spike(settings) => match &settings.field_value {
            None => format!(
                "An abnormal number ({}) of events occurred around {}.\nPreceding that time, there were only {} events within {}\n\n",
                body_number(body, "spike_count") as i64,
                pretty.render(match_time),
                body_number(body, "reference_count") as i64,
                python_timedelta(settings.timeframe)
            ),
            Some(field) => format!(
                "An abnormal average value ({:.2}) of field '{field}' occurred around {}.\nPreceding that time, the field had an average value of ({:.2}) within {}\n\n",
                body_number(body, "spike_count"),
                pretty.render(match_time),
                body_number(body, "reference_count"),
                python_timedelta(settings.timeframe)
            ),
        },
        RuleKind::SpikeAggregation { spike, metric, .. } => {
            let round = |value: f64| python_float((value * 100.0).round() / 100.0);
            format!(
                "An abnormal {type_name} of {key} ({}) occurred around {}.\nPreceding that time, there was a {type_name} of {key} of ({}) within {}\n\n",
                round(body_number(body, "spike_count")),
                pretty.render(match_time),
                round(body_number(body, "reference_count")),
                python_timedelta(spike.timeframe),
                type_name = metric.aggregation.name(),
                key = metric.key,
            )
        }
        RuleKind::Cardinality { timeframe, cardinality_field, max_cardinality, min_cardinality } => {
            let start = pretty.render(match_time.saturating_sub(time::duration_nanos(*timeframe)));
            let end = pretty.render(match_time);
            match (max_cardinality, min_cardinality) {
                (Some(max), _) => format!("A maximum of {max} unique {cardinality_field}(s) occurred since last alert or between {start} and {end}\n\n"),
                (None, min) => format!(
                    "Less than {} unique {cardinality_field}(s) occurred since last alert or between {start} and {end}\n\n",
                    min.map_or_else(|| "None".to_owned(), |min| min.to_string())
                ),
            }
        }
        RuleKind::MetricAggregation(settings) => {
            let field_name = settings.metric.field_name();
            let shown = if settings.format_string.is_some() { body.get(format!("{field_name}_formatted").as_str()) } else { body.get(field_name.as_str()) };
            format!(
                "Threshold violation, {}:{} {} (min: {} max : {}) \n\n",
                settings.metric.aggregation.name(),
                settings.metric.key,
                shown.map_or_else(|| "None".to_owned(), python_str),
                option_text(rule, "min_threshold"),
                option_text(rule, "max_threshold")
            )
        }
        RuleKind::PercentageMatch(settings) => {
            let shown = if settings.format_string.is_some() { body.get("percentage_formatted") } else { body.get("percentage") };
            format!(
                "Percentage violation, value: {} (min: {} max : {}) of {} items\n\n",
                shown.map_or_else(|| "None".to_owned(), python_str),
                option_text(rule, "min_percentage"),
                option_text(rule, "max_percentage"),
                body.get("denominator").map_or_else(|| "None".to_owned(), python_str)
            )
        }
        RuleKind::Any | RuleKind::Blacklist { .. } | RuleKind::Whitelist { .. } | RuleKind::Change { .. } | RuleKind::NewTerm { .. } => String::new(),
    }
}

/// `get_aggregation_summary_text`.
fn summary_text(rule: &RuleDefinition, matches: &[Match]) -> String {
    let settings = &rule.alerting;
    let Some(summary_fields) = &settings.summary_table_fields else {
        return String::new();
    };
    let mut text = settings.summary_prefix.clone();
    if !text.is_empty() {
        text.push('\n');
    }
    let mut headers: Vec<String> = summary_fields.clone();
    headers.push("count".to_owned());
    let mut header_list = String::from("[");
    for (index, header) in headers.iter().enumerate() {
        if index > 0 {
            header_list.push_str(", ");
        }
        write_python_string_repr(&mut header_list, header);
    }
    header_list.push(']');
    let _ = write!(text, "Aggregation resulted in the following data for summary_table_fields ==> {header_list}:\n\n");

    let mut rows: Vec<(Vec<String>, u64)> = Vec::new();
    for matched in matches {
        let row: Vec<String> =
            summary_fields.iter().map(|path| fields::python_str_opt(fields::lookup(&matched.body, path))).collect();
        match rows.iter_mut().find(|(existing, _)| *existing == row) {
            Some((_, count)) => *count += 1,
            None => rows.push((row, 1)),
        }
    }
    if let Some(max_rows) = settings.summary_table_max_rows {
        // Counter.most_common: count descending, ties in first-seen order.
        rows.sort_by_key(|row| std::cmp::Reverse(row.1));
        rows.truncate(max_rows);
    }
    let table_rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(mut cells, count)| {
            cells.push(count.to_string());
            cells
        })
        .collect();
    match settings.summary_table_type {
        SummaryTableType::Ascii => {
            text.push_str(&ascii_table(&headers, &table_rows));
            text.push_str("\n\n");
        }
        SummaryTableType::Markdown => {
            let _ = writeln!(text, "| {} |", headers.join(" | "));
            text.push_str(&"|-----".repeat(headers.len()));
            text.push_str("|\n");
            for row in &table_rows {
                let (count, cells) = row.split_last().map_or(("", &row[..]), |(count, cells)| (count.as_str(), cells));
                for cell in cells {
                    let _ = write!(text, "| {cell} ");
                }
                let _ = writeln!(text, "| {count} |");
            }
            text.push('\n');
        }
    }
    if let Some(max_rows) = settings.summary_table_max_rows {
        let _ = writeln!(text, "Showing top {max_rows} rows");
    }
    text.push_str(&settings.summary_suffix);
    text
}

/// texttable's default look: border, header separator `=`, a line between
/// rows, headers centred, cells left-aligned.
fn ascii_table(headers: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|column| {
            std::iter::once(&headers[column])
                .chain(rows.iter().filter_map(|row| row.get(column)))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |fill: char| {
        let mut out = String::from("+");
        for width in &widths {
            out.extend(std::iter::repeat_n(fill, width + 2));
            out.push('+');
        }
        out
    };
    let row_text = |cells: &[String], centred: bool| {
        let mut out = String::from("|");
        for (cell, width) in cells.iter().zip(&widths) {
            let fill = width.saturating_sub(cell.chars().count());
            let (left, right) = if centred { (fill / 2, fill - fill / 2) } else { (0, fill) };
            let _ = write!(out, " {}{}{} |", " ".repeat(left), cell, " ".repeat(right));
        }
        out
    };
    let mut lines = vec![line('-'), row_text(headers, true), line('=')];
    for (index, row) in rows.iter().enumerate() {
        lines.push(row_text(row, false));
        if index + 1 < rows.len() {
            lines.push(line('-'));
        }
    }
    lines.push(line('-'));
    lines.join("\n")
}

/// `json.dumps(value, sort_keys=True, indent=4, ensure_ascii=False)`.
pub fn pretty_json(value: &Value) -> String {
    fn sorted(value: &Value) -> serde_json::Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&str, serde_json::Value> =
                    map.iter().map(|(key, item)| (key.as_str(), sorted(item))).collect();
                serde_json::Value::Object(ordered.into_iter().map(|(key, item)| (key.to_owned(), item)).collect())
            }
            Value::Array(items) => serde_json::Value::Array(items.iter().map(sorted).collect()),
            other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
        }
    }
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    if serde::Serialize::serialize(&sorted(value), &mut serializer).is_err() {
        return python_str(value);
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Python `str.format` over positional and named values: `{}`, `{0}`,
/// `{name}`, `{0:.2f}`, `{!r}`, `{{`/`}}`. A placeholder with no value is
/// kept as written (upstream would raise).
pub fn python_format(template: &str, positional: &[Value], named: &[(String, Value)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut characters = template.char_indices().peekable();
    let mut next_automatic = 0usize;
    while let Some((start, character)) = characters.next() {
        match character {
            '{' if characters.peek().map(|(_, next)| *next) == Some('{') => {
                characters.next();
                out.push('{');
            }
            '}' if characters.peek().map(|(_, next)| *next) == Some('}') => {
                characters.next();
                out.push('}');
            }
            '{' => {
                let Some(close) = template[start..].find('}').map(|offset| start + offset) else {
                    out.push_str(&template[start..]);
                    break;
                };
                let inner = &template[start + 1..close];
                while characters.peek().is_some_and(|(index, _)| *index <= close) {
                    characters.next();
                }
                let (field, spec) = inner.split_once(':').unwrap_or((inner, ""));
                let (field, conversion) = field.split_once('!').unwrap_or((field, ""));
                let value = if field.is_empty() {
                    next_automatic += 1;
                    positional.get(next_automatic - 1)
                } else if let Ok(index) = field.parse::<usize>() {
                    positional.get(index)
                } else {
                    named.iter().find(|(name, _)| name == field).map(|(_, value)| value)
                };
                match value {
                    Some(value) => out.push_str(&format_value(value, conversion, spec)),
                    None => out.push_str(&template[start..=close]),
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn format_value(value: &Value, conversion: &str, spec: &str) -> String {
    if conversion == "r" {
        let mut out = String::new();
        fields::write_python_repr(&mut out, value);
        return out;
    }
    if !spec.is_empty() {
        if let Some(number) = match value {
            Value::Integer(_) | Value::Float(_) => value.as_f64(),
            _ => None,
        } {
            if let Some(formatted) = format_spec(number, spec) {
                return formatted;
            }
        }
    }
    python_str(value)
}

/// Formats `value` with a `metric_format_string`/`percentage_format_string`:
/// `str.format` style when it holds `{`, else `%` style. `None` when the
/// format uses something outside the supported subset.
pub fn format_number(format: &str, value: f64) -> Option<String> {
    if format.contains('{') {
        let open = format.find('{')?;
        let close = open + format[open..].find('}')?;
        let inner = &format[open + 1..close];
        let spec = match inner.split_once(':') {
            Some((field, spec)) if field.is_empty() || field == "0" => spec,
            None if inner.is_empty() || inner == "0" => "",
            _ => return None,
        };
        let rendered = format_spec(value, spec)?;
        return Some(format!("{}{}{}", &format[..open], rendered, &format[close + 1..]));
    }
    let mut out = String::new();
    let mut rest = format;
    let mut used = false;
    while let Some(percent) = rest.find('%') {
        out.push_str(&rest[..percent]);
        rest = &rest[percent + 1..];
        if let Some(stripped) = rest.strip_prefix('%') {
            out.push('%');
            rest = stripped;
            continue;
        }
        let end = rest.find(|c: char| c.is_ascii_alphabetic())?;
        let (flags, kind) = (&rest[..end], &rest[end..=end]);
        let spec = match kind {
            "f" | "d" | "e" => format!("{}{}", flags, kind),
            "s" => String::new(),
            _ => return None,
        };
        if used {
            return None;
        }
        used = true;
        out.push_str(&format_spec(value, &spec)?);
        rest = &rest[end + 1..];
    }
    used.then_some(out)
}

/// A Python format spec for one number: `[,][.N](f|d|e|%)` or empty.
fn format_spec(value: f64, spec: &str) -> Option<String> {
    let (grouping, rest) = match spec.strip_prefix(',') {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    let kind = rest.chars().last().filter(|c| c.is_ascii_alphabetic() || *c == '%');
    let precision_text = match kind {
        Some(kind) => &rest[..rest.len() - kind.len_utf8()],
        None => rest,
    };
    let precision = match precision_text.strip_prefix('.') {
        Some(digits) => Some(digits.parse::<usize>().ok()?),
        None if precision_text.is_empty() => None,
        None => return None,
    };
    let formatted = match kind {
        None if precision.is_none() => python_float(value),
        Some('f') | None => format!("{:.*}", precision.unwrap_or(6), value),
        Some('d') => format!("{}", value.round() as i64),
        Some('%') => return Some(format!("{:.*}%", precision.unwrap_or(6), value * 100.0)),
        Some('e') => {
            let rust = format!("{:.*e}", precision.unwrap_or(6), value);
            let (mantissa, exponent) = rust.split_once('e')?;
            let exponent: i32 = exponent.parse().ok()?;
            format!("{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs())
        }
        _ => return None,
    };
    Some(if grouping { group_thousands(&formatted) } else { formatted })
}

fn group_thousands(number: &str) -> String {
    let (sign, unsigned) = number.strip_prefix('-').map_or(("", number), |rest| ("-", rest));
    let (integer, fraction) =
        unsigned.split_once('.').map_or((unsigned, None), |(integer, fraction)| (integer, Some(fraction)));
    let mut grouped = String::new();
    for (index, digit) in integer.chars().enumerate() {
        if index > 0 && (integer.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    match fraction {
        Some(fraction) => format!("{sign}{grouped}.{fraction}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_format_handles_positional_named_and_specs() {
        let values = [Value::from("web-1"), Value::Float(12.345)];
        assert_eq!(python_format("{} on {0}: {1:.2f} {{x}}", &values, &[]), "web-1 on web-1: 12.35 {x}");
        let named = [("host".to_owned(), Value::from("h"))];
        assert_eq!(python_format("host={host} missing={other}", &[], &named), "host=h missing={other}");
        assert_eq!(python_format("{!r}", &[Value::from("a")], &[]), "'a'");
    }

    #[test]
    fn number_formats_follow_python() {
        assert_eq!(format_number("{:,.2f}", 1234567.891).as_deref(), Some("1,234,567.89"));
        assert_eq!(format_number("%.1f%%", 12.34).as_deref(), Some("12.3%"));
        assert_eq!(format_number("{:.0f} ms", 12.5).as_deref(), Some("12 ms"));
        assert_eq!(format_number("{:.2e}", 12345.0).as_deref(), Some("1.23e+04"));
        assert_eq!(format_number("{:>10}", 1.0), None);
    }

    #[test]
    fn pretty_json_sorts_keys_and_indents_four() {
        let value = Value::from(serde_json::json!({"b": [1, "x"], "a": {"z": null}}));
        assert_eq!(
            pretty_json(&value),
            "{\n    \"a\": {\n        \"z\": null\n    },\n    \"b\": [\n        1,\n        \"x\"\n    ]\n}"
        );
    }

    #[test]
    fn ascii_table_matches_texttable_layout() {
        let headers = vec!["host".to_owned(), "count".to_owned()];
        let rows = vec![vec!["web-10".to_owned(), "2".to_owned()], vec!["db".to_owned(), "1".to_owned()]];
        let expected = "+--------+-------+\n|  host  | count |\n+========+=======+\n| web-10 | 2     |\n+--------+-------+\n| db     | 1     |\n+--------+-------+";
        assert_eq!(ascii_table(&headers, &rows), expected);
    }
}
