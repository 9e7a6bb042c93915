//! Item ids of the mail plugin.
//!
//! IMAP, after RFC 5092 (IMAP URLs):
//! - `imap://USER@IP:PORT` — a user's whole store
//! - `imap://USER@IP:PORT/Archive/2024` — a mailbox, hierarchy levels
//!   separated by `/` whatever the server's own delimiter is
//! - `imap://USER@IP:PORT/INBOX/;UIDVALIDITY=V/;UID=N` — one message
//!   (RFC 5092's own `INBOX;UIDVALIDITY=V/;UID=N` is accepted too)
//!
//! Maildir++ stores, read and written through file grants:
//! - `maildir:///ABS/ROOT` — the store (its own cur/new/tmp are INBOX)
//! - `maildir:///ABS/ROOT/;MAILBOX=Archive/2024` — a folder (`.Archive.2024`)
//! - `maildir:///ABS/ROOT/;MAILBOX=INBOX/;FILE=UNIQUE` — one message file,
//!   named by the unique part of its file name (before `:2,`)
//!
//! USER and each mailbox level are UTF-8, percent-encoded except for
//! RFC 5092's `achar` (unreserved, `&`, `=`, `~`), so a `/` inside a level
//! is `%2F` and `;` never appears unescaped. IP is an address, never a name:
//! the sandbox grants connections to addresses. PORT defaults to 143.

use std::net::{IpAddr, SocketAddr};

/// A parsed `imap://` id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImapId {
    /// The login name.
    pub user: String,
    /// The server's address.
    pub addr: SocketAddr,
    /// Mailbox hierarchy levels; empty for the whole user.
    pub mailbox: Vec<String>,
    /// `(UIDVALIDITY, UID)` of one message.
    pub message: Option<(u32, u32)>,
}

/// A parsed `maildir://` id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MaildirId {
    /// The store's absolute root directory.
    pub root: String,
    /// Folder hierarchy levels; `["INBOX"]` is the root's own cur/new.
    /// Empty for the whole store.
    pub mailbox: Vec<String>,
    /// The unique part of one message's file name.
    pub file: Option<String>,
}

/// What an id names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// On an IMAP server.
    Imap(ImapId),
    /// In a Maildir++ store.
    Maildir(MaildirId),
}

/// Parses an item id.
pub fn parse(id: &str) -> Result<Id, String> {
    if let Some(rest) = id.strip_prefix("imap://") {
        return parse_imap(rest)
            .map(Id::Imap)
            .map_err(|e| format!("item id {id:?}: {e}"));
    }
    if let Some(rest) = id.strip_prefix("maildir://") {
        return parse_maildir(rest)
            .map(Id::Maildir)
            .map_err(|e| format!("item id {id:?}: {e}"));
    }
    Err(format!(
        "item id {id:?} is neither imap://USER@IP:PORT[/MAILBOX[/;UIDVALIDITY=V/;UID=N]] nor maildir:///ABS/PATH"
    ))
}

fn parse_imap(rest: &str) -> Result<ImapId, String> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (user, hostport) = authority
        .rsplit_once('@')
        .ok_or("no USER@ before the host")?;
    // `;AUTH=...` in the user part (RFC 5092) is accepted and ignored: the
    // `auth` option chooses the mechanism.
    let user = user.split(';').next().unwrap_or("");
    let user = decode(user)?;
    if user.is_empty() {
        return Err("empty user name".into());
    }
    let addr = parse_addr(hostport, 143)?;
    let mut id = ImapId {
        user,
        addr,
        mailbox: Vec::new(),
        message: None,
    };
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Ok(id);
    }
    let mut uidvalidity = None;
    let mut uid = None;
    for seg in path.split('/') {
        if uid.is_some() {
            return Err("nothing may follow ;UID=N".into());
        }
        let (name, param) = match seg.find(';') {
            Some(i) => (&seg[..i], Some(&seg[i..])),
            None => (seg, None),
        };
        if !name.is_empty() {
            if uidvalidity.is_some() {
                return Err("a mailbox level after ;UIDVALIDITY".into());
            }
            let level = decode(name)?;
            id.mailbox.push(level);
        } else if param.is_none() {
            return Err("an empty mailbox level".into());
        }
        match param {
            None => {}
            Some(p) => {
                if let Some(v) = strip_prefix_ci(p, ";UIDVALIDITY=") {
                    uidvalidity = Some(number(v, "UIDVALIDITY")?);
                } else if let Some(v) = strip_prefix_ci(p, ";UID=") {
                    uid = Some(number(v, "UID")?);
                } else {
                    return Err(format!("unknown parameter {p:?}"));
                }
            }
        }
    }
    if id.mailbox.is_empty() && (uid.is_some() || uidvalidity.is_some()) {
        return Err("a UID without a mailbox".into());
    }
    match (uidvalidity, uid) {
        (None, None) => {}
        (Some(v), Some(u)) => id.message = Some((v, u)),
        (None, Some(_)) => return Err(";UID=N needs ;UIDVALIDITY=V before it".into()),
        (Some(_), None) => return Err(";UIDVALIDITY=V without ;UID=N".into()),
    }
    Ok(id)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn number(v: &str, what: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n > 0 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("{what}={v:?} is not a positive number")),
    }
}

