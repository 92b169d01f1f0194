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

/// The budget as this process sees it (see [`Budget::view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetView {
    pub limit: u32,
    pub remaining: u32,
    pub sent_last_minute: u32,
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
    /// 503 throttles in a row (reset by any other answer): how long the next probe waits.
    throttle_streak: u32,
    /// Set by a throttle: when its wait ends, one request goes first to see whether the pool
    /// has room again, and the rest wait for its answer.
    probe_due: bool,
}

impl Budget {
    pub fn new(settings: BudgetSettings) -> Self {
        Budget {
            settings,
            sent: VecDeque::new(),
            server_remaining: None,
            server_reset_at: None,
            in_flight: 0,
            throttle_streak: 0,
            probe_due: false,
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
            if std::mem::take(&mut self.probe_due) {
                // The probe after a throttle: it alone goes; the others look again when its
                // answer has set the server's figure, or after `PROBE_ANSWER_WAIT`.
                self.server_remaining = Some(0);
                self.server_reset_at = Some(now + PROBE_ANSWER_WAIT);
                self.sent.push_back(now);
                self.in_flight += 1;
                return Decision::Go;
            }
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

    /// What the pool looks like from here now, for `pearlsync status`: the server's last
    /// figure less our sends since, or, before any answer carried one, our own log's.
    pub fn view(&mut self, now: Instant) -> BudgetView {
        let log_window = self.settings.log_window();
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= log_window) {
            self.sent.pop_front();
        }
        let sent = u32::try_from(self.sent.len()).unwrap_or(u32::MAX);
        BudgetView {
            limit: self.settings.limit,
            remaining: self.server_remaining.unwrap_or_else(|| self.settings.limit.saturating_sub(sent)),
            sent_last_minute: sent,
        }
    }

    /// Records an answer with its throttle headers (either may be missing).
    pub fn on_response(&mut self, now: Instant, remaining: Option<u32>, period: Option<Duration>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        // An answer with room left ends a throttle streak. (A throttle's own 503 comes through
        // here first, saying 0 left, so it does not.)
        if remaining != Some(0) {
            self.throttle_streak = 0;
        }
        if let Some(r) = remaining {
            // Answers to requests still in flight will spend from this figure too.
            self.server_remaining = Some(r.saturating_sub(self.in_flight));
            let period = period.unwrap_or(self.settings.window);
            self.server_reset_at = Some(if r == 0 {
                // Nothing left: as after a throttle (a 503 goes on to `on_throttled`), a probe
                // looks for room before the period is over (see `probe_wait`).
                self.probe_due = true;
                now + period.min(FIRST_PROBE)
            } else {
                now + period
            });
        }
    }

    /// A request ended without an answer (timeout, dropped connection).
    pub fn on_no_response(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The server said 503 with a throttle period of `period`: nothing goes until the probe
    /// wait this returns has passed, then one probe (see [`probe_wait`]).
    pub fn on_throttled(&mut self, now: Instant, period: Duration, rng: &mut fastrand::Rng) -> Duration {
        self.throttle_streak = self.throttle_streak.saturating_add(1);
        let wait = probe_wait(period, self.throttle_streak, rng);
        self.server_remaining = Some(0);
        self.probe_due = true;
        // This replaces the reset the 503's own headers set (the whole period).
        self.server_reset_at = Some(now + wait);
        wait
    }
}

/// The first probe after a throttle goes this long after it (then 2×, 4×… up to the period).
pub const FIRST_PROBE: Duration = Duration::from_millis(500);
/// How long the others wait for a probe's answer before they look again.
const PROBE_ANSWER_WAIT: Duration = Duration::from_millis(250);

/// How long to wait after the `streak`-th throttle in a row: the server's period, but at most
/// `FIRST_PROBE`·2^(streak−1), plus up to a quarter of that as jitter so functions sharing the
/// account do not probe at the same instant.
///
/// Why not always the whole period: it is the time until the *window* resets (811 to 59 138 ms
/// recorded, apis.md §8.1), but the window is a rolling minute, so room comes back request by
/// request before that; and a throttle caused by another app's burst says nothing about how
/// long it lasts. Waiting the full minute held every order queued behind it (bench p99 ~60 s).
/// One probe per step costs a handful of 503s in a throttle that lasts the whole minute.
/// Whether Brightpearl counts a refused request against the pool: UNCONFIRMED (the sandbox does
/// not); the doubling keeps the probes to 7 a minute either way.
pub fn probe_wait(period: Duration, streak: u32, rng: &mut fastrand::Rng) -> Duration {
    let step = FIRST_PROBE.saturating_mul(1u32 << streak.saturating_sub(1).min(6));
    let base = if period.is_zero() { step } else { period.min(step) };
    let spread = (base / 4).as_millis() as u64;
    base + Duration::from_millis(rng.u64(0..=spread))
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
    fn the_view_is_our_log_until_the_server_says_what_is_left() {
        let mut b = budget(200);
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.try_acquire(t0, Priority::Orders), Decision::Go);
        }
        assert_eq!(b.view(t0), BudgetView { limit: 200, remaining: 198, sent_last_minute: 2 });
        // Other apps share the pool: the server's figure wins once it has one.
        b.on_response(t0, Some(40), Some(Duration::from_secs(30)));
        assert_eq!(b.view(t0).remaining, 39, "the server's 40 less the one still in flight");
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
    fn a_throttle_blocks_everyone_until_one_probe_finds_room() {
        let mut b = budget(200);
        let mut rng = fastrand::Rng::with_seed(7);
        let t0 = Instant::now();
        // A short period is waited out whole (jitter up to a quarter on top).
        let wait = b.on_throttled(t0, Duration::from_millis(300), &mut rng);
        assert!(wait >= Duration::from_millis(300) && wait <= Duration::from_millis(375), "{wait:?}");
        assert!(matches!(b.try_acquire(t0, Priority::Orders), Decision::Wait(w) if w == wait));
        // Then exactly one probe goes; the others wait for its answer.
        assert_eq!(b.try_acquire(t0 + wait, Priority::Orders), Decision::Go);
        assert!(matches!(b.try_acquire(t0 + wait, Priority::Orders), Decision::Wait(_)));
        // The probe's answer says there is room: everyone goes.
        b.on_response(t0 + wait, Some(150), Some(Duration::from_secs(30)));
        assert_eq!(b.try_acquire(t0 + wait, Priority::Orders), Decision::Go);
        assert_eq!(b.try_acquire(t0 + wait, Priority::Orders), Decision::Go);
    }

    #[test]
    fn a_throttle_answer_saying_the_window_resets_in_a_minute_is_probed_within_a_second() {
        let mut b = budget(200);
        let mut rng = fastrand::Rng::with_seed(7);
        let t0 = Instant::now();
        assert_eq!(b.try_acquire(t0, Priority::Orders), Decision::Go);
        // The 503's headers come through `on_response` first: 0 left, window resets in 57 s.
        b.on_response(t0, Some(0), Some(Duration::from_secs(57)));
        let wait = b.on_throttled(t0, Duration::from_secs(57), &mut rng);
        assert!(wait <= FIRST_PROBE + FIRST_PROBE / 4, "{wait:?}");
        assert!(matches!(b.try_acquire(t0, Priority::Orders), Decision::Wait(w) if w == wait));
        assert_eq!(b.try_acquire(t0 + wait, Priority::Orders), Decision::Go, "the probe");
    }

    #[test]
    fn probes_after_a_long_throttle_start_early_and_double_up_to_the_period() {
        let mut b = budget(200);
        let mut rng = fastrand::Rng::with_seed(7);
        let t0 = Instant::now();
        let period = Duration::from_secs(50);
        let mut waits = Vec::new();
        for _ in 0..8 {
            waits.push(b.on_throttled(t0, period, &mut rng));
        }
        for (i, w) in waits.iter().enumerate() {
            let step = (FIRST_PROBE * (1 << i.min(6))).min(period);
            assert!(*w >= step && *w <= step + step / 4, "throttle {}: {w:?}", i + 1);
        }
        // Any other answer ends the streak: the next throttle probes after the first step again.
        b.on_response(t0, Some(10), None);
        assert!(b.on_throttled(t0, period, &mut rng) <= FIRST_PROBE + FIRST_PROBE / 4);
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
