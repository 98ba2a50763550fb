//! Pacing of sends to one WeCom destination (a robot key, or an app).
//!
//! Owns `RateLimiter`: a sliding window admitting at most `limit` sends in any
//! span of `window` (WeCom's robot limit is 20 per minute), plus a block set
//! when WeCom answers 45009 anyway (another process may share the robot), so
//! the sender waits the window out instead of hammering. Limiters are shared
//! process-wide per destination (`RateLimiter::shared`), so two sinks posting
//! to the same robot together stay within its limit.
//!
//! The window the limiter keeps is the configured one plus a margin
//! (`pacing_margin`: a twentieth of it, at least 250 ms). WeCom counts a
//! send when the request arrives, the limiter when it admits it; without the
//! margin a slow first request and a fast later one could land inside one
//! WeCom window and draw a 45009.
//!
//! Guarantees: `acquire` never admits more than the limit in a window, and
//! never drops anything: callers wait their turn. It gives up only when the
//! caller's deadline (a draining shutdown) would pass before a slot frees.
//! Uses tokio's clock, so paused-time tests see exact waits.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// The window state, separate from the clock so it can be tested with any
/// instants.
#[derive(Debug, Default)]
struct Window {
    admitted: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl Window {
    /// Admits one send at `now`, or says when to try again.
    fn try_admit(&mut self, limit: u32, window: Duration, now: Instant) -> Result<(), Instant> {
        if let Some(until) = self.blocked_until {
            if now < until {
                return Err(until);
            }
            self.blocked_until = None;
        }
        while self.admitted.front().is_some_and(|oldest| now.saturating_duration_since(*oldest) >= window) {
            self.admitted.pop_front();
        }
        if self.admitted.len() < limit as usize {
            self.admitted.push_back(now);
            return Ok(());
        }
        let oldest = *self.admitted.front().expect("a full window has an oldest send");
        Err(oldest + window)
    }
}

/// The caller's deadline passed before a send slot became free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineReached;

#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    state: Mutex<Window>,
}

type Registry = Mutex<HashMap<u64, Arc<RateLimiter>>>;

fn registry() -> &'static Registry {
    static LIMITERS: OnceLock<Registry> = OnceLock::new();
    LIMITERS.get_or_init(Registry::default)
}

/// Extra spacing added to the configured window (see the module doc).
pub fn pacing_margin(window: Duration) -> Duration {
    (window / 20).max(Duration::from_millis(250))
}

impl RateLimiter {
    /// Admits `limit` sends per `window` plus `pacing_margin(window)`.
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        debug_assert!(limit > 0 && !window.is_zero(), "validated by the sink config");
        RateLimiter { limit, window: window + pacing_margin(window), state: Mutex::new(Window::default()) }
    }

    /// The limiter every sink in this process uses for `destination` (an
    /// endpoint plus a robot key or corp and agent). The destination is
    /// hashed, never stored, because it may hold a webhook key.
    pub fn shared(destination: &[&str], limit: u32, window: Duration) -> Arc<RateLimiter> {
        let mut hasher = DefaultHasher::new();
        destination.hash(&mut hasher);
        limit.hash(&mut hasher);
        window.hash(&mut hasher);
        let key = hasher.finish();
        // A std mutex: held only for a map lookup, never across an await.
        let mut limiters = registry().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(limiters.entry(key).or_insert_with(|| Arc::new(RateLimiter::new(limit, window))))
    }

    /// The window in force, margin included.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Waits for a send slot and takes it; returns how long it waited.
    /// `deadline`: give up (taking nothing) if the slot would free after it.
    pub async fn acquire(&self, deadline: Option<Instant>) -> Result<Duration, DeadlineReached> {
        let started = Instant::now();
        loop {
            let now = Instant::now();
            let retry_at = {
                let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match state.try_admit(self.limit, self.window, now) {
                    Ok(()) => return Ok(now.saturating_duration_since(started)),
                    Err(retry_at) => retry_at,
                }
            };
            if deadline.is_some_and(|deadline| retry_at > deadline) {
                return Err(DeadlineReached);
            }
            tokio::time::sleep_until(retry_at).await;
        }
    }

    /// Admits nothing for `duration` from now: WeCom said 45009 (frequency
    /// limit), and its blocks last as long as the window they protect.
    pub fn block_for(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.blocked_until = Some(state.blocked_until.map_or(until, |current| current.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_admits_the_limit_then_frees_one_slot_per_expired_send() {
        let mut window = Window::default();
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        for second in 0..20 {
            assert!(window.try_admit(20, minute, start + Duration::from_secs(second)).is_ok());
        }
        assert_eq!(window.try_admit(20, minute, start + Duration::from_secs(30)), Err(start + minute));
        assert!(window.try_admit(20, minute, start + minute).is_ok(), "the first send left the window");
        assert_eq!(
            window.try_admit(20, minute, start + minute),
            Err(start + minute + Duration::from_secs(1)),
            "the next slot frees when the second send leaves"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_queues_instead_of_dropping() {
        let limiter = RateLimiter::new(2, Duration::from_secs(10));
        let window = Duration::from_secs(10) + pacing_margin(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limiter.acquire(None).await, Ok(Duration::ZERO));
        assert_eq!(limiter.acquire(None).await, Ok(Duration::ZERO));
        let waited = limiter.acquire(None).await.unwrap();
        assert_eq!(waited, window, "the third send waits for the window");
        assert_eq!(Instant::now() - start, window);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_before_the_next_slot_gives_up_without_taking_one() {
        let limiter = RateLimiter::new(1, Duration::from_secs(60));
        limiter.acquire(None).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(limiter.acquire(Some(deadline)).await, Err(DeadlineReached));
        let window = Duration::from_secs(60) + pacing_margin(Duration::from_secs(60));
        assert_eq!(limiter.acquire(Some(Instant::now() + window)).await, Ok(window));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frequency_block_holds_every_send_for_its_duration() {
        let limiter = RateLimiter::new(20, Duration::from_secs(60));
        limiter.block_for(Duration::from_secs(60));
        assert_eq!(limiter.acquire(None).await, Ok(Duration::from_secs(60)));
    }

    #[test]
    fn limiters_are_shared_per_destination() {
        let window = Duration::from_secs(60);
        let first = RateLimiter::shared(&["http://h", "robot", "key-a"], 20, window);
        let same = RateLimiter::shared(&["http://h", "robot", "key-a"], 20, window);
        let other = RateLimiter::shared(&["http://h", "robot", "key-b"], 20, window);
        assert!(Arc::ptr_eq(&first, &same));
        assert!(!Arc::ptr_eq(&first, &other));
    }
}
