//! The few header fields the catalog keeps, read from a message's header
//! block (unfolded, RFC 2047 decoded).

use crate::rfc2047;

/// Longest header block looked at.
const MAX_HEADER: usize = 256 * 1024;
/// Longest value kept for the catalog.
const MAX_VALUE: usize = 998;

/// Catalog fields of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// `Subject:`, decoded.
    pub subject: Option<String>,
    /// `From:`, decoded.
    pub from: Option<String>,
    /// `Date:`, as written.
    pub date: Option<String>,
    /// `Message-ID:`, as written (with its angle brackets).
    pub message_id: Option<String>,
}

/// Reads the fields from the start of a raw message.
pub fn summary(message: &[u8]) -> Summary {
    let head = &message[..message.len().min(MAX_HEADER)];
    let end = find(head, b"\r\n\r\n")
        .or_else(|| find(head, b"\n\n"))
        .unwrap_or(head.len());
    let text = String::from_utf8_lossy(&head[..end]);
    let mut s = Summary::default();
    let mut current: Option<(String, String)> = None;
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = current.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some(f) = current.take() {
            fields.push(f);
        }
        if let Some((k, v)) = line.split_once(':') {
            current = Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    fields.extend(current);
    for (k, v) in fields {
        let slot = match k.as_str() {
            "subject" => &mut s.subject,
            "from" => &mut s.from,
            "date" => &mut s.date,
            "message-id" => &mut s.message_id,
            _ => continue,
        };
        if slot.is_none() {
            let v = if matches!(k.as_str(), "subject" | "from") {
                rfc2047::decode(&v)
            } else {
                v
            };
            *slot = Some(truncate(v));
        }
    }
    s
}

fn truncate(mut v: String) -> String {
    if v.len() > MAX_VALUE {
        let mut cut = MAX_VALUE;
        while !v.is_char_boundary(cut) {
            cut -= 1;
        }
        v.truncate(cut);
    }
    v
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The Message-ID of a header block, normalised for comparison (trimmed).
pub fn message_id(message: &[u8]) -> Option<String> {
    summary(message).message_id.map(|m| m.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields() {
        let m = b"From: =?UTF-8?Q?J=C3=B6rg?= <j@example.org>\r\nSubject: Hello\r\n  =?UTF-8?B?V2VsdA==?=\r\nMessage-ID: <1@x>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nSubject: not this\r\n";
        let s = summary(m);
        assert_eq!(s.from.as_deref(), Some("Jörg <j@example.org>"));
        assert_eq!(s.subject.as_deref(), Some("Hello Welt"));
        assert_eq!(s.message_id.as_deref(), Some("<1@x>"));
        assert_eq!(s.date.as_deref(), Some("Mon, 1 Jan 2024 10:00:00 +0000"));
        assert_eq!(summary(b"no header").subject, None);
    }
}
