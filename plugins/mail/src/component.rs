//! The contract 0.2.0 through the plugin SDK: the plugin's calls, and the
//! runner's sink and source adapted to `model::Sink` and `model::Source`.
//! Natively the SDK's façades go to its mock host, so that `cargo test`
//! runs these adapters too.

use attache_plugin_sdk::prelude::*;
use attache_plugin_sdk::{NetNeed, PathNeed};

/// Bytes per `item-writer.write`.
const PIECE: usize = 1 << 20;

use crate::{error, imap, job, model, options, plan};

impl From<error::Error> for PluginError {
    fn from(e: error::Error) -> Self {
        use error::Error as E;
        match e {
            E::Invalid(m) => PluginError::InvalidRequest(m),
            E::Denied(m) => PluginError::AccessDenied(m),
            E::Application(m) => PluginError::Application(m),
            E::Transport(m) => PluginError::Transport(m),
            E::Other(m) => PluginError::Other(m),
        }
    }
}

fn from_plugin(e: PluginError) -> error::Error {
    error::Error::Transport(match e {
        PluginError::InvalidRequest(m)
        | PluginError::AccessDenied(m)
        | PluginError::Application(m)
        | PluginError::Transport(m)
        | PluginError::Other(m) => m,
    })
}

fn wit_item(i: model::Item) -> Item {
    Item {
        id: i.id,
        kind: match i.kind {
            model::Kind::User => ItemKind::Mailbox,
            model::Kind::Folder => ItemKind::Directory,
            model::Kind::Message => ItemKind::Message,
        },
        metadata: metadata(i.size, i.mtime, i.attributes, i.change_token),
    }
}

/// An item's catalog metadata, through the SDK's builder.
fn metadata(
    size: u64,
    mtime: Option<i64>,
    attributes: Vec<(String, String)>,
    token: Option<String>,
) -> ItemMetadata {
    let mut md = Meta::new(size);
    if let Some(seconds) = mtime {
        md = md.mtime(Timestamp {
            seconds,
            nanoseconds: 0,
        });
    }
    if let Some(t) = token {
        md = md.token(t);
    }
    md.attributes = attributes;
    md
}

fn model_item(i: Item) -> model::Item {
    model::Item {
        id: i.id,
        kind: match i.kind {
            ItemKind::Mailbox => model::Kind::User,
            ItemKind::Message => model::Kind::Message,
            _ => model::Kind::Folder,
        },
        size: i.metadata.size,
        mtime: i.metadata.mtime.map(|t| t.seconds),
        attributes: i.metadata.attributes,
        change_token: i.metadata.change_token,
    }
}

/// The backup sink of the runner.
struct WitSink {
    done: u64,
    bytes: u64,
}

impl model::Sink for WitSink {
    fn previous(&mut self, id: &str) -> Option<model::Previous> {
        sink::previous(id).map(|m| model::Previous {
            change_token: m.change_token,
            attributes: m.attributes,
            size: m.size,
        })
    }

    fn emit(&mut self, item: model::Item, unchanged: bool) -> error::Result<()> {
        let data = if unchanged {
            ItemData::Unchanged
        } else {
            ItemData::None
        };
        sink::emit(&wit_item(item), &data).map_err(from_plugin)?;
        self.done += 1;
        host::progress(self.done, self.bytes, None, None);
        Ok(())
    }

    fn emit_content(&mut self, item: model::Item, content: &[u8]) -> error::Result<()> {
        let w = sink::begin(&wit_item(item)).map_err(from_plugin)?;
        for piece in content.chunks(PIECE) {
            w.write(piece).map_err(from_plugin)?;
        }
        w.finish().map_err(from_plugin)?;
        self.done += 1;
        self.bytes += content.len() as u64;
        host::progress(self.done, self.bytes, None, None);
        Ok(())
    }

    fn warn(&mut self, id: &str, message: &str) {
        sink::warn(id, message);
    }

