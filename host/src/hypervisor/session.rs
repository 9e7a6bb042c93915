//! One job's visit to a VM: lock the VM, undo what earlier jobs left, put
//! the container on a datastore, write the journal, attach, mount, run the
//! runner with its data over the VM's data port, and undo it all again —
//! on success, on failure, and (through the journal) after a crash.

use std::io::{BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use guest_runner::channel;

use super::agent::{Agent, Exited};
use super::guest;
use super::journal::{Entry, Journal};
use super::lockfile::Held;
use super::registry::Registry;
use super::vm::{Attachment, Vm, VmHandle};
use super::{datastore, VmRef};
use crate::jobs::Context;

/// How long the guest agent may take to answer one command.
const AGENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the runner's status is asked for.
const POLL: Duration = Duration::from_millis(50);
/// Unanswered status polls in a row before the agent counts as gone.
const AGENT_MISSES: u32 = 3;
/// How long one status poll may wait for the agent.
const AGENT_STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a runner may take from its start to its hello on the data
/// channel. It says hello as it starts, before it loads any plugin; a
/// runner stopped or stuck before that would otherwise hold a job with no
/// `--timeout` forever. (After the hello, how long a job may run is the
/// job's timeout: a restore's last statements may run long.)
const HELLO_BOUND: Duration = Duration::from_secs(120);

/// Options of a job's run in the guest.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunOptions {
    /// Freeze the guest's filesystems (guest agent) once the plugin has
    /// quiesced the application, for at most this long.
    pub fsfreeze: Option<Duration>,
    /// Fail the job (and clean up) when the runner has not finished by then.
    pub timeout: Option<Duration>,
    /// Environment variables for the runner (`NAME=VALUE`).
    pub env: Vec<String>,
}

/// An open session: the container is attached and mounted in the guest.
pub(crate) struct Session {
    pub vm_ref: VmRef,
    vm: Vm,
    journal: Journal,
    entry: Entry,
    agent: Arc<Mutex<Agent>>,
    /// The container's version.
    pub container: String,
    closed: bool,
    /// Records the attach, the detach and every guest command.
    audit: crate::audit::Audit,
    _lock: Held,
}

/// What a run's threads share.
#[derive(Default)]
struct Shared {
    /// The stream has ended (read to its trailer, or failed).
    stream_done: AtomicBool,
    /// The runner's hello has been read.
    hello: AtomicBool,
    /// While the guest's filesystems are frozen: when to thaw at the latest.
    frozen_until: Mutex<Option<Instant>>,
    notes: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The watcher's loop (see `Session::watcher`).
/// When the watcher gives up on a runner.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    /// The job's timeout: when it is up, and how long it was.
    deadline: Option<(Instant, Duration)>,
    /// From the runner's start to its hello (`HELLO_BOUND`).
    hello: Duration,
}

