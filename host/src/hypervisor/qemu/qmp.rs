//! A QMP client: QEMU's machine protocol, used to attach and detach the
//! container. Connections are short-lived (one per operation), because a
//! QMP socket serves one client at a time.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::jsonsock::{reply, JsonSocket};
use super::DriverError;

const PEER: &str = "QMP";

pub(crate) struct Qmp {
    sock: JsonSocket,
    timeout: Duration,
    /// Events that arrived while waiting for a reply.
    events: Vec<Value>,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation.
    pub(crate) fn connect(path: &Path, timeout: Duration) -> Result<Self, DriverError> {
        let mut sock = JsonSocket::connect(path, PEER)?;
        let greeting = sock.read_line(Instant::now() + timeout)?;
        let greeting: Value = serde_json::from_slice(&greeting).map_err(|e| bad(e.to_string()))?;
        if greeting.get("QMP").is_none() {
            return Err(bad(format!("no QMP greeting: {greeting}")));
        }
        let mut q = Self {
            sock,
            timeout,
            events: Vec::new(),
        };
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    /// Runs a command and returns its `return` value.
    pub(crate) fn execute(
        &mut self,
        command: &str,
        arguments: Value,
    ) -> Result<Value, DriverError> {
        self.sock
            .send(&json!({ "execute": command, "arguments": arguments }))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let msg = self.next(deadline)?;
            if msg.get("event").is_some() {
                self.events.push(msg);
                continue;
            }
            return Ok(reply(PEER, command, msg)?.unwrap_or(Value::Null));
        }
    }

    /// Waits for event `name` whose data satisfies `matches`.
    pub(crate) fn wait_event(
        &mut self,
        name: &str,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, DriverError> {
        let is = |e: &Value| e["event"] == name && matches(&e["data"]);
        if let Some(i) = self.events.iter().position(is) {
            return Ok(self.events.remove(i));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let msg = self.next(deadline).map_err(|e| match e {
                DriverError::Timeout { .. } => DriverError::NoEvent {
                    event: name.into(),
                    secs: timeout.as_secs_f64(),
                },
                e => e,
            })?;
            if is(&msg) {
                return Ok(msg);
            }
        }
    }

    fn next(&mut self, deadline: Instant) -> Result<Value, DriverError> {
        let line = self.sock.read_line(deadline)?;
        serde_json::from_slice(&line)
            .map_err(|e| bad(format!("{e}: {}", String::from_utf8_lossy(&line))))
    }
}

fn bad(what: String) -> DriverError {
    DriverError::Protocol { peer: PEER, what }
}