    fn log(&mut self, message: &str) {
        host::info(message);
    }
}

/// The restore source of the runner.
struct WitSource;

impl model::Source for WitSource {
    fn next(&mut self) -> error::Result<Option<(model::Item, Vec<u8>)>> {
        let Some((item, content)) = source::next().map_err(from_plugin)? else {
            return Ok(None);
        };
        let remaining = content.remaining();
        if remaining > imap::response::MAX_LITERAL {
            return Err(error::Error::Invalid(format!(
                "{}: {remaining} bytes is over the message limit",
                item.id
            )));
        }
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let piece = content.read(PIECE as u32).map_err(from_plugin)?;
            if piece.is_empty() {
                break;
            }
            // The first piece is kept as it came (a message usually comes
            // in one), with room for the rest.
            if buf.is_empty() {
                buf = piece;
                buf.reserve((remaining as usize).saturating_sub(buf.len()));
            } else {
                buf.extend_from_slice(&piece);
            }
        }
        Ok(Some((model_item(item), buf)))
    }

    fn warn(&mut self, id: &str, message: &str) {
        source::warn(id, message);
    }

    fn log(&mut self, message: &str) {
        host::info(message);
    }
}

fn summary(t: model::Totals) -> Summary {
    Summary {
        items: t.items,
        bytes: t.bytes,
        warnings: t.warnings,
    }
}

/// The plugin.
pub struct Mail;

impl Plugin for Mail {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "mail".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ApplicationKind::Mail,
            description:
                "IMAP users, mailboxes and single messages (IMAP4rev1), and Maildir++ stores".into(),
            options: options::DECLARED
                .iter()
                .map(|(name, description, secret)| OptionSpec {
                    name: (*name).into(),
                    description: (*description).into(),
                    required: false,
                    secret: *secret,
                })
                .collect(),
            supports_quiesce: false,
        }
    }

    fn plan(request: PlanRequest) -> Result<AccessPlan, PluginError> {
        let mut ids: Vec<String> = request.selection.iter().map(|s| s.id.clone()).collect();
        if let Some(RestoreDestination::Renamed(map)) = &request.destination {
            ids.extend(map.iter().map(|(_, to)| to.clone()));
        }
        let write = matches!(request.operation, Operation::Restore);
        let p = plan::plan(&ids, write, &request.options)?;
        Ok(AccessPlan {
            paths: p
                .paths
                .into_iter()
                .map(|n| PathNeed {
                    path: n.path,
                    access: if n.write {
                        PathAccess::ReadWrite
                    } else {
                        PathAccess::Read
                    },
                    reason: n.reason,
                })
                .collect(),
            connect: p
                .connect
                .into_iter()
                .map(|(address, reason)| NetNeed { address, reason })
                .collect(),
            ownership: false,
            memory_mib: None,
            deadline_secs: None,
        })
    }

    fn discover(
        scope: Option<String>,
        depth: u32,
        options: OptionList,
    ) -> Result<Vec<CatalogEntry>, PluginError> {
        Ok(job::discover(scope.as_deref(), depth, &options)?
            .into_iter()
            .map(|e| CatalogEntry {
                id: e.id,
                kind: match e.kind {
                    model::Kind::User => ItemKind::Mailbox,
                    model::Kind::Folder => ItemKind::Directory,
                    model::Kind::Message => ItemKind::Message,
                },
                size: e.size,
                has_children: e.has_children,
            })
            .collect())
    }

    fn quiesce(_selection: Vec<String>, _options: OptionList) -> Result<String, PluginError> {
        // Not called: supports-quiesce is false. Consistency is per mailbox
        // (UIDNEXT) and per Maildir file.
        Ok(String::new())
    }

    fn thaw(_state: String, _options: OptionList) -> Result<(), PluginError> {
        Ok(())
    }

    fn backup(request: BackupRequest) -> Result<Summary, PluginError> {
        let mut sink = WitSink { done: 0, bytes: 0 };
        Ok(summary(job::backup(
            &request.selection,
            &request.options,
            &mut sink,
        )?))
    }

    fn restore(request: RestoreRequest) -> Result<Summary, PluginError> {
        let dest = match request.destination {
            RestoreDestination::Original => job::Destination::Original,
            RestoreDestination::Alternate(r) => job::Destination::Alternate(r),
            RestoreDestination::Renamed(m) => job::Destination::Renamed(m),
        };
        Ok(summary(job::restore(
            &dest,
            request.overwrite,
            &request.options,
            &mut WitSource,
        )?))
    }
}