fn watch(
    agent: &Mutex<Agent>,
    sock: &UnixStream,
    pid: i64,
    shared: &Shared,
    cancel: &AtomicBool,
    bounds: Bounds,
    vm: &str,
) -> Result<Exited, String> {
    let Bounds {
        deadline,
        hello: hello_bound,
    } = bounds;
    let end_stream = || {
        let _ = sock.shutdown(Shutdown::Both);
    };
    let started = Instant::now();
    let mut misses = 0;
    let mut exited_ok_at: Option<(Instant, Exited)> = None;
    loop {
        std::thread::sleep(POLL);
        if cancel.load(Ordering::Relaxed) {
            end_stream();
            return Err("cancelled".into());
        }
        if let Some((at, limit)) = deadline {
            if Instant::now() >= at {
                end_stream();
                return Err(format!(
                    "the job on {vm} timed out: the runner had not finished after {} s",
                    limit.as_secs()
                ));
            }
        }
        let overdue = lock(&shared.frozen_until).is_some_and(|t| Instant::now() >= t);
        if overdue {
            lock(&shared.frozen_until).take();
            let r = lock(agent).call("guest-fsfreeze-thaw", serde_json::json!({}));
            let note = format!(
                "the guest's filesystems were thawed at the freeze bound, before the stream ended{}",
                r.err().map(|e| format!(" (thaw: {e})")).unwrap_or_default()
            );
            tracing::warn!(vm, "{note}");
            lock(&shared.notes).push(note);
        }
        // A runner that exited cleanly has sent everything: let the reader
        // drain what is still in flight before giving up on the stream.
        if let Some((at, exited)) = &exited_ok_at {
            if shared.stream_done.load(Ordering::SeqCst) {
                return Ok(exited.clone());
            }
            if at.elapsed() > Duration::from_secs(30) {
                end_stream();
                return Ok(exited.clone());
            }
            continue;
        }
        let status = lock(agent).status_with(pid, AGENT_STATUS_TIMEOUT);
        match status {
            Ok(Some(exited)) if exited.success() => exited_ok_at = Some((Instant::now(), exited)),
            Ok(Some(exited)) => {
                end_stream();
                return Ok(exited);
            }
            Ok(None) => {
                misses = 0;
                let silent = !shared.hello.load(Ordering::SeqCst)
                    && !shared.stream_done.load(Ordering::SeqCst)
                    && started.elapsed() >= hello_bound;
                if silent {
                    end_stream();
                    return Err(format!(
                        "the runner in {vm} had not said hello on the data channel {} s after \
                         it was started (stopped, or stuck before it opened the channel)",
                        hello_bound.as_secs()
                    ));
                }
            }
            Err(e) if e.is_disabled() => misses = 0,
            Err(e) => {
                misses += 1;
                tracing::warn!(vm, "asking for the runner's status: {e}");
                if misses >= AGENT_MISSES {
                    end_stream();
                    return Err(format!(
                        "the guest agent of {vm} stopped answering while the runner ran: {e}"
                    ));
                }
            }
        }
    }
}

/// What the runner did in the guest.
#[derive(Debug, Clone)]
pub(crate) struct RunnerOutcome {
    pub exited: Exited,
    /// Warnings about the run (a freeze cut short, ...).
    pub notes: Vec<String>,
}

fn session_id() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    crate::store::crypto::random(&mut b)?;
    Ok(hex::encode(b))
}

impl Session {
    /// Opens a session on `vm_ref`: on return the container is attached and
    /// mounted; on error nothing is left attached or mounted.
    pub(crate) fn open(ctx: &Context, vm_ref: &VmRef) -> anyhow::Result<Self> {
        let registry = Registry::for_context(ctx)?;
        let journal = Journal::for_context(ctx);
        let hv = registry.get(&vm_ref.hypervisor)?;
        let vm = hv.vm(&vm_ref.vm)?;
        let lock = journal.lock_vm(vm_ref)?;
        for r in journal.recover(Some((vm_ref, &lock)))? {
            if !r.complete {
                tracing::warn!(
                    "an earlier job's cleanup on {vm_ref} is incomplete: {}",
                    r.problems.join("; ")
                );
            }
        }
        // A guest that cannot run anything gets nothing attached.
        let mut agent = vm.agent(AGENT_TIMEOUT).map_err(|e| {
            anyhow!(
                "the guest agent of {vm_ref} does not answer, so nothing can run in the guest: {e}"
            )
        })?;
        let (audit, vm_name) = (ctx.audit.clone(), vm_ref.to_string());
        agent.observe(Box::new(move |argv: &[&str]| {
            audit.note(
                "guest.command",
                serde_json::json!({ "vm": vm_name, "argv": crate::audit::command_args(argv) }),
            )
        }));
        agent
            .call("guest-ping", serde_json::json!({}))
            .with_context(|| format!("the guest agent of {vm_ref}"))?;

        let agent_dir = crate::agent::find(ctx.agent_dir.as_deref())?;
        let session = session_id()?;
        let (entry, built) = {
            // Under the registry lock: a container is built, placed and
            // recorded as in use before any other job or push may remove it.
            let _registry = registry.lock()?;
            let built =
                crate::container::build(&agent_dir, &ctx.cache.join("containers"), &ctx.trust)?;
            let container = datastore::for_vm(&hv, &vm_ref.vm, &built)?;
            let entry = Entry {
                session: session.clone(),
                hypervisor: vm_ref.hypervisor.clone(),
                vm: vm_ref.vm.clone(),
                target: vm.clone(),
                container,
                attachment: Attachment::for_session(&session),
                guest_dir: guest::mount_dir(&session),
                runner_pid: None,
                detached: false,
            };
            journal.write(&entry)?;
            (entry, built)
        };
        let s = Session {
            vm_ref: vm_ref.clone(),
            vm,
            journal,
            entry,
            agent: Arc::new(Mutex::new(agent)),
            container: built.version.clone(),
            closed: false,
            audit: ctx.audit.clone(),
            _lock: lock,
        };
        // What the job recorded (its plan) is on disk before the attach.
        s.audit.sync()?;
        let t = Instant::now();
        s.vm.attach_cd(&s.entry.container, &s.entry.attachment)
            .with_context(|| format!("attaching the container to {vm_ref}"))?;
        s.audit.defer(
            "vm.attach",
            serde_json::json!({
                "vm": vm_ref.to_string(),
                "container": s.container,
                "image": s.entry.container.display().to_string(),
                "session": s.entry.session,
            }),
        )?;
        let label = crate::container::volume_label(&built.version);
        let dev = guest::mount(&mut s.agent(), &s.entry.guest_dir, &label)
            .with_context(|| format!("mounting the container in {vm_ref}"))?;
        tracing::info!(vm = %vm_ref, %dev, ms = t.elapsed().as_millis() as u64, "container attached and mounted");
        Ok(s)
    }

