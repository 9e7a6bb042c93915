//! Typed constructors for [`PluginError`], and its message.

use crate::PluginError;

impl PluginError {
    /// The job's request is wrong: an unknown id, a bad option.
    pub fn invalid(message: impl Into<String>) -> Self {
        PluginError::InvalidRequest(message.into())
    }

    /// Something the job did not grant was needed.
    pub fn denied(message: impl Into<String>) -> Self {
        PluginError::AccessDenied(message.into())
    }

    /// The application refused or failed.
    pub fn application(message: impl Into<String>) -> Self {
        PluginError::Application(message.into())
    }

    /// The runner's sink or source failed.
    pub fn transport(message: impl Into<String>) -> Self {
        PluginError::Transport(message.into())
    }

    /// Anything else.
    pub fn other(message: impl Into<String>) -> Self {
        PluginError::Other(message.into())
    }

    /// The message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            PluginError::InvalidRequest(m)
            | PluginError::AccessDenied(m)
            | PluginError::Application(m)
            | PluginError::Transport(m)
            | PluginError::Other(m) => m,
        }
    }

    /// The same kind of error with `context: ` put before its message.
    pub fn context(self, context: &str) -> Self {
        let wrap = |m: String| format!("{context}: {m}");
        match self {
            PluginError::InvalidRequest(m) => PluginError::InvalidRequest(wrap(m)),
            PluginError::AccessDenied(m) => PluginError::AccessDenied(wrap(m)),
            PluginError::Application(m) => PluginError::Application(wrap(m)),
            PluginError::Transport(m) => PluginError::Transport(wrap(m)),
            PluginError::Other(m) => PluginError::Other(wrap(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_pick_the_kind() {
        assert_eq!(
            PluginError::invalid("x"),
            PluginError::InvalidRequest("x".into())
        );
        assert_eq!(PluginError::denied("x").message(), "x");
        assert_eq!(
            PluginError::application("down").context("db"),
            PluginError::Application("db: down".into())
        );
    }
}
