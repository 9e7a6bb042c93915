//! `attache snapshots`

use crate::cli::{Cli, SnapshotsArgs};
use std::io::Write;

pub fn run(cli: &Cli, a: &SnapshotsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let repo = super::repository(cli, false)?;
    let snaps = repo.store.snapshots()?;
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&snaps)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<8}  {:<20}  {:<10}  {:<8}  {:>8}  {:>12}  includes",
        "id", "time", "plugin", "source", "items", "bytes"
    )?;
    for s in &snaps {
        writeln!(
            out,
            "{:<8}  {:<20}  {:<10}  {:<8}  {:>8}  {:>12}  {}",
            s.short_id(),
            super::ls::time(s.time, 0),
            s.plugin,
            s.source,
            s.items,
            s.bytes,
            s.includes.join(" ")
        )?;
    }
    Ok(())
}