    fn agent(&self) -> std::sync::MutexGuard<'_, Agent> {
        self.agent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a backup: the runner gets `args` (its command and options; the
    /// session and channel are added), `previous` goes to it, and `consume`
    /// reads the stream it sends.
    pub(crate) fn backup<T>(
        &mut self,
        args: &[String],
        previous: Vec<u8>,
        opts: &RunOptions,
        cancel: &AtomicBool,
        consume: impl FnOnce(&mut dyn Read) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, RunnerOutcome)> {
        let t = Instant::now();
        let (sock, pid) = self.start(args, &opts.env)?;
        tracing::info!(vm = %self.vm_ref, pid, ms = t.elapsed().as_millis() as u64, "runner started");
        let shared = Shared::default();
        let session = self.entry.session.clone();
        let (result, watched, thawed) = std::thread::scope(|s| {
            let watcher = self.watcher(&sock, pid, &shared, cancel, opts.timeout, s)?;
            let wsock = sock.try_clone()?;
            s.spawn(move || -> std::io::Result<()> {
                let mut w = std::io::BufWriter::new(wsock);
                w.write_all(&channel::hello(&session).map_err(std::io::Error::other)?)?;
                channel::write_previous(&mut w, &previous)?;
                w.flush()
            });
            let mut reader = BufReader::with_capacity(1 << 20, sock.try_clone()?);
            let result = (|| {
                channel::seek_hello(&mut reader, &self.entry.session)?;
                shared.hello.store(true, Ordering::SeqCst);
                tracing::info!(vm = %self.vm_ref, ms = t.elapsed().as_millis() as u64, "runner's hello");
                while channel::read_phase(&mut reader)? == channel::PHASE_FREEZE {
                    let ack = self.freeze(&shared, opts);
                    (&sock).write_all(&[ack])?;
                }
                consume(&mut reader)
            })();
            shared.stream_done.store(true, Ordering::SeqCst);
            let thawed = self.thaw(&shared);
            if let Ok(true) = thawed {
                // The runner waits for this before it exits; without it by
                // the freeze bound, it thaws the guest itself.
                let _ = (&sock).write_all(&[channel::ACK_THAWED]);
            }
            let watched = watcher
                .join()
                .map_err(|_| anyhow!("the runner's watcher panicked"))?;
            anyhow::Ok((result, watched, thawed))
        })?;
        let _ = sock.shutdown(Shutdown::Both);
        tracing::info!(vm = %self.vm_ref, ms = t.elapsed().as_millis() as u64, "runner done");
        let outcome = self.outcome(watched, &shared)?;
        let value = self.explain(result, &outcome)?;
        thawed?;
        Ok((value, outcome))
    }

    /// Runs a restore: `produce` writes the stream that the runner (given
    /// `args`) reads.
    pub(crate) fn restore<T>(
        &mut self,
        args: &[String],
        opts: &RunOptions,
        cancel: &AtomicBool,
        produce: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, RunnerOutcome)> {
        let (sock, pid) = self.start(args, &opts.env)?;
        let shared = Shared::default();
        let session = self.entry.session.clone();
        let (result, watched, hello) = std::thread::scope(|s| {
            let watcher = self.watcher(&sock, pid, &shared, cancel, opts.timeout, s)?;
            // The runner's hello is read (and checked) on the side.
            let rsock = sock.try_clone()?;
            let said = &shared.hello;
            let hello = s.spawn(move || {
                let mut r = BufReader::new(rsock);
                channel::seek_hello(&mut r, &session)?;
                said.store(true, Ordering::SeqCst);
                Ok::<_, channel::ChannelError>(())
            });
            let result = (|| {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, sock.try_clone()?);
                w.write_all(&channel::hello(&self.entry.session)?)?;
                let v = produce(&mut w)?;
                w.flush()?;
                Ok(v)
            })();
            shared.stream_done.store(true, Ordering::SeqCst);
            let watched = watcher
                .join()
                .map_err(|_| anyhow!("the runner's watcher panicked"))?;
            let _ = sock.shutdown(Shutdown::Both);
            let hello = hello
                .join()
                .map_err(|_| anyhow!("the hello reader panicked"))?;
            anyhow::Ok((result, watched, hello))
        })?;
        let outcome = self.outcome(watched, &shared)?;
        let value = self.explain(result, &outcome)?;
        hello.context("the runner's hello on the data channel")?;
        Ok((value, outcome))
    }

