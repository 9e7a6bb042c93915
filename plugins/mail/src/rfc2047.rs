//! Decoding of RFC 2047 encoded words (`=?UTF-8?B?...?=`) in header values,
//! for the catalog's subject and sender. Charsets decoded: UTF-8, US-ASCII,
//! ISO-8859-1 and Windows-1252 (as Latin-1 for 0x80-0x9F too); a word in
//! another charset, or malformed, is kept as it is.

use base64::Engine;

/// Decodes the encoded words of an unfolded header value.
pub fn decode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    // Whitespace between two encoded words is dropped (RFC 2047 section 6.2).
    let mut pending_space = String::new();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some(start) = rest.find("=?") {
            let (before, at) = rest.split_at(start);
            if let Some((text, len)) = word(at) {
                if !(last_was_word && before.chars().all(char::is_whitespace)) {
                    out.push_str(&pending_space);
                    out.push_str(before);
                }
                pending_space.clear();
                out.push_str(&text);
                rest = &at[len..];
                last_was_word = true;
                // Hold following whitespace until we know what comes next.
                let ws = rest.len() - rest.trim_start().len();
                pending_space.push_str(&rest[..ws]);
                rest = &rest[ws..];
                continue;
            }
            out.push_str(&pending_space);
            pending_space.clear();
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            last_was_word = false;
        } else {
            out.push_str(&pending_space);
            pending_space.clear();
            out.push_str(rest);
            break;
        }
    }
    out.push_str(&pending_space);
    out
}

/// Decodes one encoded word at the start of `s`; returns it and its length.
fn word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let (charset, rest) = body.split_once('?')?;
    let (enc, rest) = rest.split_once('?')?;
    let end = rest.find("?=")?;
    let text = &rest[..end];
    if text.contains(' ') || charset.contains(' ') {
        return None;
    }
    let len = 2 + charset.len() + 1 + enc.len() + 1 + end + 2;
    let charset = charset.split('*').next().unwrap_or("");
    let bytes = match enc {
        "B" | "b" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim_end_matches('='))
            })
            .ok()?,
        "Q" | "q" => q_decode(text)?,
        _ => return None,
    };
    let decoded = match charset.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" | "us-ascii" => String::from_utf8_lossy(&bytes).into_owned(),
        "iso-8859-1" | "latin1" | "windows-1252" | "cp1252" => {
            bytes.iter().map(|&b| b as char).collect()
        }
        _ => return None,
    };
    Some((decoded, len))
}

fn q_decode(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let h = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_words() {
        assert_eq!(decode("=?UTF-8?B?w5xiZXJ3ZWlzdW5n?="), "Überweisung");
        assert_eq!(
            decode("=?ISO-8859-1?Q?Andr=E9?= Pirard <a@b>"),
            "André Pirard <a@b>"
        );
        assert_eq!(decode("=?UTF-8?Q?a?= =?UTF-8?Q?b?="), "ab");
        assert_eq!(
            decode("Re: =?utf-8?q?caf=C3=A9_cr=C3=A8me?= now"),
            "Re: café crème now"
        );
        assert_eq!(decode("plain =? not a word"), "plain =? not a word");
        assert_eq!(decode("=?KOI8-R?B?abc?="), "=?KOI8-R?B?abc?=");
    }
}