export_plugin!(Mail);

#[cfg(test)]
mod tests {
    //! The adapters on the SDK's mock host: what the runner would see.
    //! Maildir stores are plain directories natively, so a whole backup and
    //! restore runs here; IMAP runs against Dovecot in `tests/`.

    use super::*;
    use crate::options::tests::opts;
    use attache_plugin_sdk::mock::{Data, MockHost};
    use std::fs;

    #[test]
    fn info_declares_the_options() {
        let i = Mail::info();
        assert_eq!(i.name, "mail");
        assert!(matches!(i.kind, ApplicationKind::Mail));
        let pw = i.options.iter().find(|o| o.name == "password").unwrap();
        assert!(pw.secret && !pw.required);
        assert!(i.options.iter().any(|o| o.name == "password-file"));
        assert!(i.options.iter().any(|o| o.name == "auth"));
    }

    #[test]
    fn plans_servers_of_selection_and_rename_targets() {
        let a = "imap://alice@127.0.0.1:1143";
        let p = Mail::plan(PlanRequest {
            operation: Operation::Restore,
            selection: vec![Selected {
                id: format!("{a}/INBOX"),
                kind: Some(ItemKind::Directory),
            }],
            destination: Some(RestoreDestination::Renamed(vec![(
                format!("{a}/INBOX"),
                "imap://bob@127.0.0.2:2143/INBOX".into(),
            )])),
            options: opts(&[("password-file", "/run/pw")]),
        })
        .unwrap();
        let addrs: Vec<&str> = p.connect.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(addrs, ["127.0.0.1:1143", "127.0.0.2:2143"]);
        assert_eq!(p.paths.len(), 1);
        assert_eq!(p.paths[0].path, "/run/pw");
        assert_eq!(p.paths[0].access, PathAccess::Read);
        let e = Mail::plan(PlanRequest {
            operation: Operation::Backup,
            selection: vec![Selected {
                id: "imap://alice@mail.example.org:143".into(),
                kind: None,
            }],
            destination: None,
            options: Vec::new(),
        })
        .unwrap_err();
        assert!(matches!(e, PluginError::InvalidRequest(_)), "{e:?}");
    }

