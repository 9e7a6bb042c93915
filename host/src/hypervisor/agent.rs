//! The guest agent (qemu-guest-agent) as every driver offers it: commands
//! sent through a driver's link (the agent's own virtio-serial socket for
//! QEMU, libvirt's agent passthrough for libvirt), and what Attaché builds on
//! them: starting a guest command, asking for its status, running it to the
//! end.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::error::DriverError;

/// How a driver carries one guest agent command and its reply.
pub(crate) trait AgentLink: Send {
    /// Runs `command` with `arguments`; its `return` value, within `timeout`.
    fn call(
        &mut self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, DriverError>;
}

pub(crate) struct Agent {
    link: Box<dyn AgentLink>,
    timeout: Duration,
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

/// The most a guest command's captured output may hold (qemu-guest-agent
/// caps it at 16 MiB, base64 makes that larger): a guest is untrusted.
const MAX_OUTPUT: usize = 32 << 20;

impl Agent {
    /// An agent over `link`, whose commands may each take `timeout`.
    pub(crate) fn new(link: Box<dyn AgentLink>, timeout: Duration) -> Self {
        Self {
            link,
            timeout,
            observer: None,
        }
    }

    /// Runs a command and returns its `return` value.
    pub(crate) fn call(&mut self, command: &str, arguments: Value) -> Result<Value, DriverError> {
        self.call_with(command, arguments, self.timeout)
    }

    pub(crate) fn call_with(
        &mut self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, DriverError> {
        self.link.call(command, arguments, timeout)
    }

    /// Tells `f` of every command started from now on.
    pub(crate) fn observe(&mut self, f: Observer) {
        self.observer = Some(f);
    }

    /// Starts `argv` in the guest with its output captured; returns its pid.
    pub(crate) fn spawn(&mut self, argv: &[&str]) -> Result<i64, DriverError> {
        self.spawn_with_env(argv, &[])
    }

    /// `spawn` with environment variables `NAME=VALUE` (then the command's
    /// whole environment, with a standard PATH).
    pub(crate) fn spawn_with_env(
        &mut self,
        argv: &[&str],
        env: &[String],
    ) -> Result<i64, DriverError> {
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
    pub(crate) fn status(&mut self, pid: i64) -> Result<Option<Exited>, DriverError> {
        self.status_with(pid, self.timeout)
    }

    /// `status`, waiting at most `timeout` for the answer.
    pub(crate) fn status_with(
        &mut self,
        pid: i64,
        timeout: Duration,
    ) -> Result<Option<Exited>, DriverError> {
        let r = self.call_with("guest-exec-status", json!({ "pid": pid }), timeout)?;
        if r["exited"] != json!(true) {
            return Ok(None);
        }
        let data = |k: &str| match r[k].as_str() {
            None => Ok(Vec::new()),
            Some(s) if s.len() > MAX_OUTPUT => Err(bad(format!(
                "{k} of {} bytes is over the bound of {MAX_OUTPUT}",
                s.len()
            ))),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| bad(format!("{k}: {e}"))),
        };
        Ok(Some(Exited {
            code: r["exitcode"].as_i64().unwrap_or(-1),
            signal: r["signal"].as_i64(),
            stdout: data("out-data")?,
            stderr: data("err-data")?,
        }))
    }

    /// Runs `argv` in the guest to completion, polling its status.
    pub(crate) fn run(&mut self, argv: &[&str], timeout: Duration) -> Result<Exited, DriverError> {
        let pid = self.spawn(argv)?;
        let deadline = Instant::now() + timeout;
        let mut wait = Duration::from_millis(5);
        loop {
            if let Some(done) = self.status(pid)? {
                return Ok(done);
            }
            if Instant::now() >= deadline {
                return Err(DriverError::GuestCommandTimeout {
                    command: argv.join(" "),
                    secs: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(100));
        }
    }
}

fn bad(what: String) -> DriverError {
    DriverError::Protocol {
        peer: "the guest agent",
        what,
    }
}
