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
//!
//! Batches go to up to `connections` sessions per user, in turn (option
//! `connections`, 2 by default). A streamed batch is closed without
//! waiting for the server's answer, which is read before that session's
//! next command: while one server process saves and commits a batch, the
//! next one streams to another, so that a server with a process per
//! connection (Dovecot) works on two cores while the runner waits on
//! neither. Every answer is read, and a refusal is an error naming the
//! mailbox, before the restore reports success; a refused MULTIAPPEND, or
//! one cut off by a broken connection, appends none of its messages. The
//! batches of one mailbox are committed in stream order: a batch is closed
//! only once the same mailbox's batch on another session is answered.

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
    /// The session of the user's pool it goes to.
    conn: usize,
    wire: String,
    count: usize,
    bytes: usize,
    /// The messages, when held for an APPEND sent whole; `None` when they
    /// are streamed into an open MULTIAPPEND.
    held: Option<Vec<Held>>,
}

/// The sessions of one user at one server, opened as batches need them.
struct Pool {
    conns: Vec<Session<TcpStream>>,
    /// The session the next batch (and a folder's commands) goes to.
    next: usize,
    /// No more sessions are opened: the limit is reached, or the server
    /// refused one.
    full: bool,
}

/// Restores items into IMAP servers, up to `connections` sessions per user
/// and server.
pub struct Restorer {
    login: Login,
    overwrite: bool,
    connections: usize,
    pools: HashMap<UserKey, Pool>,
    /// Mailboxes known to exist, by user, server and wire name.
    exist: HashSet<(String, SocketAddr, String)>,
    /// Message-IDs of target mailboxes, loaded when first appended to (or
    /// none, for a mailbox this restore created).
    present: HashMap<(String, SocketAddr, String), HashSet<String>>,
    /// Messages not yet sent.
    batch: Option<Batch>,
    /// What the job should log (a session the server did not open).
    notes: Vec<String>,
    /// Bytes received by sessions already logged out.
    bytes_read: u64,
}

impl Restorer {
    /// A restorer that logs in with `login`, with up to `connections`
    /// sessions (at least one) per user and server.
    pub fn new(login: Login, overwrite: bool, connections: usize) -> Self {
        Restorer {
            login,
            overwrite,
            connections: connections.max(1),
            pools: HashMap::new(),
            exist: HashSet::new(),
            present: HashMap::new(),
            batch: None,
            notes: Vec::new(),
            bytes_read: 0,
        }
    }

    /// Lines for the job's log since the last call.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Closes the batch, if any: a streamed MULTIAPPEND is closed without
    /// waiting for its answer (once the same mailbox's batch on another
    /// session is answered), messages held are sent and answered. The
    /// next batch goes to the next session.
    fn flush(&mut self) -> Result<()> {
        let Some(b) = self.batch.take() else {
            return Ok(());
        };
        let pool = self
            .pools
            .get_mut(&b.user)
            .ok_or_else(|| Error::Other("session vanished".into()))?;
        match b.held {
            None => {
                pool.next = (b.conn + 1) % self.connections;
                for (i, s) in pool.conns.iter_mut().enumerate() {
                    if i != b.conn && s.unsettled() == Some(b.wire.as_str()) {
                        s.settle()?;
                    }
                }
                session_at(pool, b.conn)?.append_close()
            }
            // Sent and answered here: the next batch may as well go to
            // the same session.
            Some(held) => {
                let list: Vec<Append<'_>> = held
                    .iter()
                    .map(|(flags, date, body)| Append {
                        flags,
                        internal_date: date.as_deref(),
                        body,
                    })
                    .collect();
                session_at(pool, b.conn)?.append_many(&b.wire, &list)
            }
        }
    }

