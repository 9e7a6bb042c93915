//! The WIT contract 0.2.0: the plugin's exports, and the runner's sink and
//! source adapted to `model::Sink` and `model::Source`.

wit_bindgen::generate!({
    path: "../../wit/0.2.0",
    world: "attache:plugin/plugin-world",
    generate_all,
});

use attache::plugin::types::{
    AccessPlan, ApplicationKind, CatalogEntry, ItemKind, ItemMetadata, Level, NetNeed, Operation,
    OptionSpec, PathAccess, PathNeed, PlanRequest, PluginError, PluginInfo, RestoreDestination,
    Timestamp,
};
use attache::plugin::{backup_sink, host, restore_source};
use exports::attache::plugin::plugin::{BackupRequest, Guest, OptionList, RestoreRequest, Summary};

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

fn wit_item(i: model::Item) -> attache::plugin::types::Item {
    attache::plugin::types::Item {
        id: i.id,
        kind: match i.kind {
            model::Kind::User => ItemKind::Mailbox,
            model::Kind::Folder => ItemKind::Directory,
            model::Kind::Message => ItemKind::Message,
        },
        metadata: ItemMetadata {
            size: i.size,
            mode: None,
            uid: None,
            gid: None,
            mtime: i.mtime.map(|s| Timestamp {
                seconds: s,
                nanoseconds: 0,
            }),
            symlink_target: None,
            hardlink_target: None,
            attributes: i.attributes,
            change_token: i.change_token,
        },
    }
}

fn model_item(i: attache::plugin::types::Item) -> model::Item {
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
        backup_sink::previous(id).map(|m| model::Previous {
            change_token: m.change_token,
            attributes: m.attributes,
            size: m.size,
        })
    }

    fn emit(&mut self, item: model::Item, unchanged: bool) -> error::Result<()> {
        let data = if unchanged {
            backup_sink::ItemData::Unchanged
        } else {
            backup_sink::ItemData::None
        };
        backup_sink::emit(&wit_item(item), &data).map_err(from_plugin)?;
        self.done += 1;
        host::progress(self.done, self.bytes, None, None);
        Ok(())
    }

    fn emit_content(&mut self, item: model::Item, content: &[u8]) -> error::Result<()> {
        let w = backup_sink::begin(&wit_item(item)).map_err(from_plugin)?;
        for piece in content.chunks(PIECE) {
            w.write(piece).map_err(from_plugin)?;
        }
        backup_sink::ItemWriter::finish(w).map_err(from_plugin)?;
        self.done += 1;
        self.bytes += content.len() as u64;
        host::progress(self.done, self.bytes, None, None);
        Ok(())
    }

    fn warn(&mut self, id: &str, message: &str) {
        backup_sink::warn(id, message);
    }

    fn log(&mut self, message: &str) {
        host::log(Level::Info, message);
    }
}

/// The restore source of the runner.
struct WitSource;

impl model::Source for WitSource {
    fn next(&mut self) -> error::Result<Option<(model::Item, Vec<u8>)>> {
        let Some((item, content)) = restore_source::next().map_err(from_plugin)? else {
            return Ok(None);
        };
        let remaining = content.remaining();
        if remaining > imap::response::MAX_LITERAL {
            return Err(error::Error::Invalid(format!(
                "{}: {remaining} bytes is over the message limit",
                item.id
            )));
        }
        let mut buf = Vec::with_capacity(remaining as usize);
        loop {
            let piece = content.read(PIECE as u32).map_err(from_plugin)?;
            if piece.is_empty() {
                break;
            }
            buf.extend_from_slice(&piece);
        }
        Ok(Some((model_item(item), buf)))
    }

    fn warn(&mut self, id: &str, message: &str) {
        restore_source::warn(id, message);
    }

    fn log(&mut self, message: &str) {
        host::log(Level::Info, message);
    }
}

fn summary(t: model::Totals) -> Summary {
    Summary {
        items: t.items,
        bytes: t.bytes,
        warnings: t.warnings,
    }
}

struct Mail;

impl Guest for Mail {
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

export!(Mail);
