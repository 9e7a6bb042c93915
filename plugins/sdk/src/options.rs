//! [`Options`]: a job's options, read by key and checked against what the
//! plugin declares.

use crate::{OptionSpec, PluginError};

/// A view over a job's option list (`--option KEY=VALUE`). When a key is
/// passed twice, the last value wins.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    list: &'a [(String, String)],
}

impl<'a> Options<'a> {
    /// Views an option list as the contract passes it.
    pub fn new(list: &'a [(String, String)]) -> Self {
        Options { list }
    }

    /// The value of `key`, if passed.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.list
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an `invalid-request` naming it.
    pub fn require(&self, key: &str) -> Result<&'a str, PluginError> {
        self.get(key)
            .ok_or_else(|| PluginError::invalid(format!("option {key:?} is required")))
    }

    /// The value of `key` parsed as `T`, if passed; an `invalid-request`
    /// naming the key if it does not parse.
    pub fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, PluginError> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| PluginError::invalid(format!("option {key:?}: bad value {v:?}")))
            })
            .transpose()
    }

    /// The keys passed, in order, with repeats.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.list.iter().map(|(k, _)| k.as_str())
    }

    /// Refuses a key that `specs` does not declare and a required one that
    /// is missing. The runner checks the same before the plugin runs; a
    /// plugin checks again so that a direct caller gets the same answer.
    pub fn check(&self, specs: &[OptionSpec]) -> Result<(), PluginError> {
        for key in self.keys() {
            if !specs.iter().any(|s| s.name == key) {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(PluginError::invalid(format!(
                    "unknown option {key:?} (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        for spec in specs.iter().filter(|s| s.required) {
            self.require(&spec.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn last_value_wins_and_checks_hold() {
        let l = list(&[("a", "1"), ("b", "x"), ("a", "2")]);
        let o = Options::new(&l);
        assert_eq!(o.get("a"), Some("2"));
        assert_eq!(o.parse::<u32>("a").unwrap(), Some(2));
        assert!(o.parse::<u32>("b").is_err());
        assert!(o.require("c").is_err());
        let specs = [OptionSpec::new("a", ""), OptionSpec::new("b", "")];
        assert!(o.check(&specs).is_ok());
        assert!(o.check(&specs[..1]).is_err());
        let needs_c = [
            OptionSpec::new("a", ""),
            OptionSpec::new("b", ""),
            OptionSpec::new("c", "").required(),
        ];
        assert!(o.check(&needs_c).is_err());
    }
}
