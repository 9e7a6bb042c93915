//! `attache ls SNAPSHOT [PREFIX]`

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use guest_runner::stream::ItemRecord;

use crate::cli::{Cli, LsArgs};

pub(crate) fn run(cli: &Cli, a: &LsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let items: Vec<ItemRecord> = match super::client(cli)? {
        Some(c) => {
            let mut path = format!("/snapshots/{}/items", a.snapshot);
            if let Some(p) = &a.prefix {
                path += &format!("?prefix={}", crate::client::query_value(p));
            }
            serde_json::from_value(c.get(&path)?)?
        }
        None => {
            let repo = super::repository(cli, false)?;
            let snap = repo.find_snapshot(&a.snapshot)?;
            let items = repo.items(&snap, a.prefix.as_deref())?;
            items.into_iter().map(|i| i.record).collect()
        }
    };
    let shown = items.iter();
    if a.json {
        let v: Vec<_> = shown.map(serde_json::to_value).collect::<Result<_, _>>()?;
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    for i in shown {
        let it = i;
        let mode = it
            .mode
            .map(|m| format!("{:04o}", m & 0o7777))
            .unwrap_or_else(|| "-".into());
        let owner = match (it.uid, it.gid) {
            (Some(u), Some(g)) => format!("{u}:{g}"),
            _ => "-".into(),
        };
        let when = it
            .mtime
            .map(|t| time(t.seconds, t.nanoseconds))
            .unwrap_or_else(|| "-".into());
        let mut line = format!(
            "{:<9} {mode} {owner:>11} {:>12} {when:<20} {}",
            it.kind.as_str(),
            it.size,
            it.id
        );
        if let Some(t) = &it.symlink_target {
            line += &format!(" -> {t}");
        }
        if let Some(t) = &it.hardlink_target {
            line += &format!(" => {t}");
        }
        // The contract's one attribute for people: a message's subject.
        if let Some(title) = guest_runner::stream::title(it) {
            line += &format!("  \u{2014} {}", title.escape_debug());
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// RFC 3339 in UTC, to the second.
pub(crate) fn time(seconds: i64, _nanos: u32) -> String {
    if seconds < 0 {
        return format!("@{seconds}");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds as u64)).to_string()
}