fn parse_addr(hostport: &str, default_port: u16) -> Result<SocketAddr, String> {
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h.split_once(']').ok_or("unclosed [ in the host")?;
        if !p.is_empty() && !p.starts_with(':') {
            return Err(format!("junk after ] in {hostport:?}"));
        }
        (h, p.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let ip: IpAddr = host.parse().map_err(|_| {
        format!("host {host:?} is not an IP address (the sandbox connects to addresses only, never resolves names)")
    })?;
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("bad port {p:?}")),
        },
    };
    Ok(SocketAddr::new(ip, port))
}

fn parse_maildir(rest: &str) -> Result<MaildirId, String> {
    let (root, tail) = match rest.find("/;") {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest.strip_suffix('/').unwrap_or(rest), None),
    };
    check_path(root)?;
    let mut id = MaildirId {
        root: root.to_owned(),
        mailbox: Vec::new(),
        file: None,
    };
    let Some(tail) = tail else { return Ok(id) };
    let tail =
        strip_prefix_ci(tail, ";MAILBOX=").ok_or("expected /;MAILBOX=NAME after the root")?;
    let (mailbox, file) = match tail.find("/;") {
        Some(i) => (&tail[..i], Some(&tail[i + 1..])),
        None => (tail, None),
    };
    for level in mailbox.split('/') {
        let level = decode(level)?;
        if level.is_empty() {
            return Err("an empty mailbox level".into());
        }
        id.mailbox.push(level);
    }
    if let Some(f) = file {
        let f = strip_prefix_ci(f, ";FILE=").ok_or("expected /;FILE=NAME after the mailbox")?;
        let f = decode(f)?;
        if f.is_empty() || f.contains('/') || f.contains(':') || f.starts_with('.') {
            return Err(format!("bad message file name {f:?}"));
        }
        id.file = Some(f);
    }
    Ok(id)
}

fn check_path(path: &str) -> Result<(), String> {
    let rest = path.strip_prefix('/').ok_or("the path is not absolute")?;
    if path.contains('\0') {
        return Err("the path contains NUL".into());
    }
    if rest.is_empty() {
        return Err("the path is /".into());
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("the path has an empty, '.' or '..' component".into());
    }
    Ok(())
}

fn decode(s: &str) -> Result<String, String> {
    let s = attache_plugin_sdk::ids::percent_decode(s)?;
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{s:?} contains a control character"));
    }
    Ok(s)
}

/// Percent-encodes a user name or one mailbox level (RFC 5092 `achar`).
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'&' | b'=') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn levels(mailbox: &[String]) -> String {
    mailbox
        .iter()
        .map(|l| encode(l))
        .collect::<Vec<_>>()
        .join("/")
}

impl ImapId {
    /// The user's id: `imap://USER@IP:PORT`.
    pub fn user_id(&self) -> ImapId {
        ImapId {
            mailbox: Vec::new(),
            message: None,
            ..self.clone()
        }
    }

    /// The id of mailbox `levels` of the same user.
    pub fn with_mailbox(&self, levels: Vec<String>) -> ImapId {
        ImapId {
            mailbox: levels,
            message: None,
            ..self.clone()
        }
    }

    /// The id of a message in this id's mailbox.
    pub fn with_message(&self, uidvalidity: u32, uid: u32) -> ImapId {
        ImapId {
            message: Some((uidvalidity, uid)),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for ImapId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "imap://{}@{}", encode(&self.user), self.addr)?;
        if !self.mailbox.is_empty() {
            write!(f, "/{}", levels(&self.mailbox))?;
            if let Some((v, u)) = self.message {
                write!(f, "/;UIDVALIDITY={v}/;UID={u}")?;
            }
        }
        Ok(())
    }
}

