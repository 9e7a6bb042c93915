//! Who may do what through the server: API tokens with a role (admin,
//! operator, auditor) and, for operators, a scope (the targets they may run
//! jobs on, the directories they may restore below). Tokens are stored as
//! hashes only ([`tokens`]); scopes are checked by [`scope`].

pub(crate) mod scope;
pub(crate) mod tokens;

use serde::{Deserialize, Serialize};

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Everything: jobs on any target, restores anywhere, tokens.
    Admin,
    /// Backups and restores on its targets, restores below its prefixes;
    /// reads snapshots and jobs.
    Operator,
    /// Reads snapshots, jobs and the audit log; changes nothing.
    Auditor,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whoever a request's token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// The token's id (`legacy` for the server's single `ATTACHE_TOKEN`).
    pub id: String,
    pub role: Role,
    /// Operators: globs over target names (`local`, `hv1/*`).
    pub targets: Vec<String>,
    /// Operators: absolute directories restores may write below.
    pub restore_to: Vec<String>,
}

/// How [`crate::audit::local_actor`] names local users.
const LOCAL: &str = "local:";

impl Principal {
    /// How the audit log names it.
    pub(crate) fn actor(&self) -> String {
        if self.id.starts_with(LOCAL) {
            return self.id.clone();
        }
        format!("token:{} ({})", self.id, self.role)
    }

    /// Whoever runs the command line on this machine, for jobs run here
    /// through a queue of their own (`attache policy run` without a
    /// server): an admin, named as the audit log names local users.
    pub(crate) fn local() -> Self {
        Self {
            id: crate::audit::local_actor(),
            role: Role::Admin,
            targets: Vec::new(),
            restore_to: Vec::new(),
        }
    }
}
