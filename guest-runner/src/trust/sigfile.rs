//! `manifest.sig`: the publishers' signatures on a container's manifest,
//! beside `manifest.json`.
//!
//! ```text
//! attache-manifest-signatures 1
//! sig ed25519:<64 hex: public key> <signed-at: Unix seconds> <128 hex: signature>
//! sig ...
//! ```
//!
//! Each signature is over the exact bytes of `manifest.json` (the runner's
//! and each plugin's BLAKE3, size and contract version, the precompiled
//! forms, the container version), prefixed by what the line says:
//!
//! ```text
//! attache-manifest-signature 1\n
//! key ed25519:<hex>\n
//! signed-at <seconds>\n
//! \n
//! <manifest.json bytes>
//! ```
//!
//! so that neither the key nor the time can be changed without breaking it.
//! Bytes, not a re-serialisation, are signed: there is no canonical form to
//! get wrong. Several publishers can sign the same manifest; signing again
//! with a key replaces that key's line.

use super::key::{PrivateKey, PublicKey};
use super::TrustError;

/// File name of the signatures inside a container.
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// First line of a signature file.
pub const MAGIC: &str = "attache-manifest-signatures 1";
/// Most signatures a file may hold.
pub const MAX_SIGNATURES: usize = 64;
/// Largest signature file read.
pub const MAX_BYTES: u64 = 64 * 1024;

/// One publisher's signature on a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The publisher's key.
    pub key: PublicKey,
    /// When it was signed, Unix seconds.
    pub signed_at: u64,
    /// The Ed25519 signature.
    pub bytes: [u8; 64],
}

/// The bytes a signature is over.
fn message(key: &PublicKey, signed_at: u64, manifest: &[u8]) -> Vec<u8> {
    let mut m =
        format!("attache-manifest-signature 1\nkey {key}\nsigned-at {signed_at}\n\n").into_bytes();
    m.extend_from_slice(manifest);
    m
}

impl Signature {
    /// `key`'s signature on `manifest` (its exact bytes) at `signed_at`.
    pub fn sign(key: &PrivateKey, signed_at: u64, manifest: &[u8]) -> Self {
        let public = key.public();
        Self {
            bytes: key.sign(&message(&public, signed_at, manifest)),
            key: public,
            signed_at,
        }
    }

    /// Whether it is valid for `manifest`.
    pub fn verifies(&self, manifest: &[u8]) -> bool {
        self.key
            .verifies(&message(&self.key, self.signed_at, manifest), &self.bytes)
    }
}

/// Reads a signature file's text; every line must be well formed.
pub fn parse(text: &str) -> Result<Vec<Signature>, TrustError> {
    let bad = |line: usize, message: &str| TrustError::BadSignatureFile {
        line,
        message: message.into(),
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, l)) if l.trim_end() == MAGIC => {}
        _ => return Err(bad(1, &format!("the first line must be {MAGIC:?}"))),
    }
    let mut out: Vec<Signature> = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [tag, key, at, sig] = fields[..] else {
            return Err(bad(
                n,
                "expected: sig ed25519:<key> <signed-at> <signature>",
            ));
        };
        if tag != "sig" {
            return Err(bad(
                n,
                "expected: sig ed25519:<key> <signed-at> <signature>",
            ));
        }
        let key = PublicKey::parse(key)?;
        let signed_at = at
            .parse::<u64>()
            .map_err(|_| bad(n, "signed-at is not a number of seconds"))?;
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(sig, &mut bytes)
            .map_err(|_| bad(n, "the signature is not 128 hex digits"))?;
        if out.iter().any(|s| s.key == key) {
            return Err(bad(n, &format!("key {} signs twice", key.id())));
        }
        if out.len() == MAX_SIGNATURES {
            return Err(bad(n, &format!("more than {MAX_SIGNATURES} signatures")));
        }
        out.push(Signature {
            key,
            signed_at,
            bytes,
        });
    }
    Ok(out)
}

/// A signature file's text.
pub fn render(signatures: &[Signature]) -> String {
    let mut out = format!("{MAGIC}\n");
    for s in signatures {
        out.push_str(&format!(
            "sig {} {} {}\n",
            s.key,
            s.signed_at,
            hex::encode(s.bytes)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_and_bind_key_time_and_bytes() {
        let k = PrivateKey::from_seed(&[1; 32]);
        let s = Signature::sign(&k, 1_700_000_000, b"{\"format\":1}");
        let parsed = parse(&render(std::slice::from_ref(&s))).unwrap();
        assert_eq!(parsed, vec![s.clone()]);
        assert!(s.verifies(b"{\"format\":1}"));
        assert!(!s.verifies(b"{\"format\":2}"));
        let mut later = s.clone();
        later.signed_at += 1;
        assert!(!later.verifies(b"{\"format\":1}"));
        let mut other = s.clone();
        other.key = PrivateKey::from_seed(&[2; 32]).public();
        assert!(!other.verifies(b"{\"format\":1}"));
    }

    #[test]
    fn malformed_files_name_the_line() {
        let k = PrivateKey::from_seed(&[1; 32]);
        let good = render(&[Signature::sign(&k, 1, b"m")]);
        for (text, line) in [
            ("", 1),
            ("attache-manifest-signatures 2\n", 1),
            (&format!("{good}sig x\n"), 3),
            (&format!("{good}{}", good.lines().nth(1).unwrap()), 3),
            (&good.replace(" 1 ", " x "), 2),
        ] {
            match parse(text) {
                Err(TrustError::BadSignatureFile { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
