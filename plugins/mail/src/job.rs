//! The plugin's calls, on the crate's own types: `lib.rs` adapts them to
//! the WIT contract, the native tests call them directly.

use crate::backup::{self, Login};
use crate::error::{Error, Result};
use crate::ids::{self, Id, ImapId, MaildirId};
use crate::imap::Session;
use crate::model::{Kind, Sink, Source, Totals};
use crate::options::{self, Options};
use crate::restore::{Outcome, Restorer};
use crate::{maildir, rename};

/// Where restored items go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Where they came from.
    Original,
    /// Under another root (Maildir only: the runner grants ROOT+PATH under
    /// the name PATH, so paths are addressed as for `Original`).
    Alternate(String),
    /// Under other ids.
    Renamed(Vec<(String, String)>),
}

fn parse(id: &str) -> Result<Id> {
    ids::parse(id).map_err(Error::Invalid)
}

fn login(opts: &Options) -> Result<Login> {
    Ok(Login {
        password: options::password(opts)?,
        auth: options::auth(opts)?,
    })
}

/// Backs up `selection`.
pub fn backup(selection: &[String], opts: &Options, sink: &mut dyn Sink) -> Result<Totals> {
    options::check(opts)?;
    let mut imap: Vec<ImapId> = Vec::new();
    let mut mdir: Vec<MaildirId> = Vec::new();
    for s in selection {
        match parse(s)? {
            Id::Imap(i) => imap.push(i),
            Id::Maildir(m) => mdir.push(m),
        }
    }
    let mut totals = Totals::default();
    maildir::backup(&mdir, sink, &mut totals)?;
    if !imap.is_empty() {
        backup::backup(&imap, &login(opts)?, sink, &mut totals)?;
    }
    sink.log(&format!(
        "{} items, {} bytes of content, {} messages unchanged since the parent snapshot, {} bytes read from IMAP servers",
        totals.items, totals.bytes, totals.skipped, totals.bytes_read
    ));
    Ok(totals)
}

/// Restores what `source` yields.
pub fn restore(
    dest: &Destination,
    overwrite: bool,
    opts: &Options,
    source: &mut dyn Source,
) -> Result<Totals> {
    options::check(opts)?;
    let mut totals = Totals::default();
    let mut imap: Option<Restorer> = None;
    let result = (|| {
        while let Some((item, content)) = source.next()? {
            let target = match dest {
                Destination::Renamed(map) => rename::target(&item.id, map),
                _ => item.id.clone(),
            };
            let outcome = match (parse(&item.id)?, parse(&target)?) {
                (Id::Imap(_), Id::Imap(t)) => {
                    if let Destination::Alternate(root) = dest {
                        return Err(Error::Invalid(format!(
                            "IMAP items are restored into a server, not below {root}: use the original place or --as another mailbox or user"
                        )));
                    }
                    if imap.is_none() {
                        imap = Some(Restorer::new(
                            login(opts)?,
                            overwrite,
                            options::connections(opts)?,
                        ));
                    }
                    let Some(r) = imap.as_mut() else {
                        return Err(Error::Other("no IMAP restorer".into()));
                    };
                    let outcome = r.item(&item, &t, &content);
                    for note in r.take_notes() {
                        source.log(&note);
                    }
                    outcome?
                }
                (Id::Maildir(s), Id::Maildir(t)) => {
                    maildir::restore(&item, &s, &t, &content, overwrite)?
                }
                _ => {
                    return Err(Error::Invalid(format!(
                        "{} cannot be restored as {target}: IMAP and Maildir ids do not mix",
                        item.id
                    )))
                }
            };
            match outcome {
                Outcome::Restored(bytes) => {
                    totals.items += 1;
                    totals.bytes += bytes;
                }
                Outcome::Present => {
                    totals.skipped += 1;
                    source.log(&format!(
                        "{target}: a message with the same Message-ID is already there; left alone (overwrite appends a copy)"
                    ));
                }
            }
            if item.kind == Kind::Message && totals.items % 500 == 0 {
                source.log(&format!("{} items restored", totals.items));
            }
        }
        Ok(())
    })();
    // Messages already queued are sent even when a later item failed: as
    // if each had been appended when it came.
    let finished = match imap {
        Some(r) => r.finish(&mut totals),
        None => Ok(()),
    };
    result?;
    finished?;
    source.log(&format!(
        "{} items restored ({} bytes), {} already present and left alone",
        totals.items, totals.bytes, totals.skipped
    ));
    Ok(totals)
}

/// One entry of `discover`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: Kind,
    /// Its size where known.
    pub size: Option<u64>,
    /// Whether there is more below.
    pub has_children: bool,
}

/// Lists what is below `scope`: a user's folders, a folder's subfolders
/// (all of them with `depth` > 0) and messages.
pub fn discover(scope: Option<&str>, depth: u32, opts: &Options) -> Result<Vec<Entry>> {
    options::check(opts)?;
    let Some(scope) = scope else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    match parse(scope)? {
        Id::Imap(id) => {
            if id.message.is_some() {
                return Ok(out);
            }
            let l = login(opts)?;
            let mut s = Session::connect(id.addr, &id.user, &l.password, l.auth)?;
            let all = s.list("*")?;
            let base = id.mailbox.len();
            if base > 0 && !all.iter().any(|m| m.levels == id.mailbox) {
                return Err(Error::Application(format!(
                    "mailbox {:?} does not exist ({id})",
                    id.mailbox.join("/")
                )));
            }
            for m in &all {
                if m.levels.len() > base
                    && m.levels.starts_with(&id.mailbox)
                    && m.levels.len() <= base + 1 + depth as usize
                {
                    out.push(Entry {
                        id: id.with_mailbox(m.levels.clone()).to_string(),
                        kind: Kind::Folder,
                        size: None,
                        has_children: true,
                    });
                }
            }
            if base > 0 {
                let wire = s.wire_name(&id.mailbox)?;
                let sel = s.open(&wire, true, &id.mailbox.join("/"))?;
                if sel.exists > 0 && sel.uidnext > 1 {
                    for m in s.fetch_meta(&format!("1:{}", sel.uidnext - 1))? {
                        out.push(Entry {
                            id: id.with_message(sel.uidvalidity, m.uid).to_string(),
                            kind: Kind::Message,
                            size: Some(m.size),
                            has_children: false,
                        });
                    }
                }
            }
            s.logout();
        }
        Id::Maildir(id) => {
            for (levels, _) in maildir::folders(&id.root)? {
                if levels.len() > id.mailbox.len() && levels.starts_with(&id.mailbox) {
                    out.push(Entry {
                        id: id.with_mailbox(levels).to_string(),
                        kind: Kind::Folder,
                        size: None,
                        has_children: true,
                    });
                }
            }
        }
    }
    Ok(out)
}
