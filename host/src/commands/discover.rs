//! `attache discover HYPERVISOR/VM [--plugin P] [--scope ID] [--depth N]
//! [--json]`: what there is to protect in a VM, as its plugins list it.

use crate::cli::{Cli, DiscoverArgs};
use crate::jobs::discover::{DiscoverRequest, Entry};
use crate::jobs::{self};

pub(crate) fn run(cli: &Cli, a: &DiscoverArgs) -> anyhow::Result<()> {
    let req = DiscoverRequest {
        target: a.target.clone(),
        plugin: a.plugin.clone(),
        scope: a.scope.clone(),
        depth: a.depth,
        timeout_secs: a.timeout_secs,
        options: a.options.iter().cloned().collect(),
        app_password: std::env::var(jobs::PASSWORD_ENV).ok(),
        app_password_file: a.app_password_file.clone(),
    };
    let out = super::run_job(cli, "discover", &req, |ctx, ctl| {
        jobs::discover::run(ctx, &req, ctl)
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} (container {}){}",
        out["target"].as_str().unwrap_or_default(),
        out["container"].as_str().unwrap_or_default(),
        out["scope"]
            .as_str()
            .map(|s| format!(", below {}", shown(s)))
            .unwrap_or_default()
    );
    for p in out["plugins"].as_array().into_iter().flatten() {
        let name = p["plugin"].as_str().unwrap_or("?");
        if let Some(e) = p["error"].as_str() {
            println!("{name}: error: {e}");
            continue;
        }
        let entries: Vec<Entry> = serde_json::from_value(p["entries"].clone())?;
        println!("{name}: {} item(s)", entries.len());
        for line in table(&entries) {
            println!("  {line}");
        }
    }
    Ok(())
}

/// An id as a terminal shows it: control characters escaped, so that a
/// name in the guest cannot move the cursor or change colours.
fn shown(id: &str) -> String {
    if id.chars().any(char::is_control) {
        id.escape_debug().to_string()
    } else {
        id.to_owned()
    }
}

/// Entries as table lines: kind, size, and the id indented below the
/// entry it continues after a `/` (a directory's files, a database's
/// schemas); "+" marks an entry with more below it, which `--scope ID`
/// lists.
fn table(entries: &[Entry]) -> Vec<String> {
    let mut lines = vec![format!("{:<10} {:>14}  ID", "KIND", "SIZE")];
    let mut parents: Vec<&str> = Vec::new();
    for e in entries {
        while let Some(top) = parents.last() {
            let below =
                e.id.strip_prefix(top)
                    .is_some_and(|rest| rest.starts_with('/') || top.ends_with('/'));
            if below {
                break;
            }
            parents.pop();
        }
        let size = e.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
        let more = if e.has_children { "  +" } else { "" };
        lines.push(format!(
            "{:<10} {size:>14}  {}{}{more}",
            e.kind.as_str(),
            "  ".repeat(parents.len()),
            shown(&e.id)
        ));
        if e.has_children {
            parents.push(&e.id);
        }
    }
    if entries.iter().any(|e| e.has_children) {
        lines.push("(+: more below; list it with --scope ID)".into());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_runner::stream::ItemKind;

    fn e(id: &str, kind: ItemKind, size: Option<u64>, more: bool) -> Entry {
        Entry {
            id: id.into(),
            kind,
            size,
            has_children: more,
        }
    }

    #[test]
    fn a_table_nests_what_continues_an_entry() {
        let lines = table(&[
            e("/data/a", ItemKind::Directory, None, true),
            e("/data/a/x.db", ItemKind::File, Some(8192), false),
            e("/data/ab", ItemKind::File, Some(3), false),
            e("/data/bad\x1b[2J", ItemKind::File, Some(1), false),
        ]);
        assert_eq!(lines[1], "directory               -  /data/a  +");
        assert_eq!(lines[2], "file                 8192    /data/a/x.db");
        assert_eq!(lines[3], "file                    3  /data/ab");
        assert_eq!(lines[4], "file                    1  /data/bad\\u{1b}[2J");
        assert!(lines[5].starts_with("(+: more below"));
    }
}
