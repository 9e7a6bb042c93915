//! The mail plugin through the real `attache` CLI against a real Dovecot
//! (`tests/mail/dovecot.sh`, one throwaway instance per test): a user with
//! 20 folders and 2,000 messages, one message and one folder deleted and
//! each restored alone byte-identical with flags and internal dates,
//! restores `--as` another mailbox and another user, a backup under a live
//! writer that holds exactly the messages below the recorded UIDNEXT, an
//! incremental backup that reads only the new messages, the catalog's
//! subject and sender, errors that leave the repository and the mailbox
//! unchanged; and a Maildir inside the test VM, one message deleted in the
//! guest and restored in place.
//!
//! Each test has its own repository, cache and state directories; the IMAP
//! password reaches attache through `ATTACHE_APP_PASSWORD` or
//! `--app-password-file`, never its command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::Duration;

use attache_tests::mail::{Dovecot, Message};
use attache_tests::server::free_port;
use attache_tests::{attache, fails, listing, ok};
use serde_json::Value;

/// A repository with its own cache and state in a temporary directory.
struct Site {
    t: tempfile::TempDir,
    repo: PathBuf,
}

impl Site {
    fn new() -> Self {
        let t = tempfile::Builder::new()
            .prefix("mail")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let repo = t.path().join("repo");
        let s = Site { t, repo };
        ok(s.attache(None).arg("init"));
        s
    }

    /// `attache` on the repository, with `password` as the IMAP password
    /// (in the environment) or none.
    fn attache(&self, password: Option<&str>) -> Command {
        let mut c = attache(&self.repo);
        c.env("ATTACHE_CACHE_DIR", self.t.path().join("cache"))
            .env("ATTACHE_STATE_DIR", self.t.path().join("state"))
            .env_remove("ATTACHE_POLICY")
            .env_remove("ATTACHE_APP_PASSWORD");
        if let Some(p) = password {
            c.env("ATTACHE_APP_PASSWORD", p);
        }
        c
    }

    fn backup_cmd(&self, password: Option<&str>, id: &str) -> Command {
        let mut c = self.attache(password);
        c.args([
            "backup",
            "local",
            "--plugin",
            "mail",
            "--json",
            "--include",
            id,
        ]);
        c
    }

    /// A backup; its JSON report (id, items, read_bytes, ...).
    fn backup(&self, password: &str, id: &str) -> Value {
        let out = ok(&mut self.backup_cmd(Some(password), id));
        serde_json::from_str(&out).expect("backup --json prints JSON")
    }

    fn restore_cmd(
        &self,
        password: Option<&str>,
        snap: &str,
        item: &str,
        rename: Option<&str>,
    ) -> Command {
        let mut c = self.attache(password);
        c.args(["restore", snap, "--item", item, "--to", "local"]);
        if let Some(n) = rename {
            c.args(["--as", n]);
        }
        c
    }

    fn restore(&self, password: &str, snap: &str, item: &str, rename: Option<&str>) {
        ok(&mut self.restore_cmd(Some(password), snap, item, rename));
    }

    /// `attache ls SNAP [PREFIX] --json`.
    fn ls(&self, snap: &str, prefix: Option<&str>) -> Vec<Value> {
        let mut c = self.attache(None);
        c.args(["ls", snap, "--json"]);
        if let Some(p) = prefix {
            c.arg(p);
        }
        serde_json::from_str(&ok(&mut c)).expect("ls --json prints JSON")
    }

    fn snapshot_count(&self) -> usize {
        let out = ok(self.attache(None).args(["snapshots", "--json"]));
        let v: Vec<Value> = serde_json::from_str(&out).expect("snapshots --json");
        v.len()
    }

    /// What is in the repository directory (locks aside, which come and go).
    fn repo_files(&self) -> Vec<PathBuf> {
        listing(&self.repo)
            .into_iter()
            .filter(|p| !p.starts_with("locks/"))
            .collect()
    }
}