    /// Adds a message to the batch for `user`'s mailbox `wire`, beginning
    /// one on session `conn` when none is open.
    fn add(
        &mut self,
        user: UserKey,
        conn: usize,
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
        let conn = self.batch.as_ref().map_or(conn, |b| b.conn);
        let pool = self
            .pools
            .get_mut(&user)
            .ok_or_else(|| Error::Other("session vanished".into()))?;
        let s = session_at(pool, conn)?;
        if self.batch.is_none() {
            let stream = s.can_stream_append();
            if stream {
                s.append_begin(&wire)?;
            }
            self.batch = Some(Batch {
                user,
                conn,
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

    /// The session for `t`'s user that takes the next batch (its index in
    /// the pool): the pool's first session is opened, with the user's
    /// mailboxes listed, when there is none; another is opened when the
    /// turn comes to it. A server that refuses one more session leaves the
    /// pool as it is, with a note.
    fn pick(&mut self, t: &ImapId) -> Result<usize> {
        let key = (t.user.clone(), t.addr);
        if !self.pools.contains_key(&key) {
            self.retire_others(&key)?;
            let mut s = Session::connect(t.addr, &t.user, &self.login.password, self.login.auth)?;
            for m in s.list("*")? {
                self.exist.insert((t.user.clone(), t.addr, m.wire));
            }
            self.pools.insert(
                key.clone(),
                Pool {
                    conns: vec![s],
                    next: 0,
                    full: self.connections == 1,
                },
            );
        }
        let pool = self
            .pools
            .get_mut(&key)
            .ok_or_else(|| Error::Other("session vanished".into()))?;
        if pool.next >= pool.conns.len() && !pool.full {
            match Session::connect(t.addr, &t.user, &self.login.password, self.login.auth) {
                Ok(s) => {
                    pool.conns.push(s);
                    pool.full = pool.conns.len() >= self.connections;
                }
                Err(e) => {
                    pool.full = true;
                    self.notes.push(format!(
                        "{t}: restoring over {} IMAP connection(s), not {}: the server did not open another: {e}",
                        pool.conns.len(),
                        self.connections
                    ));
                }
            }
        }
        if pool.next >= pool.conns.len() {
            pool.next = 0;
        }
        Ok(pool.next)
    }

    /// Logs out the sessions of users other than `keep` (and the open
    /// batch's), once their last answers are read: a restore of many users
    /// keeps at most two users' sessions open, not all of them. A user
    /// whose items come again gets new sessions.
    fn retire_others(&mut self, keep: &UserKey) -> Result<()> {
        let busy = self.batch.as_ref().map(|b| b.user.clone());
        let old: Vec<UserKey> = self
            .pools
            .keys()
            .filter(|k| *k != keep && Some(*k) != busy.as_ref())
            .cloned()
            .collect();
        for k in old {
            let Some(pool) = self.pools.remove(&k) else {
                continue;
            };
            for mut s in pool.conns {
                s.settle()?;
                self.bytes_read += s.bytes_read();
                s.logout();
            }
        }
        Ok(())
    }

    /// The session `pick` chose.
    fn session(&mut self, t: &ImapId) -> Result<&mut Session<TcpStream>> {
        let i = self.pick(t)?;
        let pool = self
            .pools
            .get_mut(&(t.user.clone(), t.addr))
            .ok_or_else(|| Error::Other("session vanished".into()))?;
        session_at(pool, i)
    }

    /// Creates mailbox `levels` of `t`'s user when missing.
    fn ensure(&mut self, t: &ImapId) -> Result<String> {
        let s = self.session(t)?;
        let wire = s.wire_name(&t.mailbox)?;
        let key = (t.user.clone(), t.addr, wire.clone());
        if !self.exist.contains(&key) {
            let s = self.session(t)?;
            // The answer to this session's last batch first: a parent's
            // CREATE may fail unheeded, that answer may not.
            s.settle()?;
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
                self.pick(target)?;
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
                // A batch open for another mailbox of this user is closed
                // before a session creates or examines this one.
                let user = (target.user.clone(), target.addr);
                let wire = self.session(target)?.wire_name(&target.mailbox)?;
                if self
                    .batch
                    .as_ref()
                    .is_some_and(|b| b.user != user || b.wire != wire)
                {
                    self.flush()?;
                }
                let key = (target.user.clone(), target.addr, wire.clone());
                if self.batch.is_none() {
                    self.ensure(target)?;
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
                let conn = match &self.batch {
                    Some(b) => b.conn,
                    None => self.pick(target)?,
                };
                self.add(user, conn, wire, flags, date, content)?;
                if let (Some(m), Some(p)) = (mid, self.present.get_mut(&key)) {
                    p.insert(m);
                }
                Ok(Outcome::Restored(content.len() as u64))
            }
        }
    }

    /// Sends the messages waiting, reads every session's last answer, and
    /// logs every session out. The first error is returned; the other
    /// sessions are still answered and logged out.
    pub fn finish(mut self, totals: &mut Totals) -> Result<()> {
        let mut result = self.flush();
        totals.bytes_read += self.bytes_read;
        for (_, pool) in self.pools {
            for mut s in pool.conns {
                let settled = s.settle();
                if result.is_ok() {
                    result = settled;
                }
                totals.bytes_read += s.bytes_read();
                s.logout();
            }
        }
        result
    }
}

/// Session `i` of `pool`.
fn session_at(pool: &mut Pool, i: usize) -> Result<&mut Session<TcpStream>> {
    pool.conns
        .get_mut(i)
        .ok_or_else(|| Error::Other("session vanished".into()))
}

#[cfg(test)]
mod tests {
    //! The restorer against a scripted IMAP server on 127.0.0.1 that
    //! refuses every connection after the first.

    use super::*;
    use crate::ids::{self, Id};
    use crate::imap::Auth;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// Reads one command (with its LITERAL+ literals); None at the end.
    fn command(r: &mut impl BufRead) -> Option<(String, usize)> {
        let mut text = String::new();
        let mut literals = 0;
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).ok()? == 0 {
                return None;
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let trimmed = line.trim_end();
            text.push_str(trimmed);
            let Some(n) = trimmed
                .strip_suffix("+}")
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<u64>().ok())
            else {
                return Some((text, literals));
            };
            literals += 1;
            std::io::copy(&mut r.by_ref().take(n), &mut std::io::sink()).ok()?;
        }
    }

    /// The commands the server took, and the messages APPENDed.
    type Seen = Arc<Mutex<(Vec<String>, usize)>>;

    /// A server: the first connection works (commands recorded, APPENDed
    /// messages counted), later ones get a BYE.
    fn server() -> (SocketAddr, Seen) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new((Vec::new(), 0)));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (i, c) in l.incoming().enumerate() {
                let Ok(mut c) = c else { return };
                if i > 0 {
                    let _ = c.write_all(b"* BYE Too many connections from this user\r\n");
                    continue;
                }
                let log = log.clone();
                std::thread::spawn(move || {
                    let caps = "IMAP4rev1 SASL-IR LITERAL+ MULTIAPPEND AUTH=PLAIN";
                    let _ = write!(c, "* OK [CAPABILITY {caps}] hi\r\n");
                    let mut r = BufReader::new(c.try_clone().unwrap());
                    while let Some((cmd, literals)) = command(&mut r) {
                        let (tag, rest) = cmd.split_once(' ').unwrap_or((&cmd, ""));
                        let verb = rest.split(' ').next().unwrap_or("").to_owned();
                        let mut out = String::new();
                        match verb.as_str() {
                            "CAPABILITY" => out.push_str(&format!("* CAPABILITY {caps}\r\n")),
                            "LIST" if rest.ends_with("\"\" \"\"") => {
                                out.push_str("* LIST (\\Noselect) \"/\" \"\"\r\n")
                            }
                            "APPEND" => log.lock().unwrap().1 += literals,
                            "LOGOUT" => out.push_str("* BYE bye\r\n"),
                            _ => {}
                        }
                        log.lock().unwrap().0.push(verb.clone());
                        out.push_str(&format!("{tag} OK done\r\n"));
                        if c.write_all(out.as_bytes()).is_err() || verb == "LOGOUT" {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn target(addr: SocketAddr, mailbox: &str) -> ImapId {
        match ids::parse(&format!("imap://alice@{addr}/{mailbox}")) {
            Ok(Id::Imap(i)) => i,
            other => panic!("{other:?}"),
        }
    }

    fn item(id: &str, kind: Kind) -> Item {
        Item {
            id: id.into(),
            kind,
            size: 0,
            mtime: None,
            attributes: Vec::new(),
            change_token: None,
        }
    }

    #[test]
    fn a_server_that_refuses_a_second_connection_gets_everything_over_one() {
        let (addr, seen) = server();
        let login = Login {
            password: "pw".into(),
            auth: Auth::Auto,
        };
        let mut r = Restorer::new(login, false, 2);
        let user = ids::parse(&format!("imap://alice@{addr}")).unwrap();
        let Id::Imap(user) = user else { panic!() };
        r.item(&item(&user.to_string(), Kind::User), &user, b"")
            .unwrap();
        for folder in ["A", "B", "C"] {
            let t = target(addr, folder);
            r.item(&item(&t.to_string(), Kind::Folder), &t, b"")
                .unwrap();
            for k in 0..3 {
                let body = format!("Message-ID: <{folder}{k}@x>\r\n\r\nbody\r\n");
                assert_eq!(
                    r.item(&item("m", Kind::Message), &t, body.as_bytes())
                        .unwrap(),
                    Outcome::Restored(body.len() as u64)
                );
            }
        }
        let notes = r.take_notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("over 1 IMAP connection(s), not 2")
                && notes[0].contains("Too many connections"),
            "{notes:?}"
        );
        let mut totals = Totals::default();
        r.finish(&mut totals).unwrap();
        let (verbs, appended) = seen.lock().unwrap().clone();
        assert_eq!(appended, 9, "every message went over the one connection");
        assert_eq!(verbs.iter().filter(|v| *v == "APPEND").count(), 3);
        assert_eq!(verbs.last().map(String::as_str), Some("LOGOUT"));
        assert!(totals.bytes_read > 0);
    }
}
