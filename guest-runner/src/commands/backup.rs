//! `guest-runner backup`: runs the plugin's backup into a stream.

use guest_runner::runtime::{Operation, PlanRequest, Previous, RunnerError, Running, Sink, State};
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};

use anyhow::Context;
use guest_runner::channel;
use guest_runner::freeze::{self, FreezeWatchdog};
use guest_runner::stream::{Header, ItemRecord, StreamWriter};
use std::time::{Duration, Instant};

use super::{prepare, selected, Job, Prepared};
use crate::io::{open_channel, open_output};
use crate::options::{BackupArgs, Cli};

pub(crate) fn run(cli: &Cli, a: &BackupArgs) -> anyhow::Result<()> {
    let _span = tracing::info_span!("backup", plugin = %a.plugin).entered();
    let p = prepare(cli, &a.plugin)?;
    let request = PlanRequest {
        operation: Operation::Backup,
        selection: selected(&a.select, &[])?,
        destination: None,
        options: crate::options::all_options(&a.options, &a.option_env),
    };
    let job = p.job(cli, &request, None)?;
    let options = job.options.clone();
    let limits = job.limits;
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
    // The previous catalog is read on a thread of its own while the plugin
    // is instantiated. From a file (a local backup) it goes on arriving
    // while the plugin walks (see `Previous`); from the data channel, which
    // has more to say afterwards, or when the plugin quiesces, it is read
    // whole first, so that what quiesce holds is held no longer.
    let quiescing = a.quiesce && p.info.supports_quiesce;
    let (previous, run) = match (&channel, &a.previous) {
        (None, Some(path)) if !quiescing => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open previous catalog {}", path.display()))?;
            let (previous, feed) = Previous::arriving();
            let what = format!("previous catalog {}", path.display());
            std::thread::Builder::new()
                .name("previous".into())
                .spawn(move || {
                    let mut batch = Vec::new();
                    let mut taken = true;
                    let r = read_previous(file, &what, &mut |rec, more_buffered| {
                        batch.push(rec);
                        // Before a read that may wait: what is read so far
                        // goes to the lookups. Once nothing takes it (the
                        // backup ended), reading stops.
                        if !more_buffered || batch.len() >= 1024 {
                            taken = feed.add(std::mem::take(&mut batch));
                        }
                        taken
                    });
                    if taken && feed.add(batch) {
                        feed.end(r.map_err(|e| format!("{e:#}")));
                    }
                })
                .context("starting the previous catalog's reader")?;
            let state = State::granted(&a.plugin, &job.grants, limits.memory)?;
            (
                previous,
                Running::start(&p.sandbox, &p.component, state, limits)?,
            )
        }
        _ => std::thread::scope(|s| {
            let reader = channel.as_mut().map(|ch| &mut ch.reader);
            let loading = s.spawn(move || -> anyhow::Result<HashMap<String, ItemRecord>> {
                match reader {
                    Some(reader) => {
                        let len = channel::read_previous_len(reader)
                            .context("reading the previous catalog from the data channel")?;
                        load_previous(
                            reader.take(len),
                            "the previous catalog from the data channel",
                        )
                    }
                    None => match &a.previous {
                        Some(path) => load_previous(
                            std::fs::File::open(path).with_context(|| {
                                format!("cannot open previous catalog {}", path.display())
                            })?,
                            &format!("previous catalog {}", path.display()),
                        ),
                        None => Ok(HashMap::new()),
                    },
                }
            });
            let run = State::granted(&a.plugin, &job.grants, limits.memory)
                .and_then(|state| Running::start(&p.sandbox, &p.component, state, limits));
            let previous = loading
                .join()
                .map_err(|_| anyhow::anyhow!("reading the previous catalog panicked"))?;
            anyhow::Ok((Previous::complete(previous?), run?))
        })?,
    };
    let mut run = run;
    let quiesced = if a.quiesce && p.info.supports_quiesce {
        Some(run.quiesce(&a.select, &options)?)
    } else {
        if a.quiesce {
            tracing::info!(
                plugin = a.plugin.as_str(),
                "the plugin has no quiesce; backing up without it"
            );
        }
        None
    };
    if a.fail_after_quiesce {
        let state = quiesced.as_deref().unwrap_or_default();
        let name = run.name().to_owned();
        drop(run);
        let limits = guest_runner::runtime::Limits {
            deadline: guest_runner::runtime::THAW_DEADLINE.max(job.limits.quiesce),
            ..job.limits
        };
        let fresh = State::granted(&name, &job.grants, limits.memory)?;
        let mut fresh = Running::start(&p.sandbox, &p.component, fresh, limits)?;
        if quiesced.is_some() {
            fresh.thaw(state, &job.options)?;
        }
        println!(
            "{}",
            serde_json::json!({ "quiesced": quiesced.is_some(), "thawed_in_fresh_instance": quiesced.is_some() })
        );
        return Ok(());
    }
    // Set once the server has frozen the guest's filesystems: the runner
    // does not exit before the server says it thawed them, or the watchdog
    // has thawed them at the bound.
    let mut watchdog: Option<FreezeWatchdog> = None;
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
                    channel::ACK_FROZEN => {
                        tracing::info!("filesystems frozen");
                        let bound = Duration::from_secs(a.freeze_limit_secs) + freeze::GRACE;
                        let w = FreezeWatchdog::start(Instant::now() + bound);
                        let release = w.releaser();
                        let mut reader = ch.reader;
                        // The server's only later word on the channel: thawed.
                        std::thread::spawn(move || {
                            let mut b = [0u8; 1];
                            while reader.read_exact(&mut b).is_ok() {
                                if b[0] == channel::ACK_THAWED {
                                    release();
                                    break;
                                }
                            }
                        });
                        watchdog = Some(w);
                    }
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
    let result = (|| -> anyhow::Result<()> {
        run.state()
            .set_sink(Sink::new(StreamWriter::new(out, &header)?, previous));

        let request = guest_runner::runtime::BackupRequest {
            selection: a.select.clone(),
            options,
        };
        let result = run.backup(&request);
        if let Some(state) = &quiesced {
            if let Err(e) = thaw(&p, &job, &mut run, state) {
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
        // No trailer either when the previous catalog turned out unreadable
        // after the plugin had what it needed from it.
        let previous = sink.previous();
        previous
            .finished()
            .map_err(|e| anyhow::anyhow!("reading the previous catalog: {e}"))?;
        // No trailer on failure: the stream then reads as incomplete.
        let writer = sink.into_writer().map_err(RunnerError::Output)?;
        let (_, totals) = writer.finish()?;
        drop(previous);
        tracing::info!(
            items = totals.items,
            bytes = totals.bytes,
            warnings = totals.warnings,
            plugin_items = summary.items,
            "backup complete"
        );
        Ok(())
    })();
    if let Some(w) = watchdog {
        w.wait();
    }
    result
}

/// Reads a previous backup's catalog (JSON lines of item records).
fn load_previous(r: impl Read, what: &str) -> anyhow::Result<HashMap<String, ItemRecord>> {
    let mut map = HashMap::new();
    read_previous(r, what, &mut |rec, _| {
        map.insert(rec.id.clone(), rec);
        true
    })?;
    Ok(map)
}

/// Reads a previous backup's catalog, handing `each` every record and
/// whether more are already buffered (when not, the next read may wait),
/// until `each` says to stop (`false`).
fn read_previous(
    r: impl Read,
    what: &str,
    each: &mut dyn FnMut(ItemRecord, bool) -> bool,
) -> anyhow::Result<()> {
    let mut r = std::io::BufReader::with_capacity(256 << 10, r);
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        if r.read_until(b'\n', &mut line)
            .with_context(|| format!("reading {what}"))?
            == 0
        {
            break;
        }
        let rec: ItemRecord =
            serde_json::from_slice(&line).with_context(|| format!("{what}, line {n}"))?;
        if !each(rec, !r.buffer().is_empty()) {
            break;
        }
    }
    Ok(())
}