    #[test]
    fn maildir_backup_then_restore_of_a_deleted_message() {
        let t = std::env::temp_dir().join(format!("attache-mail-mock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        for d in [
            "cur",
            "new",
            "tmp",
            ".Archive/cur",
            ".Archive/new",
            ".Archive/tmp",
        ] {
            fs::create_dir_all(t.join(d)).unwrap();
        }
        let root = t.to_string_lossy().into_owned();
        let msg = b"From: =?UTF-8?Q?J=C3=B6rg?= <j@example.org>\r\nSubject: =?UTF-8?B?w4RwZmVs?=\r\nMessage-ID: <1@example.org>\r\n\r\nbody\r\n";
        let file = t.join(".Archive/cur/1700000000.M1P1.h,S=120:2,FS");
        fs::write(&file, msg).unwrap();
        // Delivery agents date a file in whole seconds (the internal date).
        let received = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(received)
            .unwrap();
        fs::write(t.join("new/1700000001.M2P1.h"), b"Subject: new\r\n\r\nx").unwrap();
        fs::write(t.join("subscriptions"), "V\t2\n\nArchive\n").unwrap();

        let mut host = MockHost::new();
        let summary = host
            .run(|| {
                Mail::backup(BackupRequest {
                    selection: vec![format!("maildir://{root}")],
                    options: Vec::new(),
                })
            })
            .unwrap();
        // The store, INBOX, Archive and two messages.
        assert_eq!(summary.items, 5, "{:?}", host.emitted());
        assert!(host.warnings().is_empty());
        let id = format!("maildir://{root}/;MAILBOX=Archive/;FILE=1700000000.M1P1.h%2CS=120");
        let ids: Vec<&str> = host.emitted().iter().map(|e| e.item.id.as_str()).collect();
        let e = host
            .item(&id)
            .unwrap_or_else(|| panic!("{id} not in {ids:?}"));
        assert_eq!(e.bytes(), Some(&msg[..]));
        assert!(matches!(e.item.kind, ItemKind::Message));
        let attr = |k: &str| e.item.metadata.attribute(k).map(str::to_owned);
        assert_eq!(attr("subject").as_deref(), Some("Äpfel"));
        assert_eq!(attr("from").as_deref(), Some("Jörg <j@example.org>"));
        assert_eq!(attr("flags").as_deref(), Some("\\Flagged \\Seen"));
        let folder = host
            .item(&format!("maildir://{root}/;MAILBOX=Archive"))
            .unwrap();
        assert_eq!(folder.item.metadata.attribute("subscribed"), Some("yes"));
        assert!(matches!(folder.data, Data::None));

        // Incremental: the parent's entries make both messages unchanged.
        let mut again = MockHost::new();
        for em in host.emitted() {
            again = again.previous(&em.item.id, em.item.metadata.clone());
        }
        again
            .run(|| {
                Mail::backup(BackupRequest {
                    selection: vec![format!("maildir://{root}")],
                    options: Vec::new(),
                })
            })
            .unwrap();
        assert!(matches!(again.item(&id).unwrap().data, Data::Unchanged));

        // Delete the message and restore it alone, in place.
        fs::remove_file(&file).unwrap();
        let mut restore = MockHost::new().restoring(e.item.clone(), msg);
        let s = restore
            .run(|| {
                Mail::restore(RestoreRequest {
                    destination: RestoreDestination::Original,
                    overwrite: false,
                    options: Vec::new(),
                })
            })
            .unwrap();
        assert_eq!((s.items, s.bytes), (1, msg.len() as u64));
        assert_eq!(fs::read(&file).unwrap(), msg);
        assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), received);
        assert_eq!(fs::read_dir(t.join(".Archive/tmp")).unwrap().count(), 0);

        // A second restore finds it present and leaves it alone.
        let mut twice = MockHost::new().restoring(e.item.clone(), b"other");
        let s = twice
            .run(|| {
                Mail::restore(RestoreRequest {
                    destination: RestoreDestination::Original,
                    overwrite: false,
                    options: Vec::new(),
                })
            })
            .unwrap();
        assert_eq!(s.items, 0);
        assert_eq!(fs::read(&file).unwrap(), msg);
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn refuses_unknown_options_and_missing_passwords() {
        let mut host = MockHost::new();
        let e = host
            .run(|| {
                Mail::backup(BackupRequest {
                    selection: vec!["imap://a@127.0.0.1:1".into()],
                    options: opts(&[("colour", "blue")]),
                })
            })
            .unwrap_err();
        assert!(e.message().contains("unknown option"), "{e:?}");
        let e = host
            .run(|| {
                Mail::backup(BackupRequest {
                    selection: vec!["imap://a@127.0.0.1:1".into()],
                    options: Vec::new(),
                })
            })
            .unwrap_err();
        assert!(e.message().contains("no password"), "{e:?}");
        assert!(host.emitted().is_empty());
    }
}
