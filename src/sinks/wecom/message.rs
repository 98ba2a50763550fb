//! Turning alert events into WeCom message text, and splitting text that is
//! over WeCom's byte limits into parts.
//!
//! Owns the default alert body, the `template` rendering, grouping several
//! alerts into one message, and `split_content`.
//!
//! The default body follows ElastAlert's alert body: a title (`alert_subject`,
//! else `rule_name`, else "Event"), the rule name, hit and match counts, the
//! time, the query key and its value, then `alert_text` when the event has
//! one, otherwise the main fields of the matched event (`match_body` when it
//! is an object, else the event itself): host, source, topic, level, logger,
//! service, message. An event with none of those (any event may be sent to
//! this sink) lists all its top-level fields sorted by name, as ElastAlert
//! does. Every inserted value is cut at `message_max_chars` characters with
//! `...` appended, like the plugin this sink replaces (which cut the message
//! at 1024). A custom `template` renders `{{ field.path }}` placeholders the
//! same way; a missing field shows `missing_value`.
//!
//! Guarantees of `split_content`: every part is at most the byte limit, is
//! valid UTF-8 (never cut inside a character), is cut at a line end when a
//! line end fits, keeps markdown code fences balanced (closing and reopening
//! them across a cut), and carries a `(i/n)` marker whose bytes were budgeted
//! before cutting. The parts concatenated (markers and fences removed) give
//! back the text. Nothing here does IO.

use std::borrow::Cow;

use chrono::{DateTime, TimeZone, Utc};

use crate::event::{lookup_path, LogEvent, ObjectMap, Value};
use crate::template::Template;

/// Bytes reserved in every part for the `\n(i/n)` marker; `\n(999/999)` is 10.
const PART_MARKER_RESERVE: usize = 16;
/// Bytes reserved in a markdown part for closing and reopening a code fence.
const FENCE_RESERVE: usize = 8;
const FENCE: &str = "```";
/// Between alerts of one grouped message, as ElastAlert separates matches.
const ALERT_SEPARATOR: &str = "----------------------------------------";

/// Fields of the alert itself rather than of the matched event; left out when
/// the event's own fields are listed.
const ALERT_FIELDS: &[&str] = &[
    "rule_name",
    "alert_subject",
    "alert_text",
    "num_hits",
    "num_matches",
    "query_key",
    "match_body",
    "@timestamp",
    "alert_time",
];

/// The fields worth showing from a matched log event, in display order: the
/// host (`host.name` in ECS events, `host` or `__hostname__` in SLS ones,
/// `fields.feature` as the old plugin's `host_name`), where it came from, and
/// the message.
const MAIN_FIELDS: &[&str] = &[
    "host.name",
    "host",
    "hostname",
    "__hostname__",
    "fields.feature",
    "source",
    "__source__",
    "__topic__",
    "level",
    "logger",
    "service",
    "message",
];

/// How the message is marked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageFormat {
    #[default]
    Text,
    Markdown,
}

impl MessageFormat {
    pub fn msgtype(self) -> &'static str {
        match self {
            MessageFormat::Text => "text",
            MessageFormat::Markdown => "markdown",
        }
    }
}

/// Renders alert events into message text.
#[derive(Debug, Clone)]
pub struct MessageRenderer {
    pub format: MessageFormat,
    pub template: Option<Template>,
    pub missing_value: String,
    pub message_max_chars: usize,
}

impl MessageRenderer {
    /// One message for a group of alerts: each alert's body, separated by a
    /// dashed line, with a count header when there are several and
    /// "… and N more alerts" for the `summarised` ones not shown.
    pub fn render_group(&self, alerts: &[&LogEvent], summarised: usize, now: DateTime<Utc>) -> String {
        let total = alerts.len() + summarised;
        let mut out = String::new();
        if total > 1 {
            match self.format {
                MessageFormat::Text => out.push_str(&format!("{total} alerts\n\n")),
                MessageFormat::Markdown => out.push_str(&format!("**{total} alerts**\n\n")),
            }
        }
        for (index, alert) in alerts.iter().enumerate() {
            if index > 0 {
                out.push('\n');
                out.push_str(ALERT_SEPARATOR);
                out.push('\n');
            }
            out.push_str(self.render_alert(alert, now).trim_end());
            out.push('\n');
        }
        if summarised > 0 {
            out.push('\n');
            out.push_str(&format!("… and {summarised} more alert{}", if summarised == 1 { "" } else { "s" }));
        }
        let trimmed = out.trim_end();
        if trimmed.trim().is_empty() {
            // WeCom refuses empty content (44004); an empty rendering is a
            // template problem the reader should see rather than a lost alert.
            return "(the alert template rendered an empty message)".to_string();
        }
        trimmed.to_string()
    }