impl MaildirId {
    /// The id of folder `levels` in the same store.
    pub fn with_mailbox(&self, levels: Vec<String>) -> MaildirId {
        MaildirId {
            mailbox: levels,
            file: None,
            ..self.clone()
        }
    }
}

impl std::fmt::Display for MaildirId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "maildir://{}", self.root)?;
        if !self.mailbox.is_empty() {
            write!(f, "/;MAILBOX={}", levels(&self.mailbox))?;
            if let Some(file) = &self.file {
                write!(f, "/;FILE={}", encode(file))?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Imap(i) => i.fmt(f),
            Id::Maildir(m) => m.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imap(s: &str) -> ImapId {
        match parse(s).unwrap() {
            Id::Imap(i) => i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_imap_ids() {
        let u = imap("imap://alice@127.0.0.1:1143");
        assert_eq!((u.user.as_str(), u.addr.port()), ("alice", 1143));
        assert!(u.mailbox.is_empty() && u.message.is_none());
        let m = imap("imap://alice@127.0.0.1:1143/Archive/2024");
        assert_eq!(m.mailbox, ["Archive", "2024"]);
        let msg = imap("imap://alice@127.0.0.1:1143/INBOX/;UIDVALIDITY=17/;UID=42");
        assert_eq!(
            (msg.mailbox.clone(), msg.message),
            (vec!["INBOX".to_string()], Some((17, 42)))
        );
        assert_eq!(
            msg.to_string(),
            "imap://alice@127.0.0.1:1143/INBOX/;UIDVALIDITY=17/;UID=42"
        );
        // RFC 5092's own form.
        assert_eq!(
            imap("imap://alice@127.0.0.1:1143/INBOX;UIDVALIDITY=17/;UID=42"),
            msg
        );
        assert_eq!(
            imap("imap://alice@[::1]/INBOX").addr,
            "[::1]:143".parse().unwrap()
        );
        assert_eq!(imap("imap://alice;AUTH=*@10.0.0.1:143").user, "alice");
    }

    #[test]
    fn encodes_names() {
        let id = ImapId {
            user: "a@b.example".into(),
            addr: "127.0.0.1:143".parse().unwrap(),
            mailbox: vec!["Entwürfe".into(), "a/b;c d".into()],
            message: Some((1, 2)),
        };
        let s = id.to_string();
        assert_eq!(
            s,
            "imap://a%40b.example@127.0.0.1:143/Entw%C3%BCrfe/a%2Fb%3Bc%20d/;UIDVALIDITY=1/;UID=2"
        );
        assert_eq!(imap(&s), id);
    }

    #[test]
    fn parses_maildir_ids() {
        let Id::Maildir(m) =
            parse("maildir:///home/u/.maildir/;MAILBOX=Archive/2024/;FILE=17.M1P2.h").unwrap()
        else {
            panic!()
        };
        assert_eq!(m.root, "/home/u/.maildir");
        assert_eq!(m.mailbox, ["Archive", "2024"]);
        assert_eq!(m.file.as_deref(), Some("17.M1P2.h"));
        assert_eq!(
            m.to_string(),
            "maildir:///home/u/.maildir/;MAILBOX=Archive/2024/;FILE=17.M1P2.h"
        );
        let Id::Maildir(r) = parse("maildir:///srv/mail").unwrap() else {
            panic!()
        };
        assert!(r.mailbox.is_empty() && r.file.is_none());
    }

    #[test]
    fn refuses_bad_ids() {
        for bad in [
            "imap://127.0.0.1:143",
            "imap://u@mail.example.org:143",
            "imap://u@127.0.0.1:0",
            "imap://u@127.0.0.1/INBOX/;UID=3",
            "imap://u@127.0.0.1/INBOX/;UIDVALIDITY=3",
            "imap://u@127.0.0.1/INBOX/;UIDVALIDITY=0/;UID=1",
            "imap://u@127.0.0.1/INBOX/;UIDVALIDITY=1/;UID=1/x",
            "imap://u@127.0.0.1/a//b",
            "imap://u@127.0.0.1/a%zz",
            "imap://u@127.0.0.1/a%0Ab",
            "maildir://relative",
            "maildir:///a/../b",
            "maildir:///",
            "maildir:///a/;FILE=x",
            "maildir:///a/;MAILBOX=INBOX/;FILE=.x",
            "pop3://u@127.0.0.1",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
