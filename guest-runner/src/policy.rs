//! The administrator's policy: per plugin, which paths it may read or
//! write, which networks and ports it may reach, and its memory, time and
//! quiesce ceilings. A plugin's plan outside it is refused before anything
//! runs, with a message that names the plugin, the need and the rule.
//!
//! The policy is TOML (`policy/default.toml` is the one shipped and its
//! comments explain the format); the server checks every job's plan
//! against it before it attaches anything, and passes it to the runner,
//! which checks again in the guest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::plan::{clean_path, PathAccess, Plan};

/// The policy shipped with Attaché.
pub const DEFAULT_POLICY: &str = include_str!("../../policy/default.toml");

/// Why a policy could not be read or a plan was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy text is not valid.
    #[error("policy {origin}: {message}")]
    Invalid {
        /// Where the policy came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The plan or the job asks for more than the policy allows.
    #[error(
        "refused by the policy ({origin}): plugin {plugin:?} {need}; rule {rule} allows {allowed}"
    )]
    Refused {
        /// Where the policy came from.
        origin: String,
        /// The plugin.
        plugin: String,
        /// What it asked for, with its reason.
        need: String,
        /// The rule's key (`plugins.sql.connect`, `default.read`).
        rule: String,
        /// What the rule allows.
        allowed: String,
    },
    /// The plan itself is malformed.
    #[error("plugin {plugin:?} made an invalid plan: {message}")]
    BadPlan {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        message: String,
    },
}

/// One set of rules as written (every field optional, so a plugin's entry
/// overrides only what it names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRules {
    read: Option<Vec<String>>,
    write: Option<Vec<String>>,
    connect: Option<Vec<String>>,
    memory_limit_mib: Option<u64>,
    deadline_secs: Option<u64>,
    quiesce_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    default: RawRules,
    #[serde(default)]
    plugins: BTreeMap<String, RawRules>,
}

/// A network rule: addresses in `net` on ports `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    /// The network.
    pub net: ipnet::IpNet,
    /// Inclusive port ranges.
    pub ports: Vec<(u16, u16)>,
    /// As written.
    pub text: String,
}

impl NetRule {
    fn parse(s: &str) -> Result<Self, String> {
        let (net, ports) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("connect rule {s:?}: expected NETWORK/PREFIX:PORTS"))?;
        let net: ipnet::IpNet = net
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("connect rule {s:?}: {net:?} is not NETWORK/PREFIX"))?;
        let mut out = Vec::new();
        for part in ports.split(',') {
            let bad = || format!("connect rule {s:?}: bad ports {part:?}");
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let a: u16 = a.trim().parse().map_err(|_| bad())?;
            let b: u16 = b.trim().parse().map_err(|_| bad())?;
            if a == 0 || a > b {
                return Err(bad());
            }
            out.push((a, b));
        }
        Ok(Self {
            net,
            ports: out,
            text: s.to_owned(),
        })
    }

    /// Whether the rule allows `addr`.
    pub fn allows(&self, addr: &SocketAddr) -> bool {
        self.net.contains(&addr.ip())
            && self
                .ports
                .iter()
                .any(|(a, b)| (*a..=*b).contains(&addr.port()))
    }
}

/// The rules in force for one plugin, each with the key it came from.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Path prefixes it may read.
    pub read: (Vec<String>, String),
    /// Path prefixes it may read and write.
    pub write: (Vec<String>, String),
    /// Networks and ports it may connect to.
    pub connect: (Vec<NetRule>, String),
    /// Memory ceiling, MiB.
    pub memory_limit_mib: (u64, String),
    /// Time ceiling, seconds.
    pub deadline_secs: (u64, String),
    /// Quiesce bound, seconds.
    pub quiesce_secs: (u64, String),
}

/// A whole policy.
#[derive(Debug, Clone)]
pub struct Policy {
    raw: RawPolicy,
    /// Where it came from (a file's path, or "the shipped default").
    pub origin: String,
    /// Its text, to hand to a runner.
    pub text: String,
}

/// Limits a job asks for (`--memory-limit-mib`, `--deadline-secs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct JobLimits {
    /// Memory, MiB.
    pub memory_mib: Option<u64>,
    /// Time, seconds.
    pub deadline_secs: Option<u64>,
}

