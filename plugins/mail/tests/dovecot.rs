//! The IMAP client, backup and restore natively against a real Dovecot
//! started by `tests/mail/dovecot.sh` and filled by `tests/mail/gen-mail.py`.
//! Runs only when `MAIL_DOVECOT_DIR` names that instance's directory (user
//! `alice` filled, user `bob` present); `tests/mail/native.sh` does it all.

use std::collections::HashMap;
use std::process::Command;

use attache_plugin_mail::error::Result;
use attache_plugin_mail::job::{self, Destination};
use attache_plugin_mail::model::{Item, Kind, Previous, Sink, Source, Totals};

#[derive(Default)]
struct Memory {
    items: Vec<(Item, Option<Vec<u8>>)>,
    parent: HashMap<String, Previous>,
}

impl Sink for Memory {
    fn previous(&mut self, id: &str) -> Option<Previous> {
        self.parent.get(id).cloned()
    }
    fn emit(&mut self, item: Item, _unchanged: bool) -> Result<()> {
        self.items.push((item, None));
        Ok(())
    }
    fn emit_content(&mut self, item: Item, content: &[u8]) -> Result<()> {
        self.items.push((item, Some(content.to_vec())));
        Ok(())
    }
    fn warn(&mut self, id: &str, message: &str) {
        eprintln!("warn {id}: {message}");
    }
    fn log(&mut self, message: &str) {
        eprintln!("log: {message}");
    }
}

struct Replay(std::vec::IntoIter<(Item, Vec<u8>)>);

impl Source for Replay {
    fn next(&mut self) -> Result<Option<(Item, Vec<u8>)>> {
        Ok(self.0.next())
    }
    fn warn(&mut self, id: &str, message: &str) {
        eprintln!("warn {id}: {message}");
    }
    fn log(&mut self, message: &str) {
        eprintln!("log: {message}");
    }
}

fn env() -> Option<(String, HashMap<String, String>)> {
    let dir = std::env::var("MAIL_DOVECOT_DIR").ok()?;
    let text = std::fs::read_to_string(format!("{dir}/env")).ok()?;
    let vars = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some((dir, vars))
}

fn doveadm(dir: &str, args: &[&str]) {
    let st = Command::new("doveadm")
        .arg("-c")
        .arg(format!("{dir}/dovecot.conf"))
        .args(args)
        .status()
        .expect("doveadm");
    assert!(st.success(), "doveadm {args:?}");
}

fn backup(
    sel: &str,
    opts: &[(String, String)],
    parent: HashMap<String, Previous>,
) -> (Memory, Totals) {
    let mut m = Memory {
        parent,
        ..Default::default()
    };
    let t = job::backup(&[sel.to_owned()], opts, &mut m).expect("backup");
    (m, t)
}

