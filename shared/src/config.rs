//! The functions' configuration: one type per Lambda function, each read from the environment by
//! the one helper here, [`Env`], whose errors name the variable and what was wrong with it.
//!
//! A function reads its whole configuration once, at start-up, before it asks the runtime for
//! its first event: a missing or malformed variable then fails the cold start with a message
//! naming it, instead of failing every invocation later. The producer's configuration is
//! [`crate::api::ApiConfig`], beside the contract it configures; it is read by the same helper.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Where variables come from: the process environment in Lambda, a table in tests (so that
/// tests never race on the process-wide environment).
#[derive(Clone, Copy)]
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Env<'static> {
    /// The process environment.
    pub fn process() -> Self {
        Env { lookup: &process_var }
    }
}

impl<'a> Env<'a> {
    /// Variables looked up by `lookup`.
    pub fn from_lookup(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Env { lookup }
    }

    /// The variable's value, trimmed; `None` when unset or blank (a template that passes an
    /// empty parameter means "unset", not "empty").
    pub fn value(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// A required variable; `what` says what it should hold, for the error message.
    pub fn required(&self, name: &str, what: &str) -> Result<String, ConfigError> {
        self.value(name).ok_or_else(|| ConfigError(format!("{name} must be set to {what}")))
    }

    /// An optional variable parsed with `FromStr`, or `default` when unset.
    pub fn optional<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.value(name) {
            Some(v) => v.parse().map_err(|e| ConfigError(format!("{name}={v:?}: {e}"))),
            None => Ok(default),
        }
    }

    /// An optional `true`/`false` variable (any case), or `default` when unset.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.value(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ConfigError(format!("{name}={v:?}: expected true or false"))),
        }
    }
}

/// A required variable of the process environment.
pub fn required(name: &str) -> Result<String, ConfigError> {
    Env::process().required(name, "a value")
}

/// An optional variable of the process environment parsed with `FromStr`, or `default`.
pub fn optional<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    Env::process().optional(name, default)
}

#[cfg(feature = "lake")]
mod functions;
#[cfg(feature = "lake")]
pub use functions::{BatchIngestConfig, ConsumerConfig, MaintenanceConfig};

#[cfg(test)]
pub(crate) fn table_lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_values_count_as_unset_and_values_are_trimmed() {
        let lookup = table_lookup(&[("A", "  x  "), ("B", "   ")]);
        let env = Env::from_lookup(&lookup);
        assert_eq!(env.value("A").as_deref(), Some("x"));
        assert_eq!(env.value("B"), None);
        assert_eq!(env.required("B", "a name").unwrap_err().to_string(), "configuration: B must be set to a name");
    }

    #[test]
    fn parse_errors_name_the_variable_and_its_value() {
        let lookup = table_lookup(&[("N", "12x"), ("F", "yes")]);
        let env = Env::from_lookup(&lookup);
        let err = env.optional::<u64>("N", 1).unwrap_err().to_string();
        assert!(err.contains("N=\"12x\""), "{err}");
        assert_eq!(env.optional::<u64>("UNSET", 7).unwrap(), 7);
        assert_eq!(env.flag("F", false).unwrap_err().to_string(), "configuration: F=\"yes\": expected true or false");
        assert!(!env.flag("UNSET", false).unwrap());
    }
}
