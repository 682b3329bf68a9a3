//! The one retry policy of upmirror, for content downloads (`fetch`) and protocol calls (`HttpClient::request_blocking`
//! with retries, which Python's `Upstream.send` uses) alike: which statuses are worth another attempt, exponential
//! backoff with full jitter, and Retry-After honoured up to one cap. The defaults every layer takes live here too.

use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Retries of one request (or one download chunk) after a transient failure, by default.
pub const DEFAULT_RETRIES: u32 = 4;

/// The statuses that say "try again": too many requests, and the server errors of an overloaded or restarting
/// server or gateway. Any other status is the server's answer.
pub const RETRYABLE_STATUSES: [u16; 5] = [429, 500, 502, 503, 504];

/// How failed requests are tried again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one; 0 sends once.
    pub retries: u32,
    /// The cap of the first retry's wait, doubling for each further one up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The longest wait a server may ask for with Retry-After.
    pub retry_after_max: Duration,
    /// The answers retried (`RETRYABLE_STATUSES` unless a protocol answers errors with one of them, as SOAP does
    /// with 500).
    pub statuses: Vec<u16>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: DEFAULT_RETRIES,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            retry_after_max: Duration::from_secs(120),
            statuses: RETRYABLE_STATUSES.to_vec(),
        }
    }
}

impl RetryPolicy {
    /// Whether an answer with this status is worth another attempt.
    pub fn retries_status(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }

    /// The wait before retry number `attempt` (1 for the first): what Retry-After asks, up to its cap, else a
    /// uniformly random time up to the exponential bound ("full jitter": many clients retrying do not hit the server
    /// in step).
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.retry_after_max);
        }
        let exponential = self.backoff_base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        exponential.min(self.backoff_max).mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

/// Retry-After in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_its_bounds_and_retry_after_is_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..20 {
            let bound = policy.backoff_base.saturating_mul(1 << (attempt - 1).min(16)).min(policy.backoff_max);
            assert!(policy.backoff(attempt, None) <= bound);
        }
        assert_eq!(policy.backoff(1, Some(Duration::from_secs(3600))), policy.retry_after_max);
        assert_eq!(policy.backoff(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert!(policy.retries_status(503) && !policy.retries_status(501) && !policy.retries_status(404));
    }
}
