//! Alert aggregation (reference section 7.2): matches of one rule collected
//! per `aggregation_key` value and sent together when the aggregation's
//! send time passes.
//!
//! A match opens an aggregation when none is open for its key value or the
//! open one's send time has passed (compared with the processing time, or
//! with the match time under
//! `aggregation_alert_time_compared_with_timestamp_field`). Send time: the
//! next cron time after now (`{schedule: ...}`, five-field cron in UTC, day
//! fields OR-ed like croniter), else now + `aggregation`, or match time +
//! `aggregation` with `aggregate_by_match_time`. An aggregation is sent once
//! the processing time is strictly after its send time.
//!
//! State is in memory only (upstream keeps pending aggregations in its
//! writeback index); at most `MAX_AGGREGATED_MATCHES` matches per
//! aggregation are kept (upstream's `max_aggregation`), later ones are
//! counted and dropped.

use crate::rules::config::{AggregationWindow, AlertSettings};
use crate::rules::time::{self, duration_nanos, EventTime};
use crate::rules::Match;

/// Upstream's `max_aggregation` default.
pub const MAX_AGGREGATED_MATCHES: usize = 10_000;

/// Parses a five-field cron expression.
pub(crate) fn parse_schedule(expression: &str) -> Result<croner::Cron, String> {
    croner::Cron::new(expression).parse().map_err(|error| error.to_string())
}

/// One aggregation awaiting its send time.
#[derive(Debug)]
pub(crate) struct OpenAggregation {
    pub key: Option<String>,
    pub send_at: EventTime,
    pub matches: Vec<Match>,
}

/// A rule's open and closed-but-unsent aggregations.
#[derive(Debug, Default)]
pub(crate) struct RuleAggregations {
    open: Vec<OpenAggregation>,
    /// Replaced by a newer aggregation for the same key before being sent.
    closed: Vec<OpenAggregation>,
    pub dropped_matches_total: u64,
}

impl RuleAggregations {
    /// Adds a match to its key's aggregation, opening one when needed.
    pub fn add(
        &mut self,
        settings: &AlertSettings,
        schedule: Option<&croner::Cron>,
        key: Option<String>,
        matched: Match,
        now: EventTime,
    ) {
        let Some(window) = &settings.aggregation else {
            return;
        };
        let by_match_time = settings.aggregate_by_match_time;
        let match_time = time::from_datetime(matched.time);
        let compare_time = if settings.aggregation_compared_with_match_time { match_time } else { now };
        let position = self.open.iter().position(|open| open.key == key);
        if let Some(index) = position {
            if self.open[index].send_at < compare_time {
                let expired = self.open.swap_remove(index);
                self.closed.push(expired);
            }
        }
        let index = match self.open.iter().position(|open| open.key == key) {
            Some(index) => index,
            None => {
                let send_at = match window {
                    AggregationWindow::Every(period) => {
                        (if by_match_time { match_time } else { now }).saturating_add(duration_nanos(*period))
                    }
                    AggregationWindow::Schedule { .. } => next_cron_time(schedule, now),
                };
                self.open.push(OpenAggregation { key, send_at, matches: Vec::new() });
                self.open.len() - 1
            }
        };
        let aggregation = &mut self.open[index];
        if aggregation.matches.len() >= MAX_AGGREGATED_MATCHES {
            self.dropped_matches_total += 1;
            return;
        }
        aggregation.matches.push(matched);
    }

    /// Removes and returns aggregations whose send time is before `now`,
    /// earliest first.
    pub fn take_due(&mut self, now: EventTime) -> Vec<OpenAggregation> {
        let mut due: Vec<OpenAggregation> = Vec::new();
        for list in [&mut self.closed, &mut self.open] {
            let mut index = 0;
            while index < list.len() {
                if list[index].send_at < now {
                    due.push(list.remove(index));
                } else {
                    index += 1;
                }
            }
        }
        due.sort_by_key(|aggregation| aggregation.send_at);
        due
    }

    /// Removes and returns everything, earliest send time first.
    pub fn take_all(&mut self) -> Vec<OpenAggregation> {
        let mut all: Vec<OpenAggregation> = self.closed.drain(..).chain(self.open.drain(..)).collect();
        all.sort_by_key(|aggregation| aggregation.send_at);
        all
    }

    pub fn next_due(&self) -> Option<EventTime> {
        self.closed.iter().chain(&self.open).map(|aggregation| aggregation.send_at).min()
    }

    pub fn pending_matches(&self) -> usize {
        self.closed.iter().chain(&self.open).map(|aggregation| aggregation.matches.len()).sum()
    }
}

fn next_cron_time(schedule: Option<&croner::Cron>, now: EventTime) -> EventTime {
    let fallback = now.saturating_add(60_000_000_000);
    let Some(schedule) = schedule else {
        return fallback;
    };
    schedule.find_next_occurrence(&time::to_datetime(now), false).map(time::from_datetime).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_schedule_finds_next_time_after_now() {
        let schedule = parse_schedule("*/10 * * * *").unwrap();
        let now = time::from_datetime("2024-01-01T00:03:00Z".parse().unwrap());
        let next = next_cron_time(Some(&schedule), now);
        assert_eq!(time::to_datetime(next).to_rfc3339(), "2024-01-01T00:10:00+00:00");
        assert!(parse_schedule("every tuesday").is_err());
    }
}
