//! The guest agent (qemu-guest-agent) on its virtio-serial socket: the QEMU
//! driver's link to it.
//!
//! Every connection starts with `guest-sync-delimited`: the agent answers
//! after a 0xFF byte, and everything before the answer (replies meant for an
//! earlier, vanished client) is skipped.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::jsonsock::{reply, JsonSocket};
use super::DriverError;
use crate::hypervisor::agent::AgentLink;

const PEER: &str = "the guest agent";

pub(crate) struct QgaLink {
    sock: JsonSocket,
    /// A command timed out: its late reply may still come, so the next
    /// command synchronizes first.
    stale: bool,
}

impl QgaLink {
    /// Connects and synchronizes; fails within `timeout` when the agent does
    /// not answer (not running, hung, or the VM is paused).
    pub(crate) fn connect(path: &Path, timeout: Duration) -> Result<Self, DriverError> {
        let mut a = Self {
            sock: JsonSocket::connect(path, PEER)?,
            stale: false,
        };
        a.sync_within(timeout)?;
        Ok(a)
    }

    fn sync_within(&mut self, timeout: Duration) -> Result<(), DriverError> {
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

    fn exchange(
        &mut self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, DriverError> {
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
}

impl AgentLink for QgaLink {
    fn call(
        &mut self,
        command: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<Value, DriverError> {
        if self.stale {
            self.sync_within(timeout)?;
        }
        let r = self.exchange(command, arguments, timeout);
        if matches!(r, Err(DriverError::Timeout { .. })) {
            self.stale = true;
        }
        r
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
