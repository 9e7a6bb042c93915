//! `guest-runner backup`: runs the plugin's backup into a stream.

use guest_runner::runtime::{RunnerError, Running, Sink, State};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use guest_runner::stream::{Header, ItemRecord, StreamWriter};

use super::prepare;
use crate::io::open_output;
use crate::options::{BackupArgs, Cli};

pub fn run(cli: &Cli, a: &BackupArgs) -> anyhow::Result<()> {
    let p = prepare(cli, &a.plugin)?;
    let grants = cli.grants(&a.grant_read, None);
    grants.check(&p.info)?;
    let limits = cli.limits();
    let header = Header {
        format: 1,
        plugin: p.info.name.clone(),
        plugin_version: p.info.version.clone(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    let writer = StreamWriter::new(open_output(&a.output)?, &header)?;
    let previous = load_previous(a.previous.as_deref())?;
    let state =
        State::new(&a.plugin, grants.wasi()?, limits.memory).with_sink(Sink::new(writer, previous));
    let mut run = Running::start(&p.sandbox, &p.component, state, limits)?;

    let request = guest_runner::runtime::BackupRequest {
        selection: a.select.clone(),
        options: a.options.clone(),
    };
    let quiesced = if a.quiesce && p.info.supports_quiesce {
        run.quiesce(&a.select, &a.options)?;
        true
    } else {
        if a.quiesce {
            tracing::warn!(
                plugin = a.plugin.as_str(),
                "the plugin has no quiesce; backing up without it"
            );
        }
        false
    };
    let result = run.backup(&request);
    if quiesced {
        if let Err(e) = run.thaw() {
            tracing::error!("thaw failed: {e}");
            result.as_ref().map_err(|_| ()).ok();
            if result.is_ok() {
                return Err(e.into());
            }
        }
    }
    let summary = result?;
    let sink = run
        .state()
        .take_sink()
        .ok_or_else(|| RunnerError::Other("the sink disappeared".into()))?;
    // No trailer on failure: the stream then reads as incomplete.
    let writer = sink.into_writer().map_err(RunnerError::Output)?;
    let (_, totals) = writer.finish()?;
    tracing::info!(
        items = totals.items,
        bytes = totals.bytes,
        warnings = totals.warnings,
        plugin_items = summary.items,
        "backup complete"
    );
    Ok(())
}

/// Reads the previous backup's catalog (JSON lines of item records).
fn load_previous(path: Option<&Path>) -> anyhow::Result<HashMap<String, ItemRecord>> {
    let mut map = HashMap::new();
    let Some(path) = path else { return Ok(map) };
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open previous catalog {}", path.display()))?;
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        let r: ItemRecord = serde_json::from_str(&line)
            .with_context(|| format!("previous catalog {}, line {}", path.display(), n + 1))?;
        map.insert(r.id.clone(), r);
    }
    Ok(map)
}
