//! The audit log's file: append-only JSON lines, each carrying the BLAKE3
//! hash of the line before it (`prev`) and its own (`hash`, over the line
//! without it), so that an edited, removed or reordered line breaks the
//! chain where it happened. The first line anchors the chain and names the
//! format (`magic`, `version`). Appends are serialized between threads and
//! processes by an exclusive `flock` on the file and written whole with one
//! `write`; a durable append reaches the disk (`fdatasync`, which also
//! carries every line written before it) before it returns.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use rustix::fs::{flock, FlockOperation};
use serde_json::{json, Map, Value};

/// The anchor's `magic`.
pub(crate) const MAGIC: &str = "attache-audit";
/// The format's version.
pub(crate) const VERSION: u64 = 1;
/// The `prev` of the anchor.
pub(crate) const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The longest line appended (larger event data is cut to fit).
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// What went wrong with the log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log {path}: its last line is damaged ({why}); run `attache audit verify`")]
    Tail { path: PathBuf, why: String },
}

/// The hash of a line's body (the line without its `hash` field).
pub(crate) fn digest(body: &str) -> String {
    blake3::hash(body.as_bytes()).to_hex().to_string()
}

/// Splits a line into its body (what the hash covers) and the hash it
/// claims; `None` when it has no trailing `"hash"` field.
pub(crate) fn split_hash(line: &str) -> Option<(String, &str)> {
    const KEY: &str = ",\"hash\":\"";
    let rest = line.strip_suffix("\"}")?;
    let at = rest.rfind(KEY)?;
    let hash = &rest[at + KEY.len()..];
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (format!("{}}}", &rest[..at]), hash))
}

/// Serializes `fields` with `prev`, appends its hash; the whole line with
/// its newline.
fn seal(mut fields: Map<String, Value>, prev: &str) -> String {
    fields.insert("prev".into(), json!(prev));
    let body = Value::Object(fields).to_string();
    let hash = digest(&body);
    format!("{},\"hash\":\"{hash}\"}}\n", &body[..body.len() - 1])
}

/// The audit log at a path.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    path: PathBuf,
}

impl Log {
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn io(&self, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one entry (`fields` get `seq`, `prev` and `hash`), anchoring
    /// the chain first in a new log, and when `durable` waits until it is
    /// on disk; returns the entry's hash.
    pub(crate) fn append(
        &self,
        mut fields: Map<String, Value>,
        durable: bool,
    ) -> Result<String, AuditError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| self.io(e.into()))?;
        let (seq, prev) = match self.tail(&mut file)? {
            Some(t) => t,
            None => {
                let mut anchor = Map::new();
                anchor.insert("magic".into(), json!(MAGIC));
                anchor.insert("version".into(), json!(VERSION));
                anchor.insert("seq".into(), json!(0));
                anchor.insert("time".into(), json!(now()));
                anchor.insert("event".into(), json!("anchor"));
                let line = seal(anchor, ZERO);
                file.write_all(line.as_bytes()).map_err(|e| self.io(e))?;
                let (body, hash) = split_hash(line.trim_end()).expect("sealed above");
                debug_assert_eq!(digest(&body), hash);
                (0, hash.to_owned())
            }
        };
        let mut ordered = Map::new();
        ordered.insert("seq".into(), json!(seq + 1));
        ordered.insert("time".into(), json!(now()));
        ordered.append(&mut fields);
        let mut line = seal(ordered.clone(), &prev);
        if line.len() > MAX_LINE {
            ordered.insert(
                "data".into(),
                json!({ "cut": "the event's data was larger than an audit line holds" }),
            );
            line = seal(ordered, &prev);
        }
        file.write_all(line.as_bytes()).map_err(|e| self.io(e))?;
        if durable {
            file.sync_data().map_err(|e| self.io(e))?;
        }
        let (_, hash) = split_hash(line.trim_end()).expect("sealed above");
        Ok(hash.to_owned())
    }

    /// Waits until every line written so far is on disk.
    pub(crate) fn sync(&self) -> Result<(), AuditError> {
        match File::open(&self.path) {
            Ok(f) => f.sync_data().map_err(|e| self.io(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(e)),
        }
    }

    /// The last entry's `seq` and hash; `None` for an empty log.
    fn tail(&self, file: &mut File) -> Result<Option<(u64, String)>, AuditError> {
        let len = file.metadata().map_err(|e| self.io(e))?.len();
        if len == 0 {
            return Ok(None);
        }
        let want = len.min(2 * MAX_LINE as u64 + 2);
        file.seek(SeekFrom::Start(len - want))
            .map_err(|e| self.io(e))?;
        let mut buf = Vec::with_capacity(want as usize);
        file.take(want)
            .read_to_end(&mut buf)
            .map_err(|e| self.io(e))?;
        let bad = |why: &str| AuditError::Tail {
            path: self.path.clone(),
            why: why.into(),
        };
        if buf.last() != Some(&b'\n') {
            return Err(bad("it does not end in a newline"));
        }
        let body = &buf[..buf.len() - 1];
        let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if start == 0 && want < len {
            return Err(bad("it is longer than an audit line may be"));
        }
        let last = std::str::from_utf8(&body[start..]).map_err(|_| bad("not UTF-8"))?;
        let (_, hash) = split_hash(last).ok_or_else(|| bad("it has no hash"))?;
        let v: Value = serde_json::from_str(last).map_err(|_| bad("not JSON"))?;
        let seq = v["seq"].as_u64().ok_or_else(|| bad("it has no seq"))?;
        Ok(Some((seq, hash.to_owned())))
    }
}

/// The time now, RFC 3339 in UTC with milliseconds.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
