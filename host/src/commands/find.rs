//! `attache find PATTERN`: which snapshots hold matching items.

use std::io::Write;

use crate::cli::{Cli, FindArgs};
use crate::repo::Found;

pub(crate) fn run(cli: &Cli, a: &FindArgs) -> anyhow::Result<()> {
    let hits: Vec<Found> = match super::client(cli)? {
        Some(c) => serde_json::from_value(c.get(&format!(
            "/find?pattern={}",
            crate::client::query_value(&a.pattern)
        ))?)?,
        None => super::repository(cli, false)?.catalog.find(&a.pattern)?,
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&hits)?)?;
        return Ok(());
    }
    for h in &hits {
        writeln!(
            out,
            "{}  {:<20}  {:<10} {:<9} {:>12} {}",
            &h.snapshot[..8],
            super::ls::time(h.time, 0),
            h.source,
            h.kind,
            h.size,
            h.id
        )?;
    }
    if hits.is_empty() {
        eprintln!("no item matches {:?}", a.pattern);
    }
    Ok(())
}
