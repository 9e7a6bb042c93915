//! `attache repair index` and `attache repair snapshots`.

use crate::cli::{Cli, JsonArgs, RepairSnapshotsArgs};
use crate::repo::repair::{repair_index, repair_snapshots};
use crate::store::lock::Lock;

/// `attache repair index`.
pub(crate) fn index(cli: &Cli, a: &JsonArgs) -> anyhow::Result<()> {
    super::local_only(cli, "repair index")?;
    let repo = super::repository(cli, false)?;
    let _lock = Lock::acquire(&repo.store, true, "repair index")?;
    let r = repair_index(&repo)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    for p in &r.problems {
        println!("{p}");
    }
    println!(
        "read {} pack(s); the new index holds {} chunk(s)",
        r.packs_read, r.blobs_indexed
    );
    Ok(())
}

/// `attache repair snapshots [--dry-run]`.
pub(crate) fn snapshots(cli: &Cli, a: &RepairSnapshotsArgs) -> anyhow::Result<()> {
    super::local_only(cli, "repair snapshots")?;
    let repo = super::repository(cli, false)?;
    let _lock = Lock::acquire(&repo.store, true, "repair snapshots")?;
    let r = repair_snapshots(&repo, a.dry_run)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let would = if a.dry_run { "would be " } else { "" };
    for (id, why) in &r.removed {
        println!("snapshot {} {would}removed: {why}", &id[..id.len().min(8)]);
    }
    for (old, new, dropped) in &r.rewritten {
        println!(
            "snapshot {} {would}rewritten{}: {} item(s) whose data is lost dropped",
            &old[..old.len().min(8)],
            if new.is_empty() {
                String::new()
            } else {
                format!(" as {}", &new[..8.min(new.len())])
            },
            dropped.len()
        );
        for d in dropped {
            println!("  {d}");
        }
    }
    if r.removed.is_empty() && r.rewritten.is_empty() {
        println!("every snapshot is whole");
    }
    Ok(())
}
