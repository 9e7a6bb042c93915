//! A restore: the selected items of a snapshot go to the agent, which
//! recreates them through the plugin.

use std::borrow::Cow;
use std::io::{BufWriter, Read};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context as _};
use serde::Serialize;

use super::plugin::{checked_plan, RunnerAccess};
use super::{Context, Control, RestoreRequest};
use crate::hypervisor::session::Session;
use crate::repo::{is_at_or_below, write_restore_stream, Sent};
use crate::store::lock::Lock;
use crate::store::snapshot::{SnapshotInfo, StoredItem};
use crate::target::{self, RestoreTo};

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Restored {
    pub snapshot: String,
    pub items: u64,
    pub to: PathBuf,
    /// Items the snapshot could not restore (a dangling hard link), each
    /// with why; the rest was restored.
    pub warnings: Vec<String>,
    /// The agent's report (items, refused and warnings), as it printed it.
    pub report: serde_json::Value,
}

/// Runs a restore, recorded in the audit log with its destination.
pub(crate) fn run(
    ctx: &Context,
    a: &RestoreRequest,
    ctl: &Control<'_>,
) -> anyhow::Result<Restored> {
    let mut shown = a.clone();
    super::redact(&mut shown.app_password, &mut shown.options);
    super::audited(ctx, "restore", serde_json::to_value(&shown)?, |ctx| {
        run_audited(ctx, a, ctl)
    })
}

