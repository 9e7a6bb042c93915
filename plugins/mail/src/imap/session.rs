//! One logged-in IMAP session: the commands the plugin uses, each returning
//! typed results or a clear error naming the server and the mailbox.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::command::{pieces, Arg, Piece};
use super::response::{Kind, Reader, Response, Status, Token};
use crate::error::{Error, Result};
use crate::utf7;

/// How to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// AUTHENTICATE PLAIN where offered, else LOGIN.
    Auto,
    /// LOGIN.
    Login,
    /// AUTHENTICATE PLAIN.
    Plain,
}

/// A mailbox as LIST shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// The name on the wire (modified UTF-7).
    pub wire: String,
    /// Hierarchy levels, decoded.
    pub levels: Vec<String>,
    /// The hierarchy delimiter, if any.
    pub delimiter: Option<char>,
    /// Attributes (`\Noselect`, `\HasChildren`, `\Sent`, ...).
    pub attributes: Vec<String>,
}

impl MailboxInfo {
    /// Whether it can hold messages.
    pub fn selectable(&self) -> bool {
        !self.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        })
    }
}

/// What EXAMINE or SELECT reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selected {
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT: every message present now has a smaller UID.
    pub uidnext: u32,
    /// Messages present.
    pub exists: u32,
}

/// A message's metadata from FETCH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageMeta {
    /// Its UID.
    pub uid: u32,
    /// Flags and keywords, `\Recent` left out.
    pub flags: Vec<String>,
    /// INTERNALDATE as the server wrote it.
    pub internal_date: String,
    /// RFC822.SIZE.
    pub size: u64,
}

/// A message fetched with its content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fetched {
    /// Metadata.
    pub meta: MessageMeta,
    /// The RFC 822 bytes, exactly as stored.
    pub body: Vec<u8>,
}

/// A logged-in session.
pub struct Session<S: Read + Write> {
    io: Reader<S>,
    tag: u32,
    caps: Vec<String>,
    addr: String,
    user: String,
    /// The text of a BYE the server sent, for the error of a closed stream.
    bye: Option<String>,
    /// The hierarchy delimiter of the personal namespace (from LIST "" "").
    pub delimiter: Option<char>,
    /// A MULTIAPPEND being streamed: its tag, mailbox and messages so far.
    open_append: Option<(String, String, usize)>,
    /// A streamed MULTIAPPEND sent whole whose tagged response is not read
    /// yet (see [`Session::append_close`]): tag, mailbox, messages.
    unsettled: Option<(String, String, usize)>,
    /// What is written but not yet sent: sent when it reaches [`OUT_BYTES`]
    /// and before any response is read.
    out: Vec<u8>,
}

/// How much is gathered before it is sent. A restore streams thousands of
/// messages, each an attribute line and a body: sent one by one, with
/// `TCP_NODELAY`, that was two segments (and two reads by the server) per
/// message. Gathered, it is one send for several messages.
const OUT_BYTES: usize = 256 << 10;

/// One message for [`Session::append_many`].
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    /// Flags and keywords (`\Recent` and invalid ones are left out).
    pub flags: &'a [String],
    /// The internal date, as IMAP writes it.
    pub internal_date: Option<&'a str>,
    /// The message's bytes.
    pub body: &'a [u8],
}

fn connect_error(addr: SocketAddr, e: std::io::Error) -> Error {
    use std::io::ErrorKind::*;
    match e.kind() {
        PermissionDenied => Error::Denied(format!(
            "the job does not grant network access to {addr} (the plan asks for it: is it allowed by the policy?): {e}"
        )),
        ConnectionRefused => Error::Application(format!(
            "cannot connect to the IMAP server at {addr}: connection refused (is it running and listening there?)"
        )),
        _ => Error::Application(format!("cannot connect to the IMAP server at {addr}: {e}")),
    }
}

impl Session<TcpStream> {
    /// Connects to `addr` and logs in as `user`.
    pub fn connect(addr: SocketAddr, user: &str, password: &str, auth: Auth) -> Result<Self> {
        let stream = TcpStream::connect(addr).map_err(|e| connect_error(addr, e))?;
        let _ = stream.set_nodelay(true);
        Session::start(stream, &addr.to_string(), user, password, auth)
    }
}