/// What a plan gets once allowed: the limits to run it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Time, seconds.
    pub deadline_secs: u64,
    /// Quiesce bound, seconds.
    pub quiesce_secs: u64,
}

/// Memory a job gets when neither it nor the plan names any.
pub const DEFAULT_MEMORY_MIB: u64 = 512;
/// Time a job gets when neither it nor the plan names any.
pub const DEFAULT_DEADLINE_SECS: u64 = 6 * 3600;
const DEFAULT_QUIESCE_SECS: u64 = 300;

impl Policy {
    /// Parses a policy; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let p = Self {
            raw,
            origin: origin.to_owned(),
            text: text.to_owned(),
        };
        // Every entry must resolve: bad paths and network rules are found now.
        p.rules("")?;
        for name in p.raw.plugins.keys() {
            p.rules(name)?;
        }
        Ok(p)
    }

    /// The shipped policy.
    pub fn shipped() -> Self {
        Self::parse(DEFAULT_POLICY, "the shipped default policy")
            .unwrap_or_else(|e| panic!("policy/default.toml is invalid: {e}"))
    }

    /// The rules for `plugin`: its entry over `[default]`.
    pub fn rules(&self, plugin: &str) -> Result<Rules, PolicyError> {
        let own = self.raw.plugins.get(plugin);
        let d = &self.raw.default;
        let invalid = |message: String| PolicyError::Invalid {
            origin: self.origin.clone(),
            message,
        };
        fn pick<T: Clone>(
            own: Option<&Option<T>>,
            def: &Option<T>,
            plugin: &str,
            key: &str,
            fallback: T,
        ) -> (T, String) {
            match (own.and_then(|o| o.clone()), def.clone()) {
                (Some(v), _) => (v, format!("plugins.{plugin}.{key}")),
                (None, Some(v)) => (v, format!("default.{key}")),
                (None, None) => (fallback, format!("default.{key} (unset)")),
            }
        }
        let read = pick(own.map(|o| &o.read), &d.read, plugin, "read", Vec::new());
        let write = pick(own.map(|o| &o.write), &d.write, plugin, "write", Vec::new());
        for p in read.0.iter().chain(&write.0) {
            clean_path(p).map_err(|why| invalid(format!("path rule {p:?}: {why}")))?;
        }
        let (conn, conn_key) = pick(
            own.map(|o| &o.connect),
            &d.connect,
            plugin,
            "connect",
            Vec::new(),
        );
        let connect = conn
            .iter()
            .map(|s| NetRule::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        Ok(Rules {
            read,
            write,
            connect: (connect, conn_key),
            memory_limit_mib: pick(
                own.map(|o| &o.memory_limit_mib),
                &d.memory_limit_mib,
                plugin,
                "memory-limit-mib",
                DEFAULT_MEMORY_MIB,
            ),
            deadline_secs: pick(
                own.map(|o| &o.deadline_secs),
                &d.deadline_secs,
                plugin,
                "deadline-secs",
                DEFAULT_DEADLINE_SECS,
            ),
            quiesce_secs: pick(
                own.map(|o| &o.quiesce_secs),
                &d.quiesce_secs,
                plugin,
                "quiesce-secs",
                DEFAULT_QUIESCE_SECS,
            ),
        })
    }

    /// Checks `plan` of `plugin` and the job's `limits` against the policy;
    /// the limits to run under when allowed.
    pub fn check(
        &self,
        plugin: &str,
        plan: &Plan,
        limits: JobLimits,
    ) -> Result<Granted, PolicyError> {
        plan.check_shape().map_err(|message| PolicyError::BadPlan {
            plugin: plugin.to_owned(),
            message,
        })?;
        let r = self.rules(plugin)?;
        let refused = |need: String, rule: &str, allowed: String| PolicyError::Refused {
            origin: self.origin.clone(),
            plugin: plugin.to_owned(),
            need,
            rule: rule.to_owned(),
            allowed,
        };
        let list = |v: &[String]| {
            if v.is_empty() {
                "nothing".to_owned()
            } else {
                v.join(", ")
            }
        };
        for need in &plan.paths {
            let ok_write = under_any(&need.path, &r.write.0);
            let ok = match need.access {
                PathAccess::Read => ok_write || under_any(&need.path, &r.read.0),
                PathAccess::ReadWrite => ok_write,
            };
            if !ok {
                let (rule, allowed) = match need.access {
                    PathAccess::Read => (
                        format!("{} (and {})", r.read.1, r.write.1),
                        list(&[r.read.0.clone(), r.write.0.clone()].concat()),
                    ),
                    PathAccess::ReadWrite => (r.write.1.clone(), list(&r.write.0)),
                };
                return Err(refused(
                    format!(
                        "asks to {} {} ({})",
                        need.access.as_str(),
                        need.path,
                        need.reason
                    ),
                    &rule,
                    allowed,
                ));
            }
        }
        for need in &plan.connect {
            let addr = need.socket_addr().map_err(|message| PolicyError::BadPlan {
                plugin: plugin.to_owned(),
                message,
            })?;
            if !r.connect.0.iter().any(|rule| rule.allows(&addr)) {
                let texts: Vec<String> = r.connect.0.iter().map(|n| n.text.clone()).collect();
                return Err(refused(
                    format!("asks to connect to {addr} ({})", need.reason),
                    &r.connect.1,
                    list(&texts),
                ));
            }
        }
        let mem_ceiling = r.memory_limit_mib.0;
        if let Some(m) = plan.memory_mib {
            if u64::from(m) > mem_ceiling {
                return Err(refused(
                    format!("expects {m} MiB of memory"),
                    &r.memory_limit_mib.1,
                    format!("{mem_ceiling} MiB"),
                ));
            }
        }
        if let Some(m) = limits.memory_mib {
            if m > mem_ceiling {
                return Err(refused(
                    format!("would run with a memory limit of {m} MiB (the job's)"),
                    &r.memory_limit_mib.1,
                    format!("{mem_ceiling} MiB"),
                ));
            }
        }
        let time_ceiling = r.deadline_secs.0;
        if let Some(s) = plan.deadline_secs {
            if s > time_ceiling {
                return Err(refused(
                    format!("expects to need {s} s"),
                    &r.deadline_secs.1,
                    format!("{time_ceiling} s"),
                ));
            }
        }
        if let Some(s) = limits.deadline_secs {
            if s > time_ceiling {
                return Err(refused(
                    format!("would run with a deadline of {s} s (the job's)"),
                    &r.deadline_secs.1,
                    format!("{time_ceiling} s"),
                ));
            }
        }
        let memory_mib = limits
            .memory_mib
            .or(plan.memory_mib.map(u64::from))
            .unwrap_or(DEFAULT_MEMORY_MIB.min(mem_ceiling));
        let deadline_secs = limits
            .deadline_secs
            .or(plan.deadline_secs)
            .unwrap_or(DEFAULT_DEADLINE_SECS.min(time_ceiling));
        Ok(Granted {
            memory_mib,
            deadline_secs,
            quiesce_secs: r.quiesce_secs.0.min(deadline_secs),
        })
    }

    /// The policy as a security team reads it: for `[default]` and every
    /// plugin named, what it may read, write and reach, and its ceilings.
    pub fn describe(&self, extra_plugins: &[String]) -> Result<String, PolicyError> {
        let mut names: Vec<String> = self.raw.plugins.keys().cloned().collect();
        for p in extra_plugins {
            if !names.contains(p) {
                names.push(p.clone());
            }
        }
        names.sort();
        let mut out = format!("policy in force: {}\n", self.origin);
        let mut section = |title: &str, r: &Rules| {
            let join = |v: &[String]| {
                if v.is_empty() {
                    "(nothing)".to_owned()
                } else {
                    v.join(", ")
                }
            };
            let nets: Vec<String> = r.connect.0.iter().map(|n| n.text.clone()).collect();
            let _ = writeln!(out, "\n{title}");
            let _ = writeln!(out, "  read       {}", join(&r.read.0));
            let _ = writeln!(out, "  write      {}", join(&r.write.0));
            let _ = writeln!(out, "  connect    {}", join(&nets));
            let _ = writeln!(out, "  memory     {} MiB at most", r.memory_limit_mib.0);
            let _ = writeln!(out, "  time       {} s at most", r.deadline_secs.0);
            let _ = writeln!(out, "  quiesce    {} s at most", r.quiesce_secs.0);
        };
        section("[default] (every plugin not named below)", &self.rules("")?);
        for n in &names {
            section(&format!("plugin {n}"), &self.rules(n)?);
        }
        Ok(out)
    }
}

