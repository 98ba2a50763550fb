//! Sliding-window counters for WeCom's rate limits (robot 20/min per key,
//! app 30/min and 1000/h per member).
//!
//! Guarantees: a window admits at most `limit` events in any span of
//! `window`; only admitted events count, so a blocked caller is free again
//! exactly one window after the oldest admitted event. Takes the current
//! instant as an argument and never reads a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct SlidingWindow {
    admitted: VecDeque<Instant>,
}

impl SlidingWindow {
    /// Whether one more event fits now; admits (counts) it if so.
    pub fn try_admit(&mut self, limit: u32, window: Duration, now: Instant) -> bool {
        if !self.has_room(limit, window, now) {
            return false;
        }
        self.admitted.push_back(now);
        true
    }

    /// Whether one more event would fit now, without counting it.
    pub fn has_room(&mut self, limit: u32, window: Duration, now: Instant) -> bool {
        while self.admitted.front().is_some_and(|oldest| now.saturating_duration_since(*oldest) >= window) {
            self.admitted.pop_front();
        }
        self.admitted.len() < limit as usize
    }

    pub fn admit(&mut self, now: Instant) {
        self.admitted.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_then_frees_a_slot_one_window_later() {
        let mut window = SlidingWindow::default();
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        for second in 0..3 {
            assert!(window.try_admit(3, minute, start + Duration::from_secs(second)));
        }
        assert!(!window.try_admit(3, minute, start + Duration::from_secs(59)));
        assert!(window.try_admit(3, minute, start + Duration::from_secs(60)));
        assert!(!window.try_admit(3, minute, start + Duration::from_secs(60)));
        assert!(window.try_admit(3, minute, start + Duration::from_secs(61)));
    }

    #[test]
    fn has_room_does_not_count() {
        let mut window = SlidingWindow::default();
        let now = Instant::now();
        assert!(window.has_room(1, Duration::from_secs(1), now));
        assert!(window.has_room(1, Duration::from_secs(1), now));
        window.admit(now);
        assert!(!window.has_room(1, Duration::from_secs(1), now));
    }
}
