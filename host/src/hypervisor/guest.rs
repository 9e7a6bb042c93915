//! What Attaché does inside the guest, through the guest agent: POSIX shell
//! scripts run by `/bin/sh` (busybox or a full distribution alike), each
//! doing one step that the journal can undo.
//!
//! Everything the guest sees of a job lives in one directory,
//! `/run/attache/SESSION`, the container's mount point: cleaning up is
//! killing the runner, unmounting and removing that directory.

use std::time::Duration;

use super::agent::{Agent, Exited};
use super::error::DriverError;

/// The parent of every job's mount point in the guest.
pub(crate) const GUEST_ROOT: &str = "/run/attache";
/// The virtio-serial port name that carries a job's data.
pub(crate) const DATA_PORT: &str = "attache.data";

/// The mount point of session `session`'s container in the guest.
pub(crate) fn mount_dir(session: &str) -> String {
    format!("{GUEST_ROOT}/{session}")
}

/// Finds the CD whose ISO 9660 volume id is `$2` (reading the primary
/// volume descriptor, so no tool writes a cache into the guest), and mounts
/// it read-only at `$1`.
const MOUNT: &str = r#"set -eu
dir=$1 label=$2
mkdir -p "$dir"
i=0
while :; do
  for d in /dev/sr*; do
    [ -b "$d" ] || continue
    v=$(dd if="$d" bs=2048 skip=16 count=1 2>/dev/null | dd bs=1 skip=40 count=32 2>/dev/null | tr -d ' ')
    if [ "$v" = "$label" ]; then
      mount -t iso9660 -o ro,nodev,nosuid "$d" "$dir"
      echo "$d"
      exit 0
    fi
  done
  i=$((i + 1))
  if [ $i -ge 300 ]; then
    echo "the container (volume $label) did not appear in the guest" >&2
    rmdir "$dir" 2>/dev/null || true
    exit 3
  fi
  sleep 0.05
done
"#;

/// Runs the container's runner at `$1` with the arguments after `$2`, its
/// data channel the virtio-serial port named `$2` (found through sysfs:
/// not every guest has the /dev/virtio-ports links). `exec`, so that the
/// pid the agent reports is the runner's.
const RUN: &str = r#"dir=$1 name=$2
shift 2
port=
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = "$name" ] && port=/dev/${p##*/}
done
if [ -z "$port" ]; then
  echo "the guest has no virtio-serial port named $name" >&2
  exit 3
fi
exec "$dir/guest-runner" --agent-dir "$dir" "$@" --channel "$port"
"#;

/// Undoes a job in the guest: kills its runner `$2` and any other process
/// running the runner from `$1` (a server killed between starting the
/// runner and journaling its pid left one no pid names), unmounts `$1` and
/// removes it. Only processes whose executable is `$1/guest-runner` are
/// killed: `$1` is this session's own directory.
const CLEAN: &str = r#"dir=$1 pid=$2
pids=
for p in $pid $(pidof guest-runner 2>/dev/null); do
  [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$dir/guest-runner" ] && pids="$pids $p"
done
if [ -n "$pids" ]; then
  kill -9 $pids 2>/dev/null || true
  for p in $pids; do
    i=0
    while [ -e "/proc/$p" ] && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.05; done
  done
fi
if grep -qs " $dir " /proc/mounts; then
  i=0
  until umount "$dir" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -ge 50 ]; then umount -l "$dir"; break; fi
    sleep 0.1
  done
fi
[ -d "$dir" ] && rmdir "$dir"
rmdir /run/attache 2>/dev/null || true
if grep -qs " $dir " /proc/mounts || [ -e "$dir" ]; then
  echo "$dir is still there" >&2
  exit 1
fi
"#;

/// What a guest step left behind, as an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GuestError {
    #[error(transparent)]
    Agent(#[from] DriverError),
    #[error("{what} failed in the guest (exit {code}): {stderr}")]
    Failed {
        what: &'static str,
        code: i64,
        stderr: String,
    },
}

fn checked(what: &'static str, e: Exited) -> Result<Exited, GuestError> {
    if e.success() {
        Ok(e)
    } else {
        Err(GuestError::Failed {
            what,
            code: e.code,
            stderr: e.stderr_tail(),
        })
    }
}

/// Mounts the container with volume id `label` at `dir`; returns the device.
pub(crate) fn mount(agent: &mut Agent, dir: &str, label: &str) -> Result<String, GuestError> {
    let e = agent.run(
        &["/bin/sh", "-c", MOUNT, "attache-mount", dir, label],
        Duration::from_secs(60),
    )?;
    let e = checked("mounting the container", e)?;
    Ok(String::from_utf8_lossy(&e.stdout).trim().to_owned())
}

/// Starts the runner from `dir` with `args` and environment variables `env`
/// (`NAME=VALUE`: secrets, which a command line would show to every user of
/// the guest); returns its pid.
pub(crate) fn start_runner(
    agent: &mut Agent,
    dir: &str,
    args: &[String],
    env: &[String],
) -> Result<i64, DriverError> {
    let mut argv = vec!["/bin/sh", "-c", RUN, "attache-run", dir, DATA_PORT];
    argv.extend(args.iter().map(String::as_str));
    agent.spawn_with_env(&argv, env)
}

/// Kills the runner `pid`, and any other started from `dir`, unmounts
/// `dir` and removes it.
pub(crate) fn clean(agent: &mut Agent, dir: &str, pid: Option<i64>) -> Result<(), GuestError> {
    let pid = pid.map(|p| p.to_string()).unwrap_or_default();
    let e = agent.run(
        &["/bin/sh", "-c", CLEAN, "attache-clean", dir, &pid],
        Duration::from_secs(60),
    )?;
    checked("cleaning up", e).map(|_| ())
}
