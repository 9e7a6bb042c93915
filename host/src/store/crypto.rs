//! Sealing blobs: XChaCha20-Poly1305 with a random nonce per blob, and blob
//! ids that are keyed BLAKE3 hashes, so an encrypted repository does not reveal
//! which well-known contents it holds. An unencrypted repository (only when
//! asked for) keeps a plain BLAKE3 id and a flag byte.

use serde::{Deserialize, Serialize};

use super::xchacha::{XChaCha, TAG};
use super::StoreError;

/// A blob's id: the (keyed) BLAKE3 of its plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct BlobId(#[serde(with = "hex32")] pub [u8; 32]);

impl BlobId {
    #[allow(
        clippy::wrong_self_convention,
        reason = "32 bytes: by reference, callers need not copy"
    )]
    pub(crate) fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex()[..16])
    }
}

pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// The repository's secret: one key to seal, one to derive blob ids.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct MasterKey {
    #[serde(with = "hex32")]
    pub encrypt: [u8; 32],
    #[serde(with = "hex32")]
    pub id: [u8; 32],
    /// Whether the repository's config carries a MAC (format 3): once set,
    /// an unauthenticated config is refused. Absent in older key files.
    #[serde(default)]
    pub authenticated_config: bool,
}

impl MasterKey {
    pub(crate) fn random() -> Result<Self, StoreError> {
        let mut k = Self {
            encrypt: [0; 32],
            id: [0; 32],
            authenticated_config: false,
        };
        random(&mut k.encrypt)?;
        random(&mut k.id)?;
        Ok(k)
    }
}

pub(crate) fn random(buf: &mut [u8]) -> Result<(), StoreError> {
    getrandom::fill(buf).map_err(|e| StoreError::Crypto(format!("no randomness: {e}")))
}

use super::xchacha::NONCE;

/// How a repository seals what it writes.
#[derive(Clone)]
pub(crate) enum Cipher {
    /// Plaintext (the repository was created with `--no-encryption`).
    None,
    /// Authenticated encryption under the master key.
    Sealed { aead: XChaCha, id_key: [u8; 32] },
}

impl Cipher {
    pub(crate) fn new(key: Option<&MasterKey>) -> Self {
        match key {
            None => Self::None,
            Some(k) => Self::Sealed {
                aead: XChaCha::new(&k.encrypt),
                id_key: k.id,
            },
        }
    }

    /// The id of a plaintext.
    pub(crate) fn id(&self, plain: &[u8]) -> BlobId {
        match self {
            Self::None => BlobId(*blake3::hash(plain).as_bytes()),
            Self::Sealed { id_key, .. } => BlobId(*blake3::keyed_hash(id_key, plain).as_bytes()),
        }
    }

    pub(crate) fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        match self {
            Self::None => Ok(plain.to_vec()),
            Self::Sealed { aead, .. } => {
                let mut nonce = [0u8; NONCE];
                random(&mut nonce)?;
                let mut out = Vec::with_capacity(NONCE + plain.len() + TAG);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(plain);
                let tag = aead
                    .seal_in_place(&nonce, &mut out[NONCE..])
                    .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
                out.extend_from_slice(&tag);
                Ok(out)
            }
        }
    }

    /// Seals `flag` followed by `payload` into one buffer, encrypting in
    /// place: the same bytes as `seal` of their concatenation, with one
    /// allocation instead of three copies.
    pub(crate) fn seal_parts(&self, flag: u8, payload: &[u8]) -> Result<Vec<u8>, StoreError> {
        match self {
            Self::None => {
                let mut out = Vec::with_capacity(1 + payload.len());
                out.push(flag);
                out.extend_from_slice(payload);
                Ok(out)
            }
            Self::Sealed { aead, .. } => {
                let mut nonce = [0u8; NONCE];
                random(&mut nonce)?;
                let mut out = Vec::with_capacity(NONCE + 1 + payload.len() + TAG);
                out.extend_from_slice(&nonce);
                out.push(flag);
                out.extend_from_slice(payload);
                let tag = aead
                    .seal_in_place(&nonce, &mut out[NONCE..])
                    .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
                out.extend_from_slice(&tag);
                Ok(out)
            }
        }
    }

    /// Opens what `seal` made; fails on any change to it.
    pub(crate) fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        match self {
            Self::None => Ok(sealed.to_vec()),
            Self::Sealed { .. } => {
                let mut buf = sealed.to_vec();
                let plain = self.open_in_place(&mut buf)?;
                buf.truncate(plain.end);
                buf.drain(..plain.start);
                Ok(buf)
            }
        }
    }

    /// [`open`](Self::open) in place: decrypts `sealed` where it lies and
    /// returns where in it the plaintext is, without a second buffer.
    pub(crate) fn open_in_place(
        &self,
        sealed: &mut [u8],
    ) -> Result<std::ops::Range<usize>, StoreError> {
        match self {
            Self::None => Ok(0..sealed.len()),
            Self::Sealed { aead, .. } => {
                if sealed.len() < NONCE + TAG {
                    return Err(StoreError::Crypto("sealed data too short".into()));
                }
                let end = sealed.len() - TAG;
                let (nonce, rest) = sealed.split_at_mut(NONCE);
                let nonce: &[u8; NONCE] = (&*nonce)
                    .try_into()
                    .map_err(|_| StoreError::Crypto("sealed data too short".into()))?;
                aead.open_in_place(nonce, rest).map_err(|_| {
                    StoreError::Crypto(
                        "authentication failed: the data was changed or the key is wrong".into(),
                    )
                })?;
                Ok(NONCE..end)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_round_trip_and_tamper_detection() {
        let c = Cipher::new(Some(&MasterKey::random().unwrap()));
        let s = c.seal(b"hello").unwrap();
        assert_eq!(c.open(&s).unwrap(), b"hello");
        let mut bad = s.clone();
        bad[30] ^= 1;
        assert!(c.open(&bad).is_err());
        let other = Cipher::new(Some(&MasterKey::random().unwrap()));
        assert!(other.open(&s).is_err());
        assert_ne!(c.id(b"x"), other.id(b"x"), "ids are keyed");
        assert_eq!(Cipher::None.id(b"x").0, *blake3::hash(b"x").as_bytes());
    }
}