impl<S: Read + Write> Session<S> {
    /// Reads the greeting of a connected stream and logs in.
    pub fn start(stream: S, addr: &str, user: &str, password: &str, auth: Auth) -> Result<Self> {
        let mut s = Session {
            io: Reader::new(stream),
            tag: 0,
            caps: Vec::new(),
            addr: addr.to_owned(),
            user: user.to_owned(),
            bye: None,
            delimiter: None,
            open_append: None,
            unsettled: None,
            out: Vec::new(),
        };
        let greeting = s.io.response()?;
        match greeting.status() {
            Some((Status::Ok, code, _)) => {
                if let Some(c) = code {
                    s.take_caps(&c);
                }
            }
            Some((Status::Preauth, _, _)) => {}
            _ => {
                return Err(Error::Application(format!(
                    "the server at {addr} refused the connection: {}",
                    String::from_utf8_lossy(
                        greeting.lines.first().map(Vec::as_slice).unwrap_or(b"")
                    )
                )))
            }
        }
        if s.caps.is_empty() {
            s.simple(&[Arg::Raw("CAPABILITY")], "CAPABILITY")?;
        }
        if !s.has("IMAP4rev1") {
            return Err(Error::Application(format!(
                "the server at {addr} does not speak IMAP4rev1"
            )));
        }
        s.login(password, auth)?;
        s.caps.clear();
        s.simple(&[Arg::Raw("CAPABILITY")], "CAPABILITY")?;
        let mut delim = None;
        s.run(&[Arg::Raw("LIST"), Arg::Str(b""), Arg::Str(b"")], |r| {
            if let Some(info) = parse_list(r, "LIST")? {
                delim = info.delimiter;
            }
            Ok(())
        })
        .and_then(|st| s.check(st, "LIST"))?;
        s.delimiter = delim;
        Ok(s)
    }

    /// Bytes received from the server so far.
    pub fn bytes_read(&self) -> u64 {
        self.io.bytes_read
    }

