//! End-to-end latency: from a source receiving an event to a sink delivering it.
//!
//! Each sink owns a `LatencyRecorder` (an hdrhistogram behind a mutex, taken
//! once per delivered batch, not per event). `/metrics` renders every
//! recorder as the `pipe_event_latency_seconds` summary with quantiles 0.5,
//! 0.9, 0.99 and 0.999, plus `_sum` and `_count`. The histogram covers the
//! life of the process (values from 1 µs to 1 hour, 3 significant digits);
//! anything above an hour is clamped to an hour.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;

const MAX_TRACKED_MICROS: u64 = 3_600_000_000;
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

struct Recorded {
    histogram: Histogram<u64>,
    sum_micros: u128,
}

/// One sink's latency histogram.
#[derive(Clone)]
pub struct LatencyRecorder(Arc<Mutex<Recorded>>);

impl LatencyRecorder {
    fn new() -> LatencyRecorder {
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3).expect("valid histogram bounds");
        LatencyRecorder(Arc::new(Mutex::new(Recorded { histogram, sum_micros: 0 })))
    }

    /// Records one delivered batch, given each event's receive time.
    /// Events of one source batch share their receive time, so a run of
    /// equal times is recorded once with its count.
    pub fn record_batch(&self, received: impl IntoIterator<Item = Instant>) {
        let now = Instant::now();
        let mut recorded = self.0.lock().unwrap();
        let mut record = |received_at: Instant, count: u64| {
            let micros = (now.saturating_duration_since(received_at).as_micros() as u64).clamp(1, MAX_TRACKED_MICROS);
            recorded.histogram.saturating_record_n(micros, count);
            recorded.sum_micros += u128::from(micros) * u128::from(count);
        };
        let mut run: Option<(Instant, u64)> = None;
        for received_at in received {
            match &mut run {
                Some((time, count)) if *time == received_at => *count += 1,
                _ => {
                    if let Some((time, count)) = run.replace((received_at, 1)) {
                        record(time, count);
                    }
                }
            }
        }
        if let Some((time, count)) = run {
            record(time, count);
        }
    }

    pub fn count(&self) -> u64 {
        self.0.lock().unwrap().histogram.len()
    }

    /// A recorder that belongs to no registry, for tests and benches.
    pub fn detached() -> LatencyRecorder {
        LatencyRecorder::new()
    }
}

/// Every sink's recorder, keyed by the sink's label set.
#[derive(Clone, Default)]
pub struct LatencyRegistry(Arc<Mutex<BTreeMap<(String, &'static str), LatencyRecorder>>>);

impl LatencyRegistry {
    /// The recorder of sink `id`; the same one across reloads.
    pub fn recorder(&self, id: &str, component_type: &'static str) -> LatencyRecorder {
        self.0.lock().unwrap().entry((id.to_string(), component_type)).or_insert_with(LatencyRecorder::new).clone()
    }

    /// Prometheus text exposition of the summary.
    pub fn render(&self) -> String {
        let recorders = self.0.lock().unwrap();
        let mut out = String::new();
        if recorders.is_empty() {
            return out;
        }
        out.push_str(
            "# HELP pipe_event_latency_seconds Time from a source receiving an event to a sink delivering it.\n",
        );
        out.push_str("# TYPE pipe_event_latency_seconds summary\n");
        for ((id, component_type), recorder) in recorders.iter() {
            let recorded = recorder.0.lock().unwrap();
            let labels = format!(
                "component_id=\"{}\",component_kind=\"sink\",component_type=\"{component_type}\"",
                escape_label(id)
            );
            for quantile in QUANTILES {
                let micros = recorded.histogram.value_at_quantile(quantile);
                let _ = writeln!(
                    out,
                    "pipe_event_latency_seconds{{{labels},quantile=\"{quantile}\"}} {}",
                    micros as f64 / 1e6
                );
            }
            let _ = writeln!(out, "pipe_event_latency_seconds_sum{{{labels}}} {}", recorded.sum_micros as f64 / 1e6);
            let _ = writeln!(out, "pipe_event_latency_seconds_count{{{labels}}} {}", recorded.histogram.len());
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_a_summary_per_sink() {
        let registry = LatencyRegistry::default();
        let recorder = registry.recorder("out", "console");
        let past = Instant::now() - Duration::from_millis(20);
        recorder.record_batch([past, past]);
        let text = registry.render();
        assert!(text.contains("# TYPE pipe_event_latency_seconds summary"));
        assert!(text.contains("pipe_event_latency_seconds_count{component_id=\"out\",component_kind=\"sink\",component_type=\"console\"} 2"));
        let median_line = text.lines().find(|line| line.contains("quantile=\"0.5\"")).unwrap();
        let median: f64 = median_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(median >= 0.02, "{median}");
    }

    #[test]
    fn runs_of_equal_receive_times_count_every_event() {
        let registry = LatencyRegistry::default();
        let recorder = registry.recorder("out", "console");
        let (recent, older) = (Instant::now() - Duration::from_millis(20), Instant::now() - Duration::from_millis(40));
        recorder.record_batch([recent, recent, older, recent]);
        assert_eq!(recorder.count(), 4);
        let text = registry.render();
        let sum_line = text.lines().find(|line| line.starts_with("pipe_event_latency_seconds_sum")).unwrap();
        let sum: f64 = sum_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0.1..1.0).contains(&sum), "three events of 20 ms and one of 40 ms: {sum}");
    }
}
