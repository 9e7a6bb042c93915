//! `attache audit [--since T] [--json]` and `attache audit verify`: the
//! audit log of the state directory, or through `--server` (admins and
//! auditors) for showing it.

use serde_json::Value;

use crate::audit;
use crate::cli::{AuditArgs, AuditCommand, Cli, JsonArgs};

pub(crate) fn run(cli: &Cli, a: &AuditArgs) -> anyhow::Result<()> {
    match &a.command {
        Some(AuditCommand::Verify(j)) => verify(cli, j),
        None => show(cli, a),
    }
}

fn show(cli: &Cli, a: &AuditArgs) -> anyhow::Result<()> {
    let entries: Vec<Value> = match super::client(cli)? {
        Some(c) => {
            let mut path = "/audit".to_owned();
            if let Some(s) = &a.since {
                // The server parses it; durations are taken relative to it.
                path += &format!("?since={}", crate::client::query_value(s));
            }
            serde_json::from_value(c.get(&path)?)?
        }
        None => {
            let since = a.since.as_deref().map(audit::parse_since).transpose()?;
            audit::read(&audit::path(&super::state(cli)), since)?
        }
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for e in &entries {
        if a.json {
            writeln!(out, "{e}")?;
            continue;
        }
        let mut data = e["data"].to_string();
        if data.len() > 160 {
            let mut cut = 160;
            while !data.is_char_boundary(cut) {
                cut -= 1;
            }
            data.truncate(cut);
            data.push('…');
        }
        writeln!(
            out,
            "{} {:<5} {:<20} {:<28} {:<16} {}",
            e["time"].as_str().unwrap_or("?"),
            e["seq"],
            e["event"].as_str().unwrap_or("?"),
            e["actor"].as_str().unwrap_or("-"),
            e["job"].as_str().unwrap_or("-"),
            if e["event"] == "anchor" {
                String::new()
            } else {
                data
            }
        )?;
    }
    Ok(())
}

fn verify(cli: &Cli, j: &JsonArgs) -> anyhow::Result<()> {
    super::local_only(cli, "audit verify")?;
    let path = audit::path(&super::state(cli));
    let file = std::fs::File::open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the audit log {}: {e}", path.display()))?;
    let report = audit::verify::verify(std::io::BufReader::new(file))?;
    if j.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for p in &report.problems {
            println!("line {}: {}", p.line, p.why);
        }
    }
    if report.problems.is_empty() {
        eprintln!(
            "attache: the audit log {} is intact: {} lines, head {}",
            path.display(),
            report.lines,
            report.head.as_deref().unwrap_or("-")
        );
        Ok(())
    } else {
        let lines: Vec<String> = report.problems.iter().map(|p| p.line.to_string()).collect();
        anyhow::bail!(
            "the audit log {} is not intact: its chain breaks at line {}",
            path.display(),
            lines.join(", ")
        )
    }
}