fn run_audited(ctx: &Context, a: &RestoreRequest, ctl: &Control<'_>) -> anyhow::Result<Restored> {
    ctx.audit.defer(
        "restore.destination",
        serde_json::json!({
            "snapshot": a.snapshot,
            "items": a.items,
            "to": a.to,
            "as": a.rename_to,
            "overwrite": a.overwrite,
        }),
    )?;
    // To disk while the repository opens.
    ctx.audit.sync_ahead();
    // Inside the server's job span when there is one; the plugin is the
    // snapshot's, recorded once it is read.
    let span = tracing::info_span!(
        "restore",
        snapshot = %a.snapshot,
        to = %a.to,
        plugin = tracing::field::Empty
    );
    let _span = span.enter();
    let to = target::restore_to(&a.to)?;
    // The item list is read from the catalog while the key is derived.
    let (repo, ahead) = std::thread::scope(|s| {
        let ahead = s.spawn(|| crate::repo::read_items_ahead(&ctx.repo, &ctx.cache, &a.snapshot));
        let repo = ctx.repository(false);
        (repo, ahead.join().ok().flatten())
    });
    let repo = repo?;
    let snap = repo.find_snapshot(&a.snapshot)?;
    span.record("plugin", snap.plugin.as_str());
    // Shared: prune waits until the restore has read what it needs.
    let _lock = Lock::acquire(&repo.store, false, "restore")?;
    let all = repo.items_with(&snap, ahead)?;
    let selected = select(&snap, &all, &a.items)?;
    let rename = match (&a.rename_to, a.items.as_slice()) {
        (None, _) => None,
        (Some(new), [old]) => Some(format!("{old}={new}")),
        (Some(_), _) => bail!("restoring under another id (`as`) takes exactly one item"),
    };
    let password = super::app_password(&a.app_password, &a.app_password_file)?;
    let limits = guest_runner::policy::JobLimits {
        memory_mib: a.memory_limit_mib,
        deadline_secs: a.deadline_secs,
    };
    let access = RunnerAccess::new(ctx, &a.options, password.as_deref(), limits)?;
    ctx.audit
        .defer("plugin.grants", super::grants(ctx, &snap.plugin, &limits))?;
    // On disk before the runner starts.
    ctx.audit.sync()?;
    let select_args = select_args(&selected, rename.as_deref());
    // The runner's command, the same here and in a VM but for the target.
    let runner_args = |target: &str| {
        let mut args: Vec<String> = vec![
            "restore".into(),
            "--plugin".into(),
            snap.plugin.clone(),
            "--target".into(),
            target.into(),
        ];
        if a.overwrite {
            args.push("--overwrite".into());
        }
        args.extend(select_args.iter().cloned());
        args.extend(access.args.iter().cloned());
        args
    };
    let (dir, status_ok, status, sent, report) = match &to {
        RestoreTo::Vm { vm, dir } => {
            let guest_dir = dir.clone().unwrap_or_else(|| "/".into());
            // The plan is checked here, before anything is attached; the
            // runner in the guest checks it again.
            let mut plan_args = vec![
                "--operation".to_owned(),
                "restore".to_owned(),
                "--target".to_owned(),
                guest_dir.clone(),
            ];
            plan_args.extend(select_args.iter().cloned());
            let plan = checked_plan(ctx, &snap.plugin, &access, &plan_args)
                .with_context(|| format!("restore into {vm} refused"))?;
            ctx.audit.defer(
                "plugin.plan",
                serde_json::json!({ "plugin": snap.plugin, "vm": vm.to_string(), "plan": plan }),
            )?;
            let mut session = Session::open(ctx, vm)?;
            if guest_dir != "/" {
                session.make_dir(&guest_dir)?;
            }
            let opts = crate::hypervisor::session::RunOptions {
                fsfreeze: None,
                timeout: a.timeout_secs.map(std::time::Duration::from_secs),
                env: access.env_assignments(),
            };
            let r = session.restore(&runner_args(&guest_dir), &opts, ctl.cancel, |w| {
                write_restore_stream(&repo.store, &snap, &all, &selected, w, ctl)
            });
            let closed = session.close();
            let (sent, outcome) = r.with_context(|| format!("restore into {vm} failed"))?;
            closed?;
            (
                PathBuf::from(format!("{vm}:{guest_dir}")),
                outcome.exited.success(),
                format!("exit {}", outcome.exited.code),
                Ok(sent),
                String::from_utf8_lossy(&outcome.exited.stdout).into_owned(),
            )
        }
        RestoreTo::LocalOriginal | RestoreTo::LocalDir(_) => {
            let dir: PathBuf = match &to {
                RestoreTo::LocalDir(d) => {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("cannot create {}", d.display()))?;
                    std::path::absolute(d)?
                }
                _ => "/".into(),
            };
            let target = dir
                .to_str()
                .with_context(|| format!("{} is not valid UTF-8", dir.display()))?;
            let (ok, status, sent, report) = local(
                ctx,
                &repo,
                &snap,
                &all,
                &selected,
                runner_args(target),
                &access,
                a.timeout_secs.map(std::time::Duration::from_secs),
                ctl,
            )?;
            (dir, ok, status, sent, report)
        }
    };
    let report: serde_json::Value =
        serde_json::from_str(&report).unwrap_or(serde_json::Value::Null);
    let problems = problems(&sent, &report);
    if ctl.cancelled() {
        bail!("cancelled");
    }
    if !status_ok || !problems.is_empty() {
        // A runner that stopped says why; the stream it no longer read
        // (a broken pipe) is a consequence, not a second cause.
        let sent_err = match &sent {
            Err(e) if status_ok => format!("{e:#}\n"),
            _ => String::new(),
        };
        bail!(
            "restore failed (runner: {status}):\n{sent_err}{}",
            problems.join("\n")
        );
    }
    let sent = sent.context("sending the restore stream")?;
    let warnings: Vec<String> = sent
        .skipped
        .iter()
        .map(|(id, why)| format!("not restored: {id}: {why}"))
        .collect();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(Restored {
        snapshot: snap.id,
        items: sent.items,
        warnings,
        to: dir,
        report,
    })
}

/// The size asked for the pipe to the runner.
const PIPE_SIZE: usize = 1 << 20;
/// The items of `all` to restore: each wanted item with everything below
/// it, or all of them when none is named (then `all` itself, not a copy:
/// issue 12); a wanted item the snapshot does not hold is an error.
fn select<'a>(
    snap: &SnapshotInfo,
    all: &'a [StoredItem],
    wanted: &[String],
) -> anyhow::Result<Cow<'a, [StoredItem]>> {
    if wanted.is_empty() {
        return Ok(Cow::Borrowed(all));
    }
    for want in wanted {
        if !all.iter().any(|i| is_at_or_below(&i.record.id, want)) {
            bail!("snapshot {} has no item {want:?}", snap.short_id());
        }
    }
    Ok(Cow::Owned(
        all.iter()
            .filter(|i| wanted.iter().any(|w| is_at_or_below(&i.record.id, w)))
            .cloned()
            .collect(),
    ))
}