/// Whether `path` is one of `prefixes` or lies below one (by components).
fn under_any(path: &str, prefixes: &[String]) -> bool {
    let Ok(p) = clean_path(path) else {
        return false;
    };
    prefixes.iter().any(|pre| match clean_path(pre) {
        Ok(pre) => pre.len() <= p.len() && pre.iter().zip(&p).all(|(a, b)| a == b),
        Err(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{NetNeed, PathNeed};

    const TEXT: &str = r#"
[default]
read = ["/srv"]
write = ["/restore"]
connect = []
memory-limit-mib = 256
deadline-secs = 600

[plugins.sql]
connect = ["127.0.0.0/8:5432", "10.1.0.0/16:5432-5439,6432"]
"#;

    fn plan(paths: &[(&str, PathAccess)], conn: &[&str]) -> Plan {
        Plan {
            contract: "0.2.0".into(),
            paths: paths
                .iter()
                .map(|(p, a)| PathNeed {
                    path: (*p).into(),
                    access: *a,
                    reason: "test".into(),
                })
                .collect(),
            connect: conn
                .iter()
                .map(|a| NetNeed {
                    address: (*a).into(),
                    reason: "test".into(),
                })
                .collect(),
            ..Plan::default()
        }
    }

    #[test]
    fn paths_networks_and_ceilings() {
        let p = Policy::parse(TEXT, "test").unwrap();
        let none = JobLimits::default();
        let read = PathAccess::Read;
        let rw = PathAccess::ReadWrite;
        assert!(p.check("fs", &plan(&[("/srv/a", read)], &[]), none).is_ok());
        assert!(p.check("fs", &plan(&[("/srv", read)], &[]), none).is_ok());
        assert!(p
            .check("fs", &plan(&[("/restore/x", read)], &[]), none)
            .is_ok());
        let e = p
            .check("fs", &plan(&[("/srvx", read)], &[]), none)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"fs\"") && e.contains("/srvx") && e.contains("default.read"),
            "{e}"
        );
        let e = p
            .check("fs", &plan(&[("/srv/a", rw)], &[]), none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("default.write"), "{e}");
        let e = p
            .check("fs", &plan(&[], &["127.0.0.1:5432"]), none)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("default.connect") && e.contains("127.0.0.1:5432"),
            "{e}"
        );
        assert!(p
            .check("sql", &plan(&[], &["127.0.0.1:5432"]), none)
            .is_ok());
        assert!(p.check("sql", &plan(&[], &["10.1.2.3:5437"]), none).is_ok());
        assert!(p.check("sql", &plan(&[], &["10.1.2.3:6432"]), none).is_ok());
        let e = p
            .check("sql", &plan(&[], &["10.2.0.1:5432"]), none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("plugins.sql.connect"), "{e}");
        assert!(p.check("sql", &plan(&[], &["127.0.0.1:0"]), none).is_err());
        let mut big = plan(&[], &[]);
        big.memory_mib = Some(1024);
        let e = p.check("fs", &big, none).unwrap_err().to_string();
        assert!(e.contains("memory-limit-mib"), "{e}");
        let job = JobLimits {
            memory_mib: Some(100),
            deadline_secs: Some(700),
        };
        assert!(p.check("fs", &plan(&[], &[]), job).is_err());
        let g = p
            .check(
                "fs",
                &plan(&[], &[]),
                JobLimits {
                    memory_mib: Some(100),
                    deadline_secs: None,
                },
            )
            .unwrap();
        assert_eq!((g.memory_mib, g.deadline_secs), (100, 600));
    }

    #[test]
    fn shipped_policy_parses_and_reads_at_a_glance() {
        let p = Policy::shipped();
        let text = p.describe(&[]).unwrap();
        assert!(text.contains("plugin sql") && text.contains("0.0.0.0/0:1-65535"));
        assert!(Policy::parse("[default]\nread = [\"relative\"]", "x").is_err());
        assert!(Policy::parse("[default]\nconnect = [\"10.0.0.0/8\"]", "x").is_err());
        assert!(Policy::parse("[default]\nbogus = 1", "x").is_err());
    }
}
