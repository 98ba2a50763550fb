//! How many HEC data requests may be in flight: `request.concurrency`, a
//! fixed number or `"adaptive"`.
//!
//! Adaptive is AIMD, as TCP congestion control: start at 1; while requests
//! succeed, the limit is being used, and latency stays under twice its
//! moving average, add one per window of `limit` answers; on a sign of
//! overload (503, 429, other 5xx, timeouts, connection errors, or latency
//! above twice the average) halve it, at most once per window so one burst
//! of refusals does not collapse it to 1. Bounded by
//! `MAX_ADAPTIVE_CONCURRENCY`.
//!
//! Pure arithmetic: the sink feeds it each answer; it never sleeps or reads a
//! clock.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The adaptive limit's ceiling. Beyond this many parallel requests one HEC
/// endpoint gains nothing, and memory for in-flight batches (up to
/// `batch.max_bytes` each) stays bounded.
pub const MAX_ADAPTIVE_CONCURRENCY: usize = 64;

/// Multiplicative decrease on overload.
const DECREASE_FACTOR: f64 = 0.5;
/// A latency above this multiple of the moving average counts as overload.
const LATENCY_OVERLOAD_RATIO: f64 = 2.0;
/// Weight of a new sample in the latency moving average.
const LATENCY_AVERAGE_WEIGHT: f64 = 0.1;
/// Samples before the latency average is trusted.
const LATENCY_WARM_UP_SAMPLES: u32 = 5;

/// `request.concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConcurrencySetting {
    Fixed(usize),
    #[default]
    Adaptive,
}

impl<'de> Deserialize<'de> for ConcurrencySetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ConcurrencySetting, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Input {
            Number(u64),
            Text(String),
        }
        let expected = "expected a number of parallel requests such as 4, or \"adaptive\"";
        match Input::deserialize(deserializer).map_err(|_| serde::de::Error::custom(expected))? {
            Input::Number(number) => Ok(ConcurrencySetting::Fixed(usize::try_from(number).unwrap_or(usize::MAX))),
            Input::Text(text) if text == "adaptive" => Ok(ConcurrencySetting::Adaptive),
            Input::Text(text) => Err(serde::de::Error::custom(format!("{text:?}: {expected}"))),
        }
    }
}

/// The current limit and what it learned.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimiter {
    adaptive: bool,
    limit: f64,
    latency_average: f64,
    latency_samples: u32,
    answers_since_decrease: usize,
}

impl ConcurrencyLimiter {
    pub fn new(setting: ConcurrencySetting) -> ConcurrencyLimiter {
        let (adaptive, limit) = match setting {
            ConcurrencySetting::Fixed(limit) => (false, limit.max(1) as f64),
            ConcurrencySetting::Adaptive => (true, 1.0),
        };
        ConcurrencyLimiter { adaptive, limit, latency_average: 0.0, latency_samples: 0, answers_since_decrease: 0 }
    }

    pub fn limit(&self) -> usize {
        (self.limit as usize).max(1)
    }

    /// Feeds one answered attempt: its latency, whether the server signalled
    /// overload, and how many requests were in flight when it was answered
    /// (itself included).
    pub fn record(&mut self, latency: Duration, overloaded: bool, in_flight: usize) {
        if !self.adaptive {
            return;
        }
        self.answers_since_decrease += 1;
        let seconds = latency.as_secs_f64();
        let slow =
            self.latency_samples >= LATENCY_WARM_UP_SAMPLES && seconds > self.latency_average * LATENCY_OVERLOAD_RATIO;
        if overloaded || slow {
            if self.answers_since_decrease >= self.limit() {
                self.limit = (self.limit * DECREASE_FACTOR).max(1.0);
                self.answers_since_decrease = 0;
            }
            return;
        }
        self.latency_average = if self.latency_samples == 0 {
            seconds
        } else {
            self.latency_average + LATENCY_AVERAGE_WEIGHT * (seconds - self.latency_average)
        };
        self.latency_samples = self.latency_samples.saturating_add(1);
        // Growing while the limit is not even used would let it drift up
        // without evidence that more parallelism helps.
        if in_flight >= self.limit() {
            self.limit = (self.limit + 1.0 / self.limit).min(MAX_ADAPTIVE_CONCURRENCY as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEADY: Duration = Duration::from_millis(20);

    #[test]
    fn fixed_never_moves() {
        let mut limiter = ConcurrencyLimiter::new(ConcurrencySetting::Fixed(4));
        limiter.record(STEADY, true, 4);
        limiter.record(Duration::from_secs(10), false, 4);
        assert_eq!(limiter.limit(), 4);
    }

    #[test]
    fn adaptive_grows_additively_while_saturated_and_steady() {
        let mut limiter = ConcurrencyLimiter::new(ConcurrencySetting::Adaptive);
        assert_eq!(limiter.limit(), 1);
        for _ in 0..20 {
            limiter.record(STEADY, false, limiter.limit());
        }
        let grown = limiter.limit();
        assert!((5..=7).contains(&grown), "one step per window: {grown}");
        for _ in 0..100 {
            limiter.record(STEADY, false, 1);
        }
        assert_eq!(limiter.limit(), grown, "an unused limit does not grow");
        for _ in 0..10_000 {
            limiter.record(STEADY, false, limiter.limit());
        }
        assert_eq!(limiter.limit(), MAX_ADAPTIVE_CONCURRENCY);
    }

    #[test]
    fn adaptive_halves_once_per_window_on_overload() {
        let mut limiter = ConcurrencyLimiter::new(ConcurrencySetting::Adaptive);
        while limiter.limit() < 16 {
            limiter.record(STEADY, false, limiter.limit());
        }
        limiter.record(STEADY, true, 16);
        assert_eq!(limiter.limit(), 8);
        for _ in 0..5 {
            limiter.record(STEADY, true, 8);
        }
        assert_eq!(limiter.limit(), 8, "the rest of the burst is the same overload");
        for _ in 0..3 {
            limiter.record(STEADY, true, 8);
        }
        assert_eq!(limiter.limit(), 4);
        limiter.record(STEADY * 10, false, 4);
        limiter.record(STEADY * 10, false, 4);
        limiter.record(STEADY * 10, false, 4);
        limiter.record(STEADY * 10, false, 4);
        assert_eq!(limiter.limit(), 2, "latency far above its average is overload too");
    }

    #[test]
    fn setting_parses_numbers_and_adaptive() {
        #[derive(Deserialize)]
        struct Holder {
            concurrency: ConcurrencySetting,
        }
        let parse = |text: &str| toml::from_str::<Holder>(text).map(|holder| holder.concurrency);
        assert_eq!(parse("concurrency = 8").unwrap(), ConcurrencySetting::Fixed(8));
        assert_eq!(parse("concurrency = \"adaptive\"").unwrap(), ConcurrencySetting::Adaptive);
        let error = parse("concurrency = \"fast\"").unwrap_err().to_string();
        assert!(error.contains("\"adaptive\""), "{error}");
    }
}