/// The runner's selection arguments: what the plugin plans for are the top
/// items (those below no other selected item), with their kinds from the
/// catalog, and the rename if there is one.
fn select_args(selected: &[StoredItem], rename: Option<&str>) -> Vec<String> {
    let tops = selected.iter().filter(|i| {
        !selected
            .iter()
            .any(|o| o.record.id != i.record.id && is_at_or_below(&i.record.id, &o.record.id))
    });
    let mut args: Vec<String> = Vec::new();
    for t in tops {
        args.extend([
            "--select".into(),
            t.record.id.clone(),
            "--select-kind".into(),
            format!("{}={}", t.record.id, t.record.kind.as_str()),
        ]);
    }
    if let Some(r) = rename {
        args.extend(["--rename".into(), r.to_owned()]);
    }
    args
}

/// What went wrong with items: those the stream could not send, and those
/// the runner's report refused or warned about.
fn problems(sent: &anyhow::Result<Sent>, report: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    if let Ok(sent) = sent {
        for (id, why) in &sent.failed {
            problems.push(format!("not restored: {id}: {why}"));
        }
    }
    for kind in ["refused", "warnings"] {
        for n in report[kind].as_array().into_iter().flatten() {
            problems.push(format!(
                "{}: {}: {}",
                kind.trim_end_matches('s'),
                n["id"].as_str().unwrap_or("?"),
                n["message"].as_str().unwrap_or("?")
            ));
        }
    }
    problems
}

/// A restore on this machine: the container's runner runs here with
/// `args` (its command) and `access`. Past `timeout`, or when the job is
/// cancelled, the runner is killed, even when it stalls, and the job fails.
#[allow(
    clippy::too_many_arguments,
    reason = "each is one part of the job; see issue 16 item 5"
)]
fn local(
    ctx: &Context,
    repo: &crate::repo::Repository,
    snap: &SnapshotInfo,
    all: &[StoredItem],
    selected: &[StoredItem],
    args: Vec<String>,
    access: &RunnerAccess,
    timeout: Option<std::time::Duration>,
    ctl: &Control<'_>,
) -> anyhow::Result<(bool, String, anyhow::Result<Sent>, String)> {
    let runner = ctx.runner()?;
    let mut cmd = runner.command();
    cmd.args(args)
        .args(["--input", "-"])
        .envs(access.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start the runner")?;
    let mut stdout = child.stdout.take().context("runner has no stdout")?;
    let tail = crate::agent::StderrTail::capture(&mut child);
    let report = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let stdin = child.stdin.take().context("runner has no stdin")?;
    // A pipe of 1 MiB (Linux's default limit for a user) instead of 64 KiB:
    // the runner then reads in large pieces, and one of our writes holds
    // several chunks, so that decoding here overlaps with its work there.
    // A smaller pipe only costs speed.
    if let Err(e) = rustix::pipe::fcntl_setpipe_size(&stdin, PIPE_SIZE) {
        tracing::debug!("the runner's input pipe keeps its size: {e}");
    }
    let child = std::sync::Mutex::new(child);
    let (sent, status, stopped) = std::thread::scope(|s| {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let dog = s.spawn(|| super::watchdog::watch(&child, timeout, ctl.cancel, wait));
        let sent = write_restore_stream(
            &repo.store,
            snap,
            all,
            selected,
            BufWriter::with_capacity(1 << 20, stdin),
            ctl,
        );
        if sent.is_err() {
            let _ = super::watchdog::lock(&child).kill();
        }
        let status = super::watchdog::wait(&child);
        drop(done);
        (sent, status, dog.join().unwrap_or(None))
    });
    let status = status?;
    let tail = tail.finish();
    if let Some(why) = stopped {
        anyhow::bail!("restore failed: {why}");
    }
    let report = report
        .join()
        .map_err(|_| anyhow::anyhow!("report reader panicked"))??;
    // A failed runner's own words say why.
    let described = if status.success() {
        status.to_string()
    } else {
        format!("{status}: {}", super::plugin::runner_error(tail.as_bytes()))
    };
    Ok((status.success(), described, sent, report))
}
