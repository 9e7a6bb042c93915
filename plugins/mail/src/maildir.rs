//! Maildir++ stores read and written through file grants, for mail stores
//! with no network path (inside a VM).
//!
//! Layout: the root's own `cur/ new/ tmp/` are INBOX; folder `A/B` is
//! `.A.B/` below the root (names in modified UTF-7, as Dovecot writes them);
//! `subscriptions` lists subscribed folders. One file per message, written
//! once and renamed into place by the delivery agent, so each file is
//! consistent on its own. Flags are in the file name after `:2,`
//! (`D`raft, `F`lagged, `P`assed, `R`eplied, `S`een, `T`rashed); the
//! internal date is the file's modification time. Restore writes
//! `tmp/UNIQUE` and renames it to `cur/UNIQUE:2,FLAGS`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::ids::MaildirId;
use crate::model::{attr, message_attributes, set_attr, Item, Kind, Sink, Totals};
use crate::restore::Outcome;
use crate::utf7;

/// Largest message file taken.
const MAX_FILE: u64 = 512 << 20;

const FLAGS: &[(char, &str)] = &[
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('P', "$Passed"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

fn fs_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Application(format!("{what} {}: does not exist", path.display()))
        }
        std::io::ErrorKind::PermissionDenied => Error::Denied(format!(
            "{what} {}: permission denied (is it granted to the job?)",
            path.display()
        )),
        _ => Error::Application(format!("{what} {}: {e}", path.display())),
    }
}

/// IMAP flags of a file name's `:2,` part.
pub fn flags_of(name: &str) -> Vec<String> {
    let Some((_, info)) = name.split_once(":2,") else {
        return Vec::new();
    };
    FLAGS
        .iter()
        .filter(|(c, _)| info.contains(*c))
        .map(|(_, f)| (*f).to_owned())
        .collect()
}

/// The `:2,` letters of IMAP flags (keywords have no letter and are left out).
pub fn letters_of(flags: &[&str]) -> String {
    FLAGS
        .iter()
        .filter(|(_, f)| flags.iter().any(|x| x.eq_ignore_ascii_case(f)))
        .map(|(c, _)| *c)
        .collect()
}

/// The directory of folder `levels` below `root`.
pub fn folder_dir(root: &str, levels: &[String]) -> Result<PathBuf> {
    if levels == ["INBOX"] {
        return Ok(PathBuf::from(root));
    }
    if let Some(l) = levels
        .iter()
        .find(|l| l.contains('.') || l.contains('/') || l.is_empty())
    {
        return Err(Error::Invalid(format!(
            "Maildir++ folder level {l:?} cannot hold '.' or '/'"
        )));
    }
    let name: Vec<String> = levels.iter().map(|l| utf7::encode(l)).collect();
    Ok(Path::new(root).join(format!(".{}", name.join("."))))
}

