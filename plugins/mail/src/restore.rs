//! Restore into a live IMAP server: folders are created when missing and
//! subscribed as they were; messages are APPENDed with their flags and
//! internal date. A message whose Message-ID is already in the target
//! mailbox is skipped unless `overwrite`; nothing is ever deleted or
//! changed in the live store (with `overwrite` the copy is appended beside
//! the existing one).

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream};

use crate::backup::Login;
use crate::error::{Error, Result};
use crate::ids::ImapId;
use crate::imap::Session;
use crate::model::{attr, Item, Kind, Totals};

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Restored; bytes of content.
    Restored(u64),
    /// A message already present (same Message-ID), left alone.
    Present,
}

/// Restores items into IMAP servers, one session per user and server.
pub struct Restorer {
    login: Login,
    overwrite: bool,
    sessions: HashMap<(String, SocketAddr), Session<TcpStream>>,
    /// Mailboxes known to exist, by user, server and wire name.
    exist: HashSet<(String, SocketAddr, String)>,
    /// Message-IDs of target mailboxes, loaded when first appended to.
    present: HashMap<(String, SocketAddr, String), HashSet<String>>,
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
        }
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
            s.create(&wire)?;
            self.exist.insert(key);
        }
        Ok(wire)
    }

    /// Restores one item as `target`.
    pub fn item(&mut self, item: &Item, target: &ImapId, content: &[u8]) -> Result<Outcome> {
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
                self.session(target)?.append(&wire, &flags, date, content)?;
                if let (Some(m), Some(p)) = (mid, self.present.get_mut(&key)) {
                    p.insert(m);
                }
                Ok(Outcome::Restored(content.len() as u64))
            }
        }
    }

    /// Logs every session out.
    pub fn finish(self, totals: &mut Totals) {
        for (_, s) in self.sessions {
            totals.bytes_read += s.bytes_read();
            s.logout();
        }
    }
}
