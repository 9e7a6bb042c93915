//! The bound on a runner that runs on this machine: a job's timeout, and
//! its cancellation, hold even when the runner stalls without writing (the
//! stream's reader is then blocked in a read that nothing else ends).
//! Killing the runner closes its end of the stream, so the reader returns,
//! the job fails and the repository lock is released.

use std::process::Child;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why the watchdog stopped the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Stopped {
    #[error("the runner had not finished after {} s (--timeout-secs) and was stopped", .0.as_secs())]
    Timeout(Duration),
    #[error("cancelled")]
    Cancelled,
}

/// The child, whether or not a holder of the lock panicked.
pub(crate) fn lock(child: &Mutex<Child>) -> std::sync::MutexGuard<'_, Child> {
    child.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits for the child to exit without holding its lock in between, so that
/// [`watch`] can kill it meanwhile. Once it has been reaped, killing it
/// does nothing (the standard library knows its status), so its id is never
/// signalled after it could be reused. The exit is awaited on a pidfd (the
/// child is ours and not yet reaped, so its id names it); where there is
/// none (a kernel before 5.3), every 20 ms.
pub(crate) fn wait(child: &Mutex<Child>) -> std::io::Result<std::process::ExitStatus> {
    let pidfd = rustix::process::Pid::from_raw(lock(child).id() as i32).and_then(|pid| {
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    });
    loop {
        if let Some(status) = lock(child).try_wait()? {
            return Ok(status);
        }
        match &pidfd {
            Some(fd) => {
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                match rustix::event::poll(&mut fds, None) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// How often cancellation is looked at.
const POLL: Duration = Duration::from_millis(200);

/// Watches `child` until `done` is dropped or signalled; kills it when
/// `timeout` passes or `cancel` is set first, and says which. Run it on a
/// thread beside the one that reads the runner's output and then [`wait`]s
/// for it.
pub(crate) fn watch(
    child: &Mutex<Child>,
    timeout: Option<Duration>,
    cancel: &AtomicBool,
    done: Receiver<()>,
) -> Option<Stopped> {
    let start = Instant::now();
    let why = loop {
        let mut wait = POLL;
        if let Some(t) = timeout {
            let left = t.saturating_sub(start.elapsed());
            if left.is_zero() {
                break Stopped::Timeout(t);
            }
            wait = wait.min(left);
        }
        match done.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            break Stopped::Cancelled;
        }
    };
    if let Err(e) = lock(child).kill() {
        tracing::warn!("cannot stop the runner: {e}");
    }
    Some(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_stalled_child_is_killed_at_the_timeout() {
        let child = Mutex::new(Command::new("sleep").arg("60").spawn().expect("sleep"));
        let (_tx, rx) = std::sync::mpsc::channel();
        let t0 = Instant::now();
        let why = watch(
            &child,
            Some(Duration::from_millis(300)),
            &AtomicBool::new(false),
            rx,
        );
        assert_eq!(why, Some(Stopped::Timeout(Duration::from_millis(300))));
        let status = child.into_inner().expect("lock").wait().expect("wait");
        assert!(!status.success());
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn nothing_happens_when_the_job_ends_first() {
        let child = Mutex::new(Command::new("true").spawn().expect("true"));
        let (tx, rx) = std::sync::mpsc::channel();
        drop(tx);
        assert_eq!(
            watch(
                &child,
                Some(Duration::from_secs(60)),
                &AtomicBool::new(false),
                rx
            ),
            None
        );
        assert!(child
            .into_inner()
            .expect("lock")
            .wait()
            .expect("wait")
            .success());
    }
}
