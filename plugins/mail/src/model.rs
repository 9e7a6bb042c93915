//! What backup and restore exchange with the runner, independent of the WIT
//! bindings: `lib.rs` adapts these traits to `backup-sink` and
//! `restore-source`, the native tests to memory.

use crate::error::Result;

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A user's store (`mailbox` in the contract).
    User,
    /// A folder (`directory`).
    Folder,
    /// One message (`message`).
    Message,
}

/// One item with its catalog metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: Kind,
    /// Content size in bytes.
    pub size: u64,
    /// A message's internal date (seconds since the epoch).
    pub mtime: Option<i64>,
    /// Catalog attributes (subject, from, flags, ...).
    pub attributes: Vec<(String, String)>,
    /// `UIDVALIDITY:UID` of an IMAP message, the file's unique name of a
    /// Maildir one: equal tokens mean equal content.
    pub change_token: Option<String>,
}

impl Item {
    /// The value of attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An item as the parent snapshot has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// Its change token.
    pub change_token: Option<String>,
    /// Its attributes.
    pub attributes: Vec<(String, String)>,
    /// Its size.
    pub size: u64,
}

/// Where a backup sends items.
pub trait Sink {
    /// The item in the parent snapshot, if any.
    fn previous(&mut self, id: &str) -> Option<Previous>;
    /// An item without content (`unchanged`: the parent's content stands).
    fn emit(&mut self, item: Item, unchanged: bool) -> Result<()>;
    /// An item with its content, streamed in pieces.
    fn emit_content(&mut self, item: Item, content: &[u8]) -> Result<()>;
    /// An item that could not be taken; the backup goes on.
    fn warn(&mut self, id: &str, message: &str);
    /// A line for the job's log.
    fn log(&mut self, message: &str);
}

/// Where a restore takes items from.
pub trait Source {
    /// The next item and its content.
    fn next(&mut self) -> Result<Option<(Item, Vec<u8>)>>;
    /// An item that could not be restored; the restore goes on.
    fn warn(&mut self, id: &str, message: &str);
    /// A line for the job's log.
    fn log(&mut self, message: &str);
}

/// Totals of a backup or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Items emitted or restored.
    pub items: u64,
    /// Bytes of content.
    pub bytes: u64,
    /// Items warned about.
    pub warnings: u64,
    /// Messages emitted unchanged, not downloaded (backup), or skipped as
    /// already present (restore).
    pub skipped: u64,
    /// Bytes received from IMAP servers.
    pub bytes_read: u64,
}

/// Attribute keys.
pub mod attr {
    /// Decoded `Subject:`.
    pub const SUBJECT: &str = "subject";
    /// The contract's name for people, which `attache ls` shows and
    /// `attache find` searches: the subject, or `(no subject)`.
    pub const TITLE: &str = "title";
    /// Decoded `From:`.
    pub const FROM: &str = "from";
    /// `Date:` as written.
    pub const DATE: &str = "date";
    /// `Message-ID:` as written.
    pub const MESSAGE_ID: &str = "message-id";
    /// Flags and keywords, space-separated.
    pub const FLAGS: &str = "flags";
    /// INTERNALDATE as the server wrote it.
    pub const INTERNAL_DATE: &str = "internal-date";
    /// Size in bytes (RFC822.SIZE).
    pub const SIZE: &str = "size";
    /// A folder's subscription: `yes` or `no`.
    pub const SUBSCRIBED: &str = "subscribed";
    /// A folder's LIST attributes, space-separated.
    pub const LIST_ATTRIBUTES: &str = "list-attributes";
    /// A folder's UIDVALIDITY at backup time.
    pub const UIDVALIDITY: &str = "uidvalidity";
    /// A folder's UIDNEXT at backup time: exactly the messages below it
    /// were taken.
    pub const UIDNEXT: &str = "uidnext";
    /// Messages taken from a folder.
    pub const MESSAGES: &str = "messages";
}

/// Catalog attributes of a message from its bytes and metadata.
pub fn message_attributes(
    body: &[u8],
    flags: &[String],
    internal_date: &str,
) -> Vec<(String, String)> {
    let h = crate::header::summary(body);
    let mut a = vec![(
        attr::TITLE.to_owned(),
        h.subject
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "(no subject)".into()),
    )];
    for (k, v) in [
        (attr::SUBJECT, h.subject),
        (attr::FROM, h.from),
        (attr::DATE, h.date),
        (attr::MESSAGE_ID, h.message_id),
    ] {
        if let Some(v) = v {
            a.push((k.to_owned(), v));
        }
    }
    a.push((attr::FLAGS.into(), flags.join(" ")));
    a.push((attr::INTERNAL_DATE.into(), internal_date.to_owned()));
    a.push((attr::SIZE.into(), body.len().to_string()));
    a
}

/// Replaces attribute `key`'s value (or adds it).
pub fn set_attr(attrs: &mut Vec<(String, String)>, key: &str, value: String) {
    match attrs.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => attrs.push((key.to_owned(), value)),
    }
}
