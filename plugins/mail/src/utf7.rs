//! Modified UTF-7 (RFC 3501 section 5.1.3), the encoding of IMAP mailbox
//! names on the wire: printable ASCII stands for itself (`&` as `&-`), every
//! other run of characters is UTF-16 in a base64 variant with `,` for `/`,
//! between `&` and `-`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes a UTF-8 mailbox name for the wire.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

fn flush(run: &mut Vec<u16>, out: &mut String) {
    if run.is_empty() {
        return;
    }
    let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out.push('-');
    run.clear();
}

/// Decodes a mailbox name from the wire. A name that is not valid modified
/// UTF-7 is an error (the caller names the mailbox in its message).
pub fn decode(wire: &str) -> Result<String, String> {
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find('-')
            .ok_or_else(|| format!("unterminated & in mailbox name {wire:?}"))?;
        let b64 = &after[..end];
        if b64.is_empty() {
            out.push('&');
        } else {
            let mut bits = 0u32;
            let mut nbits = 0;
            let mut units = Vec::new();
            for c in b64.bytes() {
                let v = ALPHABET
                    .iter()
                    .position(|&a| a == c)
                    .ok_or_else(|| format!("bad character in mailbox name {wire:?}"))?;
                bits = (bits << 6) | v as u32;
                nbits += 6;
                if nbits >= 16 {
                    nbits -= 16;
                    units.push(((bits >> nbits) & 0xffff) as u16);
                }
            }
            let s = String::from_utf16(&units)
                .map_err(|_| format!("bad UTF-16 in mailbox name {wire:?}"))?;
            out.push_str(&s);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc_examples() {
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/台北/日本語"
        );
        for s in [
            "Entwürfe",
            "A&B",
            "Gesendete Objekte",
            "Ünïcödé 😀 mail",
            "&",
            "",
        ] {
            assert_eq!(decode(&encode(s)).unwrap(), s, "{s}");
        }
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert!(decode("bad&AP").is_err());
        assert!(decode("bad&*-").is_err());
    }
}
