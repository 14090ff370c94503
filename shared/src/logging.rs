//! One logging set-up for every function: JSON lines on stdout, which CloudWatch Logs Insights
//! can query field by field, at the level Lambda's logging controls ask for.
//!
//! The level comes from `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging controls) when set,
//! else from `RUST_LOG` (the template's `LogLevel` parameter; it may hold per-crate directives),
//! else `info`. Lambda stamps every line with its own time, so pinpipe adds none.

use tracing_subscriber::EnvFilter;

/// The filter directives for `aws_lambda_log_level` (wins) or `rust_log`, `info` if neither.
fn directives(aws_lambda_log_level: Option<String>, rust_log: Option<String>) -> String {
    aws_lambda_log_level
        .or(rust_log)
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "info".to_string())
}

/// Installs the subscriber. Call once, first thing in `main`.
pub fn init() {
    let directives = directives(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok(), std::env::var("RUST_LOG").ok());
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn lambdas_log_level_wins_over_rust_log_and_info_is_the_default() {
        assert_eq!(directives(Some("DEBUG".into()), Some("warn".into())), "debug");
        assert_eq!(directives(None, Some("pinpipe=debug,info".into())), "pinpipe=debug,info");
        assert_eq!(directives(None, Some("  ".into())), "info");
        assert_eq!(directives(None, None), "info");
    }
}