    /// One alert's body: the custom template, or the default.
    pub fn render_alert(&self, event: &LogEvent, now: DateTime<Utc>) -> String {
        match &self.template {
            Some(template) => template.render_with(event, now, |_, value, out| match value {
                Some(value) if !value.is_null() => out.push_str(&cut_chars(&value.to_text(), self.message_max_chars)),
                _ => out.push_str(&self.missing_value),
            }),
            None => self.render_default(event),
        }
    }

    fn render_default(&self, event: &LogEvent) -> String {
        let fields = event.fields();
        let text = |path: &str| {
            lookup_path(fields, path)
                .filter(|value| !value.is_null())
                .map(|value| cut_chars(&value.to_text(), self.message_max_chars).into_owned())
        };
        let markdown = self.format == MessageFormat::Markdown;
        let mut out = String::new();

        let rule_name = text("rule_name");
        let title = text("alert_subject").or_else(|| rule_name.clone()).unwrap_or_else(|| "Event".to_string());
        if markdown {
            out.push_str(&format!("**<font color=\"warning\">{title}</font>**\n"));
        } else {
            out.push_str(&title);
            out.push('\n');
        }
        let mut summary = Vec::new();
        if let Some(rule_name) = rule_name.filter(|name| *name != title) {
            summary.push(format!("Rule: {rule_name}"));
        }
        match (text("num_hits"), text("num_matches")) {
            (Some(hits), Some(matches)) => summary.push(format!("Hits: {hits}, matches: {matches}")),
            (Some(hits), None) => summary.push(format!("Hits: {hits}")),
            (None, Some(matches)) => summary.push(format!("Matches: {matches}")),
            (None, None) => {}
        }
        if let Some(time) = ["@timestamp", "alert_time", "timestamp", "__time__"]
            .iter()
            .find_map(|path| lookup_path(fields, path).filter(|value| !value.is_null()))
        {
            summary.push(format!("Time: {}", display_time(time)));
        }
        let matched = match fields.get("match_body") {
            Some(Value::Object(body)) => body,
            _ => fields,
        };
        if let Some(query_key) = text("query_key") {
            let value = lookup_path(matched, &query_key)
                .or_else(|| lookup_path(fields, &query_key))
                .filter(|value| !value.is_null() && query_key != "query_key")
                .map(|value| cut_chars(&value.to_text(), self.message_max_chars).into_owned());
            match value {
                Some(value) => summary.push(format!("Query key: {query_key} = {value}")),
                None => summary.push(format!("Query key: {query_key}")),
            }
        }
        for line in summary {
            if markdown {
                out.push_str("> ");
            }
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');

        if let Some(alert_text) = text("alert_text") {
            out.push_str(&alert_text);
            out.push('\n');
            return out;
        }
        let mut lines = self.main_field_lines(matched);
        if lines.is_empty() {
            lines = self.all_field_lines(matched);
        }
        for (name, value) in lines {
            if markdown {
                out.push_str(&format!("**{name}**: {value}\n"));
            } else {
                out.push_str(&format!("{name}: {value}\n"));
            }
        }
        out
    }

    fn main_field_lines(&self, matched: &ObjectMap) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        for path in MAIN_FIELDS {
            if let Some(value) = lookup_path(matched, path) {
                if matches!(value, Value::Object(_) | Value::Array(_) | Value::Null) {
                    continue;
                }
                lines.push((path.to_string(), cut_chars(&value.to_text(), self.message_max_chars).into_owned()));
            }
        }
        lines
    }

    fn all_field_lines(&self, matched: &ObjectMap) -> Vec<(String, String)> {
        let mut names: Vec<&str> =
            matched.keys().map(|name| name.as_str()).filter(|name| !ALERT_FIELDS.contains(name)).collect();
        names.sort_unstable();
        names
            .into_iter()
            .filter_map(|name| {
                let value = matched.get(name)?;
                Some((name.to_string(), cut_chars(&value.to_text(), self.message_max_chars).into_owned()))
            })
            .collect()
    }
}

