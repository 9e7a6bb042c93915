//! Building [`PluginInfo`] and the [`OptionSpec`]s it declares.

use crate::{ApplicationKind, OptionSpec, PluginInfo};

impl PluginInfo {
    /// A plugin that declares no options and does not quiesce.
    pub fn new(name: &str, version: &str, kind: ApplicationKind, description: &str) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            kind,
            description: description.into(),
            options: Vec::new(),
            supports_quiesce: false,
        }
    }

    /// Declares an option key.
    pub fn option(mut self, spec: OptionSpec) -> Self {
        self.options.push(spec);
        self
    }

    /// Says that `quiesce` and `thaw` do something for this application.
    pub fn quiesces(mut self) -> Self {
        self.supports_quiesce = true;
        self
    }
}

impl OptionSpec {
    /// An optional, non-secret option key.
    pub fn new(name: &str, description: &str) -> Self {
        OptionSpec {
            name: name.into(),
            description: description.into(),
            required: false,
            secret: false,
        }
    }

    /// Makes the key required: every backup and restore must pass it.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Makes the value a secret (a password): passed through the runner's
    /// environment and shown redacted.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}
