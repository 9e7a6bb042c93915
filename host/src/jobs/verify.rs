//! The work behind a verify job of the server: the same check as
//! `attache verify [--read-data]`, under the same shared lock, audited like
//! every job. Damage found is the job's result, not its failure: the check
//! ran, and what it found is what the console shows.

use serde::{Deserialize, Serialize};

use super::Context;
use crate::repo::verify::{verify, Report};
use crate::store::lock::Lock;

/// A verify to run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    /// Read every byte of every pack and check each chunk against its id
    /// (`--read-data`), not only the structure.
    #[serde(default)]
    pub read_data: bool,
}

/// What a verify job returns: the report, and whether it is clean.
#[derive(Debug, Serialize)]
pub(crate) struct Verified {
    /// No error and no damaged chunk.
    pub clean: bool,
    /// Whether every pack's bytes were read.
    pub read_data: bool,
    #[serde(flatten)]
    pub report: Report,
}

/// Verifies the repository of `ctx`.
pub(crate) fn run(ctx: &Context, req: &VerifyRequest) -> anyhow::Result<Verified> {
    super::audited(ctx, "verify", serde_json::to_value(req)?, |ctx| {
        let repo = ctx.repository(false)?;
        let _lock = Lock::acquire(&repo.store, false, "verify")?;
        let report = verify(&repo, req.read_data)?;
        Ok(Verified {
            clean: report.is_clean(),
            read_data: req.read_data,
            report,
        })
    })
}
