//! A JSON-lines client on a Unix socket: what QMP and the guest agent share.
//! Every read is bounded by a deadline, so a peer that stops answering (a
//! hung guest agent, a paused VM) gives an error instead of a hang.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::DriverError;

pub(super) struct JsonSocket {
    peer: &'static str,
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl JsonSocket {
    pub(super) fn connect(path: &Path, peer: &'static str) -> Result<Self, DriverError> {
        let s = UnixStream::connect(path).map_err(|e| DriverError::Connect {
            peer,
            path: path.to_owned(),
            source: e,
        })?;
        Ok(Self {
            peer,
            path: path.to_owned(),
            writer: s
                .try_clone()
                .map_err(|e| DriverError::Io { peer, source: e })?,
            reader: BufReader::new(s),
        })
    }

    pub(super) fn send_raw(&mut self, bytes: &[u8]) -> Result<(), DriverError> {
        self.writer.write_all(bytes).map_err(|e| DriverError::Io {
            peer: self.peer,
            source: e,
        })
    }

    pub(super) fn send(&mut self, msg: &Value) -> Result<(), DriverError> {
        let mut line = serde_json::to_vec(msg).map_err(|e| DriverError::Protocol {
            peer: self.peer,
            what: e.to_string(),
        })?;
        line.push(b'\n');
        self.send_raw(&line)
    }

    /// The next line (without its newline) received before `deadline`.
    pub(super) fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, DriverError> {
        let mut line = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out());
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| DriverError::Io {
                    peer: self.peer,
                    source: e,
                })?;
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => return Err(DriverError::Closed { peer: self.peer }),
                Ok(_) if line.ends_with(b"\n") => {
                    line.pop();
                    return Ok(line);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.timed_out())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(DriverError::Io {
                        peer: self.peer,
                        source: e,
                    })
                }
            }
        }
    }

    fn timed_out(&self) -> DriverError {
        DriverError::Timeout {
            peer: self.peer,
            path: self.path.clone(),
        }
    }
}

/// The `return` of a reply, or its `error` as a [`DriverError::Command`].
pub(super) fn reply(
    peer: &'static str,
    command: &str,
    msg: Value,
) -> Result<Option<Value>, DriverError> {
    if let Some(err) = msg.get("error") {
        return Err(DriverError::Command {
            peer,
            command: command.into(),
            class: err["class"].as_str().unwrap_or("?").into(),
            desc: err["desc"].as_str().unwrap_or("?").into(),
        });
    }
    Ok(msg.get("return").cloned())
}
