//! `attache snapshots`

use crate::cli::{Cli, SnapshotsArgs};
use crate::store::snapshot::SnapshotInfo;
use std::io::Write;

pub fn run(cli: &Cli, a: &SnapshotsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let snaps: Vec<SnapshotInfo> = match super::client(cli)? {
        Some(c) => serde_json::from_value(c.get("/snapshots")?)?,
        None => super::repository(cli, false)?.store.snapshots()?,
    };
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
