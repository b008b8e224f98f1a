//! When and how long to wait before trying a request again: the cloud's
//! parameters for [`crate::backoff`] (jittered), which statuses are worth
//! another try, and `Retry-After`. A server's `Retry-After` wins over our own
//! guess, within a cap: a server asking for an hour would otherwise hang
//! `fetch` without a word.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

/// Longest wait honoured from a `Retry-After` header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Longest backoff we choose ourselves.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Statuses that say "try again later" rather than "this request is wrong".
pub fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The wait before retry number `retry` (0 for the first retry): `base`
/// doubled per retry, capped at [`MAX_BACKOFF`], then between half of that
/// and all of it.
pub fn backoff(base: Duration, retry: u32) -> Duration {
    crate::backoff::jittered(base, retry, MAX_BACKOFF)
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110
/// §10.2.3), relative to `now`, capped at [`MAX_RETRY_AFTER`]. A date in the
/// past means "now". `None` if the value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_bounds() {
        let base = Duration::from_millis(500);
        for retry in 0..8 {
            let full = (base * 2u32.pow(retry)).min(MAX_BACKOFF);
            for _ in 0..50 {
                let d = backoff(base, retry);
                assert!(
                    d >= full / 2 && d <= full,
                    "retry {retry}: {d:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        assert!(backoff(base, 1000) <= MAX_BACKOFF);
        assert!(backoff(Duration::from_secs(1_000_000), 3) <= MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn jitter_varies() {
        let samples: Vec<Duration> = (0..20).map(|_| backoff(Duration::from_secs(10), 0)).collect();
        assert!(samples.iter().any(|d| *d != samples[0]), "{samples:?}");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(120)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(120));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 406, 409, 501] {
            assert!(!is_transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
