//! Throttling (§3.14): successive starts of one node name are at least the interval apart; the
//! first start is immediate. Unlike upstream (which stores `now + interval` and so spaces bursts
//! 0, I, 2I, 2I…), the time a start was actually scheduled for is remembered, so a burst is
//! spaced 0, I, 2I, 3I…

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per-process throttling memory, tasks and flows kept apart.
#[derive(Debug, Default)]
pub struct Throttler {
    next: Mutex<HashMap<(bool, String), Instant>>,
}

impl Throttler {
    /// No task or flow throttled yet.
    pub fn new() -> Self {
        Throttler::default()
    }

    /// The countdown for starting `node` now, given its throttling interval.
    pub fn countdown(&self, node: &str, is_flow: bool, interval: Duration) -> Duration {
        self.countdown_at(node, is_flow, interval, Instant::now())
    }

    /// As [`Throttler::countdown`], at a given instant.
    pub fn countdown_at(
        &self,
        node: &str,
        is_flow: bool,
        interval: Duration,
        now: Instant,
    ) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let key = (is_flow, node.to_string());
        let scheduled = match next.get(&key) {
            Some(last) => (*last + interval).max(now),
            None => now,
        };
        next.insert(key, scheduled);
        scheduled - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_spaced_by_the_interval() {
        let t = Throttler::new();
        let now = Instant::now();
        let i = Duration::from_secs(2);
        let got: Vec<_> = (0..4).map(|_| t.countdown_at("T", false, i, now)).collect();
        assert_eq!(got, vec![Duration::ZERO, i, 2 * i, 3 * i]);
        // A flow of the same name is throttled apart.
        assert_eq!(t.countdown_at("T", true, i, now), Duration::ZERO);
        // Long after, immediate again.
        assert_eq!(
            t.countdown_at("T", false, i, now + Duration::from_secs(60)),
            Duration::ZERO
        );
    }
}
