//! The producer's configuration: which deployment's streams it serves, whether clients may
//! create and delete them, and how long throttled puts are retried before the client is told.
//!
//! It is read from the environment by the crate's one configuration helper
//! ([`crate::config::Env`]), so its errors name the variable like every function's do; the
//! prefix is checked here because only the contract knows the stream names it makes.

use std::time::Duration;

use super::MAX_STREAM_NAME_CHARS;
use crate::Table;
use crate::backoff::Backoff;
use crate::config::{ConfigError, Env};

pub const PREFIX_VAR: &str = "PINPIPE_PREFIX";
pub const STREAM_ADMIN_VAR: &str = "PINPIPE_STREAM_ADMIN";
pub const PUT_RETRY_BUDGET_VAR: &str = "PINPIPE_PUT_RETRY_BUDGET_MS";
pub const DEFAULT_PUT_RETRY_BUDGET: Duration = Duration::from_millis(3000);

/// How long, and how patiently, throttled puts are retried: exponential backoff with full
/// jitter (the pause before retry n is uniform in `[0, min(max_delay, base_delay · 2^(n-1))]`),
/// and no retry starts once `budget` has passed since the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub budget: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(50);
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(1);

    /// The default backoff (50 ms base, 1 s cap) within `budget`.
    pub fn with_budget(budget: Duration) -> Self {
        Self { budget, base_delay: Self::DEFAULT_BASE_DELAY, max_delay: Self::DEFAULT_MAX_DELAY }
    }

    /// The backoff between retries.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.base_delay, self.max_delay)
    }

    /// The pause before retry number `retry` (1 for the first retry).
    pub(super) fn delay(&self, retry: u32) -> Duration {
        self.backoff().delay(retry)
    }
}

/// The producer's configuration: which deployment's streams it serves and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// The deployment's prefix; its streams are `streaming-<prefix>-pin|geo|user`.
    pub prefix: String,
    /// Whether `POST` (create) and `DELETE` of streams are allowed.
    pub stream_admin: bool,
    /// How throttled puts are retried before the failure is reported to the client.
    pub put_retry: RetryPolicy,
}

impl ApiConfig {
    /// A configuration with the default backoff; fails if `prefix` is not `[A-Za-z0-9_-]+`
    /// or too long for the stream names it makes.
    pub fn new(prefix: impl Into<String>, stream_admin: bool, put_retry_budget: Duration) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        validate_prefix(&prefix)?;
        Ok(Self { prefix, stream_admin, put_retry: RetryPolicy::with_budget(put_retry_budget) })
    }

    /// Reads `PINPIPE_PREFIX` (required), `PINPIPE_STREAM_ADMIN` (`true|false`, default false)
    /// and `PINPIPE_PUT_RETRY_BUDGET_MS` (default 3000).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let prefix = env.required(PREFIX_VAR, "the deployment's prefix (letters, digits, _ and -)")?;
        let stream_admin = env.flag(STREAM_ADMIN_VAR, false)?;
        let budget = match env.value(PUT_RETRY_BUDGET_VAR) {
            None => DEFAULT_PUT_RETRY_BUDGET,
            Some(v) => Duration::from_millis(v.parse().map_err(|_| {
                ConfigError(format!("{PUT_RETRY_BUDGET_VAR}={v:?}: expected a whole number of milliseconds"))
            })?),
        };
        Self::new(prefix, stream_admin, budget)
    }

    /// The names of this deployment's streams, in table order.
    pub fn stream_names(&self) -> Vec<String> {
        Table::ALL.iter().map(|t| t.stream_name(&self.prefix)).collect()
    }
}

fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ConfigError(format!("{PREFIX_VAR}={prefix:?}: expected one or more of A-Z, a-z, 0-9, _ and -")));
    }
    let longest = Table::ALL.iter().map(|t| t.stream_name(prefix).len()).max().unwrap_or(0);
    if longest > MAX_STREAM_NAME_CHARS {
        return Err(ConfigError(format!(
            "{PREFIX_VAR} is {} characters: stream names made from it would exceed Kinesis' {MAX_STREAM_NAME_CHARS}",
            prefix.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{GEO, PIN, USER};
    use super::*;

    fn from_vars(pairs: &[(&str, &str)]) -> Result<ApiConfig, ConfigError> {
        let lookup = crate::config::table_lookup(pairs);
        ApiConfig::from_env(&Env::from_lookup(&lookup))
    }

    #[test]
    fn config_reads_prefix_admin_switch_and_retry_budget() {
        let config =
            from_vars(&[(PREFIX_VAR, "0a1b2c3d4e5f"), (STREAM_ADMIN_VAR, "true"), (PUT_RETRY_BUDGET_VAR, "1500")])
                .unwrap();
        assert_eq!(config.prefix, "0a1b2c3d4e5f");
        assert!(config.stream_admin);
        assert_eq!(config.put_retry, RetryPolicy::with_budget(Duration::from_millis(1500)));
        assert_eq!(config.stream_names(), vec![PIN, GEO, USER]);
    }

    #[test]
    fn config_defaults_to_no_admin_and_a_three_second_budget() {
        let config = from_vars(&[(PREFIX_VAR, "abc_1-x")]).unwrap();
        assert!(!config.stream_admin);
        assert_eq!(config.put_retry.budget, Duration::from_millis(3000));
        assert_eq!(config.put_retry.base_delay, Duration::from_millis(50));
        assert_eq!(config.put_retry.max_delay, Duration::from_secs(1));
    }

    #[test]
    fn config_errors_name_the_variable() {
        let missing = from_vars(&[]).unwrap_err();
        assert!(missing.to_string().contains(PREFIX_VAR), "{missing}");
        let blank = from_vars(&[(PREFIX_VAR, "  ")]).unwrap_err();
        assert!(blank.to_string().contains(PREFIX_VAR), "{blank}");
        for bad in ["a.b", "a b", "ü", "a/b"] {
            let err = from_vars(&[(PREFIX_VAR, bad)]).unwrap_err();
            assert!(err.to_string().contains(PREFIX_VAR), "{bad}: {err}");
        }
        let too_long = "x".repeat(114);
        assert!(from_vars(&[(PREFIX_VAR, &too_long)]).is_err());
        assert!(from_vars(&[(PREFIX_VAR, &too_long[..113])]).is_ok());
        let admin = from_vars(&[(PREFIX_VAR, "p"), (STREAM_ADMIN_VAR, "yes")]).unwrap_err();
        assert!(admin.to_string().contains(STREAM_ADMIN_VAR), "{admin}");
        let budget = from_vars(&[(PREFIX_VAR, "p"), (PUT_RETRY_BUDGET_VAR, "3s")]).unwrap_err();
        assert!(budget.to_string().contains(PUT_RETRY_BUDGET_VAR), "{budget}");
    }

    #[test]
    fn backoff_pauses_stay_under_the_exponential_ceiling() {
        let policy = RetryPolicy::with_budget(Duration::from_secs(3));
        for retry in 1..40 {
            let ceiling = (Duration::from_millis(50) * 2u32.saturating_pow(retry - 1)).min(Duration::from_secs(1));
            for _ in 0..20 {
                assert!(policy.delay(retry) <= ceiling, "retry {retry}");
            }
        }
        let spread: std::collections::HashSet<Duration> = (0..50).map(|_| policy.delay(5)).collect();
        assert!(spread.len() > 10, "pauses are jittered");
    }
}