/// Messages of a backup by folder and Message-ID: (bytes, flags, internal date).
fn by_message_id(m: &Memory) -> HashMap<(String, String), (Vec<u8>, String, String)> {
    m.items
        .iter()
        .filter(|(i, _)| i.kind == Kind::Message)
        .map(|(i, c)| {
            let folder = i.id.split("/;UIDVALIDITY").next().unwrap_or("").to_owned();
            let key = (folder, i.attr("message-id").unwrap_or("").to_owned());
            let mut flags: Vec<&str> = i.attr("flags").unwrap_or("").split(' ').collect();
            flags.sort();
            (
                key,
                (
                    c.clone().unwrap_or_default(),
                    flags.join(" "),
                    i.attr("internal-date").unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn dovecot_end_to_end() {
    let Some((dir, vars)) = env() else {
        eprintln!("MAIL_DOVECOT_DIR not set: skipped");
        return;
    };
    let port = &vars["PORT"];
    let opts = vec![("password".to_owned(), vars["PW"].clone())];
    let user = format!("imap://alice@127.0.0.1:{port}");

    // Whole user.
    let t0 = std::time::Instant::now();
    let (full, totals) = backup(&user, &opts, HashMap::new());
    let msgs = full
        .items
        .iter()
        .filter(|(i, _)| i.kind == Kind::Message)
        .count();
    let folders = full
        .items
        .iter()
        .filter(|(i, _)| i.kind == Kind::Folder)
        .count();
    eprintln!(
        "backup: {msgs} messages, {folders} folders, {} bytes, {} read, {:?}",
        totals.bytes,
        totals.bytes_read,
        t0.elapsed()
    );
    assert!(msgs >= 2000 && folders >= 20);
    let first = full
        .items
        .iter()
        .find(|(i, _)| i.kind == Kind::Message)
        .unwrap();
    assert!(first.0.attr("subject").is_some() && first.0.attr("message-id").is_some());
    let before = by_message_id(&full);

    // Delete one message and one folder on the live server.
    let (victim, body) = full
        .items
        .iter()
        .find(|(i, c)| {
            i.id.contains("/Archive/2024/")
                && i.attr("flags").unwrap_or("").contains("\\Flagged")
                && c.is_some()
        })
        .map(|(i, c)| (i.clone(), c.clone().unwrap()))
        .expect("a flagged message in Archive/2024");
    let uid = victim.id.rsplit("UID=").next().unwrap().to_owned();
    doveadm(
        &dir,
        &[
            "expunge",
            "-u",
            "alice",
            "mailbox",
            "Archive/2024",
            "uid",
            &uid,
        ],
    );
    doveadm(
        &dir,
        &["expunge", "-u", "alice", "mailbox", "Projects/Beta", "all"],
    );
    doveadm(&dir, &["mailbox", "delete", "-u", "alice", "Projects/Beta"]);

    // Restore the message alone and the folder alone.
    let folder_id = format!("{user}/Projects/Beta");
    let pick = |pred: &dyn Fn(&Item) -> bool| -> Vec<(Item, Vec<u8>)> {
        full.items
            .iter()
            .filter(|(i, _)| pred(i))
            .map(|(i, c)| (i.clone(), c.clone().unwrap_or_default()))
            .collect()
    };
    let one = pick(&|i: &Item| i.id == victim.id);
    let t = job::restore(
        &Destination::Original,
        false,
        &opts,
        &mut Replay(one.into_iter()),
    )
    .expect("restore message");
    assert_eq!((t.items, t.bytes), (1, body.len() as u64));
    let folder = pick(&|i: &Item| i.id == folder_id || i.id.starts_with(&format!("{folder_id}/")));
    let n = folder.len();
    let t = job::restore(
        &Destination::Original,
        false,
        &opts,
        &mut Replay(folder.into_iter()),
    )
    .expect("restore folder");
    assert_eq!(t.items as usize, n);

    // Everything is back: same bytes, flags, internal dates; nothing else changed.
    let (after, _) = backup(&user, &opts, HashMap::new());
    let now = by_message_id(&after);
    assert_eq!(now.len(), before.len());
    for (k, v) in &before {
        assert_eq!(now.get(k), Some(v), "{k:?} differs after the restore");
    }
    eprintln!(
        "restored message and folder: {} messages identical with flags and internal dates",
        now.len()
    );

    // Restoring again skips what is present.
    let again = pick(&|i: &Item| i.id.starts_with(&format!("{user}/Archive/2024")));
    let t = job::restore(
        &Destination::Original,
        false,
        &opts,
        &mut Replay(again.into_iter()),
    )
    .expect("restore again");
    assert_eq!(t.items, 1, "only the folder item; messages were present");
    assert_eq!(t.skipped, 100);

    // --as another mailbox and another user.
    let inbox = pick(&|i: &Item| {
        i.id == format!("{user}/INBOX") || i.id.starts_with(&format!("{user}/INBOX/"))
    });
    let map = vec![(format!("{user}/INBOX"), format!("{user}/Restored/INBOX"))];
    job::restore(
        &Destination::Renamed(map),
        false,
        &opts,
        &mut Replay(inbox.clone().into_iter()),
    )
    .expect("restore --as mailbox");
    let (r, _) = backup(&format!("{user}/Restored/INBOX"), &opts, HashMap::new());
    assert_eq!(
        r.items
            .iter()
            .filter(|(i, _)| i.kind == Kind::Message)
            .count(),
        100
    );
    let bob = format!("imap://bob@127.0.0.1:{port}");
    let map = vec![(user.clone(), bob.clone())];
    job::restore(
        &Destination::Renamed(map),
        false,
        &opts,
        &mut Replay(inbox.into_iter()),
    )
    .expect("restore --as user");
    let (b, _) = backup(&bob, &opts, HashMap::new());
    assert_eq!(
        b.items
            .iter()
            .filter(|(i, _)| i.kind == Kind::Message)
            .count(),
        100
    );

    // Incremental: only new messages are downloaded.
    let parent_of = |m: &Memory| -> HashMap<String, Previous> {
        m.items
            .iter()
            .map(|(i, _)| {
                (
                    i.id.clone(),
                    Previous {
                        change_token: i.change_token.clone(),
                        attributes: i.attributes.clone(),
                        size: i.size,
                    },
                )
            })
            .collect()
    };
    let (base, _) = backup(&user, &opts, HashMap::new());
    let parent = parent_of(&base);
    let (_, same) = backup(&user, &opts, parent.clone());
    assert_eq!(same.bytes, 0, "an unchanged store downloads no message");
    let st = Command::new("python3")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/mail/gen-mail.py"),
            &dir,
            "alice",
            "--messages",
            "100",
            "--seed",
            "99",
            "--only",
            "Work",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let (inc, t) = backup(&user, &opts, parent);
    let fresh: Vec<_> = inc.items.iter().filter(|(_, c)| c.is_some()).collect();
    let fresh_bytes: u64 = fresh.iter().map(|(i, _)| i.size).sum();
    eprintln!(
        "incremental: {} downloaded ({} bytes of content), {} unchanged, {} bytes read (unchanged run: {} read)",
        fresh.len(),
        fresh_bytes,
        t.skipped,
        t.bytes_read,
        same.bytes_read
    );
    assert_eq!(fresh.len(), 100);
    assert!(t.bytes_read < same.bytes_read + fresh_bytes + fresh_bytes / 5 + 100_000);

    // Clear errors.
    let bad = vec![("password".to_owned(), "wrong".to_owned())];
    let e = job::backup(std::slice::from_ref(&user), &bad, &mut Memory::default()).unwrap_err();
    assert!(e.to_string().contains("wrong user name or password"), "{e}");
    let e = job::backup(&[format!("{user}/Nope")], &opts, &mut Memory::default()).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    let e = job::backup(
        &["imap://alice@127.0.0.1:1".to_owned()],
        &opts,
        &mut Memory::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("connection refused"), "{e}");

    several_connections(port, &opts, &full);
}

/// `opts` with option `connections=n`.
fn with_connections(opts: &[(String, String)], n: usize) -> Vec<(String, String)> {
    let mut o = opts.to_vec();
    o.push(("connections".into(), n.to_string()));
    o
}

/// Per folder (its id without `prefix`), the messages of a backup in UID
/// order: Message-ID, bytes, sorted flags, internal date.
type Folders = HashMap<String, Vec<(String, Vec<u8>, String, String)>>;

fn folders_of(m: &Memory, prefix: &str) -> Folders {
    let mut out: Folders = HashMap::new();
    for (i, c) in &m.items {
        if i.kind != Kind::Message {
            continue;
        }
        let folder = i.id.split("/;UIDVALIDITY").next().unwrap_or("");
        let folder = folder.strip_prefix(prefix).unwrap_or(folder).to_owned();
        let mut flags: Vec<&str> = i.attr("flags").unwrap_or("").split(' ').collect();
        flags.sort();
        out.entry(folder).or_default().push((
            i.attr("message-id").unwrap_or("").to_owned(),
            c.clone().unwrap_or_default(),
            flags.join(" "),
            i.attr("internal-date").unwrap_or("").to_owned(),
        ));
    }
    out
}

/// Small synthetic messages `first..first+n` for folder `folder` of `user`
/// (an id), the one numbered `empty` without a byte.
fn synthetic(
    user: &str,
    folder: &str,
    first: u32,
    n: u32,
    empty: Option<u32>,
) -> Vec<(Item, Vec<u8>)> {
    let mut out = vec![(
        Item {
            id: format!("{user}/{folder}"),
            kind: Kind::Folder,
            size: 0,
            mtime: None,
            attributes: Vec::new(),
            change_token: None,
        },
        Vec::new(),
    )];
    for k in first..first + n {
        let body = if Some(k) == empty {
            Vec::new()
        } else {
            format!("Message-ID: <{k}@several.example>\r\nSubject: number {k}\r\n\r\nbody {k}\r\n")
                .into_bytes()
        };
        out.push((
            Item {
                id: format!("{user}/{folder}/;UIDVALIDITY=1/;UID={k}"),
                kind: Kind::Message,
                size: body.len() as u64,
                mtime: None,
                attributes: vec![
                    (
                        "flags".into(),
                        if k % 3 == 0 {
                            "\\Seen".into()
                        } else {
                            String::new()
                        },
                    ),
                    ("internal-date".into(), "01-Jan-2024 10:00:00 +0000".into()),
                ],
                change_token: None,
            },
            body,
        ));
    }
    out
}

/// Restores over several IMAP connections what one restores, in the same
/// order; a refused batch on one connection fails the restore with the
/// server's words and appends none of its messages, and the others' are
/// whole.
fn several_connections(port: &str, opts: &[(String, String)], full: &Memory) {
    let alice = format!("imap://alice@127.0.0.1:{port}");
    let bob = format!("imap://bob@127.0.0.1:{port}");
    let all: Vec<(Item, Vec<u8>)> = full
        .items
        .iter()
        .map(|(i, c)| (i.clone(), c.clone().unwrap_or_default()))
        .collect();
    let mut seen: Option<(Folders, Totals)> = None;
    for n in [1, 2, 3] {
        let to = format!("{bob}/Conn{n}");
        let t0 = std::time::Instant::now();
        let t = job::restore(
            &Destination::Renamed(vec![(alice.clone(), to.clone())]),
            false,
            &with_connections(opts, n),
            &mut Replay(all.clone().into_iter()),
        )
        .unwrap_or_else(|e| panic!("restore over {n} connections: {e}"));
        eprintln!(
            "restore over {n} connections: {} items, {:?}",
            t.items,
            t0.elapsed()
        );
        let (back, _) = backup(&to, opts, HashMap::new());
        let got = folders_of(&back, &format!("{to}/"));
        assert_eq!(
            got.values().map(Vec::len).sum::<usize>(),
            all.iter().filter(|(i, _)| i.kind == Kind::Message).count()
        );
        match &seen {
            None => seen = Some((got, t)),
            Some((one, t1)) => {
                assert_eq!(
                    (t.items, t.bytes, t.skipped),
                    (t1.items, t1.bytes, t1.skipped)
                );
                assert_eq!(got.len(), one.len(), "folders over {n} connections");
                for (folder, msgs) in one {
                    assert!(got.get(folder) == Some(msgs), "{folder} over {n} connections differs from one connection (content, flags, date or order)");
                }
            }
        }
    }

    // One mailbox in three batches (500, 500, 200) over two connections:
    // committed in stream order.
    let big = synthetic(&bob, "Big", 1, 1200, None);
    let t = job::restore(
        &Destination::Original,
        false,
        &with_connections(opts, 2),
        &mut Replay(big.into_iter()),
    )
    .expect("restore of 1,200 messages into one mailbox");
    assert_eq!(t.items, 1201);
    let (back, _) = backup(&format!("{bob}/Big"), opts, HashMap::new());
    let ids: Vec<String> = folders_of(&back, "")
        .into_values()
        .flatten()
        .map(|m| m.0)
        .collect();
    let want: Vec<String> = (1..=1200)
        .map(|k| format!("<{k}@several.example>"))
        .collect();
    assert_eq!(ids, want, "the messages are not in stream order");
    // Again: each is present, none appended.
    let t = job::restore(
        &Destination::Original,
        false,
        &with_connections(opts, 2),
        &mut Replay(synthetic(&bob, "Big", 1, 1200, None).into_iter()),
    )
    .expect("restore again");
    assert_eq!((t.items, t.skipped), (1, 1200));

    // Two users in turn, the first again at the end: each user's
    // sessions are logged out when the next user's open, and open again.
    let mut items = synthetic(&alice, "Two/A", 1, 10, None);
    items.extend(synthetic(&bob, "Two/B", 11, 10, None));
    items.extend(synthetic(&alice, "Two/C", 21, 10, None));
    let t = job::restore(
        &Destination::Original,
        false,
        &with_connections(opts, 2),
        &mut Replay(items.into_iter()),
    )
    .expect("restore of two users in turn");
    assert_eq!(t.items, 33);
    for (user, folder, first) in [
        (&alice, "Two/A", 1),
        (&bob, "Two/B", 11),
        (&alice, "Two/C", 21),
    ] {
        let (back, _) = backup(&format!("{user}/{folder}"), opts, HashMap::new());
        let ids: Vec<String> = folders_of(&back, "")
            .into_values()
            .flatten()
            .map(|m| m.0)
            .collect();
        let want: Vec<String> = (first..first + 10)
            .map(|k| format!("<{k}@several.example>"))
            .collect();
        assert_eq!(ids, want, "{user}/{folder}");
    }

    // A batch the server refuses (a message without a byte) on one of two
    // connections, or on the only one.
    for n in [2, 1] {
        let mut items = synthetic(&bob, &format!("Fail{n}/A"), 1, 20, None);
        items.extend(synthetic(&bob, &format!("Fail{n}/B"), 21, 20, Some(30)));
        items.extend(synthetic(&bob, &format!("Fail{n}/C"), 41, 20, None));
        let e = job::restore(
            &Destination::Original,
            false,
            &with_connections(opts, n),
            &mut Replay(items.into_iter()),
        )
        .expect_err("a refused APPEND fails the restore");
        let text = e.to_string();
        assert!(
            text.contains(&format!("APPEND of 20 messages to \"Fail{n}/B\""))
                && text.contains("zero byte"),
            "{text}"
        );
        let count = |f: &str| {
            let (m, _) = backup(&format!("{bob}/Fail{n}/{f}"), opts, HashMap::new());
            m.items
                .iter()
                .filter(|(i, _)| i.kind == Kind::Message)
                .count()
        };
        assert_eq!(count("A"), 20, "over {n}");
        assert_eq!(count("B"), 0, "a refused batch appends nothing (over {n})");
        if n == 2 {
            // Its batch was on the other connection: it is whole.
            assert_eq!(count("C"), 20);
        }
    }
}
