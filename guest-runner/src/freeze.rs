//! A freeze never outlives its bound, even when the server that froze the
//! guest's filesystems dies (`kill -9`) and never comes back: once the
//! server has frozen them for a backup, the runner keeps a watchdog that
//! thaws every filesystem itself when the bound passes without the server
//! saying it has thawed ([`crate::channel::ACK_THAWED`]). The runner waits
//! for one or the other before it exits, so the watchdog cannot die with it
//! early.
//!
//! Thawing is the kernel's `FITHAW` on each mount point, innermost first,
//! as qemu-guest-agent's own thaw does; a filesystem that is not frozen
//! answers `EINVAL`, which is ignored.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Thaws at a deadline unless released first.
pub struct FreezeWatchdog {
    released: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl FreezeWatchdog {
    /// Starts watching a freeze that must end by `deadline`.
    pub fn start(deadline: Instant) -> Self {
        let released = Arc::new((Mutex::new(false), Condvar::new()));
        let r = released.clone();
        let thread = std::thread::Builder::new()
            .name("thaw-watchdog".into())
            .spawn(move || {
                let (lock, cv) = &*r;
                let mut done = lock.lock().unwrap_or_else(|p| p.into_inner());
                while !*done {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    done = cv
                        .wait_timeout(done, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                if !*done {
                    let n = thaw_all();
                    tracing::warn!(
                        thawed = n,
                        "the server did not confirm a thaw by the freeze bound; the runner thawed the guest's filesystems itself"
                    );
                }
            })
            .ok();
        if thread.is_none() {
            // No watchdog thread: thaw now rather than risk an endless freeze.
            thaw_all();
        }
        Self { released, thread }
    }

    /// A handle that releases the watchdog (the server has thawed).
    pub fn releaser(&self) -> impl Fn() + Send + 'static {
        let r = self.released.clone();
        move || {
            let (lock, cv) = &*r;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
    }

    /// Returns once the server has thawed or the watchdog has.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `FITHAW`: `_IOWR('X', 120, int)`.
const FITHAW: rustix::ioctl::Opcode = rustix::ioctl::opcode::read_write::<i32>(b'X', 120);

/// Thaws every mounted filesystem, innermost first; how many thawed.
pub fn thaw_all() -> usize {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return 0;
    };
    let mut thawed = 0;
    for point in mount_points(&mounts).iter().rev() {
        let Ok(dir) = rustix::fs::open(
            point.as_str(),
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) else {
            continue;
        };
        #[allow(
            unsafe_code,
            reason = "FITHAW is an ioctl, which rustix can only offer as unsafe"
        )]
        // SAFETY: FITHAW takes no argument the kernel reads (its int is
        // ignored), so passing none is sound; `dir` is an open descriptor
        // that lives across the call.
        let r = unsafe { rustix::ioctl::ioctl(&dir, rustix::ioctl::NoArg::<FITHAW>::new()) };
        if r.is_ok() {
            thawed += 1;
        }
    }
    thawed
}

/// The mount points of `/proc/self/mounts`, unescaped (`\040` is a space).
fn mount_points(mounts: &str) -> Vec<String> {
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(|p| {
            let mut out = String::new();
            let mut rest = p;
            while let Some(i) = rest.find('\\') {
                out.push_str(&rest[..i]);
                let code = rest
                    .get(i + 1..i + 4)
                    .and_then(|o| u8::from_str_radix(o, 8).ok());
                match code {
                    Some(c) => {
                        out.push(c as char);
                        rest = &rest[i + 4..];
                    }
                    None => {
                        out.push('\\');
                        rest = &rest[i + 1..];
                    }
                }
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// How long a runner gives the server to thaw beyond the freeze bound
/// before it thaws itself.
pub const GRACE: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        let m = "/dev/vda1 / ext4 rw 0 0\n/dev/vdb /mnt/with\\040space xfs rw 0 0\n";
        assert_eq!(mount_points(m), vec!["/", "/mnt/with space"]);
    }

    #[test]
    fn a_released_watchdog_does_not_thaw_and_returns_at_once() {
        let w = FreezeWatchdog::start(Instant::now() + Duration::from_secs(60));
        let t = Instant::now();
        (w.releaser())();
        w.wait();
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
