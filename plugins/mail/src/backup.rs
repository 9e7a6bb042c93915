//! Backup from an IMAP server.
//!
//! Per mailbox, one consistent view: EXAMINE (read-only, so no flag
//! changes), UIDVALIDITY and UIDNEXT recorded first, then the metadata of
//! exactly the UIDs below UIDNEXT, then the content of those not already in
//! the parent snapshot under the same UIDVALIDITY. Mail that arrives meanwhile
//! has a UID at or above UIDNEXT and is left for the next backup; a message
//! expunged meanwhile is a warning.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use crate::error::{Error, Result};
use crate::ids::ImapId;
use crate::imap::command::uid_set;
use crate::imap::{Auth, MailboxInfo, Selected, Session};
use crate::model::{attr, message_attributes, set_attr, Item, Kind, Sink, Totals};

/// How many messages one `UID FETCH` of content asks for.
const BATCH: usize = 200;

/// Credentials for one job.
#[derive(Debug, Clone)]
pub struct Login {
    /// The password.
    pub password: String,
    /// The mechanism.
    pub auth: Auth,
}

/// Backs up `selection` (users, mailboxes and messages) into `sink`.
pub fn backup(
    selection: &[ImapId],
    login: &Login,
    sink: &mut dyn Sink,
    totals: &mut Totals,
) -> Result<()> {
    // One session per user and server, in the order first named.
    let mut groups: Vec<((String, SocketAddr), Vec<&ImapId>)> = Vec::new();
    for id in selection {
        let key = (id.user.clone(), id.addr);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(id),
            None => groups.push((key, vec![id])),
        }
    }
    for ((user, addr), ids) in groups {
        let mut s = Session::connect(addr, &user, &login.password, login.auth)?;
        let result = backup_user(&mut s, &ids, sink, totals);
        totals.bytes_read += s.bytes_read();
        s.logout();
        result?;
    }
    Ok(())
}

fn backup_user(
    s: &mut Session<std::net::TcpStream>,
    ids: &[&ImapId],
    sink: &mut dyn Sink,
    totals: &mut Totals,
) -> Result<()> {
    let user_id = ids[0].user_id();
    let all = s.list("*")?;
    let subscribed = s.lsub()?;
    let by_levels: BTreeMap<Vec<String>, &MailboxInfo> =
        all.iter().map(|m| (m.levels.clone(), m)).collect();
    // Mailboxes to take whole, and single messages.
    let mut whole: BTreeMap<Vec<String>, &MailboxInfo> = BTreeMap::new();
    let mut singles: Vec<&ImapId> = Vec::new();
    let mut user_item = false;
    for id in ids {
        if id.mailbox.is_empty() {
            user_item = true;
            whole.extend(by_levels.iter().map(|(k, v)| (k.clone(), *v)));
        } else if id.message.is_some() {
            singles.push(id);
        } else {
            let below: Vec<_> = by_levels
                .iter()
                .filter(|(k, _)| k.starts_with(&id.mailbox))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            if below.is_empty() {
                return Err(Error::Application(format!(
                    "mailbox {:?} does not exist for {:?} at {} ({id})",
                    id.mailbox.join("/"),
                    id.user,
                    id.addr
                )));
            }
            whole.extend(below);
        }
    }
    if user_item {
        let mut a = vec![("folders".to_owned(), all.len().to_string())];
        if let Some(d) = s.delimiter {
            a.push(("delimiter".into(), d.to_string()));
        }
        sink.emit(
            Item {
                id: user_id.to_string(),
                kind: Kind::User,
                size: 0,
                mtime: None,
                attributes: a,
                change_token: None,
            },
            false,
        )?;
        totals.items += 1;
    }
    for (levels, info) in &whole {
        let mid = user_id.with_mailbox(levels.clone());
        mailbox(s, &mid, info, subscribed.contains(&info.wire), sink, totals)?;
    }
    for id in singles {
        let levels = &id.mailbox;
        if whole.contains_key(levels) {
            continue;
        }
        single(s, id, sink, totals)?;
    }
    Ok(())
}

fn folder_item(
    id: &ImapId,
    info: &MailboxInfo,
    subscribed: bool,
    sel: Option<&Selected>,
    taken: u64,
) -> Item {
    let mut a = vec![
        (
            attr::SUBSCRIBED.to_owned(),
            if subscribed { "yes" } else { "no" }.to_owned(),
        ),
        (attr::LIST_ATTRIBUTES.to_owned(), info.attributes.join(" ")),
    ];
    if let Some(sel) = sel {
        a.push((attr::UIDVALIDITY.into(), sel.uidvalidity.to_string()));
        a.push((attr::UIDNEXT.into(), sel.uidnext.to_string()));
        a.push((attr::MESSAGES.into(), taken.to_string()));
    }
    Item {
        id: id.to_string(),
        kind: Kind::Folder,
        size: 0,
        mtime: None,
        attributes: a,
        change_token: None,
    }
}