/// A time field as text: strings as they are, Unix seconds (SLS `__time__`)
/// as RFC 3339 UTC.
fn display_time(value: &Value) -> String {
    let seconds = match value {
        Value::Integer(seconds) => Some(*seconds),
        Value::String(text) => text.as_str().trim().parse::<i64>().ok(),
        _ => None,
    };
    // 10^9 s is 2001; a smaller number is not a Unix time in seconds.
    match seconds.filter(|seconds| (1_000_000_000..100_000_000_000).contains(seconds)) {
        Some(seconds) => match Utc.timestamp_opt(seconds, 0).single() {
            Some(time) => time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            None => value.to_text().into_owned(),
        },
        None => value.to_text().into_owned(),
    }
}

/// `text` cut to `max_chars` characters with `...` appended when longer.
pub fn cut_chars(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => Cow::Owned(format!("{}...", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

/// The largest index `<= index` that is a character boundary of `text`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    let mut end = index;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Splits `content` into parts of at most `limit_bytes` UTF-8 bytes each (see
/// the module doc). One part, unchanged, when it fits.
pub fn split_content(content: &str, limit_bytes: usize, format: MessageFormat) -> Vec<String> {
    if content.len() <= limit_bytes {
        return vec![content.to_string()];
    }
    let fence_aware = format == MessageFormat::Markdown;
    let reserve = PART_MARKER_RESERVE + if fence_aware { FENCE_RESERVE } else { 0 };
    debug_assert!(limit_bytes > reserve + 4, "a WeCom limit is far larger than the marker reserve");
    let budget = limit_bytes.saturating_sub(reserve).max(4);

    struct Body {
        reopened_fence: bool,
        lines: String,
        ends_in_fence: bool,
    }
    let mut bodies: Vec<Body> = Vec::new();
    let mut current = Body { reopened_fence: false, lines: String::new(), ends_in_fence: false };
    let mut in_fence = false;
    for line in content.split_inclusive('\n') {
        let mut rest = line;
        while !rest.is_empty() {
            let room = budget - current.lines.len();
            if rest.len() <= room {
                current.lines.push_str(rest);
                rest = "";
            } else if current.lines.is_empty() || rest.len() > budget {
                // Only a line longer than a whole part is cut inside; it is cut
                // at a character boundary, filling what room is left.
                let mut end = floor_char_boundary(rest, room);
                if end == 0 && current.lines.is_empty() {
                    // A budget smaller than one character cannot happen with
                    // WeCom's limits; take the character rather than loop.
                    end = rest.chars().next().map_or(rest.len(), char::len_utf8);
                }
                current.lines.push_str(&rest[..end]);
                rest = &rest[end..];
                if !rest.is_empty() {
                    current.ends_in_fence = in_fence;
                    bodies.push(std::mem::replace(
                        &mut current,
                        Body { reopened_fence: in_fence, lines: String::new(), ends_in_fence: false },
                    ));
                }
            } else {
                current.ends_in_fence = in_fence;
                bodies.push(std::mem::replace(
                    &mut current,
                    Body { reopened_fence: in_fence, lines: String::new(), ends_in_fence: false },
                ));
            }
        }
        if fence_aware && line.trim_start().starts_with(FENCE) {
            in_fence = !in_fence;
        }
    }
    if !current.lines.is_empty() || bodies.is_empty() {
        current.ends_in_fence = false;
        bodies.push(current);
    }

    let count = bodies.len();
    let parts: Vec<String> = bodies
        .into_iter()
        .enumerate()
        .map(|(index, body)| {
            let mut part = String::with_capacity(limit_bytes);
            if fence_aware && body.reopened_fence {
                part.push_str(FENCE);
                part.push('\n');
            }
            part.push_str(body.lines.trim_end_matches('\n'));
            if fence_aware && body.ends_in_fence {
                part.push('\n');
                part.push_str(FENCE);
            }
            part.push_str(&format!("\n({}/{count})", index + 1));
            part
        })
        .collect();
    debug_assert!(parts.iter().all(|part| part.len() <= limit_bytes), "a part exceeds the limit");
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> LogEvent {
        let Value::Object(fields) = serde_json::from_str::<Value>(json).unwrap() else { panic!("not an object") };
        LogEvent::from_fields("test", fields)
    }

    fn renderer(format: MessageFormat, template: Option<&str>) -> MessageRenderer {
        MessageRenderer {
            format,
            template: template.map(|text| Template::parse(text).unwrap()),
            missing_value: "<MISSING VALUE>".to_string(),
            message_max_chars: 1024,
        }
    }

    /// Removes the `\n(i/n)` markers and fence repairs to get the original back.
    fn strip_markers(parts: &[String]) -> String {
        let count = parts.len();
        let mut whole = String::new();
        for (index, part) in parts.iter().enumerate() {
            let marker = format!("\n({}/{count})", index + 1);
            whole.push_str(part.strip_suffix(&marker).expect("every part ends with its marker"));
        }
        whole
    }

    #[test]
    fn content_within_the_limit_is_one_unmarked_part() {
        assert_eq!(split_content("short", 2048, MessageFormat::Text), vec!["short".to_string()]);
        let exact = "a".repeat(2048);
        assert_eq!(split_content(&exact, 2048, MessageFormat::Text), vec![exact.clone()]);
    }

    #[test]
    fn cjk_text_is_split_by_bytes_without_breaking_characters() {
        // 1500 three-byte characters: 4500 bytes, 1500 characters. A character
        // count would wrongly call it under 2048.
        let content: String = "告警内容测试".chars().cycle().take(1500).collect();
        let parts = split_content(&content, 2048, MessageFormat::Text);
        assert_eq!(parts.len(), 3, "4500 bytes need three parts of at most 2048");
        for part in &parts {
            assert!(part.len() <= 2048, "{} bytes", part.len());
        }
        // Each cut landed on a character boundary: the pieces re-join exactly.
        let count = parts.len();
        let rejoined: String = parts
            .iter()
            .enumerate()
            .map(|(index, part)| part.strip_suffix(&format!("\n({}/{count})", index + 1)).unwrap().to_string())
            .collect();
        assert_eq!(rejoined, content);
    }

    #[test]
    fn splits_on_line_boundaries_when_lines_fit() {
        let line = format!("{}\n", "x".repeat(99));
        let content = line.repeat(50); // 5000 bytes of 100-byte lines
        let parts = split_content(&content, 2048, MessageFormat::Text);
        assert!(parts.len() >= 3);
        for part in &parts {
            assert!(part.len() <= 2048);
            let body = part.rsplit_once('\n').unwrap().0;
            assert!(body.lines().all(|line| line.len() == 99), "a line was cut inside: {body:?}");
        }
        let total_lines: usize = parts.iter().map(|part| part.rsplit_once('\n').unwrap().0.lines().count()).sum();
        assert_eq!(total_lines, 50);
    }

    #[test]
    fn markdown_limits_and_fences_stay_balanced() {
        let mut content = String::from("# Traceback\n```\n");
        for index in 0..300 {
            content.push_str(&format!("  File \"/srv/app/module_{index}.py\", line {index}, in handler\n"));
        }
        content.push_str("```\nend\n");
        let parts = split_content(&content, 4096, MessageFormat::Markdown);
        assert!(parts.len() > 1);
        for part in &parts {
            assert!(part.len() <= 4096, "{} bytes", part.len());
            let fences = part.lines().filter(|line| line.trim_start().starts_with("```")).count();
            assert_eq!(fences % 2, 0, "unbalanced fences in {part}");
        }
        assert!(parts[1].starts_with("```\n"), "the fence reopens in the next part");
    }

    #[test]
    fn a_text_split_loses_nothing() {
        let content: String = (0..400).map(|index| format!("line {index}: 磁盘使用率 95%\n")).collect();
        let parts = split_content(&content, 2048, MessageFormat::Text);
        let whole = strip_markers(&parts);
        // Cuts at line ends drop only the newline the cut replaced.
        assert_eq!(whole.replace('\n', ""), content.replace('\n', ""));
    }

    #[test]
    fn cut_chars_counts_characters_not_bytes() {
        assert_eq!(cut_chars("abcdef", 3), "abc...");
        assert_eq!(cut_chars("错误错误", 2), "错误...");
        assert_eq!(cut_chars("short", 10), "short");
    }

    #[test]
    fn default_body_for_an_alert_uses_alert_text() {
        let alert = event(
            r#"{"rule_name":"payment errors","alert_subject":"Payment errors on wallet","alert_text":"12 errors in 5 minutes",
                "num_hits":40,"num_matches":12,"@timestamp":"2026-11-21T05:00:00Z","query_key":"host",
                "match_body":{"host":"wallet-prod-01","message":"boom"}}"#,
        );
        let text = renderer(MessageFormat::Text, None).render_alert(&alert, Utc::now());
        assert!(text.starts_with("Payment errors on wallet\n"), "{text}");
        assert!(text.contains("Rule: payment errors\n"), "{text}");
        assert!(text.contains("Hits: 40, matches: 12\n"), "{text}");
        assert!(text.contains("Time: 2026-11-21T05:00:00Z\n"), "{text}");
        assert!(text.contains("Query key: host = wallet-prod-01\n"), "{text}");
        assert!(text.contains("12 errors in 5 minutes"), "{text}");
        assert!(!text.contains("message: boom"), "alert_text replaces the field list: {text}");
    }

    #[test]
    fn default_body_lists_main_fields_and_cuts_the_message() {
        let long_message = "Exception: ".to_string() + &"x".repeat(2000);
        let alert = event(&format!(
            r#"{{"rule_name":"exceptions","num_hits":1,"__time__":"1700000000","host":"api-prod-03",
                "source":"/data/logs/api/app.log","level":"ERROR","thread":"worker-1","message":"{long_message}"}}"#
        ));
        let text = renderer(MessageFormat::Text, None).render_alert(&alert, Utc::now());
        assert!(text.starts_with("exceptions\n"), "{text}");
        assert!(text.contains("Time: 2023-11-14T22:13:20Z"), "Unix seconds become RFC 3339: {text}");
        assert!(text.contains("host: api-prod-03\nsource: /data/logs/api/app.log\nlevel: ERROR\n"), "{text}");
        let message_line = text.lines().find(|line| line.starts_with("message: ")).unwrap();
        assert_eq!(message_line.chars().count(), "message: ".len() + 1024 + 3, "cut at 1024 characters plus ...");
        assert!(!text.contains("thread"), "only the main fields: {text}");
    }

    #[test]
    fn any_event_degrades_to_all_its_fields() {
        let plain = event(r#"{"b":"two","a":1,"nested":{"x":true}}"#);
        let text = renderer(MessageFormat::Text, None).render_alert(&plain, Utc::now());
        assert_eq!(text, "Event\n\na: 1\nb: two\nnested: {\"x\":true}\n");
    }

    #[test]
    fn markdown_default_marks_up_the_title_and_fields() {
        let alert = event(r#"{"rule_name":"r1","num_hits":2,"host":"h1","message":"m"}"#);
        let text = renderer(MessageFormat::Markdown, None).render_alert(&alert, Utc::now());
        assert!(text.starts_with("**<font color=\"warning\">r1</font>**\n> Hits: 2\n"), "{text}");
        assert!(text.contains("**host**: h1\n**message**: m\n"), "{text}");
    }

    #[test]
    fn templates_fill_placeholders_and_show_missing_values() {
        let alert = event(r#"{"rule_name":"r1","host":{"name":"web-1"}}"#);
        let text = renderer(MessageFormat::Text, Some("{{ rule_name }} on {{ host.name }} ({{ level }})"))
            .render_alert(&alert, Utc::now());
        assert_eq!(text, "r1 on web-1 (<MISSING VALUE>)");
    }

    #[test]
    fn groups_show_a_count_separators_and_the_rest() {
        let first = event(r#"{"rule_name":"r1","message":"a"}"#);
        let second = event(r#"{"rule_name":"r2","message":"b"}"#);
        let text = renderer(MessageFormat::Text, None).render_group(&[&first, &second], 3, Utc::now());
        assert!(text.starts_with("5 alerts\n\nr1\n"), "{text}");
        assert!(text.contains(&format!("\n{ALERT_SEPARATOR}\nr2\n")), "{text}");
        assert!(text.ends_with("… and 3 more alerts"), "{text}");
        let single = renderer(MessageFormat::Text, None).render_group(&[&first], 0, Utc::now());
        assert_eq!(single, "r1\n\nmessage: a");
    }

    #[test]
    fn an_empty_rendering_is_replaced_by_a_notice() {
        let text = renderer(MessageFormat::Text, Some("   ")).render_group(&[&event("{}")], 0, Utc::now());
        assert!(!text.trim().is_empty());
    }
}
