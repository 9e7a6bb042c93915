//! Restore into a live IMAP server: folders are created when missing and
//! subscribed as they were; messages are APPENDed with their flags and
//! internal date. A message whose Message-ID is already in the target
//! mailbox is skipped unless `overwrite`; nothing is ever deleted or
//! changed in the live store (with `overwrite` the copy is appended beside
//! the existing one).
//!
//! Messages for one mailbox go in batches, one MULTIAPPEND command each
//! where the server offers it (RFC 3502: one transaction on the server;
//! Dovecot appends a hundred messages in the time of a few APPENDs). With
//! LITERAL+ too, each message is sent as it comes, within the open command,
//! so that the server saves while the runner reads the next ones; without
//! it a batch is held in memory and sent whole.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream};

use crate::backup::Login;
use crate::error::{Error, Result};
use crate::ids::ImapId;
use crate::imap::{Append, Session};
use crate::model::{attr, Item, Kind, Totals};

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Restored; bytes of content.
    Restored(u64),
    /// A message already present (same Message-ID), left alone.
    Present,
}

/// Most messages in one batch (one server transaction).
const BATCH_MESSAGES: usize = 500;
/// Most bytes in a batch held in memory.
const HELD_BYTES: usize = 16 << 20;
/// Most bytes in a streamed batch.
const STREAMED_BYTES: usize = 256 << 20;

type UserKey = (String, SocketAddr);

/// A message held for an APPEND: flags, internal date, bytes.
type Held = (Vec<String>, Option<String>, Vec<u8>);

/// Messages being appended to one mailbox.
struct Batch {
    user: UserKey,
    wire: String,
    count: usize,
    bytes: usize,
    /// The messages, when held for an APPEND sent whole; `None` when they
    /// are streamed into an open MULTIAPPEND.
    held: Option<Vec<Held>>,
}

/// Restores items into IMAP servers, one session per user and server.
pub struct Restorer {
    login: Login,
    overwrite: bool,
    sessions: HashMap<(String, SocketAddr), Session<TcpStream>>,
    /// Mailboxes known to exist, by user, server and wire name.
    exist: HashSet<(String, SocketAddr, String)>,
    /// Message-IDs of target mailboxes, loaded when first appended to (or
    /// none, for a mailbox this restore created).
    present: HashMap<(String, SocketAddr, String), HashSet<String>>,
    /// Messages not yet sent.
    batch: Option<Batch>,
}

impl Restorer {
    /// A restorer that logs in with `login`.
    pub fn new(login: Login, overwrite: bool) -> Self {
        Restorer {
            login,
            overwrite,
            sessions: HashMap::new(),
            exist: HashSet::new(),
            present: HashMap::new(),
            batch: None,
        }
    }

    /// Completes the batch, if any: ends the streamed MULTIAPPEND, or
    /// sends the messages held.
    fn flush(&mut self) -> Result<()> {
        let Some(b) = self.batch.take() else {
            return Ok(());
        };
        let s = self
            .sessions
            .get_mut(&b.user)
            .ok_or_else(|| Error::Other("session vanished".into()))?;
        let Some(held) = b.held else {
            return s.append_end();
        };
        let list: Vec<Append<'_>> = held
            .iter()
            .map(|(flags, date, body)| Append {
                flags,
                internal_date: date.as_deref(),
                body,
            })
            .collect();
        s.append_many(&b.wire, &list)
    }

    /// Adds a message to the batch for `user`'s mailbox `wire`.
    fn add(
        &mut self,
        user: UserKey,
        wire: String,
        flags: Vec<String>,
        date: Option<&str>,
        body: &[u8],
    ) -> Result<()> {
        if self
            .batch
            .as_ref()
            .is_some_and(|b| b.user != user || b.wire != wire)
        {
            self.flush()?;
        }
        let s = self
            .sessions
            .get_mut(&user)
            .ok_or_else(|| Error::Other("session vanished".into()))?;
        if self.batch.is_none() {
            let stream = s.can_stream_append();
            if stream {
                s.append_begin(&wire)?;
            }
            self.batch = Some(Batch {
                user,
                wire,
                count: 0,
                bytes: 0,
                held: (!stream).then(Vec::new),
            });
        }
        let Some(b) = self.batch.as_mut() else {
            return Err(Error::Other("no batch".into()));
        };
        match b.held.as_mut() {
            Some(held) => held.push((flags, date.map(str::to_owned), body.to_vec())),
            None => s.append_more(&Append {
                flags: &flags,
                internal_date: date,
                body,
            })?,
        }
        b.count += 1;
        b.bytes += body.len();
        let limit = if b.held.is_some() {
            HELD_BYTES
        } else {
            STREAMED_BYTES
        };
        if b.count >= BATCH_MESSAGES || b.bytes >= limit {
            self.flush()?;
        }
        Ok(())
    }

