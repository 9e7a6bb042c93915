//! A client of the guest agent (qemu-guest-agent) on its virtio-serial
//! socket: runs commands in the guest and freezes its filesystems.
//!
//! Every connection starts with `guest-sync-delimited`: the agent answers
//! after a 0xFF byte, and everything before the answer (replies meant for an
//! earlier, vanished client) is skipped.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::jsonsock::{reply, JsonSocket};
use super::QemuError;

const PEER: &str = "the guest agent";

pub(crate) struct Agent {
    sock: JsonSocket,
    timeout: Duration,
    /// A command timed out: its late reply may still come, so the next
    /// command synchronizes first.
    stale: bool,
    /// Told of every command before it starts (the audit log).
    observer: Option<Observer>,
}

/// What is told of each guest command: its arguments.
pub(crate) type Observer = Box<dyn Fn(&[&str]) + Send>;

/// A finished guest command.
#[derive(Debug, Clone)]
pub(crate) struct Exited {
    pub code: i64,
    /// Killed by this signal, if it was.
    pub signal: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Exited {
    pub(crate) fn success(&self) -> bool {
        self.code == 0 && self.signal.is_none()
    }

    /// The end of stderr, for error messages.
    pub(crate) fn stderr_tail(&self) -> String {
        let s = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Agent {
    /// Connects and synchronizes; fails within `timeout` when the agent does
    /// not answer (not running, hung, or the VM is paused).
    pub(crate) fn connect(path: &Path, timeout: Duration) -> Result<Self, QemuError> {
        let mut a = Self {
            sock: JsonSocket::connect(path, PEER)?,
            timeout,
            stale: false,
            observer: None,
        };
        a.sync()?;
        Ok(a)
    }

    fn sync(&mut self) -> Result<(), QemuError> {
        self.sync_within(self.timeout)
    }

    fn sync_within(&mut self, timeout: Duration) -> Result<(), QemuError> {
        self.stale = true;
        let id = u32::from_le_bytes(rand4()) as u64 & 0x7fff_ffff;
        self.sock.send_raw(&[0xff])?;
        self.sock
            .send(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}}))?;
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.sock.read_line(deadline)?;
            // The reply follows the last 0xFF; older replies are skipped.
            let Some(pos) = line.iter().rposition(|&b| b == 0xff) else {
                continue;
            };
            let Ok(msg) = serde_json::from_slice::<Value>(&line[pos + 1..]) else {
                continue;
            };
            if msg["return"] == json!(id) {
                self.stale = false;
                return Ok(());
            }
        }
    }

    /// Runs a command and returns its `return` value.
    pub(crate) fn call(&mut self, command: &str, arguments: Value) -> Result<Value, QemuError> {
        self.call_with(command, arguments, self.timeout)
    }

    pub(crate) fn call_with(
        &mut self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, QemuError> {
        if self.stale {
            self.sync_within(timeout)?;
        }
        let r = self.exchange(command, arguments, timeout);
        if matches!(r, Err(QemuError::Timeout { .. })) {
            self.stale = true;
        }
        r
    }

    fn exchange(
        &mut self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, QemuError> {
        self.sock
            .send(&json!({ "execute": command, "arguments": arguments }))?;
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.sock.read_line(deadline)?;
            let line = match line.iter().rposition(|&b| b == 0xff) {
                Some(p) => &line[p + 1..],
                None => &line[..],
            };
            let Ok(msg) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            if msg.get("return").is_some() || msg.get("error").is_some() {
                return Ok(reply(PEER, command, msg)?.unwrap_or(Value::Null));
            }
        }
    }

    /// Tells `f` of every command started from now on.
    pub(crate) fn observe(&mut self, f: Observer) {
        self.observer = Some(f);
    }

    /// Starts `argv` in the guest with its output captured; returns its pid.
    pub(crate) fn spawn(&mut self, argv: &[&str]) -> Result<i64, QemuError> {
        self.spawn_with_env(argv, &[])
    }

    /// `spawn` with environment variables `NAME=VALUE` (then the command's
    /// whole environment, with a standard PATH).
    pub(crate) fn spawn_with_env(
        &mut self,
        argv: &[&str],
        env: &[String],
    ) -> Result<i64, QemuError> {
        let (path, args) = argv
            .split_first()
            .ok_or_else(|| bad("empty command".into()))?;
        if let Some(f) = &self.observer {
            f(argv);
        }
        let mut req = json!({ "path": path, "arg": args, "capture-output": true });
        if !env.is_empty() {
            let mut all = vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ];
            all.extend(env.iter().cloned());
            req["env"] = json!(all);
        }
        let r = self.call("guest-exec", req)?;
        r["pid"]
            .as_i64()
            .ok_or_else(|| bad(format!("guest-exec gave no pid: {r}")))
    }

    /// The command's result once it has exited, `None` while it runs.
    pub(crate) fn status(&mut self, pid: i64) -> Result<Option<Exited>, QemuError> {
        self.status_with(pid, self.timeout)
    }

    /// `status`, waiting at most `timeout` for the answer.
    pub(crate) fn status_with(
        &mut self,
        pid: i64,
        timeout: Duration,
    ) -> Result<Option<Exited>, QemuError> {
        let r = self.call_with("guest-exec-status", json!({ "pid": pid }), timeout)?;
        if r["exited"] != json!(true) {
            return Ok(None);
        }
        let data = |k: &str| {
            r[k].as_str()
                .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
                .transpose()
                .map(Option::unwrap_or_default)
                .map_err(|e| bad(format!("{k}: {e}")))
        };
        Ok(Some(Exited {
            code: r["exitcode"].as_i64().unwrap_or(-1),
            signal: r["signal"].as_i64(),
            stdout: data("out-data")?,
            stderr: data("err-data")?,
        }))
    }

    /// Runs `argv` in the guest to completion, polling its status.
    pub(crate) fn run(&mut self, argv: &[&str], timeout: Duration) -> Result<Exited, QemuError> {
        let pid = self.spawn(argv)?;
        let deadline = Instant::now() + timeout;
        let mut wait = Duration::from_millis(5);
        loop {
            if let Some(done) = self.status(pid)? {
                return Ok(done);
            }
            if Instant::now() >= deadline {
                return Err(QemuError::GuestCommandTimeout {
                    command: argv.join(" "),
                    secs: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(100));
        }
    }
}

fn rand4() -> [u8; 4] {
    let mut b = [0u8; 4];
    // A weak id is harmless here (it only tells replies apart), so a
    // failing random source falls back to the clock.
    if getrandom::fill(&mut b).is_err() {
        b = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos())
        .to_le_bytes();
    }
    b
}

fn bad(what: String) -> QemuError {
    QemuError::Protocol { peer: PEER, what }
}
