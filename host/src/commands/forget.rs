//! `attache forget --keep-… [--prune]`

use crate::cli::{Cli, ForgetArgs};
use crate::repo::prune::prune;
use crate::repo::retention::{keep, Policy};
use crate::store::lock::Lock;

pub(crate) fn run(cli: &Cli, a: &ForgetArgs) -> anyhow::Result<()> {
    super::local_only(cli, "forget")?;
    let policy = Policy {
        last: a.keep_last,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
    };
    anyhow::ensure!(
        !policy.is_empty(),
        "give at least one --keep-* rule (refusing to forget every snapshot)"
    );
    let repo = super::repository(cli, false)?;
    let _lock = Lock::acquire(&repo.store, a.prune, "forget")?;
    let snaps = repo.store.snapshots()?;
    let kept = keep(&snaps, policy);
    for s in &snaps {
        let keep = kept.contains(&s.id);
        println!(
            "{} {}  {}  {}",
            if keep { "keep  " } else { "forget" },
            s.short_id(),
            super::ls::time(s.time, 0),
            s.includes.join(" ")
        );
        if !keep && !a.dry_run {
            repo.store.remove_snapshot(&s.id)?;
        }
    }
    if a.dry_run {
        return Ok(());
    }
    repo.catalog.sync(&repo.store)?;
    if a.prune {
        let r = prune(&repo)?;
        println!(
            "pruned: {} pack(s) removed, {} rewritten, {} chunk(s) dropped, {} bytes freed",
            r.packs_removed, r.packs_rewritten, r.blobs_removed, r.bytes_freed
        );
    }
    Ok(())
}
