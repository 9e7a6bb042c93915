//! `guest-runner backup`: runs the plugin's backup into a stream.

use guest_runner::runtime::{RunnerError, Running, Sink, State};
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};

use anyhow::Context;
use guest_runner::channel;
use guest_runner::stream::{Header, ItemRecord, StreamWriter};

use super::prepare;
use crate::io::{open_channel, open_output};
use crate::options::{BackupArgs, Cli};

pub fn run(cli: &Cli, a: &BackupArgs) -> anyhow::Result<()> {
    let p = prepare(cli, &a.plugin)?;
    let mut read = a.grant_read.clone();
    if a.grant_selected {
        read.extend(selected_grants(&a.select));
    }
    let grants = cli.grants(&read, None);
    grants.check(&p.info)?;
    let limits = cli.limits();
    let options = crate::options::all_options(&a.options, &a.option_env);
    let header = Header {
        format: 1,
        plugin: p.info.name.clone(),
        plugin_version: p.info.version.clone(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    // Where the stream goes and where the previous catalog comes from: the
    // server's data channel, or a file and an output.
    let mut channel = match (&a.channel.channel, &a.channel.session) {
        (Some(path), Some(session)) => Some(open_channel(path, session)?),
        _ => None,
    };
    let previous =
        match channel.as_mut() {
            Some(ch) => {
                let len = channel::read_previous_len(&mut ch.reader)
                    .context("reading the previous catalog from the data channel")?;
                load_previous(
                    (&mut ch.reader).take(len),
                    "the previous catalog from the data channel",
                )?
            }
            None => match &a.previous {
                Some(path) => load_previous(
                    std::io::BufReader::new(std::fs::File::open(path).with_context(|| {
                        format!("cannot open previous catalog {}", path.display())
                    })?),
                    &format!("previous catalog {}", path.display()),
                )?,
                None => HashMap::new(),
            },
        };

    let state = State::new(&a.plugin, grants.wasi()?, limits.memory);
    let mut run = Running::start(&p.sandbox, &p.component, state, limits)?;
    let quiesced = if a.quiesce && p.info.supports_quiesce {
        run.quiesce(&a.select, &options)?;
        true
    } else {
        if a.quiesce {
            tracing::info!(
                plugin = a.plugin.as_str(),
                "the plugin has no quiesce; backing up without it"
            );
        }
        false
    };
    let out: Box<dyn Write + Send> = match channel {
        Some(mut ch) => {
            if a.fsfreeze {
                ch.writer.write_all(&[channel::PHASE_FREEZE])?;
                ch.writer.flush()?;
                let mut ack = [0u8; 1];
                ch.reader
                    .read_exact(&mut ack)
                    .context("waiting for the server to freeze the filesystems")?;
                match ack[0] {
                    channel::ACK_FROZEN => tracing::info!("filesystems frozen"),
                    channel::ACK_NOT_FROZEN => {
                        tracing::warn!("the server could not freeze the filesystems")
                    }
                    other => anyhow::bail!("unexpected freeze answer {other:#04x}"),
                }
            }
            ch.writer.write_all(&[channel::PHASE_STREAM])?;
            Box::new(ch.writer)
        }
        None => open_output(&a.output)?,
    };
    run.state()
        .set_sink(Sink::new(StreamWriter::new(out, &header)?, previous));

    let request = guest_runner::runtime::BackupRequest {
        selection: a.select.clone(),
        options,
    };
    let result = run.backup(&request);
    if quiesced {
        if let Err(e) = run.thaw() {
            tracing::error!("thaw failed: {e}");
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

/// Reads a previous backup's catalog (JSON lines of item records).
fn load_previous(r: impl Read, what: &str) -> anyhow::Result<HashMap<String, ItemRecord>> {
    let mut map = HashMap::new();
    for (n, line) in std::io::BufReader::new(r).lines().enumerate() {
        let line = line.with_context(|| format!("reading {what}"))?;
        let r: ItemRecord =
            serde_json::from_str(&line).with_context(|| format!("{what}, line {}", n + 1))?;
        map.insert(r.id.clone(), r);
    }
    Ok(map)
}

/// The directories the selection needs (see `guest_runner::selection`).
fn selected_grants(select: &[String]) -> Vec<std::path::PathBuf> {
    let mut out: Vec<std::path::PathBuf> = select
        .iter()
        .filter_map(|s| guest_runner::selection::read_grant(s))
        .collect();
    out.sort();
    out.dedup();
    out
}
