//! Which windows a run reads, and which hits were already emitted.
//!
//! `WindowPlanner` is ElastAlert's run-window logic (reference §5.2, §5.7):
//! `end = now − query_delay`, `floor = end − buffer_time`; the start is the
//! minimum start (the resume point after a restart) when that is later than
//! the floor, else the previous end when that is earlier than the floor
//! (catch up without a gap), else the floor (re-read `buffer_time` of history
//! so late documents are found). A range longer than `buffer_time` is cut
//! into consecutive windows of `buffer_time`. One deliberate difference: a
//! checkpoint older than `old_query_limit` is not ignored (ElastAlert would
//! jump to `now − buffer_time` and skip everything in between); the source
//! resumes from `now − old_query_limit`, the furthest back it may go.
//!
//! `SeenHits` is the processed-hits cache (§5.5), keyed by `_index` and
//! `_id` (ElastAlert uses `_id` only, which collides across daily indices),
//! remembering the window that emitted each hit so a rewind can forget
//! exactly the hits that were not delivered. It is bounded: past
//! `MAX_SEEN_HITS` the oldest entries go (a later re-read may then emit
//! them twice; never zero times).
//!
//! Pure: callers pass the time.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::query::Window;

fn chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// Truncates to whole milliseconds, the precision of the range bounds, so
/// consecutive windows share their boundary exactly.
pub fn whole_millis(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time)
}

#[derive(Debug, Clone)]
pub struct WindowPlanner {
    buffer_time: chrono::Duration,
    query_delay: chrono::Duration,
    /// Never start before this (the resume point after a restart: hits from
    /// before it were emitted by an earlier process whose cache is gone).
    minimum_start: Option<DateTime<Utc>>,
    previous_end: Option<DateTime<Utc>>,
}

/// Where the source resumes, given its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No checkpoint: start with the last `buffer_time`.
    Fresh,
    /// From the checkpoint.
    FromCheckpoint(DateTime<Utc>),
    /// The checkpoint was older than `old_query_limit`; from the limit.
    Clamped { checkpoint: DateTime<Utc>, from: DateTime<Utc> },
}