/// Thaws what quiesce holds: in the instance that quiesced, or, when that
/// one has trapped (a panic, its memory limit, its deadline), in a fresh
/// instance with the same grants that gets the state quiesce returned.
fn thaw(p: &Prepared, job: &Job, run: &mut Running, state: &str) -> Result<(), RunnerError> {
    if !run.poisoned() {
        match run.thaw(state, &job.options) {
            Err(e) if run.poisoned() => {
                tracing::warn!("thaw trapped ({e}); thawing in a fresh instance")
            }
            other => return other,
        }
    } else {
        tracing::warn!(
            plugin = run.name(),
            "the plugin stopped after quiesce; thawing in a fresh instance"
        );
    }
    let limits = guest_runner::runtime::Limits {
        deadline: guest_runner::runtime::THAW_DEADLINE.max(job.limits.quiesce),
        ..job.limits
    };
    let fresh = State::granted(run.name(), &job.grants, limits.memory)?;
    let mut fresh = Running::start(&p.sandbox, &p.component, fresh, limits)?;
    fresh.thaw(state, &job.options)?;
    tracing::info!(plugin = run.name(), "thawed in a fresh instance");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::load_previous;

    #[test]
    fn previous_catalog_lines() {
        let text = concat!(
            r#"{"id":"/a","kind":"file","size":3,"change_token":"t1"}"#,
            "\n",
            r#"{"id":"/b","kind":"directory","size":0}"#
        );
        let map = load_previous(text.as_bytes(), "test").unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map["/a"].change_token.as_deref(), Some("t1"));
        assert_eq!(map["/b"].size, 0);
        assert!(load_previous(&b""[..], "test").unwrap().is_empty());

        let bad = format!("{}\nnot json\n", r#"{"id":"/a","kind":"file","size":3}"#);
        let e = load_previous(bad.as_bytes(), "the catalog").unwrap_err();
        assert!(format!("{e:#}").contains("the catalog, line 2"), "{e:#}");
    }
}