fn mailbox(
    s: &mut Session<std::net::TcpStream>,
    id: &ImapId,
    info: &MailboxInfo,
    subscribed: bool,
    sink: &mut dyn Sink,
    totals: &mut Totals,
) -> Result<()> {
    if !info.selectable() {
        sink.emit(folder_item(id, info, subscribed, None, 0), false)?;
        totals.items += 1;
        return Ok(());
    }
    let shown = id.mailbox.join("/");
    let sel = s.open(&info.wire, true, &shown)?;
    let metas = if sel.exists > 0 && sel.uidnext > 1 {
        s.fetch_meta(&format!("1:{}", sel.uidnext - 1))?
    } else {
        Vec::new()
    };
    let metas: Vec<_> = metas.into_iter().filter(|m| m.uid < sel.uidnext).collect();
    sink.emit(
        folder_item(id, info, subscribed, Some(&sel), metas.len() as u64),
        false,
    )?;
    totals.items += 1;
    let mut todo: Vec<u32> = Vec::new();
    let mut flags: HashMap<u32, (Vec<String>, String)> = HashMap::new();
    for m in &metas {
        let mid = id.with_message(sel.uidvalidity, m.uid);
        let token = format!("{}:{}", sel.uidvalidity, m.uid);
        let key = mid.to_string();
        match sink.previous(&key) {
            Some(p) if p.change_token.as_deref() == Some(token.as_str()) => {
                // The same UIDVALIDITY and UID: the same bytes (RFC 3501
                // 2.3.1.1). Only the flags may have changed.
                let mut a = p.attributes.clone();
                set_attr(&mut a, attr::FLAGS, m.flags.join(" "));
                sink.emit(
                    Item {
                        id: key,
                        kind: Kind::Message,
                        size: p.size,
                        mtime: crate::date::parse(&m.internal_date),
                        attributes: a,
                        change_token: Some(token),
                    },
                    true,
                )?;
                totals.items += 1;
                totals.skipped += 1;
            }
            _ => {
                todo.push(m.uid);
                flags.insert(m.uid, (m.flags.clone(), m.internal_date.clone()));
            }
        }
    }
    let mut got: HashSet<u32> = HashSet::new();
    for batch in todo.chunks(BATCH) {
        s.fetch_bodies(&uid_set(batch), |f| {
            if !flags.contains_key(&f.meta.uid) || !got.insert(f.meta.uid) {
                return Ok(());
            }
            emit_message(
                id,
                sel.uidvalidity,
                &f.meta.flags,
                &f.meta.internal_date,
                f.meta.uid,
                &f.body,
                sink,
                totals,
            )
        })?;
    }
    for uid in todo {
        if !got.contains(&uid) {
            let mid = id.with_message(sel.uidvalidity, uid).to_string();
            sink.warn(&mid, "expunged from the server during the backup");
            totals.warnings += 1;
        }
    }
    Ok(())
}

#[allow(
    clippy::too_many_arguments,
    reason = "one message's parts, each from a different FETCH item"
)]
fn emit_message(
    mailbox: &ImapId,
    uidvalidity: u32,
    flags: &[String],
    internal_date: &str,
    uid: u32,
    body: &[u8],
    sink: &mut dyn Sink,
    totals: &mut Totals,
) -> Result<()> {
    let id = mailbox.with_message(uidvalidity, uid);
    sink.emit_content(
        Item {
            id: id.to_string(),
            kind: Kind::Message,
            size: body.len() as u64,
            mtime: crate::date::parse(internal_date),
            attributes: message_attributes(body, flags, internal_date),
            change_token: Some(format!("{uidvalidity}:{uid}")),
        },
        body,
    )?;
    totals.items += 1;
    totals.bytes += body.len() as u64;
    Ok(())
}

fn single(
    s: &mut Session<std::net::TcpStream>,
    id: &ImapId,
    sink: &mut dyn Sink,
    totals: &mut Totals,
) -> Result<()> {
    let Some((uidvalidity, uid)) = id.message else {
        return Ok(());
    };
    let shown = id.mailbox.join("/");
    let wire = s.wire_name(&id.mailbox)?;
    let sel = s.open(&wire, true, &shown)?;
    if sel.uidvalidity != uidvalidity {
        return Err(Error::Application(format!(
            "{id}: mailbox {shown:?} now has UIDVALIDITY {} (the message's UID no longer names it)",
            sel.uidvalidity
        )));
    }
    let mailbox = id.with_mailbox(id.mailbox.clone());
    let mut found = false;
    s.fetch_bodies(&uid.to_string(), |f| {
        if f.meta.uid != uid || found {
            return Ok(());
        }
        found = true;
        emit_message(
            &mailbox,
            uidvalidity,
            &f.meta.flags,
            &f.meta.internal_date,
            uid,
            &f.body,
            sink,
            totals,
        )
    })?;
    if !found {
        return Err(Error::Application(format!(
            "{id}: no message with UID {uid} in mailbox {shown:?}"
        )));
    }
    Ok(())
}
