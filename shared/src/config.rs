//! Reading the functions' configuration from the environment, with errors that name the variable.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// A required environment variable.
pub fn required(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(ConfigError(format!("{name} must be set"))),
    }
}

/// An optional environment variable parsed with `FromStr`, or `default` when unset.
pub fn optional<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e| ConfigError(format!("{name}={v:?}: {e}"))),
        _ => Ok(default),
    }
}
