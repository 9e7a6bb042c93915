//! Publisher keys: Ed25519 key pairs, their files and their ids.
//!
//! A private key file (`NAME.key`, mode 0600) is
//!
//! ```text
//! attache-signing-key 1
//! <64 hex digits: the Ed25519 seed>
//! ```
//!
//! and a public key file (`NAME.pub`) is
//!
//! ```text
//! attache-public-key 1
//! ed25519:<64 hex digits>
//! ```
//!
//! The second line of a public key file is also how trust files and
//! signature files write a key. A key's id is the first 16 hex digits of
//! the BLAKE3 of its 32 bytes: what messages name.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use super::TrustError;

/// First line of a private key file.
pub const PRIVATE_MAGIC: &str = "attache-signing-key 1";
/// First line of a public key file.
pub const PUBLIC_MAGIC: &str = "attache-public-key 1";
/// How a public key is written: `ed25519:` and 64 hex digits.
const PREFIX: &str = "ed25519:";

/// A publisher's public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads `ed25519:<hex>`.
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        let bad = |message: &str| TrustError::BadKey {
            text: text.chars().take(80).collect(),
            message: message.into(),
        };
        let hex_part = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("a public key is written ed25519:<64 hex digits>"))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| bad("a public key is written ed25519:<64 hex digits>"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| bad("not a valid Ed25519 public key"))
    }

    /// Reads a public key file's text (its magic line, then the key).
    pub fn from_file_text(text: &str) -> Result<Self, TrustError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(PUBLIC_MAGIC) {
            return Err(TrustError::BadKeyFile {
                expected: PUBLIC_MAGIC,
            });
        }
        Self::parse(lines.next().unwrap_or_default())
    }

    /// The public key file's text.
    pub fn file_text(&self) -> String {
        format!("{PUBLIC_MAGIC}\n{self}\n")
    }

    /// The key's id: 16 hex digits of BLAKE3 of its bytes.
    pub fn id(&self) -> String {
        blake3::hash(self.0.as_bytes()).to_hex()[..16].to_owned()
    }

    /// Whether `signature` is this key's over `message` (strict: no
    /// malleable or weak-key signatures).
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(message, &sig).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

/// A publisher's private key.
pub struct PrivateKey(SigningKey);

impl PrivateKey {
    /// The key of a 32-byte seed (from the system's random source).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// Reads a private key file's text.
    pub fn from_file_text(text: &str) -> Result<Self, TrustError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(PRIVATE_MAGIC) {
            return Err(TrustError::BadKeyFile {
                expected: PRIVATE_MAGIC,
            });
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(lines.next().unwrap_or_default().trim(), &mut seed).map_err(|_| {
            TrustError::BadKey {
                text: "(private key)".into(),
                message: "the second line is not 64 hex digits".into(),
            }
        })?;
        Ok(Self::from_seed(&seed))
    }

    /// The private key file's text.
    pub fn file_text(&self) -> String {
        format!("{PRIVATE_MAGIC}\n{}\n", hex::encode(self.0.to_bytes()))
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_keys_verify() {
        let k = PrivateKey::from_seed(&[7; 32]);
        let k2 = PrivateKey::from_file_text(&k.file_text()).unwrap();
        assert_eq!(k.public(), k2.public());
        let p = PublicKey::from_file_text(&k.public().file_text()).unwrap();
        assert_eq!(p, k.public());
        assert_eq!(p.id().len(), 16);
        let sig = k.sign(b"manifest");
        assert!(p.verifies(b"manifest", &sig));
        assert!(!p.verifies(b"manifesT", &sig));
        let other = PrivateKey::from_seed(&[8; 32]).public();
        assert!(!other.verifies(b"manifest", &sig));
        assert_ne!(other.id(), p.id());
    }

    #[test]
    fn bad_keys_are_refused() {
        for bad in [
            "",
            "ed25519:zz",
            "rsa:00",
            &format!("ed25519:{}", "0".repeat(62)),
        ] {
            assert!(
                matches!(PublicKey::parse(bad), Err(TrustError::BadKey { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            PublicKey::from_file_text("ed25519:00"),
            Err(TrustError::BadKeyFile { .. })
        ));
        assert!(matches!(
            PrivateKey::from_file_text("attache-signing-key 2\n00"),
            Err(TrustError::BadKeyFile { .. })
        ));
    }
}
