//! `attache prune`

use crate::cli::Cli;
use crate::repo::prune::prune;
use crate::store::lock::Lock;

pub(crate) fn run(cli: &Cli) -> anyhow::Result<()> {
    super::local_only(cli, "prune")?;
    let repo = super::repository(cli, false)?;
    let _lock = Lock::acquire(&repo.store, true, "prune")?;
    let r = prune(&repo)?;
    println!(
        "pruned: {} pack(s) removed, {} rewritten, {} chunk(s) dropped, {} bytes freed",
        r.packs_removed, r.packs_rewritten, r.blobs_removed, r.bytes_freed
    );
    Ok(())
}
