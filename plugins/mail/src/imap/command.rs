//! Building IMAP commands: atoms, strings that become quoted strings or
//! literals as their bytes require, and UID sets.

/// One argument of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg<'a> {
    /// Sent as is (`UID`, `(\Seen \Flagged)`, `1:5,7`).
    Raw(&'a str),
    /// An astring: quoted when it is plain 7-bit text, otherwise a literal.
    Str(&'a [u8]),
    /// Always a literal (message content).
    Literal(&'a [u8]),
}

/// A command cut into text and literals, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text, up to and including a literal's `{N}` or the final CRLF.
    Text(Vec<u8>),
    /// Literal bytes; `sync` when the server must be waited for first.
    Literal {
        /// The bytes.
        bytes: &'a [u8],
        /// Whether to wait for the server's continuation first.
        sync: bool,
    },
}

/// Whether `b` can be sent as a quoted string.
fn quotable(b: &[u8]) -> bool {
    b.len() <= 1024
        && b.iter()
            .all(|&c| (0x01..0x80).contains(&c) && c != b'\r' && c != b'\n')
}

/// Cuts a tagged command into pieces. `literal_plus` uses non-synchronising
/// literals (`{N+}`, RFC 7888) where the server offers LITERAL+.
pub fn pieces<'a>(tag: &str, args: &[Arg<'a>], literal_plus: bool) -> Vec<Piece<'a>> {
    let mut out = Vec::new();
    let mut text = tag.as_bytes().to_vec();
    for a in args {
        text.push(b' ');
        let lit = match a {
            Arg::Raw(s) => {
                text.extend_from_slice(s.as_bytes());
                continue;
            }
            Arg::Str(b) if quotable(b) => {
                text.push(b'"');
                for &c in *b {
                    if c == b'"' || c == b'\\' {
                        text.push(b'\\');
                    }
                    text.push(c);
                }
                text.push(b'"');
                continue;
            }
            Arg::Str(b) | Arg::Literal(b) => *b,
        };
        let plus = if literal_plus { "+" } else { "" };
        text.extend_from_slice(format!("{{{}{plus}}}\r\n", lit.len()).as_bytes());
        out.push(Piece::Text(std::mem::take(&mut text)));
        out.push(Piece::Literal {
            bytes: lit,
            sync: !literal_plus,
        });
    }
    text.extend_from_slice(b"\r\n");
    out.push(Piece::Text(text));
    out
}

/// A compact UID set (`1:5,7,9:12`) of sorted, distinct UIDs.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_or_literals() {
        let p = pieces(
            "a1",
            &[
                Arg::Raw("LOGIN"),
                Arg::Str(b"al\"ice"),
                Arg::Str("pässword".as_bytes()),
            ],
            true,
        );
        assert_eq!(
            p,
            vec![
                Piece::Text(b"a1 LOGIN \"al\\\"ice\" {9+}\r\n".to_vec()),
                Piece::Literal {
                    bytes: "pässword".as_bytes(),
                    sync: false
                },
                Piece::Text(b"\r\n".to_vec()),
            ]
        );
        let p = pieces(
            "a2",
            &[Arg::Raw("APPEND"), Arg::Str(b"INBOX"), Arg::Literal(b"x")],
            false,
        );
        assert_eq!(p[0], Piece::Text(b"a2 APPEND \"INBOX\" {1}\r\n".to_vec()));
        assert_eq!(
            p[1],
            Piece::Literal {
                bytes: b"x",
                sync: true
            }
        );
    }

    #[test]
    fn compacts_uid_sets() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }
}