impl WindowPlanner {
    pub fn new(
        buffer_time: Duration,
        query_delay: Duration,
        old_query_limit: Duration,
        checkpoint: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> (WindowPlanner, Resume) {
        let limit = whole_millis(now - chrono(old_query_limit));
        let resume = match checkpoint {
            None => Resume::Fresh,
            Some(checkpoint) if checkpoint < limit => Resume::Clamped { checkpoint, from: limit },
            Some(checkpoint) => Resume::FromCheckpoint(checkpoint),
        };
        let minimum_start = match resume {
            Resume::Fresh => None,
            Resume::FromCheckpoint(from) | Resume::Clamped { from, .. } => Some(from),
        };
        let planner = WindowPlanner {
            buffer_time: chrono(buffer_time),
            query_delay: chrono(query_delay),
            minimum_start,
            previous_end: minimum_start,
        };
        (planner, resume)
    }

    /// The windows of a run at `now`, oldest first; empty when there is
    /// nothing new to read. Remembers the last end.
    pub fn plan(&mut self, now: DateTime<Utc>) -> Vec<Window> {
        let end = whole_millis(now - self.query_delay);
        let floor = end - self.buffer_time;
        let start = match (self.minimum_start, self.previous_end) {
            (Some(minimum), _) if minimum > floor => minimum,
            (_, Some(previous)) if previous < floor => previous,
            _ => floor,
        };
        if start >= end {
            return Vec::new();
        }
        let mut windows = Vec::new();
        let mut window_start = start;
        while end - window_start > self.buffer_time {
            let window_end = window_start + self.buffer_time;
            windows.push(Window { start: window_start, end: window_end });
            window_start = window_end;
        }
        windows.push(Window { start: window_start, end });
        self.previous_end = Some(end);
        windows
    }

    /// After a delivery failure: the next run reads again from `from` (the
    /// start of the first window that was not delivered).
    pub fn rewind(&mut self, from: DateTime<Utc>) {
        self.previous_end = Some(from);
    }

    /// The lowest event time the next run can read.
    pub fn next_floor(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        whole_millis(now - self.query_delay) - self.buffer_time
    }
}

/// The most hits the cache remembers; about 40 MB.
pub const MAX_SEEN_HITS: usize = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct SeenEntry {
    time_millis: i64,
    window: u64,
}

/// Hits already emitted, by a 128-bit hash of `_index` and `_id`.
pub struct SeenHits {
    entries: HashMap<u128, SeenEntry, foldhash::fast::FixedState>,
    low_hasher: foldhash::quality::FixedState,
    high_hasher: foldhash::quality::FixedState,
    capacity: usize,
}

impl Default for SeenHits {
    fn default() -> SeenHits {
        SeenHits::with_capacity(MAX_SEEN_HITS)
    }
}

impl SeenHits {
    pub fn with_capacity(capacity: usize) -> SeenHits {
        SeenHits {
            entries: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x5eed)),
            low_hasher: foldhash::quality::FixedState::with_seed(0x51d5_0f7e_a5e5_u64),
            high_hasher: foldhash::quality::FixedState::with_seed(0x9e37_79b9_7f4a_7c15),
            capacity,
        }
    }

    fn key(&self, index: &str, id: &str) -> u128 {
        let hash = |state: &foldhash::quality::FixedState| {
            let mut hasher = state.build_hasher();
            index.hash(&mut hasher);
            id.hash(&mut hasher);
            hasher.finish()
        };
        (u128::from(hash(&self.high_hasher)) << 64) | u128::from(hash(&self.low_hasher))
    }

    /// Records the hit; `false` when it was already emitted.
    pub fn insert(&mut self, index: &str, id: &str, time_millis: i64, window: u64) -> bool {
        let key = self.key(index, id);
        match self.entries.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(SeenEntry { time_millis, window });
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets hits no later read can return (event time at or before
    /// `floor`), then the oldest ones beyond capacity. Returns how many were
    /// evicted for capacity.
    pub fn purge(&mut self, floor: DateTime<Utc>) -> usize {
        let floor_millis = floor.timestamp_millis();
        self.entries.retain(|_, entry| entry.time_millis > floor_millis);
        if self.entries.len() <= self.capacity {
            return 0;
        }
        let target = self.capacity - self.capacity / 10;
        let mut times: Vec<i64> = self.entries.values().map(|entry| entry.time_millis).collect();
        let cut_index = times.len() - target;
        let (_, cut, _) = times.select_nth_unstable(cut_index);
        let cut = *cut;
        let before = self.entries.len();
        self.entries.retain(|_, entry| entry.time_millis >= cut);
        before - self.entries.len()
    }

    /// Forgets the hits emitted by windows after `window` (not delivered;
    /// they must be emitted again).
    pub fn forget_after(&mut self, window: u64) {
        self.entries.retain(|_, entry| entry.window <= window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, hour, minute, 0).unwrap()
    }

    #[test]
    fn steady_runs_re_read_buffer_time_and_leave_no_gap() {
        let (mut planner, resume) =
            WindowPlanner::new(15 * MINUTE, Duration::ZERO, 7 * 24 * 60 * MINUTE, None, at(10, 0));
        assert_eq!(resume, Resume::Fresh);
        assert_eq!(planner.plan(at(10, 0)), vec![Window { start: at(9, 45), end: at(10, 0) }]);
        assert_eq!(planner.plan(at(10, 1)), vec![Window { start: at(9, 46), end: at(10, 1) }]);
        // A run delayed past buffer_time catches up from the previous end.
        assert_eq!(
            planner.plan(at(10, 40)),
            vec![
                Window { start: at(10, 1), end: at(10, 16) },
                Window { start: at(10, 16), end: at(10, 31) },
                Window { start: at(10, 31), end: at(10, 40) }
            ]
        );
    }

    #[test]
    fn a_restart_resumes_at_the_checkpoint_and_never_reads_before_it() {
        let (mut planner, resume) =
            WindowPlanner::new(15 * MINUTE, MINUTE, 7 * 24 * 60 * MINUTE, Some(at(9, 58)), at(10, 0));
        assert_eq!(resume, Resume::FromCheckpoint(at(9, 58)));
        assert_eq!(planner.plan(at(10, 0)), vec![Window { start: at(9, 58), end: at(9, 59) }]);
        assert_eq!(
            planner.plan(at(10, 5)),
            vec![Window { start: at(9, 58), end: at(10, 4) }],
            "minimum start beats the floor"
        );
        assert_eq!(
            planner.plan(at(10, 30)),
            vec![Window { start: at(10, 4), end: at(10, 19) }, Window { start: at(10, 19), end: at(10, 29) }]
        );
    }

    #[test]
    fn an_old_checkpoint_is_clamped_to_old_query_limit() {
        let (mut planner, resume) =
            WindowPlanner::new(15 * MINUTE, Duration::ZERO, 60 * MINUTE, Some(at(1, 0)), at(10, 0));
        assert_eq!(resume, Resume::Clamped { checkpoint: at(1, 0), from: at(9, 0) });
        let windows = planner.plan(at(10, 0));
        assert_eq!(windows.first().unwrap().start, at(9, 0));
        assert_eq!(windows.len(), 4);
        assert!(windows.windows(2).all(|pair| pair[0].end == pair[1].start));
    }

    #[test]
    fn a_rewind_reads_again_from_the_first_undelivered_window() {
        let (mut planner, _) = WindowPlanner::new(15 * MINUTE, Duration::ZERO, 7 * 24 * 60 * MINUTE, None, at(10, 0));
        planner.plan(at(10, 0));
        planner.rewind(at(9, 30));
        assert_eq!(planner.plan(at(10, 1)).first().unwrap().start, at(9, 30));
        assert_eq!(planner.plan(at(10, 1)), vec![Window { start: at(9, 46), end: at(10, 1) }]);
    }

    #[test]
    fn seen_hits_dedupe_by_index_and_id_and_forget_undelivered_windows() {
        let mut seen = SeenHits::with_capacity(100);
        assert!(seen.insert("logs-1", "a", 1_000, 1));
        assert!(!seen.insert("logs-1", "a", 1_000, 2));
        assert!(seen.insert("logs-2", "a", 1_000, 2), "the same id in another index is another hit");
        seen.forget_after(1);
        assert!(seen.insert("logs-2", "a", 1_000, 3));
        seen.purge(DateTime::from_timestamp_millis(1_000).unwrap());
        assert!(seen.is_empty());
    }

    #[test]
    fn seen_hits_stay_bounded() {
        let mut seen = SeenHits::with_capacity(100);
        for number in 0..150 {
            seen.insert("i", &number.to_string(), number, 1);
        }
        let evicted = seen.purge(DateTime::from_timestamp_millis(-1).unwrap());
        assert_eq!(evicted, 60);
        assert_eq!(seen.len(), 90);
        assert!(!seen.insert("i", "149", 149, 1), "the newest are kept");
    }
}