fn id_of(report: &Value) -> String {
    report["id"].as_str().expect("report has an id").to_owned()
}

fn num(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("report has no {key}: {report}"))
}

/// A catalog attribute of an `ls --json` item.
fn attr<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item["attributes"]
        .as_array()?
        .iter()
        .find(|p| p[0] == key)
        .and_then(|p| p[1].as_str())
}

fn find<'a>(items: &'a [Value], id: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id} in the snapshot"))
}

/// A background writer, killed if the test panics before it is stopped.
struct Background(Option<Child>);

impl Background {
    fn stop(mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The messages of a store keyed by mailbox and UID.
fn by_place(msgs: &[Message]) -> BTreeMap<(String, u32), String> {
    msgs.iter()
        .map(|m| ((m.mailbox.clone(), m.uid), m.digest.clone()))
        .collect()
}

#[test]
fn a_user_with_20_folders_and_2000_messages_restores_a_message_and_a_folder_alone_and_as_others() {
    let d = Dovecot::start(&["alice", "bob"]);
    let pw = d.password.clone();
    d.fill("alice", 2000, 1, None);
    let site = Site::new();
    let user = d.url("alice", "");
    let folders = d.mailboxes("alice");
    assert_eq!(folders.len(), 20, "{folders:?}");
    let subscribed = d.subscribed("alice");
    let before = d.messages("alice", "*", &["all"]);
    assert_eq!(before.len(), 2000);

    let report = site.backup(&pw, &user);
    let snap = id_of(&report);
    let items = site.ls(&snap, None);
    // The user, 20 folders, 2,000 messages.
    assert_eq!(num(&report, "items"), 2021, "{report}");
    assert_eq!(items.len(), 2021);
    let messages: Vec<&Value> = items.iter().filter(|i| i["kind"] == "message").collect();
    assert_eq!(messages.len(), 2000);
    assert!(
        messages.iter().all(|m| attr(m, "subject").is_some()
            && attr(m, "from").is_some()
            && attr(m, "message-id").is_some()
            && attr(m, "internal-date").is_some()),
        "a message lacks subject, from, message-id or internal date in the catalog"
    );
    // Non-ASCII subjects and senders are decoded (RFC 2047) for the catalog.
    assert!(messages
        .iter()
        .any(|m| attr(m, "subject").is_some_and(|s| s.starts_with("Überweisung bestätigt"))));
    assert!(messages
        .iter()
        .any(|m| attr(m, "from").is_some_and(|s| s.contains("Jörg Müller"))));
    assert!(messages
        .iter()
        .any(|m| attr(m, "flags").is_some_and(|f| f.contains("$Label1"))));

    // `attache find` finds the folder and a message by their ids.
    let out = ok(site
        .attache(None)
        .args(["find", "--json", "*/Archive/2024"]));
    let hits: Vec<Value> = serde_json::from_str(&out).expect("find --json");
    assert_eq!(hits.len(), 1, "{out}");
    assert_eq!(hits[0]["kind"], "directory");
    // ... and a message by its subject (the contract's `title`), which
    // `attache ls` shows too.
    let out = ok(site
        .attache(None)
        .args(["find", "--json", "Überweisung bestätigt*"]));
    let hits: Vec<Value> = serde_json::from_str(&out).expect("find --json");
    assert!(!hits.is_empty(), "no message found by its subject: {out}");
    assert!(hits.iter().all(|h| h["kind"] == "message"), "{out}");
    let listing = ok(site.attache(None).args(["ls", &snap]));
    assert!(
        listing.contains("Überweisung bestätigt"),
        "ls shows no subject"
    );

    // Delete one flagged message of Archive/2024 and the folder Projects/Beta.
    let archive = d.messages("alice", "Archive/2024", &["FLAGGED"]);
    let gone = archive.first().expect("a flagged message").clone();
    let uidvalidity = d.status("alice", "Archive/2024", "uidvalidity");
    let beta = d.messages("alice", "Projects/Beta", &["all"]);
    assert!(beta.len() > 50);
    ok(d.doveadm().args([
        "expunge",
        "-u",
        "alice",
        "mailbox",
        "Archive/2024",
        "uid",
        &gone.uid.to_string(),
    ]));
    ok(d.doveadm()
        .args(["expunge", "-u", "alice", "mailbox", "Projects/Beta", "all"]));
    ok(d.doveadm()
        .args(["mailbox", "delete", "-u", "alice", "Projects/Beta"]));

    // The message alone.
    let msg_id = format!(
        "{user}/Archive/2024/;UIDVALIDITY={uidvalidity}/;UID={}",
        gone.uid
    );
    let item = find(&items, &msg_id);
    assert_eq!(
        attr(item, "flags").map(|f| f.contains("\\Flagged")),
        Some(true)
    );
    site.restore(&pw, &snap, &msg_id, None);
    let after = d.messages("alice", "Archive/2024", &["all"]);
    let new: Vec<&Message> = after
        .iter()
        .filter(|m| {
            !before
                .iter()
                .any(|b| b.mailbox == m.mailbox && b.uid == m.uid)
        })
        .collect();
    assert_eq!(new.len(), 1, "one message is appended");
    assert_eq!(
        new[0].digest, gone.digest,
        "the restored message differs in bytes, flags or internal date"
    );

    // The folder alone.
    site.restore(&pw, &snap, &d.url("alice", "Projects/Beta"), None);
    let beta_after = d.messages("alice", "Projects/Beta", &["all"]);
    assert_eq!(Dovecot::contents(&beta_after), Dovecot::contents(&beta));
    assert_eq!(d.mailboxes("alice"), folders);
    assert_eq!(d.subscribed("alice"), subscribed);

    // Nothing else changed: every other message is where it was, as it was.
    let now = by_place(&d.messages("alice", "*", &["all"]));
    let was = by_place(&before);
    for ((mailbox, uid), digest) in &was {
        if mailbox == "Projects/Beta" || (mailbox == "Archive/2024" && *uid == gone.uid) {
            continue;
        }
        assert_eq!(
            now.get(&(mailbox.clone(), *uid)),
            Some(digest),
            "{mailbox} UID {uid} changed"
        );
    }
    assert_eq!(now.len(), was.len());

    // A second restore of the message finds its Message-ID there and
    // appends nothing.
    site.restore(&pw, &snap, &msg_id, None);
    assert_eq!(
        d.messages("alice", "Archive/2024", &["all"]).len(),
        after.len()
    );

    // --as another mailbox: Archive, with its subfolders, under Restored/;
    // each as the snapshot holds it.
    site.restore(
        &pw,
        &snap,
        &d.url("alice", "Archive"),
        Some(&d.url("alice", "Restored/Archive")),
    );
    for folder in ["Archive", "Archive/2023", "Archive/2024"] {
        let was: Vec<Message> = before
            .iter()
            .filter(|m| m.mailbox == folder)
            .cloned()
            .collect();
        assert!(!was.is_empty());
        assert_eq!(
            Dovecot::contents(&d.messages("alice", &format!("Restored/{folder}"), &["all"])),
            Dovecot::contents(&was),
            "Restored/{folder} differs from {folder} in the snapshot"
        );
    }

    // --as another mailbox, the message alone (its id holds `=`): the one
    // message lands there as the snapshot holds it.
    site.restore(&pw, &snap, &msg_id, Some(&d.url("alice", "Single")));
    let single = d.messages("alice", "Single", &["all"]);
    assert_eq!(single.len(), 1, "one message restored as Single");
    assert_eq!(
        single[0].digest, gone.digest,
        "the message restored as another mailbox differs in bytes, flags or internal date"
    );

    // --as another user: alice's Work as bob's Work.
    site.restore(
        &pw,
        &snap,
        &d.url("alice", "Work"),
        Some(&d.url("bob", "Work")),
    );
    assert_eq!(
        Dovecot::contents(&d.messages("bob", "Work", &["all"])),
        Dovecot::contents(&d.messages("alice", "Work", &["all"]))
    );
    assert!(d.subscribed("bob").contains(&"Work".to_owned()));
}

#[test]
fn a_backup_under_a_live_writer_restores_exactly_the_messages_below_the_recorded_uidnext() {
    let d = Dovecot::start(&["alice"]);
    let pw = d.password.clone();
    d.fill("alice", 300, 2, Some("INBOX"));
    let site = Site::new();
    let inbox = d.url("alice", "INBOX");

    let writer = Background(Some(d.writer("alice")));
    sleep(Duration::from_millis(500));
    let start_next = d.status("alice", "INBOX", "uidnext");
    let report = site.backup(&pw, &d.url("alice", ""));
    sleep(Duration::from_millis(300));
    writer.stop();
    let snap = id_of(&report);

    // The UIDNEXT the backup recorded first, from the catalog.
    let items = site.ls(&snap, Some(&inbox));
    let uidnext: u32 = attr(find(&items, &inbox), "uidnext")
        .expect("INBOX records uidnext")
        .parse()
        .expect("a number");
    let live_next = d.status("alice", "INBOX", "uidnext");
    assert!(
        start_next < uidnext && uidnext < live_next,
        "the writer delivered before and after the backup's view: {start_next} < {uidnext} < {live_next}"
    );
    let below = d.messages("alice", "INBOX", &["uid", &format!("1:{}", uidnext - 1)]);
    let taken = items.iter().filter(|i| i["kind"] == "message").count();
    assert_eq!(
        taken,
        below.len(),
        "the snapshot holds the messages below UIDNEXT"
    );
    assert_eq!(
        attr(find(&items, &inbox), "messages"),
        Some(below.len().to_string().as_str())
    );

    site.restore(&pw, &snap, &inbox, Some(&d.url("alice", "Restored/INBOX")));
    let restored = d.messages("alice", "Restored/INBOX", &["all"]);
    assert_eq!(restored.len(), below.len());
    // Each complete: bytes, flags and internal date.
    assert_eq!(Dovecot::contents(&restored), Dovecot::contents(&below));
}

#[test]
fn an_incremental_backup_after_100_new_messages_downloads_only_those() {
    let d = Dovecot::start(&["alice"]);
    let pw = d.password.clone();
    d.fill("alice", 400, 3, None);
    let site = Site::new();
    let user = d.url("alice", "");

    let full = site.backup(&pw, &user);
    let full_snap = id_of(&full);
    let full_items = site.ls(&full_snap, None);
    let full_bytes: u64 = full_items
        .iter()
        .filter(|i| i["kind"] == "message")
        .map(|i| i["size"].as_u64().expect("size"))
        .sum();
    assert_eq!(num(&full, "read_bytes"), full_bytes);

    // 100 new messages in the 20 folders, and a flag set on an old one.
    d.fill("alice", 100, 4, None);
    ok(d.doveadm().args([
        "flags",
        "add",
        "-u",
        "alice",
        "\\Answered",
        "mailbox",
        "Travel",
        "uid",
        "2",
    ]));
    let incr = site.backup(&pw, &user);
    let incr_snap = id_of(&incr);
    let incr_items = site.ls(&incr_snap, None);
    let old: BTreeMap<&str, &Value> = full_items
        .iter()
        .map(|i| (i["id"].as_str().expect("id"), i))
        .collect();
    let new: Vec<&Value> = incr_items
        .iter()
        .filter(|i| i["kind"] == "message" && !old.contains_key(i["id"].as_str().expect("id")))
        .collect();
    assert_eq!(new.len(), 100);
    let new_bytes: u64 = new.iter().map(|i| i["size"].as_u64().expect("size")).sum();
    // Exactly the new messages' bytes were read; the 400 others came from
    // the parent snapshot.
    assert_eq!(
        num(&incr, "read_bytes"),
        new_bytes,
        "incremental read {} bytes, the 100 new messages are {new_bytes} (the full backup read {full_bytes})",
        num(&incr, "read_bytes")
    );
    assert_eq!(
        incr_items.iter().filter(|i| i["kind"] == "message").count(),
        500
    );
    let parent = ok(site.attache(None).args(["snapshots", "--json"]));
    let snaps: Vec<Value> = serde_json::from_str(&parent).expect("snapshots --json");
    let s = snaps
        .iter()
        .find(|s| s["id"] == incr_snap.as_str())
        .expect("the incremental snapshot");
    assert_eq!(s["parent"], full_snap.as_str());
    // Flags set since the full backup are in the incremental's catalog.
    let reflagged: Vec<&str> = incr_items
        .iter()
        .filter(|i| {
            i["kind"] == "message"
                && old.contains_key(i["id"].as_str().unwrap_or_default())
                && attr(i, "flags") != attr(old[i["id"].as_str().unwrap_or_default()], "flags")
        })
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(
        reflagged.len(),
        1,
        "the flag set since the full backup is recorded"
    );
    assert!(reflagged[0].contains("/Travel/;UIDVALIDITY="));
    assert!(reflagged[0].ends_with("/;UID=2"));

    // The incremental restores whole: a message of the parent's comes back.
    let some_old = full_items
        .iter()
        .find(|i| {
            i["kind"] == "message" && i["id"].as_str().unwrap_or_default().contains("/Travel/")
        })
        .expect("a message in Travel");
    let id = some_old["id"].as_str().expect("id");
    let travel = d.messages("alice", "Travel", &["all"]);
    let uid: u32 = id.rsplit("UID=").next().unwrap().parse().unwrap();
    ok(d.doveadm().args([
        "expunge",
        "-u",
        "alice",
        "mailbox",
        "Travel",
        "uid",
        &uid.to_string(),
    ]));
    site.restore(&pw, &incr_snap, id, None);
    assert_eq!(
        Dovecot::contents(&d.messages("alice", "Travel", &["all"])),
        Dovecot::contents(&travel)
    );
}

#[test]
fn wrong_password_dead_port_and_missing_mailbox_are_clear_errors_that_change_nothing() {
    let d = Dovecot::start(&["alice"]);
    let pw = d.password.clone();
    d.fill("alice", 100, 5, None);
    let site = Site::new();
    let user = d.url("alice", "");
    let snap = id_of(&site.backup(&pw, &user));

    let store = d.messages("alice", "*", &["all"]);
    let folders = d.mailboxes("alice");
    let files = site.repo_files();
    let unchanged = |what: &str| {
        assert_eq!(site.snapshot_count(), 1, "{what}: a snapshot was added");
        assert_eq!(site.repo_files(), files, "{what}: the repository changed");
        assert_eq!(
            d.messages("alice", "*", &["all"]),
            store,
            "{what}: the mail changed"
        );
        assert_eq!(
            d.mailboxes("alice"),
            folders,
            "{what}: the mailboxes changed"
        );
    };

    // A wrong password, on backup and on restore.
    let err = fails(&mut site.backup_cmd(Some("not-the-password"), &user));
    assert!(
        err.contains("wrong user name or password")
            || err.contains("AUTHENTICATIONFAILED")
            || err.contains("Authentication failed"),
        "unclear error: {err}"
    );
    assert!(!err.contains(&pw), "the error shows the password: {err}");
    unchanged("wrong password");
    let err = fails(&mut site.restore_cmd(
        Some("not-the-password"),
        &snap,
        &d.url("alice", "Work"),
        Some(&d.url("alice", "Elsewhere")),
    ));
    assert!(
        err.contains("Authentication failed") || err.contains("password"),
        "unclear error: {err}"
    );
    unchanged("restore with a wrong password");

    // No password at all.
    let err = fails(&mut site.backup_cmd(None, &user));
    assert!(err.contains("no password"), "unclear error: {err}");
    unchanged("no password");

    // Nothing listens at the port.
    let dead = free_port();
    let err = fails(&mut site.backup_cmd(Some(&pw), &format!("imap://alice@127.0.0.1:{dead}")));
    assert!(
        err.contains(&format!("127.0.0.1:{dead}"))
            && err.to_lowercase().contains("connection refused"),
        "unclear error: {err}"
    );
    unchanged("dead port");

    // A mailbox that does not exist.
    let err = fails(&mut site.backup_cmd(Some(&pw), &d.url("alice", "Nope/Never")));
    assert!(
        err.contains("\"Nope/Never\" does not exist"),
        "unclear error: {err}"
    );
    unchanged("missing mailbox");

    // A restore of a mailbox the snapshot does not hold.
    let err = fails(&mut site.restore_cmd(Some(&pw), &snap, &d.url("alice", "Nope"), None));
    assert!(err.contains("Nope"), "unclear error: {err}");
    unchanged("restore of a missing mailbox");

    // A host name where the id needs an address.
    let err = fails(&mut site.backup_cmd(Some(&pw), &format!("imap://alice@localhost:{}", d.port)));
    assert!(err.contains("not an IP address"), "unclear error: {err}");
    unchanged("host name");

    // And the snapshot still restores with the right password.
    site.restore(
        &pw,
        &snap,
        &d.url("alice", "Work"),
        Some(&d.url("alice", "Work2")),
    );
    assert_eq!(
        Dovecot::contents(&d.messages("alice", "Work2", &["all"])),
        Dovecot::contents(&d.messages("alice", "Work", &["all"]))
    );
}

#[test]
fn the_password_comes_from_a_file_and_never_a_command_line() {
    let d = Dovecot::start(&["alice"]);
    d.fill("alice", 20, 6, Some("INBOX"));
    let site = Site::new();
    let file = site.t.path().join("imap-password");
    std::fs::write(&file, format!("{}\n", d.password)).expect("write");
    let out = ok(site
        .attache(None)
        .args(["backup", "local", "--plugin", "mail", "--json", "--include"])
        .arg(d.url("alice", "INBOX"))
        .arg("--app-password-file")
        .arg(&file));
    let report: Value = serde_json::from_str(&out).expect("JSON");
    // INBOX and its 20 messages.
    assert_eq!(num(&report, "items"), 21);
}

/// Writes a Maildir++ message file dated `secs` (its internal date).
fn maildir_file(path: &std::path::Path, body: &[u8], secs: u64) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, body).expect("write");
    std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
        .expect("set mtime");
}