    /// Whether the server announced capability `cap`.
    pub fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    fn take_caps(&mut self, code: &str) {
        let mut words = code.split_whitespace();
        if words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("CAPABILITY"))
        {
            self.caps = words.map(str::to_owned).collect();
        }
    }

    fn login(&mut self, password: &str, auth: Auth) -> Result<()> {
        let plain = match auth {
            Auth::Plain => true,
            Auth::Login => false,
            Auth::Auto => self.has("AUTH=PLAIN"),
        };
        if !plain && self.has("LOGINDISABLED") {
            return Err(Error::Application(format!(
                "the server at {} disables LOGIN without TLS (LOGINDISABLED); try the option auth=plain",
                self.addr
            )));
        }
        let user = self.user.clone();
        let status = if plain {
            use base64::Engine;
            let mut token = Vec::new();
            token.push(0);
            token.extend_from_slice(user.as_bytes());
            token.push(0);
            token.extend_from_slice(password.as_bytes());
            let b64 = base64::engine::general_purpose::STANDARD.encode(&token);
            if self.has("SASL-IR") {
                self.run(
                    &[Arg::Raw("AUTHENTICATE PLAIN"), Arg::Raw(&b64)],
                    |_| Ok(()),
                )?
            } else {
                self.authenticate_continued(&b64)?
            }
        } else {
            self.run(
                &[
                    Arg::Raw("LOGIN"),
                    Arg::Str(user.as_bytes()),
                    Arg::Str(password.as_bytes()),
                ],
                |_| Ok(()),
            )?
        };
        match status {
            (Status::Ok, code, _) => {
                if let Some(c) = code {
                    self.take_caps(&c);
                }
                Ok(())
            }
            (_, code, text) => Err(Error::Application(format!(
                "login as {user:?} at {} failed: wrong user name or password? (server: {}{text})",
                self.addr,
                code.map(|c| format!("[{c}] ")).unwrap_or_default()
            ))),
        }
    }

    fn authenticate_continued(&mut self, b64: &str) -> Result<(Status, Option<String>, String)> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.write(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes())?;
        loop {
            self.send()?;
            let r = self.io.response()?;
            match r.kind() {
                Kind::Continuation => self.write(format!("{b64}\r\n").as_bytes())?,
                Kind::Tagged(t) if t == tag => return r.status().ok_or_else(|| bad_status(&r)),
                _ => {}
            }
        }
    }

    /// Queues `b` for the server; see [`OUT_BYTES`].
    fn write(&mut self, b: &[u8]) -> Result<()> {
        if self.out.len() + b.len() > OUT_BYTES {
            self.send()?;
        }
        if b.len() >= OUT_BYTES {
            return self.send_now(b);
        }
        self.out.extend_from_slice(b);
        Ok(())
    }

    /// Sends what [`write`](Self::write) queued.
    fn send(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let sent = self.send_now(&out);
        self.out = out;
        self.out.clear();
        sent
    }

    fn send_now(&mut self, b: &[u8]) -> Result<()> {
        self.io.get_mut().write_all(b).map_err(|e| {
            Error::Application(format!("writing to the IMAP server at {}: {e}", self.addr))
        })
    }

    /// Sends a command; hands each untagged response to `on`; returns the
    /// tagged status.
    pub fn run(
        &mut self,
        args: &[Arg<'_>],
        mut on: impl FnMut(&Response) -> Result<()>,
    ) -> Result<(Status, Option<String>, String)> {
        // Responses come in order: a closed APPEND's first.
        self.settle()?;
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        let plus = self.has("LITERAL+");
        let ps = pieces(&tag, args, plus);
        let mut pending = Vec::new();
        for p in ps {
            match p {
                Piece::Text(t) => pending.extend_from_slice(&t),
                Piece::Literal { bytes, sync } => {
                    if sync {
                        self.write(&pending)?;
                        pending.clear();
                        self.await_continuation(&tag, &mut on)?;
                    }
                    // Large literals go straight out, not through `pending`.
                    self.write(&pending)?;
                    pending.clear();
                    self.write(bytes)?;
                }
            }
        }
        self.write(&pending)?;
        self.finish(&tag, &mut on)
    }

    fn await_continuation(
        &mut self,
        tag: &str,
        on: &mut impl FnMut(&Response) -> Result<()>,
    ) -> Result<()> {
        loop {
            let r = self.read()?;
            match r.kind() {
                Kind::Continuation => return Ok(()),
                Kind::Untagged => on(&r)?,
                Kind::Tagged(t) if t == tag => {
                    let (_, code, text) = r.status().ok_or_else(|| bad_status(&r))?;
                    return Err(Error::Application(format!(
                        "the server at {} refused the command: {}{text}",
                        self.addr,
                        code.map(|c| format!("[{c}] ")).unwrap_or_default()
                    )));
                }
                Kind::Tagged(_) => {}
            }
        }
    }

    fn read(&mut self) -> Result<Response> {
        self.send()?;
        match self.io.response() {
            Ok(r) => {
                if r.kind() == Kind::Untagged {
                    if let Some((Status::Bye, _, text)) = r.status() {
                        self.bye = Some(text);
                    }
                }
                Ok(r)
            }
            Err(e) => Err(match &self.bye {
                Some(b) => Error::Application(format!(
                    "the IMAP server at {} closed the session: {b}",
                    self.addr
                )),
                None => e,
            }),
        }
    }

    fn finish(
        &mut self,
        tag: &str,
        on: &mut impl FnMut(&Response) -> Result<()>,
    ) -> Result<(Status, Option<String>, String)> {
        loop {
            let r = self.read()?;
            match r.kind() {
                Kind::Tagged(t) if t == tag => return r.status().ok_or_else(|| bad_status(&r)),
                Kind::Untagged => {
                    if let Some((Status::Ok, Some(code), _)) = r.status() {
                        self.take_caps(&code);
                    }
                    on(&r)?;
                }
                _ => {}
            }
        }
    }

    fn check(&self, st: (Status, Option<String>, String), what: &str) -> Result<Option<String>> {
        match st {
            (Status::Ok, code, _) => Ok(code),
            (_, code, text) => Err(Error::Application(format!(
                "{what} failed on the IMAP server at {}: {}{text}",
                self.addr,
                code.map(|c| format!("[{c}] ")).unwrap_or_default()
            ))),
        }
    }

    fn simple(&mut self, args: &[Arg<'_>], what: &str) -> Result<Option<String>> {
        let mut caps = None;
        let st = self.run(args, |r| {
            if let Ok(t) = r.tokens() {
                if t.first()
                    .and_then(Token::atom)
                    .is_some_and(|a| a.eq_ignore_ascii_case("CAPABILITY"))
                {
                    caps = Some(t[1..].iter().filter_map(Token::text).collect::<Vec<_>>());
                }
            }
            Ok(())
        })?;
        if let Some(c) = caps {
            self.caps = c;
        }
        self.check(st, what)
    }

    /// The wire name of mailbox `levels` (joined with the delimiter).
    pub fn wire_name(&self, levels: &[String]) -> Result<String> {
        if levels.len() > 1 {
            let d = self.delimiter.ok_or_else(|| {
                Error::Application(format!(
                    "the server at {} has no mailbox hierarchy",
                    self.addr
                ))
            })?;
            if let Some(l) = levels.iter().find(|l| l.contains(d)) {
                return Err(Error::Invalid(format!(
                    "mailbox level {l:?} contains the server's hierarchy delimiter {d:?}"
                )));
            }
        }
        let joined = levels.join(&self.delimiter.map(String::from).unwrap_or_default());
        Ok(utf7::encode(&joined))
    }

    /// Every mailbox (`LIST "" "*"`), or `pattern`.
    pub fn list(&mut self, pattern: &str) -> Result<Vec<MailboxInfo>> {
        self.list_cmd("LIST", pattern)
    }

    /// Subscribed mailboxes' wire names (`LSUB "" "*"`).
    pub fn lsub(&mut self) -> Result<HashSet<String>> {
        Ok(self
            .list_cmd("LSUB", "*")?
            .into_iter()
            .map(|m| m.wire)
            .collect())
    }

    fn list_cmd(&mut self, cmd: &str, pattern: &str) -> Result<Vec<MailboxInfo>> {
        let mut out = Vec::new();
        let st = self.run(
            &[Arg::Raw(cmd), Arg::Str(b""), Arg::Str(pattern.as_bytes())],
            |r| {
                if let Some(info) = parse_list(r, cmd)? {
                    out.push(info);
                }
                Ok(())
            },
        )?;
        self.check(st, cmd)?;
        Ok(out)
    }

    /// EXAMINE (read-only) or SELECT a mailbox.
    pub fn open(&mut self, wire: &str, read_only: bool, shown: &str) -> Result<Selected> {
        let mut sel = Selected::default();
        let mut got_next = false;
        let cmd = if read_only { "EXAMINE" } else { "SELECT" };
        let st = self.run(&[Arg::Raw(cmd), Arg::Str(wire.as_bytes())], |r| {
            if let Some((Status::Ok, Some(code), _)) = r.status() {
                let mut w = code.split_whitespace();
                let key = w.next().unwrap_or("").to_ascii_uppercase();
                let n = w.next().and_then(|v| v.parse::<u32>().ok());
                match (key.as_str(), n) {
                    ("UIDVALIDITY", Some(n)) => sel.uidvalidity = n,
                    ("UIDNEXT", Some(n)) => {
                        sel.uidnext = n;
                        got_next = true;
                    }
                    _ => {}
                }
            } else if let Ok(t) = r.tokens() {
                if t.get(1)
                    .and_then(Token::atom)
                    .is_some_and(|a| a.eq_ignore_ascii_case("EXISTS"))
                {
                    sel.exists = t[0].number().unwrap_or(0) as u32;
                }
            }
            Ok(())
        })?;
        match st {
            (Status::Ok, _, _) => {}
            (_, code, text) => {
                return Err(Error::Application(format!(
                    "mailbox {shown:?} of {:?} cannot be opened at {}: {}{text}",
                    self.user,
                    self.addr,
                    code.map(|c| format!("[{c}] ")).unwrap_or_default()
                )))
            }
        }
        if !got_next {
            // RFC 3501 makes UIDNEXT optional in SELECT; STATUS has it.
            let mut next = None;
            let st = self.run(
                &[
                    Arg::Raw("STATUS"),
                    Arg::Str(wire.as_bytes()),
                    Arg::Raw("(UIDNEXT)"),
                ],
                |r| {
                    if let Ok(t) = r.tokens() {
                        if let Some(Token::List(items)) = t.get(2) {
                            next = pairs(items)
                                .find(|(k, _)| k.eq_ignore_ascii_case("UIDNEXT"))
                                .and_then(|(_, v)| v.number());
                        }
                    }
                    Ok(())
                },
            )?;
            self.check(st, "STATUS")?;
            sel.uidnext = next
                .ok_or_else(|| Error::Other(format!("the server gave no UIDNEXT for {shown:?}")))?
                as u32;
        }
        if sel.uidvalidity == 0 {
            return Err(Error::Other(format!(
                "the server gave no UIDVALIDITY for {shown:?}"
            )));
        }
        Ok(sel)
    }

    /// Flags, internal date and size of the messages with UIDs in `set`.
    pub fn fetch_meta(&mut self, set: &str) -> Result<Vec<MessageMeta>> {
        let mut out = Vec::new();
        let st = self.run(
            &[
                Arg::Raw("UID FETCH"),
                Arg::Raw(set),
                Arg::Raw("(UID FLAGS INTERNALDATE RFC822.SIZE)"),
            ],
            |r| {
                if let Some((meta, _)) = parse_fetch(r)? {
                    out.push(meta);
                }
                Ok(())
            },
        )?;
        self.check(st, "UID FETCH")?;
        Ok(out)
    }

    /// The content of the messages with UIDs in `set`, each handed to `on`
    /// as it arrives.
    pub fn fetch_bodies(
        &mut self,
        set: &str,
        mut on: impl FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        let st = self.run(
            &[
                Arg::Raw("UID FETCH"),
                Arg::Raw(set),
                Arg::Raw("(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"),
            ],
            |r| {
                if let Some((meta, Some(body))) = parse_fetch(r)? {
                    on(Fetched { meta, body })?;
                }
                Ok(())
            },
        )?;
        self.check(st, "UID FETCH").map(|_| ())
    }

    /// The Message-IDs in the open mailbox (trimmed), for duplicate checks.
    pub fn message_ids(&mut self) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        let st = self.run(
            &[
                Arg::Raw("UID FETCH 1:*"),
                Arg::Raw("(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"),
            ],
            |r| {
                if let Some((_, Some(h))) = parse_fetch(r)? {
                    if let Some(id) = crate::header::message_id(&h) {
                        out.insert(id);
                    }
                }
                Ok(())
            },
        )?;
        self.check(st, "UID FETCH")?;
        Ok(out)
    }

    /// Creates a mailbox (an existing one is fine).
    pub fn create(&mut self, wire: &str) -> Result<bool> {
        let st = self.run(&[Arg::Raw("CREATE"), Arg::Str(wire.as_bytes())], |_| Ok(()))?;
        match st {
            (Status::Ok, _, _) => Ok(true),
            (_, Some(code), _) if code.eq_ignore_ascii_case("ALREADYEXISTS") => Ok(false),
            other => self
                .check(other, &format!("CREATE {wire:?}"))
                .map(|_| false),
        }
    }

    /// Subscribes to a mailbox.
    pub fn subscribe(&mut self, wire: &str) -> Result<()> {
        let st = self.run(&[Arg::Raw("SUBSCRIBE"), Arg::Str(wire.as_bytes())], |_| {
            Ok(())
        })?;
        self.check(st, "SUBSCRIBE").map(|_| ())
    }

    /// Appends a message with its flags and internal date; returns its new
    /// UID where the server says (UIDPLUS).
    pub fn append(
        &mut self,
        wire: &str,
        flags: &[String],
        internal_date: Option<&str>,
        body: &[u8],
    ) -> Result<Option<u32>> {
        let flags: Vec<&str> = flags
            .iter()
            .map(String::as_str)
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent") && valid_flag(f))
            .collect();
        let flag_list = format!("({})", flags.join(" "));
        let date = internal_date.map(|d| format!("\"{d}\""));
        let mut args = vec![
            Arg::Raw("APPEND"),
            Arg::Str(wire.as_bytes()),
            Arg::Raw(&flag_list),
        ];
        if let Some(d) = &date {
            args.push(Arg::Raw(d));
        }
        args.push(Arg::Literal(body));
        let st = self.run(&args, |_| Ok(()))?;
        let code = self.check(
            st,
            &format!(
                "APPEND to {:?}",
                utf7::decode(wire).unwrap_or_else(|_| wire.to_owned())
            ),
        )?;
        Ok(code.and_then(|c| {
            let mut w = c.split_whitespace();
            (w.next()?.eq_ignore_ascii_case("APPENDUID")).then_some(())?;
            w.next()?;
            w.next()?.parse().ok()
        }))
    }

    /// Appends `messages` (flags, internal date, bytes) to mailbox `wire`:
    /// in one MULTIAPPEND command (RFC 3502: all or none, and one
    /// transaction on the server, many times faster than one APPEND each)
    /// where the server offers it, else one APPEND each.
    pub fn append_many(&mut self, wire: &str, messages: &[Append<'_>]) -> Result<()> {
        if messages.len() == 1 || !self.has("MULTIAPPEND") {
            for m in messages {
                self.append(wire, m.flags, m.internal_date, m.body)?;
            }
            return Ok(());
        }
        let attrs: Vec<String> = messages.iter().map(append_attrs).collect();
        let mut args = vec![Arg::Raw("APPEND"), Arg::Str(wire.as_bytes())];
        for (m, a) in messages.iter().zip(&attrs) {
            args.push(Arg::Raw(a));
            args.push(Arg::Literal(m.body));
        }
        let st = self.run(&args, |_| Ok(()))?;
        self.check(
            st,
            &format!(
                "APPEND of {} messages to {:?}",
                messages.len(),
                utf7::decode(wire).unwrap_or_else(|_| wire.to_owned())
            ),
        )?;
        Ok(())
    }

    /// Whether messages can be streamed into one MULTIAPPEND as they come
    /// (`append_begin`, `append_more`, `append_end`): the server offers
    /// MULTIAPPEND and LITERAL+, so no literal waits for the server.
    pub fn can_stream_append(&self) -> bool {
        self.has("MULTIAPPEND") && self.has("LITERAL+")
    }

    /// Starts a MULTIAPPEND to mailbox `wire`. Until `append_end`, the
    /// session takes `append_more` and nothing else.
    pub fn append_begin(&mut self, wire: &str) -> Result<()> {
        if self.open_append.is_some() || !self.can_stream_append() {
            return Err(Error::Other(
                "a streamed APPEND is already open, or the server cannot take one".into(),
            ));
        }
        self.settle()?;
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        let ps = pieces(&tag, &[Arg::Raw("APPEND"), Arg::Str(wire.as_bytes())], true);
        let last = ps.len() - 1;
        for (i, p) in ps.into_iter().enumerate() {
            match p {
                // The final CRLF waits for `append_end`.
                Piece::Text(t) if i == last => self.write(&t[..t.len() - 2])?,
                Piece::Text(t) => self.write(&t)?,
                Piece::Literal { bytes, .. } => self.write(bytes)?,
            }
        }
        self.open_append = Some((tag, wire.to_owned(), 0));
        Ok(())
    }

    /// Sends one more message of the open MULTIAPPEND.
    pub fn append_more(&mut self, m: &Append<'_>) -> Result<()> {
        let Some((_, _, n)) = self.open_append.as_mut() else {
            return Err(Error::Other("no streamed APPEND is open".into()));
        };
        *n += 1;
        let head = format!(" {} {{{}+}}\r\n", append_attrs(m), m.body.len());
        self.write(head.as_bytes())?;
        self.write(m.body)
    }

    /// Completes the open MULTIAPPEND and waits for the server's answer:
    /// it appends all its messages or none.
    pub fn append_end(&mut self) -> Result<()> {
        self.append_close()?;
        self.settle()
    }

    /// Completes the open MULTIAPPEND without waiting for the server's
    /// answer: the session can take a command to another mailbox at once,
    /// or stay idle while another session works. The answer is read by
    /// [`settle`](Self::settle), which every later command of this session
    /// calls first, so that a refusal is never lost. Until then the
    /// server may still refuse all of the command's messages (it appends
    /// all or none).
    pub fn append_close(&mut self) -> Result<()> {
        let Some(open) = self.open_append.take() else {
            return Ok(());
        };
        self.write(b"\r\n")?;
        self.send()?;
        self.unsettled = Some(open);
        Ok(())
    }

    /// The mailbox (wire name) of a closed MULTIAPPEND whose answer is not
    /// read yet.
    pub fn unsettled(&self) -> Option<&str> {
        self.unsettled.as_ref().map(|(_, wire, _)| wire.as_str())
    }

    /// Reads the answer to the MULTIAPPEND [`append_close`](Self::append_close)
    /// sent, if any: an error names the mailbox, the number of messages and
    /// the server's words.
    pub fn settle(&mut self) -> Result<()> {
        let Some((tag, wire, n)) = self.unsettled.take() else {
            return Ok(());
        };
        let st = self.finish(&tag, &mut |_| Ok(()))?;
        self.check(
            st,
            &format!(
                "APPEND of {n} messages to {:?}",
                utf7::decode(&wire).unwrap_or(wire.clone())
            ),
        )?;
        Ok(())
    }

    /// Logs out (errors ignored: the work is done).
    pub fn logout(mut self) {
        let _ = self.run(&[Arg::Raw("LOGOUT")], |_| Ok(()));
    }
}

/// `(FLAGS) "DATE"` of an APPEND (without the date when there is none).
fn append_attrs(m: &Append<'_>) -> String {
    let flags: Vec<&str> = m
        .flags
        .iter()
        .map(String::as_str)
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent") && valid_flag(f))
        .collect();
    match m.internal_date {
        Some(d) => format!("({}) \"{d}\"", flags.join(" ")),
        None => format!("({})", flags.join(" ")),
    }
}

fn valid_flag(f: &str) -> bool {
    let body = f.strip_prefix('\\').unwrap_or(f);
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

fn bad_status(r: &Response) -> Error {
    Error::Other(format!(
        "IMAP protocol error: unexpected response {:?}",
        String::from_utf8_lossy(r.lines.first().map(Vec::as_slice).unwrap_or(b""))
    ))
}

fn pairs(items: &[Token]) -> impl Iterator<Item = (&str, &Token)> {
    items
        .chunks(2)
        .filter_map(|c| Some((c.first()?.atom()?, c.get(1)?)))
}

/// Parses `* LIST (attrs) "delim" name` (or LSUB).
fn parse_list(r: &Response, cmd: &str) -> Result<Option<MailboxInfo>> {
    if r.kind() != Kind::Untagged || r.status().is_some() {
        return Ok(None);
    }
    let t = r.tokens()?;
    if !t
        .first()
        .and_then(Token::atom)
        .is_some_and(|a| a.eq_ignore_ascii_case(cmd))
    {
        return Ok(None);
    }
    let bad = || Error::Other(format!("IMAP protocol error: bad {cmd} response"));
    let attributes = match t.get(1) {
        Some(Token::List(a)) => a.iter().filter_map(Token::text).collect(),
        _ => return Err(bad()),
    };
    let delimiter = match t.get(2) {
        Some(Token::Nil) => None,
        Some(tok) => tok.text().and_then(|s| s.chars().next()),
        None => return Err(bad()),
    };
    let wire = t.get(3).and_then(Token::text).ok_or_else(bad)?;
    let name = utf7::decode(&wire).map_err(Error::Other)?;
    let levels = match delimiter {
        Some(d) if !name.is_empty() => name.split(d).map(str::to_owned).collect(),
        _ => vec![name],
    };
    Ok(Some(MailboxInfo {
        wire,
        levels,
        delimiter,
        attributes,
    }))
}

/// Parses `* N FETCH (...)` into metadata and the body or header section.
fn parse_fetch(r: &Response) -> Result<Option<(MessageMeta, Option<Vec<u8>>)>> {
    if r.kind() != Kind::Untagged || r.status().is_some() {
        return Ok(None);
    }
    let t = r.tokens()?;
    if !t
        .get(1)
        .and_then(Token::atom)
        .is_some_and(|a| a.eq_ignore_ascii_case("FETCH"))
    {
        return Ok(None);
    }
    let Some(Token::List(items)) = t.get(2) else {
        return Err(Error::Other(
            "IMAP protocol error: bad FETCH response".into(),
        ));
    };
    let mut meta = MessageMeta::default();
    let mut body = None;
    for (k, v) in pairs(items) {
        let k = k.to_ascii_uppercase();
        match k.as_str() {
            "UID" => meta.uid = v.number().unwrap_or(0) as u32,
            "FLAGS" => {
                if let Token::List(f) = v {
                    meta.flags = f
                        .iter()
                        .filter_map(Token::text)
                        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                        .collect();
                }
            }
            "INTERNALDATE" => meta.internal_date = v.text().unwrap_or_default(),
            "RFC822.SIZE" => meta.size = v.number().unwrap_or(0),
            _ if k.starts_with("BODY[") => body = v.bytes().map(<[u8]>::to_vec),
            _ => {}
        }
    }
    if meta.uid == 0 {
        // An unsolicited FETCH (a flag change by another client): no UID.
        return Ok(None);
    }
    Ok(Some((meta, body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A scripted server: what it will send, and what the client wrote.
    struct Script {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Script {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(b)
        }
    }
    impl Write for Script {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.output.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn session(server: &str) -> Result<Session<Script>> {
        let s = Script {
            input: Cursor::new(server.as_bytes().to_vec()),
            output: Vec::new(),
        };
        Session::start(s, "127.0.0.1:143", "alice", "pw", Auth::Auto)
    }

    const HELLO: &str = "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN] hi\r\n";

    #[test]
    fn logs_in_lists_and_examines() {
        let server = format!(
            "{HELLO}a1 OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] in\r\n* CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS\r\na2 OK\r\n* LIST (\\Noselect) \"/\" \"\"\r\na3 OK\r\n\
             * LIST (\\HasChildren) \"/\" Archive\r\n* LIST () \"/\" \"Archive/Entw&APw-rfe\"\r\na4 OK\r\n\
             * 3 EXISTS\r\n* OK [UIDVALIDITY 77] x\r\n* OK [UIDNEXT 9] x\r\na5 OK [READ-ONLY]\r\n\
             * 1 FETCH (UID 4 FLAGS (\\Seen \\Recent) INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE 3 BODY[] {{3}}\r\nabc)\r\na6 OK\r\n\
             a7 OK [APPENDUID 77 12] done\r\n"
        );
        let mut s = session(&server).unwrap();
        assert!(s.has("UIDPLUS"));
        assert_eq!(s.delimiter, Some('/'));
        let l = s.list("*").unwrap();
        assert_eq!(l[1].levels, ["Archive", "Entwürfe"]);
        let sel = s.open("Archive", true, "Archive").unwrap();
        assert_eq!(
            sel,
            Selected {
                uidvalidity: 77,
                uidnext: 9,
                exists: 3
            }
        );
        let mut got = Vec::new();
        s.fetch_bodies("1:8", |f| {
            got.push(f);
            Ok(())
        })
        .unwrap();
        assert_eq!(got[0].meta.flags, ["\\Seen"]);
        assert_eq!(got[0].body, b"abc");
        let uid = s
            .append(
                "INBOX",
                &["\\Seen".into(), "\\Recent".into()],
                Some("01-Jan-2024 10:00:00 +0000"),
                b"xyz",
            )
            .unwrap();
        assert_eq!(uid, Some(12));
        let out = String::from_utf8(s.io.get_mut().output.clone()).unwrap();
        assert!(
            out.starts_with("a1 AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "a7 APPEND \"INBOX\" (\\Seen) \"01-Jan-2024 10:00:00 +0000\" {3+}\r\nxyz\r\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn multiappend_sends_one_command_where_offered() {
        let seen = vec!["\\Seen".to_owned()];
        let msgs = [
            Append {
                flags: &seen,
                internal_date: Some("01-Jan-2024 10:00:00 +0000"),
                body: b"one",
            },
            Append {
                flags: &[],
                internal_date: None,
                body: b"two!",
            },
        ];
        let server = format!(
            "{HELLO}a1 OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND] in\r\n* CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND\r\na2 OK\r\na3 OK\r\n\
             a4 OK [APPENDUID 7 1:2] done\r\n"
        );
        let mut s = session(&server).unwrap();
        s.append_many("Work", &msgs).unwrap();
        let out = String::from_utf8(s.io.get_mut().output.clone()).unwrap();
        assert!(
            out.ends_with(
                "a4 APPEND \"Work\" (\\Seen) \"01-Jan-2024 10:00:00 +0000\" {3+}\r\none () {4+}\r\ntwo!\r\n"
            ),
            "{out}"
        );
        // Streamed: messages are gathered and go out together, a large one
        // at once; the command ends last.
        let server = format!(
            "{HELLO}a1 OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND] in\r\n* CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND\r\na2 OK\r\na3 OK\r\n\
             a4 OK [APPENDUID 7 1:2] done\r\n"
        );
        let mut s = session(&server).unwrap();
        assert!(s.can_stream_append());
        s.append_begin("Entw&APw-rfe").unwrap();
        assert!(s.append_begin("Other").is_err());
        let before = s.io.get_mut().output.len();
        s.append_more(&msgs[0]).unwrap();
        s.append_more(&msgs[1]).unwrap();
        assert_eq!(s.io.get_mut().output.len(), before, "small messages wait");
        let big = vec![b'x'; OUT_BYTES];
        s.append_more(&Append {
            flags: &[],
            internal_date: None,
            body: &big,
        })
        .unwrap();
        let out = s.io.get_mut().output.clone();
        assert!(out.ends_with(&big), "a large message goes out at once");
        let gathered = String::from_utf8_lossy(&out[before..out.len() - big.len()]);
        assert!(
            gathered.ends_with("{3+}\r\none () {4+}\r\ntwo! () {262144+}\r\n"),
            "{gathered}"
        );
        s.append_end().unwrap();
        let out = String::from_utf8(s.io.get_mut().output.clone()).unwrap();
        assert!(
            out.ends_with(&format!("{}\r\n", "x".repeat(OUT_BYTES)))
                && out.contains(
                    "a4 APPEND \"Entw&APw-rfe\" (\\Seen) \"01-Jan-2024 10:00:00 +0000\" {3+}\r\none () {4+}\r\ntwo! () {262144+}\r\n"
                ),
            "{out}"
        );
        // Without MULTIAPPEND: one APPEND each.
        let server = format!(
            "{HELLO}a1 OK [CAPABILITY IMAP4rev1 LITERAL+] in\r\n* CAPABILITY IMAP4rev1 LITERAL+\r\na2 OK\r\na3 OK\r\na4 OK\r\na5 OK\r\n"
        );
        let mut s = session(&server).unwrap();
        s.append_many("Work", &msgs).unwrap();
        let out = String::from_utf8(s.io.get_mut().output.clone()).unwrap();
        assert!(out.contains("a4 APPEND \"Work\" (\\Seen)"), "{out}");
        assert!(
            out.ends_with("a5 APPEND \"Work\" () {4+}\r\ntwo!\r\n"),
            "{out}"
        );
        // A refusal names the mailbox and the count.
        let server = format!(
            "{HELLO}a1 OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND] in\r\n* CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND\r\na2 OK\r\na3 OK\r\n\
             a4 NO [OVERQUOTA] Quota exceeded\r\n"
        );
        let mut s = session(&server).unwrap();
        let e = s.append_many("Work", &msgs).unwrap_err();
        assert!(
            e.to_string().contains("APPEND of 2 messages to \"Work\""),
            "{e}"
        );
        assert!(e.to_string().contains("Quota exceeded"), "{e}");
    }

    #[test]
    fn a_closed_append_is_answered_before_the_next_command() {
        let m = Append {
            flags: &[],
            internal_date: None,
            body: b"one",
        };
        let server = format!(
            "{HELLO}a1 OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND] in\r\n* CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND\r\na2 OK\r\na3 OK\r\n\
             a4 OK [APPENDUID 7 1] done\r\na5 NO [OVERQUOTA] Quota exceeded\r\na6 OK created\r\n"
        );
        let mut s = session(&server).unwrap();
        s.append_begin("Work").unwrap();
        s.append_more(&m).unwrap();
        s.append_close().unwrap();
        // Sent whole, nothing read yet.
        let out = String::from_utf8(s.io.get_mut().output.clone()).unwrap();
        assert!(
            out.ends_with("a4 APPEND \"Work\" () {3+}\r\none\r\n"),
            "{out}"
        );
        assert_eq!(s.unsettled(), Some("Work"));
        // The next APPEND reads the first one's answer before it begins.
        s.append_begin("Other").unwrap();
        assert_eq!(s.unsettled(), None);
        s.append_more(&m).unwrap();
        s.append_close().unwrap();
        assert_eq!(s.unsettled(), Some("Other"));
        // Any later command fails with the refusal, naming the mailbox;
        // the command itself is not sent.
        let e = s.create("New").unwrap_err();
        assert!(
            e.to_string().contains("APPEND of 1 messages to \"Other\"")
                && e.to_string().contains("Quota exceeded"),
            "{e}"
        );
        assert_eq!(s.unsettled(), None);
        let out = String::from_utf8(s.io.get_mut().output.clone()).unwrap();
        assert!(!out.contains("CREATE"), "{out}");
        // Then the session goes on.
        assert!(s.create("New").unwrap());
        // Nothing closed: settling reads nothing.
        s.settle().unwrap();
    }

    #[test]
    fn clear_errors() {
        let e = session(&format!(
            "{HELLO}a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        ))
        .err()
        .unwrap();
        assert!(e.to_string().contains("wrong user name or password"), "{e}");
        let e = session("* BYE too many connections\r\n").err().unwrap();
        assert!(e.to_string().contains("refused"), "{e}");
        let server = format!("{HELLO}a1 OK in\r\n* CAPABILITY IMAP4rev1\r\na2 OK\r\na3 OK\r\na4 NO [NONEXISTENT] Mailbox doesn't exist: Nope\r\n");
        let mut s = session(&server).unwrap();
        let e = s.open("Nope", true, "Nope").unwrap_err();
        assert!(e.to_string().contains("Mailbox doesn't exist"), "{e}");
    }
}