    /// Runs a discovery: the runner (given `args`: `discover`, its plugin,
    /// scope and options) sends its entries back as the channel's reply,
    /// which is returned unparsed but bounded (`channel::MAX_REPLY`): the
    /// caller validates it, as everything from the guest.
    pub(crate) fn discover(
        &mut self,
        args: &[String],
        opts: &RunOptions,
        cancel: &AtomicBool,
    ) -> anyhow::Result<(Vec<u8>, RunnerOutcome)> {
        let t = Instant::now();
        let (sock, pid) = self.start(args, &opts.env)?;
        let shared = Shared::default();
        let session = self.entry.session.clone();
        let (result, watched) = std::thread::scope(|s| {
            let watcher = self.watcher(&sock, pid, &shared, cancel, opts.timeout, s)?;
            let result = (|| {
                (&sock).write_all(&channel::hello(&session)?)?;
                let mut reader = BufReader::new(sock.try_clone()?);
                channel::seek_hello(&mut reader, &session)?;
                shared.hello.store(true, Ordering::SeqCst);
                anyhow::Ok(channel::read_reply(&mut reader)?)
            })();
            shared.stream_done.store(true, Ordering::SeqCst);
            let watched = watcher
                .join()
                .map_err(|_| anyhow!("the runner's watcher panicked"))?;
            anyhow::Ok((result, watched))
        })?;
        let _ = sock.shutdown(Shutdown::Both);
        tracing::info!(vm = %self.vm_ref, ms = t.elapsed().as_millis() as u64, "discovery done");
        let outcome = self.outcome(watched, &shared)?;
        let reply = self.explain(result, &outcome)?;
        Ok((reply, outcome))
    }