#[test]
fn a_maildir_inside_a_vm_is_backed_up_and_a_deleted_message_restored_in_place() {
    use attache_tests::vm::{serial, GuestVm, TestVm};
    let _serial = serial();
    let site = Site::new();
    // /data/Maildir in the guest: INBOX with two messages (one still in
    // new/), Archive with three, a subscription, Dovecot-style file names.
    let src = site.t.path().join("src");
    let md = src.join("Maildir");
    for d in [
        "cur",
        "new",
        "tmp",
        ".Archive/cur",
        ".Archive/new",
        ".Archive/tmp",
    ] {
        std::fs::create_dir_all(md.join(d)).expect("mkdir");
    }
    std::fs::write(md.join("subscriptions"), "V\t2\n\nArchive\n").expect("write");
    let msg = |i: u32, subject: &str| {
        format!(
            "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <j@example.org>\r\nSubject: {subject}\r\nMessage-ID: <{i}@vm.example.org>\r\nDate: Mon, 1 Jan 2024 10:00:0{i} +0000\r\n\r\nbody {i}\r\n{}\r\n",
            "z".repeat(i as usize * 1000)
        )
        .into_bytes()
    };
    maildir_file(
        &md.join("cur/1700000001.M1P1.vm,S=100:2,S"),
        &msg(1, "hello"),
        1_700_000_001,
    );
    maildir_file(
        &md.join("new/1700000002.M2P1.vm"),
        &msg(2, "new one"),
        1_700_000_002,
    );
    let lost_name = "1700000003.M3P1.vm,S=200:2,FS";
    let lost = msg(3, "=?UTF-8?B?w4RwZmVs?= und Birnen");
    maildir_file(
        &md.join(".Archive/cur").join(lost_name),
        &lost,
        1_700_000_003,
    );
    maildir_file(
        &md.join(".Archive/cur/1700000004.M4P1.vm:2,RS"),
        &msg(4, "kept"),
        1_700_000_004,
    );
    maildir_file(
        &md.join(".Archive/cur/1700000005.M5P1.vm:2,"),
        &msg(5, "also kept"),
        1_700_000_005,
    );

    let vms = site.t.path().join("vms");
    let vm = TestVm::boot(&vms, "vm1", &src);
    let ds = site.t.path().join("ds");
    ok(site
        .attache(None)
        .args(["hypervisor", "add", "hv1", "--driver", "qemu", "--vm-dir"])
        .arg(&vms)
        .arg("--datastore")
        .arg(&ds));
    let store = "maildir:///data/Maildir";
    let out = ok(site.attache(None).args([
        "backup",
        "hv1/vm1",
        "--plugin",
        "mail",
        "--json",
        "--include",
        store,
    ]));
    let report: Value = serde_json::from_str(&out).expect("JSON");
    let snap = id_of(&report);
    // The store, INBOX, Archive and five messages.
    assert_eq!(num(&report, "items"), 8, "{report}");
    vm.assert_clean();
    let items = site.ls(&snap, None);
    let lost_id = format!("{store}/;MAILBOX=Archive/;FILE=1700000003.M3P1.vm%2CS=200");
    let item = find(&items, &lost_id);
    assert_eq!(attr(item, "subject"), Some("Äpfel und Birnen"));
    assert_eq!(attr(item, "from"), Some("Jörg Müller <j@example.org>"));
    assert_eq!(attr(item, "flags"), Some("\\Flagged \\Seen"));
    assert_eq!(item["size"], lost.len());
    assert_eq!(
        attr(
            find(&items, &format!("{store}/;MAILBOX=Archive")),
            "subscribed"
        ),
        Some("yes")
    );

    // Delete the message in the guest, and restore it alone, in place.
    let listing = "cd /data/Maildir && find . -type f | sort | while read f; do echo \"$f $(stat -c %Y \"$f\") $(sha256sum < \"$f\" | cut -d' ' -f1)\"; done";
    let before = vm.sh(listing);
    assert_eq!(before.lines().count(), 6, "{before}");
    assert!(
        before.contains(&format!("./.Archive/cur/{lost_name} 1700000003 ")),
        "{before}"
    );
    vm.sh(&format!("rm /data/Maildir/.Archive/cur/{lost_name}; sync"));
    assert!(!vm.sh(listing).contains("1700000003"));
    ok(site
        .attache(None)
        .args(["restore", &snap, "--item", &lost_id, "--to", "hv1/vm1"]));
    vm.assert_clean();
    // Back under its name with its flags, its bytes and its date (the
    // internal date), through tmp/ (left empty); nothing else changed.
    assert_eq!(vm.sh(listing), before);
    assert_eq!(
        vm.sh("ls -A /data/Maildir/.Archive/tmp /data/Maildir/tmp | grep -v : | grep . || true")
            .trim(),
        ""
    );

    // Once more: it is there, so it is left alone.
    ok(site
        .attache(None)
        .args(["restore", &snap, "--item", &lost_id, "--to", "hv1/vm1"]));
    assert_eq!(vm.sh(listing), before);
    vm.assert_clean();
}
