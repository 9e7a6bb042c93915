//! What a job needs: the exact `IP:PORT` of every IMAP server its ids (and
//! a restore's renamed targets) name, the root of every Maildir store (read
//! for backup and discover, read-write for restore), and the password-file.

use crate::error::{Error, Result};
use crate::ids::{self, Id};
use crate::options::{self, Options};

/// A path the job needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathNeed {
    /// Absolute path.
    pub path: String,
    /// Read-write rather than read.
    pub write: bool,
    /// Why.
    pub reason: String,
}

/// The plan, before it becomes the contract's `access-plan`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Paths.
    pub paths: Vec<PathNeed>,
    /// `IP:PORT` addresses with a reason.
    pub connect: Vec<(String, String)>,
}

/// Plans for `ids` (selection plus rename targets); `write` for restores.
pub fn plan(ids: &[String], write: bool, opts: &Options) -> Result<Plan> {
    options::check(opts)?;
    let mut p = Plan::default();
    for raw in ids {
        match ids::parse(raw).map_err(Error::Invalid)? {
            Id::Imap(i) => {
                let a = i.addr.to_string();
                if !p.connect.iter().any(|(x, _)| *x == a) {
                    p.connect
                        .push((a, format!("IMAP server of {}", i.user_id())));
                }
            }
            Id::Maildir(m) => {
                if !p.paths.iter().any(|x| x.path == m.root) {
                    p.paths.push(PathNeed {
                        path: m.root.clone(),
                        write,
                        reason: if write {
                            "Maildir store to restore into"
                        } else {
                            "Maildir store to read"
                        }
                        .into(),
                    });
                }
            }
        }
    }
    if let Some(f) = options::get(opts, "password-file") {
        p.paths.push(PathNeed {
            path: f.to_owned(),
            write: false,
            reason: "password-file".into(),
        });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_addresses_and_paths() {
        let p = plan(
            &[
                "imap://a@127.0.0.1:1143/INBOX".into(),
                "imap://b@127.0.0.1:1143".into(),
                "maildir:///srv/m/;MAILBOX=INBOX".into(),
            ],
            true,
            &[("password-file".into(), "/etc/pw".into())],
        )
        .unwrap();
        assert_eq!(p.connect.len(), 1);
        assert_eq!(p.connect[0].0, "127.0.0.1:1143");
        assert_eq!(
            p.paths[0],
            PathNeed {
                path: "/srv/m".into(),
                write: true,
                reason: "Maildir store to restore into".into()
            }
        );
        assert_eq!(p.paths[1].path, "/etc/pw");
        let e = plan(&["imap://a@mail.example.org:143".into()], false, &[]).unwrap_err();
        assert!(e.to_string().contains("not an IP address"), "{e}");
        assert!(plan(&[], false, &[("nope".into(), "x".into())]).is_err());
    }
}
