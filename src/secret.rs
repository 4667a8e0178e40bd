//! Secrets: tokens, passwords and signing keys, read from the environment once, when the
//! config is loaded. A [`Secret`] is compared and sent but never shown: its `Debug` and
//! `Display` print `***`, so a config, an error or a log line that holds one cannot
//! leak it.

use std::fmt;

/// How the environment is read: the process's in production, a table in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The variable `name` of `env`, when it is set and not empty.
    pub fn from_env(env: Env, name: &str) -> Option<Secret> {
        env(name).filter(|v| !v.is_empty()).map(Secret)
    }

    /// The value itself, for the one place that sends or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_shown() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***))");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn an_empty_variable_is_no_secret() {
        let env = |k: &str| match k {
            "SET" => Some("x".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(Secret::from_env(&env, "SET"), Some(Secret::new("x")));
        assert_eq!(Secret::from_env(&env, "EMPTY"), None);
        assert_eq!(Secret::from_env(&env, "UNSET"), None);
    }
}
