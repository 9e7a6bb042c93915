//! A throwaway Dovecot for the mail plugin's tests: the one
//! `tests/mail/dovecot.sh` starts (its own base directory, IMAP and LMTP on
//! 127.0.0.1 at free ports, a passwd-file user database, Maildir storage, all
//! in a temporary directory), filled by `tests/mail/gen-mail.py`, stopped
//! when dropped. Nothing of the machine's own mail setup is touched.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::{ok, output, root};

/// A running Dovecot; stopped (and its directory removed) when dropped.
pub struct Dovecot {
    dir: tempfile::TempDir,
    /// The IMAP port on 127.0.0.1.
    pub port: u16,
    /// The LMTP port on 127.0.0.1.
    pub lmtp_port: u16,
    /// Every user's password.
    pub password: String,
    conf: String,
}

/// One message as `doveadm fetch` shows it: where it is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Message {
    /// Its mailbox.
    pub mailbox: String,
    /// Its UID there.
    pub uid: u32,
    /// BLAKE3 of its bytes as stored, its flags and keywords (sorted, less
    /// `\Recent`, which is the session's and not the message's) and its
    /// received (internal) date.
    pub digest: String,
}

fn script() -> std::path::PathBuf {
    root().join("tests/mail/dovecot.sh")
}

impl Dovecot {
    /// Starts an instance with these users (installing Debian's
    /// dovecot-imapd and dovecot-lmtpd first when missing).
    pub fn start(users: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("attache-dovecot")
            .tempdir_in("/tmp")
            .expect("tempdir");
        ok(Command::new(script())
            .arg("start")
            .arg(dir.path())
            .args(users));
        let env: BTreeMap<String, String> = std::fs::read_to_string(dir.path().join("env"))
            .expect("dovecot.sh writes env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Dovecot {
            port: env["PORT"].parse().expect("PORT"),
            lmtp_port: env["LMTP_PORT"].parse().expect("LMTP_PORT"),
            password: env["PW"].clone(),
            conf: env["CONF"].clone(),
            dir,
        }
    }

    /// The instance's directory (`dovecot.log`, `mail/USER/Maildir`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `imap://USER@127.0.0.1:PORT`, then `/REST` if not empty.
    pub fn url(&self, user: &str, rest: &str) -> String {
        let u = format!("imap://{user}@127.0.0.1:{}", self.port);
        if rest.is_empty() {
            u
        } else {
            format!("{u}/{rest}")
        }
    }

    /// `doveadm` on this instance.
    pub fn doveadm(&self) -> Command {
        let mut c = Command::new("doveadm");
        c.args(["-c", &self.conf]);
        c
    }

    /// Delivers `messages` realistic messages over LMTP into 20 folders of
    /// `user` (into `only` alone if given), and sets flags on a share of
    /// each folder. `seed` varies the messages.
    pub fn fill(&self, user: &str, messages: u32, seed: u32, only: Option<&str>) {
        let mut c = Command::new("python3");
        c.arg(root().join("tests/mail/gen-mail.py"))
            .arg(self.dir())
            .arg(user)
            .args(["--messages", &messages.to_string()])
            .args(["--seed", &seed.to_string()]);
        if let Some(f) = only {
            c.args(["--only", f]);
        }
        ok(&mut c);
    }

    /// A writer that delivers small messages into `user`'s INBOX over LMTP
    /// without pause until killed.
    pub fn writer(&self, user: &str) -> Child {
        Command::new("python3")
            .arg("-c")
            .arg(
                r#"
import smtplib, sys
s = smtplib.LMTP("127.0.0.1", int(sys.argv[1]))
i = 0
while True:
    s.sendmail("w@example.org", [sys.argv[2]], f"Subject: live {i}\r\nMessage-ID: <live{i}@w>\r\n\r\n{'x' * (i * 37 % 5000)}\r\n".encode())
    i += 1
"#,
            )
            .arg(self.lmtp_port.to_string())
            .arg(user)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3")
    }

    /// The messages of `user` in `mailbox` (`*`: every mailbox) matching
    /// the doveadm search query `search` (`["all"]`, `["uid", "1:9"]`),
    /// sorted by mailbox and UID.
    pub fn messages(&self, user: &str, mailbox: &str, search: &[&str]) -> Vec<Message> {
        let out = ok(self
            .doveadm()
            .args(["-f", "json", "fetch", "-u", user])
            .arg("mailbox uid flags date.received text")
            .args(["mailbox", mailbox])
            .args(search));
        let v: Vec<BTreeMap<String, String>> = if out.trim().is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(&out).expect("doveadm -f json fetch prints JSON")
        };
        let mut msgs: Vec<Message> = v
            .into_iter()
            .map(|m| {
                let mut flags: Vec<&str> = m["flags"]
                    .split_whitespace()
                    .filter(|f| *f != "\\Recent")
                    .collect();
                flags.sort_unstable();
                let mut h = blake3::Hasher::new();
                h.update(m["text"].as_bytes());
                h.update(b"\0");
                h.update(flags.join(" ").as_bytes());
                h.update(b"\0");
                h.update(m["date.received"].as_bytes());
                Message {
                    mailbox: m["mailbox"].clone(),
                    uid: m["uid"].parse().expect("uid"),
                    digest: h.finalize().to_hex().to_string(),
                }
            })
            .collect();
        msgs.sort();
        msgs
    }

    /// The digests of `messages`, sorted: what a mailbox holds, whatever
    /// the UIDs and mailbox names.
    pub fn contents(messages: &[Message]) -> Vec<String> {
        let mut d: Vec<String> = messages.iter().map(|m| m.digest.clone()).collect();
        d.sort();
        d
    }

    /// A mailbox's status item (`uidnext`, `uidvalidity`, `messages`).
    pub fn status(&self, user: &str, mailbox: &str, item: &str) -> u32 {
        let out = ok(self
            .doveadm()
            .args(["-f", "tab", "mailbox", "status", "-u", user, item, mailbox]));
        out.lines()
            .last()
            .and_then(|l| l.split('\t').next_back())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("mailbox status {item} {mailbox}: {out:?}"))
    }

    /// `user`'s mailboxes, sorted.
    pub fn mailboxes(&self, user: &str) -> Vec<String> {
        let out = ok(self.doveadm().args(["mailbox", "list", "-u", user]));
        let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
        v.sort();
        v
    }

    /// `user`'s subscribed mailboxes, sorted.
    pub fn subscribed(&self, user: &str) -> Vec<String> {
        let out = ok(self.doveadm().args(["mailbox", "list", "-s", "-u", user]));
        let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
        v.sort();
        v
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = output(Command::new(script()).arg("stop").arg(self.dir.path()));
    }
}
