//! How long to wait before trying again: the one doubling delay every retry
//! loop uses (cloud requests, fetch rounds, C-STORE retries, the router's
//! retries of a study), each with its own base and cap.
//!
//! The cloud's retries add "equal jitter" (half the delay fixed, half
//! random), so that many routers hit by the same outage do not come back in
//! lockstep, yet no retry comes back almost at once.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{Duration, SystemTime};

/// `base` doubled `doublings` times, at most `cap`; never overflows.
pub fn doubled(base: Duration, doublings: u32, cap: Duration) -> Duration {
    base.saturating_mul(1u32.checked_shl(doublings.min(31)).unwrap_or(u32::MAX))
        .min(cap)
}

/// [`doubled`], then between half of that and all of it.
pub fn jittered(base: Duration, doublings: u32, cap: Duration) -> Duration {
    let full = doubled(base, doublings, cap);
    let half = full / 2;
    half + half.mul_f64(random_unit())
}

/// A number in [0, 1). `RandomState` is seeded randomly per process and per
/// instance by the standard library, which is all the randomness jitter
/// needs; the clock is mixed in for good measure.
fn random_unit() -> f64 {
    let mut h = RandomState::new().build_hasher();
    if let Ok(d) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        assert_eq!(doubled(ms(500), 0, Duration::MAX), ms(500));
        assert_eq!(doubled(ms(500), 3, Duration::MAX), ms(4000));
        assert_eq!(doubled(ms(500), 10, Duration::from_secs(30)), Duration::from_secs(30));
        assert_eq!(doubled(Duration::from_secs(1 << 40), 31, Duration::MAX), Duration::MAX);
        assert_eq!(doubled(ms(1), 1000, Duration::from_secs(60)), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(60);
        for retry in 0..8 {
            let full = (base * 2u32.pow(retry)).min(cap);
            for _ in 0..50 {
                let d = jittered(base, retry, cap);
                assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
            }
        }
        assert_eq!(jittered(Duration::ZERO, 3, cap), Duration::ZERO);
        let samples: Vec<Duration> = (0..20).map(|_| jittered(Duration::from_secs(10), 0, cap)).collect();
        assert!(samples.iter().any(|d| *d != samples[0]), "{samples:?}");
    }
}
