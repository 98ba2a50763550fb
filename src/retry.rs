//! Exponential backoff with jitter, for every component that retries.
//!
//! `Backoff` is the policy: attempt 1 waits about `initial`, each further
//! attempt doubles it, capped at `max`. The wait is drawn between half and
//! all of that (jitter), so many clients failing together do not retry in
//! lockstep. `RetryDelays` walks the policy for callers that keep state
//! between attempts (`next_delay`, `reset` after a success). Never sleeps
//! itself; callers wait the returned `Duration` (racing it against their own
//! shutdown signals).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling.mul_f64(rand::random_range(0.5..=1.0))
    }

    /// The largest wait `delay(attempt)` can return.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        self.initial.saturating_mul(1u32 << doublings.min(31)).min(self.max)
    }
}

/// The successive delays of one retrying operation.
#[derive(Debug, Clone)]
pub struct RetryDelays {
    policy: Backoff,
    attempt: u32,
}

impl RetryDelays {
    pub fn new(initial: Duration, max: Duration) -> RetryDelays {
        RetryDelays { policy: Backoff { initial, max: max.max(initial) }, attempt: 0 }
    }

    /// The wait before the next attempt; each call doubles the next ceiling.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.policy.delay(self.attempt)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_below_the_ceiling() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(2), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(4), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(500), Duration::from_secs(1));
        for attempt in 1..10 {
            let delay = backoff.delay(attempt);
            assert!(delay <= backoff.ceiling(attempt) && delay >= backoff.ceiling(attempt) / 2, "{delay:?}");
        }
    }

    #[test]
    fn delays_walk_the_policy_and_reset() {
        let mut delays = RetryDelays::new(Duration::from_millis(100), Duration::from_millis(350));
        let ceilings = [100, 200, 350, 350];
        for ceiling in ceilings {
            let delay = delays.next_delay().as_millis();
            assert!(delay <= ceiling && delay >= ceiling / 2, "{delay} for ceiling {ceiling}");
        }
        delays.reset();
        assert!(delays.next_delay() <= Duration::from_millis(100));
    }
}
