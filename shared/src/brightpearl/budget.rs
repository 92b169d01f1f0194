//! The request budget: one pool of N requests per rolling window per account (200 / 60 s),
//! shared by every function and any other app on the account. We keep our own log of sends
//! (so this process never exceeds the limit by itself) and also obey what the server says is
//! left (so other users of the pool count too). Background work stops at a reserve so order
//! writes still get through when the pool runs low.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Who is asking. Order writes may spend the whole budget; background reads keep a reserve free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    #[default]
    Orders,
    Background,
}

/// Plain counters for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientStats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// 503 answers received.
    pub throttled: u64,
    /// Requests sent again after a throttle, 5xx, timeout or lost connection.
    pub retried: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct BudgetSettings {
    pub limit: u32,
    pub window: Duration,
    /// Fraction of `limit` that background work leaves untouched (0.0..1.0).
    pub background_reserve: f64,
}

impl BudgetSettings {
    /// Our log's window: a little longer than the server's, because the server stamps a
    /// request when it arrives, slightly after we stamp it.
    fn log_window(&self) -> Duration {
        self.window + self.window / 50 + Duration::from_millis(25)
    }

    fn reserve(&self, priority: Priority) -> u32 {
        match priority {
            Priority::Orders => 0,
            Priority::Background => {
                ((self.limit as f64) * self.background_reserve.clamp(0.0, 0.95)).ceil() as u32
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Go,
    Wait(Duration),
}

#[derive(Debug)]
pub struct Budget {
    settings: BudgetSettings,
    /// When we sent each request still inside our log window.
    sent: VecDeque<Instant>,
    /// What the server last said was left, less what we sent since.
    server_remaining: Option<u32>,
    /// When the server's figure stops being meaningful (`next-throttle-period` from then).
    server_reset_at: Option<Instant>,
    in_flight: u32,
}

impl Budget {
    pub fn new(settings: BudgetSettings) -> Self {
        Budget {
            settings,
            sent: VecDeque::new(),
            server_remaining: None,
            server_reset_at: None,
            in_flight: 0,
        }
    }

    pub fn settings(&self) -> BudgetSettings {
        self.settings
    }

    /// Whether a request of `priority` may go now; if so it is recorded as sent.
    pub fn try_acquire(&mut self, now: Instant, priority: Priority) -> Decision {
        let log_window = self.settings.log_window();
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= log_window) {
            self.sent.pop_front();
        }
        if self.server_reset_at.is_some_and(|r| now >= r) {
            self.server_remaining = None;
            self.server_reset_at = None;
        }
        let reserve = self.settings.reserve(priority);
        let local_left = self.settings.limit.saturating_sub(self.sent.len() as u32);
        let server_left = self.server_remaining.unwrap_or(u32::MAX);
        if local_left > reserve && server_left > reserve {
            self.sent.push_back(now);
            self.server_remaining = self.server_remaining.map(|r| r.saturating_sub(1));
            self.in_flight += 1;
            return Decision::Go;
        }
        let mut wait = Duration::ZERO;
        if local_left <= reserve {
            // Enough of our oldest sends must age out that more than `reserve` are left.
            let must_expire =
                (self.sent.len() as u32 + reserve + 1).saturating_sub(self.settings.limit) as usize;
            if let Some(t) = self.sent.get(must_expire.saturating_sub(1)) {
                wait = wait.max((*t + log_window).saturating_duration_since(now));
            }
        }
        if server_left <= reserve {
            let until = self
                .server_reset_at
                .map(|r| r.saturating_duration_since(now))
                .unwrap_or(self.settings.window);
            wait = wait.max(until);
        }
        Decision::Wait(wait.max(Duration::from_millis(1)))
    }

    /// Records an answer with its throttle headers (either may be missing).
    pub fn on_response(&mut self, now: Instant, remaining: Option<u32>, period: Option<Duration>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(r) = remaining {
            // Answers to requests still in flight will spend from this figure too.
            self.server_remaining = Some(r.saturating_sub(self.in_flight));
            self.server_reset_at = Some(now + period.unwrap_or(self.settings.window));
        }
    }

    /// A request ended without an answer (timeout, dropped connection).
    pub fn on_no_response(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The server said 503: nothing is left until `wait` has passed.
    pub fn on_throttled(&mut self, now: Instant, wait: Duration) {
        self.server_remaining = Some(0);
        let until = now + wait;
        self.server_reset_at = Some(self.server_reset_at.map_or(until, |r| r.max(until)));
    }
}

/// Jittered, capped exponential backoff: a random delay in [d/2, d], d = min(cap, base·2^attempt).
pub fn backoff(attempt: u32, base: Duration, cap: Duration, rng: &mut fastrand::Rng) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let d = exp.min(cap);
    let half = d / 2;
    half + Duration::from_nanos(rng.u64(0..=half.as_nanos().min(u64::MAX as u128) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u32) -> Budget {
        Budget::new(BudgetSettings { limit, window: Duration::from_secs(1), background_reserve: 0.2 })
    }

    #[test]
    fn never_more_than_the_limit_in_our_own_window() {
        let mut b = budget(10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(b.try_acquire(t0, Priority::Orders), Decision::Go);
            b.on_response(t0, None, None);
        }
        let Decision::Wait(w) = b.try_acquire(t0, Priority::Orders) else { panic!("should wait") };
        assert!(w >= Duration::from_secs(1), "{w:?}");
        assert_eq!(b.try_acquire(t0 + w, Priority::Orders), Decision::Go);
    }

    #[test]
    fn background_keeps_the_reserve_for_orders() {
        let mut b = budget(10);
        let t0 = Instant::now();
        let mut background = 0;
        while b.try_acquire(t0, Priority::Background) == Decision::Go {
            background += 1;
            b.on_response(t0, None, None);
        }
        assert_eq!(background, 8);
        assert_eq!(b.try_acquire(t0, Priority::Orders), Decision::Go);
        assert_eq!(b.try_acquire(t0, Priority::Orders), Decision::Go);
        assert!(matches!(b.try_acquire(t0, Priority::Orders), Decision::Wait(_)));
    }

    #[test]
    fn the_servers_remaining_count_is_obeyed_until_the_period_ends() {
        let mut b = budget(200);
        let t0 = Instant::now();
        assert_eq!(b.try_acquire(t0, Priority::Orders), Decision::Go);
        // Another app has used the pool: the server says 3 left, reset in 500 ms.
        b.on_response(t0, Some(3), Some(Duration::from_millis(500)));
        assert!(
            matches!(b.try_acquire(t0, Priority::Background), Decision::Wait(w) if w == Duration::from_millis(500))
        );
        for _ in 0..3 {
            assert_eq!(b.try_acquire(t0, Priority::Orders), Decision::Go);
        }
        assert!(matches!(b.try_acquire(t0, Priority::Orders), Decision::Wait(_)));
        assert_eq!(b.try_acquire(t0 + Duration::from_millis(500), Priority::Orders), Decision::Go);
    }

    #[test]
    fn a_throttle_blocks_everyone_for_the_period() {
        let mut b = budget(200);
        let t0 = Instant::now();
        b.on_throttled(t0, Duration::from_millis(300));
        assert!(
            matches!(b.try_acquire(t0, Priority::Orders), Decision::Wait(w) if w == Duration::from_millis(300))
        );
        assert_eq!(b.try_acquire(t0 + Duration::from_millis(300), Priority::Orders), Decision::Go);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let mut rng = fastrand::Rng::with_seed(1);
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 0..20 {
            let d = backoff(attempt, base, cap, &mut rng);
            let full = base.saturating_mul(1 << attempt.min(16)).min(cap);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }
}