/// Folders of a store: `(levels, directory)`, INBOX first.
pub fn folders(root: &str) -> Result<Vec<(Vec<String>, PathBuf)>> {
    let rootp = Path::new(root);
    let mut out = vec![(vec!["INBOX".to_owned()], rootp.to_path_buf())];
    let mut more = Vec::new();
    for e in fs::read_dir(rootp).map_err(|e| fs_err("Maildir", rootp, e))? {
        let e = e.map_err(|e| fs_err("Maildir", rootp, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix('.') else {
            continue;
        };
        if rest.is_empty() || rest == "." || !e.path().join("cur").is_dir() {
            continue;
        }
        let decoded = utf7::decode(rest).unwrap_or_else(|_| rest.to_owned());
        more.push((
            decoded.split('.').map(str::to_owned).collect::<Vec<_>>(),
            e.path(),
        ));
    }
    more.sort();
    out.extend(more);
    Ok(out)
}

fn subscriptions(root: &str) -> Vec<Vec<String>> {
    let Ok(text) = fs::read_to_string(Path::new(root).join("subscriptions")) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with("V\t"))
        .map(|l| l.split(['\t', '.']).map(str::to_owned).collect())
        .collect()
}

/// Message files of a folder directory: `(unique, file name, path)`.
fn messages(dir: &Path) -> Result<Vec<(String, String, PathBuf)>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let d = dir.join(sub);
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fs_err("Maildir folder", &d, e)),
        };
        for e in rd {
            let e = e.map_err(|e| fs_err("Maildir folder", &d, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let unique = name.split(':').next().unwrap_or(&name).to_owned();
            out.push((unique, name, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn mtime(path: &Path) -> Option<i64> {
    let m = fs::metadata(path).ok()?.modified().ok()?;
    Some(m.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Backs up `ids` (stores, folders, messages).
pub fn backup(ids: &[MaildirId], sink: &mut dyn Sink, totals: &mut Totals) -> Result<()> {
    for id in ids {
        let root = &id.root;
        let store = id.with_mailbox(Vec::new());
        let all = folders(root)?;
        let subs = subscriptions(root);
        if id.mailbox.is_empty() {
            sink.emit(
                Item {
                    id: store.to_string(),
                    kind: Kind::User,
                    size: 0,
                    mtime: None,
                    attributes: vec![("folders".into(), all.len().to_string())],
                    change_token: None,
                },
                false,
            )?;
            totals.items += 1;
        }
        let chosen: Vec<_> = all
            .iter()
            .filter(|(l, _)| l.starts_with(&id.mailbox))
            .collect();
        if chosen.is_empty() {
            return Err(Error::Application(format!(
                "folder {:?} does not exist in the Maildir {root} ({id})",
                id.mailbox.join("/")
            )));
        }
        for (levels, dir) in chosen {
            let fid = store.with_mailbox(levels.clone());
            let files = messages(dir)?;
            if id.file.is_none() {
                let sub = levels == &["INBOX"] || subs.contains(levels);
                sink.emit(
                    Item {
                        id: fid.to_string(),
                        kind: Kind::Folder,
                        size: 0,
                        mtime: None,
                        attributes: vec![
                            (
                                attr::SUBSCRIBED.into(),
                                if sub { "yes" } else { "no" }.into(),
                            ),
                            (attr::MESSAGES.into(), files.len().to_string()),
                        ],
                        change_token: None,
                    },
                    false,
                )?;
                totals.items += 1;
            }
            let mut found = false;
            for (unique, name, path) in &files {
                if let Some(f) = &id.file {
                    if f != unique || levels != &id.mailbox {
                        continue;
                    }
                }
                found = true;
                let mid = MaildirId {
                    file: Some(unique.clone()),
                    ..fid.clone()
                }
                .to_string();
                message(&mid, unique, name, path, sink, totals)?;
            }
            if let (Some(f), false) = (&id.file, found) {
                if levels == &id.mailbox {
                    return Err(Error::Application(format!(
                        "no message file {f:?} in the Maildir folder {}",
                        dir.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

fn message(
    id: &str,
    unique: &str,
    name: &str,
    path: &Path,
    sink: &mut dyn Sink,
    totals: &mut Totals,
) -> Result<()> {
    let flags = flags_of(name);
    let secs = mtime(path).unwrap_or(0);
    let idate = crate::date::format(secs);
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            sink.warn(
                id,
                "the message file vanished during the backup (moved or expunged)",
            );
            totals.warnings += 1;
            return Ok(());
        }
        Err(e) => return Err(fs_err("message", path, e)),
    };
    let token = format!("maildir:{unique}:{len}");
    if let Some(p) = sink.previous(id) {
        if p.change_token.as_deref() == Some(token.as_str()) {
            let mut a = p.attributes.clone();
            set_attr(&mut a, attr::FLAGS, flags.join(" "));
            sink.emit(
                Item {
                    id: id.to_owned(),
                    kind: Kind::Message,
                    size: p.size,
                    mtime: Some(secs),
                    attributes: a,
                    change_token: Some(token),
                },
                true,
            )?;
            totals.items += 1;
            totals.skipped += 1;
            return Ok(());
        }
    }
    if len > MAX_FILE {
        sink.warn(
            id,
            &format!("message file of {len} bytes is over the limit of {MAX_FILE}"),
        );
        totals.warnings += 1;
        return Ok(());
    }
    let body = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            sink.warn(
                id,
                "the message file vanished during the backup (moved or expunged)",
            );
            totals.warnings += 1;
            return Ok(());
        }
        Err(e) => return Err(fs_err("message", path, e)),
    };
    sink.emit_content(
        Item {
            id: id.to_owned(),
            kind: Kind::Message,
            size: body.len() as u64,
            mtime: Some(secs),
            attributes: message_attributes(&body, &flags, &idate),
            change_token: Some(token),
        },
        &body,
    )?;
    totals.items += 1;
    totals.bytes += body.len() as u64;
    Ok(())
}

fn ensure_folder(dir: &Path) -> Result<()> {
    for sub in ["cur", "new", "tmp"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).map_err(|e| fs_err("creating", &d, e))?;
    }
    Ok(())
}

/// Restores one item as `target`.
pub fn restore(
    item: &Item,
    source: &MaildirId,
    target: &MaildirId,
    content: &[u8],
    overwrite: bool,
) -> Result<Outcome> {
    match item.kind {
        Kind::User => {
            ensure_folder(Path::new(&target.root))?;
            Ok(Outcome::Restored(0))
        }
        Kind::Folder => {
            let dir = folder_dir(&target.root, &target.mailbox)?;
            ensure_folder(&dir)?;
            if item.attr(attr::SUBSCRIBED) == Some("yes") && target.mailbox != ["INBOX"] {
                subscribe(&target.root, &target.mailbox)?;
            }
            Ok(Outcome::Restored(0))
        }
        Kind::Message => {
            let unique = target
                .file
                .clone()
                .or_else(|| source.file.clone())
                .ok_or_else(|| Error::Invalid(format!("{}: no message file name", item.id)))?;
            let dir = folder_dir(&target.root, &target.mailbox)?;
            ensure_folder(&dir)?;
            let existing = messages(&dir)?.into_iter().find(|(u, _, _)| *u == unique);
            if existing.is_some() && !overwrite {
                return Ok(Outcome::Present);
            }
            let flags: Vec<&str> = item
                .attr(attr::FLAGS)
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let tmp = dir.join("tmp").join(&unique);
            fs::write(&tmp, content).map_err(|e| fs_err("writing", &tmp, e))?;
            if let Some(secs) = item
                .attr(attr::INTERNAL_DATE)
                .and_then(crate::date::parse)
                .or(item.mtime)
            {
                if let Ok(f) = fs::File::options().write(true).open(&tmp) {
                    let t = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
                    let _ = f.set_times(
                        fs::FileTimes::new()
                            .set_modified(t)
                            .set_accessed(SystemTime::now()),
                    );
                }
            }
            let dest = dir
                .join("cur")
                .join(format!("{unique}:2,{}", letters_of(&flags)));
            if let Some((_, _, old)) = existing {
                if old != dest {
                    let _ = fs::remove_file(&old);
                }
            }
            fs::rename(&tmp, &dest).map_err(|e| fs_err("renaming into", &dest, e))?;
            Ok(Outcome::Restored(content.len() as u64))
        }
    }
}

fn subscribe(root: &str, levels: &[String]) -> Result<()> {
    if subscriptions(root).iter().any(|s| s == levels) {
        return Ok(());
    }
    let path = Path::new(root).join("subscriptions");
    let mut text = fs::read_to_string(&path).unwrap_or_default();
    let v2 = text.is_empty() || text.starts_with("V\t2");
    if text.is_empty() {
        text.push_str("V\t2\n\n");
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&levels.join(if v2 { "\t" } else { "." }));
    text.push('\n');
    fs::write(&path, text).map_err(|e| fs_err("writing", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_from_names() {
        assert_eq!(
            flags_of("1.M1.h,S=5:2,FRS"),
            ["\\Flagged", "\\Answered", "\\Seen"]
        );
        assert!(flags_of("1.M1.h").is_empty());
        assert_eq!(letters_of(&["\\Seen", "\\Flagged", "$Label1"]), "FS");
    }

    #[test]
    fn round_trips_a_store() {
        let t = std::env::temp_dir().join(format!("attache-maildir-{}", std::process::id()));
        let root = t.to_string_lossy().into_owned();
        ensure_folder(&t).unwrap();
        let sub = folder_dir(&root, &["Archive".into(), "Entwürfe".into()]).unwrap();
        assert!(sub.ends_with(".Archive.Entw&APw-rfe"));
        ensure_folder(&sub).unwrap();
        fs::write(sub.join("cur/100.M1.h:2,S"), b"Subject: hi\r\n\r\nbody").unwrap();
        let f = folders(&root).unwrap();
        assert_eq!(f[1].0, ["Archive", "Entwürfe"]);
        let src = MaildirId {
            root: root.clone(),
            mailbox: vec!["Archive".into(), "Entwürfe".into()],
            file: Some("100.M1.h".into()),
        };
        let item = Item {
            id: src.to_string(),
            kind: Kind::Message,
            size: 4,
            mtime: None,
            attributes: vec![
                (attr::FLAGS.into(), "\\Seen \\Flagged".into()),
                (
                    attr::INTERNAL_DATE.into(),
                    "01-Jan-2024 10:00:00 +0000".into(),
                ),
            ],
            change_token: None,
        };
        assert_eq!(
            restore(&item, &src, &src, b"x", false).unwrap(),
            Outcome::Present
        );
        let dst = MaildirId {
            mailbox: vec!["Restored".into()],
            file: None,
            ..src.clone()
        };
        assert_eq!(
            restore(&item, &src, &dst, b"body", false).unwrap(),
            Outcome::Restored(4)
        );
        let p = t.join(".Restored/cur/100.M1.h:2,FS");
        assert_eq!(fs::read(&p).unwrap(), b"body");
        assert_eq!(mtime(&p), Some(1704103200));
        fs::remove_dir_all(&t).unwrap();
    }
}