    fn session(&mut self, t: &ImapId) -> Result<&mut Session<TcpStream>> {
        let key = (t.user.clone(), t.addr);
        if !self.sessions.contains_key(&key) {
            let mut s = Session::connect(t.addr, &t.user, &self.login.password, self.login.auth)?;
            for m in s.list("*")? {
                self.exist.insert((t.user.clone(), t.addr, m.wire));
            }
            self.sessions.insert(key.clone(), s);
        }
        self.sessions
            .get_mut(&key)
            .ok_or_else(|| Error::Other("session vanished".into()))
    }

    /// Creates mailbox `levels` of `t`'s user when missing.
    fn ensure(&mut self, t: &ImapId) -> Result<String> {
        let s = self.session(t)?;
        let wire = s.wire_name(&t.mailbox)?;
        let key = (t.user.clone(), t.addr, wire.clone());
        if !self.exist.contains(&key) {
            let s = self.session(t)?;
            // Parents first, for servers that do not create them.
            for n in 1..t.mailbox.len() {
                let parent = s.wire_name(&t.mailbox[..n])?;
                let _ = s.create(&parent);
            }
            if s.create(&wire)? {
                // Made just now, so empty: no Message-ID to look for, and
                // no EXAMINE and FETCH to find none.
                self.present.entry(key.clone()).or_default();
            }
            self.exist.insert(key);
        }
        Ok(wire)
    }

    /// Restores one item as `target`.
    pub fn item(&mut self, item: &Item, target: &ImapId, content: &[u8]) -> Result<Outcome> {
        if item.kind != Kind::Message {
            self.flush()?;
        }
        match item.kind {
            Kind::User => {
                self.session(target)?;
                Ok(Outcome::Restored(0))
            }
            Kind::Folder => {
                if target.mailbox.is_empty() {
                    return Err(Error::Invalid(format!(
                        "folder {} cannot be restored as a user ({target})",
                        item.id
                    )));
                }
                let wire = self.ensure(target)?;
                if item.attr(attr::SUBSCRIBED) == Some("yes") {
                    self.session(target)?.subscribe(&wire)?;
                }
                Ok(Outcome::Restored(0))
            }
            Kind::Message => {
                if target.mailbox.is_empty() {
                    return Err(Error::Invalid(format!(
                        "message {} cannot be restored as a user ({target})",
                        item.id
                    )));
                }
                // A batch open for another mailbox of this session must end
                // before the session creates or examines this one.
                let user = (target.user.clone(), target.addr);
                let wire = self.session(target)?.wire_name(&target.mailbox)?;
                if self
                    .batch
                    .as_ref()
                    .is_some_and(|b| b.user != user || b.wire != wire)
                {
                    self.flush()?;
                }
                let wire = self.ensure(target)?;
                let key = (target.user.clone(), target.addr, wire.clone());
                if !self.present.contains_key(&key) {
                    let shown = target.mailbox.join("/");
                    let s = self.session(target)?;
                    let sel = s.open(&wire, true, &shown)?;
                    let ids = if sel.exists > 0 {
                        s.message_ids()?
                    } else {
                        HashSet::new()
                    };
                    self.present.insert(key.clone(), ids);
                }
                let mid = crate::header::message_id(content);
                if let (Some(m), false) = (&mid, self.overwrite) {
                    if self.present.get(&key).is_some_and(|p| p.contains(m)) {
                        return Ok(Outcome::Present);
                    }
                }
                let flags: Vec<String> = item
                    .attr(attr::FLAGS)
                    .unwrap_or("")
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                let date = item
                    .attr(attr::INTERNAL_DATE)
                    .filter(|d| crate::date::parse(d).is_some());
                self.add(user, wire, flags, date, content)?;
                if let (Some(m), Some(p)) = (mid, self.present.get_mut(&key)) {
                    p.insert(m);
                }
                Ok(Outcome::Restored(content.len() as u64))
            }
        }
    }

    /// Sends the messages waiting, and logs every session out.
    pub fn finish(mut self, totals: &mut Totals) -> Result<()> {
        let sent = self.flush();
        for (_, s) in self.sessions {
            totals.bytes_read += s.bytes_read();
            s.logout();
        }
        sent
    }
}