    /// Connects the data port and starts the runner; returns its pid.
    fn start(&mut self, args: &[String], env: &[String]) -> anyhow::Result<(UnixStream, i64)> {
        let data = self
            .vm
            .data_channel()
            .with_context(|| format!("the data port of {}", self.vm_ref))?;
        let sock = UnixStream::connect(&data).with_context(|| {
            format!(
                "cannot connect to the data port of {} at {}",
                self.vm_ref,
                data.display()
            )
        })?;
        let mut full: Vec<String> = args.to_vec();
        full.extend(["--session".into(), self.entry.session.clone()]);
        let pid = guest::start_runner(&mut self.agent(), &self.entry.guest_dir, &full, env)
            .with_context(|| format!("starting the runner in {}", self.vm_ref))?;
        self.entry.runner_pid = Some(pid);
        self.journal.write(&self.entry)?;
        Ok((sock, pid))
    }

    /// Starts the thread that watches the runner: it ends a stream whose
    /// runner has died, whose guest agent has gone or whose job is
    /// cancelled, so that no read or write blocks forever; and it thaws
    /// filesystems frozen past their bound.
    fn watcher<'s, 'e>(
        &'s self,
        sock: &UnixStream,
        pid: i64,
        shared: &'s Shared,
        cancel: &'s AtomicBool,
        timeout: Option<Duration>,
        scope: &'s std::thread::Scope<'s, 'e>,
    ) -> anyhow::Result<std::thread::ScopedJoinHandle<'s, Result<Exited, String>>> {
        let sock = sock.try_clone()?;
        let agent = self.agent.clone();
        let vm = self.vm_ref.to_string();
        let deadline = timeout.map(|t| (Instant::now() + t, t));
        Ok(scope.spawn(move || {
            let bounds = Bounds {
                deadline,
                hello: HELLO_BOUND,
            };
            watch(&agent, &sock, pid, shared, cancel, bounds, &vm)
        }))
    }

    fn outcome(
        &self,
        watched: Result<Exited, String>,
        shared: &Shared,
    ) -> anyhow::Result<RunnerOutcome> {
        let notes = std::mem::take(&mut *lock(&shared.notes));
        match watched {
            Ok(exited) => {
                // The runner's own log, into the server's.
                for line in String::from_utf8_lossy(&exited.stderr).lines() {
                    tracing::info!(target: "attache::runner", vm = %self.vm_ref, "{line}");
                }
                Ok(RunnerOutcome { exited, notes })
            }
            Err(why) => bail!("{why}"),
        }
    }

    fn freeze(&self, shared: &Shared, opts: &RunOptions) -> u8 {
        let Some(limit) = opts.fsfreeze else {
            return channel::ACK_NOT_FROZEN;
        };
        let frozen = self.agent().call_with(
            "guest-fsfreeze-freeze",
            serde_json::json!({}),
            Duration::from_secs(60),
        );
        match frozen {
            Ok(n) => {
                tracing::info!(vm = %self.vm_ref, filesystems = %n, "guest filesystems frozen");
                *lock(&shared.frozen_until) = Some(Instant::now() + limit);
                channel::ACK_FROZEN
            }
            Err(e) => {
                let note = format!("the guest's filesystems could not be frozen: {e}");
                tracing::warn!(vm = %self.vm_ref, "{note}");
                lock(&shared.notes).push(note);
                let _ = self
                    .agent()
                    .call("guest-fsfreeze-thaw", serde_json::json!({}));
                channel::ACK_NOT_FROZEN
            }
        }
    }

    /// Thaws what `freeze` froze; whether there was anything to thaw.
    fn thaw(&self, shared: &Shared) -> anyhow::Result<bool> {
        if lock(&shared.frozen_until).take().is_some() {
            self.agent()
                .call("guest-fsfreeze-thaw", serde_json::json!({}))
                .with_context(|| format!("thawing the filesystems of {}", self.vm_ref))?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The job's result, with the runner's own words when it failed.
    fn explain<T>(&self, result: anyhow::Result<T>, o: &RunnerOutcome) -> anyhow::Result<T> {
        match (result, o.exited.success()) {
            (Ok(v), true) => Ok(v),
            (r, _) => {
                let runner = if o.exited.success() {
                    String::new()
                } else {
                    format!(
                        "the runner in {} failed (exit {}{}): {}",
                        self.vm_ref,
                        o.exited.code,
                        o.exited
                            .signal
                            .map(|s| format!(", signal {s}"))
                            .unwrap_or_default(),
                        o.exited.stderr_tail()
                    )
                };
                match r {
                    Ok(_) => bail!("{runner}"),
                    Err(e) if runner.is_empty() => Err(e),
                    Err(e) => Err(e.context(runner)),
                }
            }
        }
    }

    /// Creates directory `dir` in the guest (a restore destination the user
    /// named: it stays).
    pub(crate) fn make_dir(&self, dir: &str) -> anyhow::Result<()> {
        let e = self
            .agent()
            .run(
                &["/bin/sh", "-c", "mkdir -p -- \"$1\"", "attache-mkdir", dir],
                AGENT_TIMEOUT,
            )
            .with_context(|| format!("creating {dir} in {}", self.vm_ref))?;
        if !e.success() {
            bail!(
                "cannot create {dir} in {}: {}",
                self.vm_ref,
                e.stderr_tail()
            );
        }
        Ok(())
    }

    /// Undoes everything in the guest and on the hypervisor. Errors say
    /// what could not be undone; the journal keeps it for a later recovery.
    pub(crate) fn close(mut self) -> anyhow::Result<()> {
        self.closed = true;
        let r = self.revert();
        if r.complete {
            Ok(())
        } else {
            bail!(
                "cleanup of {} is incomplete: {}",
                self.vm_ref,
                r.problems.join("; ")
            )
        }
    }
}

impl Session {
    fn revert(&self) -> super::journal::Recovered {
        let t = Instant::now();
        let mut agent = self.agent();
        let r = self.journal.revert(self.entry.clone(), Some(&mut agent));
        self.audit.note(
            "vm.detach",
            serde_json::json!({
                "vm": self.vm_ref.to_string(),
                "session": self.entry.session,
                "complete": r.complete,
                "problems": r.problems,
            }),
        );
        tracing::info!(vm = %self.vm_ref, ms = t.elapsed().as_millis() as u64, complete = r.complete, "cleaned up");
        r
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.closed {
            self.revert();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::agent::AgentLink;
    use crate::hypervisor::error::DriverError;
    use serde_json::{json, Value};

    /// A guest agent whose runner never exits.
    struct Running;

    impl AgentLink for Running {
        fn call(&mut self, command: &str, _: Value, _: Duration) -> Result<Value, DriverError> {
            assert_eq!(command, "guest-exec-status");
            Ok(json!({ "exited": false }))
        }
    }

    fn agent() -> Mutex<Agent> {
        Mutex::new(Agent::new(Box::new(Running), AGENT_TIMEOUT))
    }

    #[test]
    fn a_runner_that_never_says_hello_ends_the_stream_at_the_bound() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        let (shared, cancel) = (Shared::default(), AtomicBool::new(false));
        let bound = Duration::from_millis(300);
        let t = Instant::now();
        let bounds = Bounds {
            deadline: None,
            hello: bound,
        };
        let err = watch(&agent(), &host, 7, &shared, &cancel, bounds, "hv/vm").unwrap_err();
        assert!(t.elapsed() >= bound, "{:?}", t.elapsed());
        assert!(err.contains("runner in hv/vm had not said hello"), "{err}");
        // The reader blocked on the stream sees its end.
        let mut rest = Vec::new();
        guest.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn a_runner_that_said_hello_is_not_bound_by_it() {
        let (host, _guest) = UnixStream::pair().unwrap();
        let (shared, cancel) = (Shared::default(), AtomicBool::new(false));
        shared.hello.store(true, Ordering::SeqCst);
        let err = std::thread::scope(|s| {
            let w = s.spawn(|| {
                watch(
                    &agent(),
                    &host,
                    7,
                    &shared,
                    &cancel,
                    Bounds {
                        deadline: None,
                        hello: Duration::ZERO,
                    },
                    "hv/vm",
                )
            });
            std::thread::sleep(Duration::from_millis(400));
            assert!(
                !w.is_finished(),
                "the watcher gave up on a runner that said hello"
            );
            cancel.store(true, Ordering::Relaxed);
            w.join().unwrap().unwrap_err()
        });
        assert_eq!(err, "cancelled");
    }
}
