//! The periodic progress line: events per second in and out, and the largest
//! source lag, logged at info level every `PROGRESS_INTERVAL` so a person
//! watching a terminal sees the pipeline move.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Process-wide totals fed by sources (events in) and sinks (events out).
#[derive(Debug, Default)]
pub struct Progress {
    events_in: AtomicU64,
    events_out: AtomicU64,
    lags: Mutex<HashMap<(String, String), f64>>,
}

impl Progress {
    pub fn add_in(&self, events: u64) {
        self.events_in.fetch_add(events, Ordering::Relaxed);
    }

    pub fn add_out(&self, events: u64) {
        self.events_out.fetch_add(events, Ordering::Relaxed);
    }

    /// Records the current lag of one source partition.
    pub fn set_lag(&self, source: &str, partition: &str, seconds: f64) {
        self.lags.lock().unwrap().insert((source.to_string(), partition.to_string()), seconds);
    }

    /// Forgets a partition the source no longer reads.
    pub fn clear_lag(&self, source: &str, partition: &str) {
        self.lags.lock().unwrap().remove(&(source.to_string(), partition.to_string()));
    }

    pub fn totals(&self) -> (u64, u64) {
        (self.events_in.load(Ordering::Relaxed), self.events_out.load(Ordering::Relaxed))
    }

    pub fn max_lag(&self) -> Option<(String, f64)> {
        self.lags
            .lock()
            .unwrap()
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|((source, partition), lag)| (format!("{source}/{partition}"), *lag))
    }

    /// Logs the progress line every `interval` until the task is dropped.
    pub async fn log_periodically(&self, interval: Duration) {
        let mut previous = (Instant::now(), self.totals());
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            ticker.tick().await;
            let now = Instant::now();
            let totals = self.totals();
            let elapsed = now.duration_since(previous.0).as_secs_f64().max(1e-3);
            let in_rate = (totals.0 - previous.1 .0) as f64 / elapsed;
            let out_rate = (totals.1 - previous.1 .1) as f64 / elapsed;
            match self.max_lag() {
                Some((partition, lag)) => tracing::info!(
                    events_in_per_second = format!("{in_rate:.0}"),
                    events_out_per_second = format!("{out_rate:.0}"),
                    max_lag_seconds = format!("{lag:.1}"),
                    max_lag_partition = %partition,
                    "progress"
                ),
                None => tracing::info!(
                    events_in_per_second = format!("{in_rate:.0}"),
                    events_out_per_second = format!("{out_rate:.0}"),
                    "progress"
                ),
            }
            previous = (now, totals);
        }
    }
}
