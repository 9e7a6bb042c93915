//! `attache snapshots`: every snapshot; those that cannot be used whole (a
//! damaged snapshot file, an item list that cannot be read) are listed as
//! damaged, with why, instead of failing the listing.

use crate::cli::{Cli, SnapshotsArgs};
use serde_json::Value;
use std::io::Write;

pub(crate) fn run(cli: &Cli, a: &SnapshotsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let snaps: Vec<Value> = match super::client(cli)? {
        Some(c) => serde_json::from_value(c.get("/snapshots")?)?,
        None => super::repository(cli, false)?
            .listing()?
            .iter()
            .map(|l| l.to_json())
            .collect(),
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
    let str_of = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
    for s in &snaps {
        let id = str_of(s, "id");
        let short = &id[..id.len().min(8)];
        if s.get("time").is_none() {
            writeln!(out, "{short:<8}  DAMAGED: {}", str_of(s, "damaged"))?;
            continue;
        }
        let includes: Vec<String> = s["includes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{:<8}  {:<20}  {:<10}  {:<8}  {:>8}  {:>12}  {}",
            short,
            super::ls::time(s["time"].as_i64().unwrap_or(0), 0),
            str_of(s, "plugin"),
            str_of(s, "source"),
            s["items"].as_u64().unwrap_or(0),
            s["bytes"].as_u64().unwrap_or(0),
            includes.join(" ")
        )?;
        if let Some(d) = s["damaged"].as_str() {
            writeln!(out, "{:<8}  DAMAGED: {d}", "")?;
        }
    }
    Ok(())
}
