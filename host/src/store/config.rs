//! `config`: the repository's format, chunking and encryption, readable
//! without the key (it says whether a key is needed) but authenticated by a
//! MAC under the master key in an encrypted repository, so that editing it
//! (switching encryption off, changing the chunker) is refused.
//!
//! Formats:
//! - 2 (before authentication): `{format, id, chunker, encryption}`, always
//!   written with the default chunker and unkeyed chunking. Such a config is
//!   accepted only in exactly that shape, and when the key file does not say
//!   the repository was already upgraded; opening it with the password then
//!   upgrades it transparently to format 3 (config first, then the key file
//!   is re-sealed with `authenticated_config`, so a crash between the two
//!   leaves a valid format-3 repository). Old repositories keep unkeyed
//!   chunking, recorded in the authenticated config, so their data keeps
//!   deduplicating.
//! - 3: adds `magic` (`attache-repository`), `chunking` (`fastcdc-2020` or
//!   `fastcdc-2020-keyed`) and `mac`, the keyed BLAKE3 of the config's JSON
//!   without the MAC (empty in an unencrypted repository, which has no key).

use serde::{Deserialize, Serialize};

use super::chunker::Params;
use super::crypto::MasterKey;
use super::StoreError;

/// The current format.
pub(crate) const FORMAT: u32 = 3;
/// The last format without authentication.
pub(crate) const LEGACY_FORMAT: u32 = 2;
/// `magic` of format 3.
pub(crate) const MAGIC: &str = "attache-repository";
/// Longest config accepted; a real one is a few hundred bytes.
pub(crate) const MAX_LEN: usize = 64 << 10;

/// BLAKE3 key-derivation context of the config MAC key.
const MAC_CONTEXT: &str = "attache 2026-01 config mac";

/// How content is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) enum Chunking {
    /// FastCDC 2020 with its standard gear table (unencrypted repositories,
    /// and those made before keyed chunking).
    #[default]
    #[serde(rename = "fastcdc-2020")]
    Standard,
    /// FastCDC 2020 with a gear table derived from the repository key.
    #[serde(rename = "fastcdc-2020-keyed")]
    Keyed,
}

/// How the repository seals what it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Encryption {
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
    #[serde(rename = "none")]
    None,
}

/// `config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// [`MAGIC`] from format 3 on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub magic: String,
    pub format: u32,
    /// Random id of this repository (names its local catalog cache).
    pub id: String,
    pub chunker: Params,
    /// Absent (standard) in format 2.
    #[serde(default)]
    pub chunking: Chunking,
    pub encryption: Encryption,
    /// Hex MAC of an encrypted repository's config (format 3).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

fn invalid(why: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("config: {why}"))
}

impl Config {
    /// A new format-3 config; sealed with [`Config::seal`] when encrypted.
    pub(crate) fn new(id: String, encryption: Encryption) -> Self {
        Self {
            magic: MAGIC.into(),
            format: FORMAT,
            id,
            chunker: Params::default(),
            chunking: match encryption {
                Encryption::XChaCha20Poly1305 => Chunking::Keyed,
                Encryption::None => Chunking::Standard,
            },
            encryption,
            mac: String::new(),
        }
    }

    /// Parses and checks a config's bytes: a known format in exactly the
    /// shape it was written in, sane chunker bounds. The MAC is checked by
    /// [`Config::authenticate`], once the key is open.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() > MAX_LEN {
            return Err(invalid(format!("{} bytes is too long", bytes.len())));
        }
        let c: Config = serde_json::from_slice(bytes).map_err(StoreError::json("config"))?;
        let mut id = [0u8; 16];
        hex::decode_to_slice(&c.id, &mut id).map_err(|_| invalid("id is not 32 hex digits"))?;
        c.chunker.check().map_err(invalid)?;
        match c.format {
            LEGACY_FORMAT => {
                // Exactly what format-2 `init` wrote: anything else in an
                // unauthenticated config is an edit.
                if !c.magic.is_empty()
                    || !c.mac.is_empty()
                    || c.chunking != Chunking::Standard
                    || c.chunker != Params::default()
                {
                    return Err(invalid(
                        "a format-2 config holds only the default chunker; this one was edited",
                    ));
                }
            }
            FORMAT => {
                if c.magic != MAGIC {
                    return Err(invalid(format!("magic {:?} is not {MAGIC:?}", c.magic)));
                }
                match c.encryption {
                    Encryption::None if !c.mac.is_empty() || c.chunking == Chunking::Keyed => {
                        return Err(invalid(
                            "an unencrypted repository has no key to authenticate or key chunking with",
                        ))
                    }
                    Encryption::XChaCha20Poly1305 if c.mac.len() != 64 => {
                        return Err(invalid("the MAC is missing or malformed"))
                    }
                    _ => {}
                }
            }
            f => {
                return Err(invalid(format!(
                    "format {f} is not one this attache knows ({LEGACY_FORMAT} or {FORMAT}); a newer attache may read it"
                )))
            }
        }
        Ok(c)
    }

    /// The config's MAC under `key`: keyed BLAKE3 of its JSON without `mac`.
    fn compute_mac(&self, key: &MasterKey) -> Result<blake3::Hash, StoreError> {
        let mut body = self.clone();
        body.mac.clear();
        let json = serde_json::to_vec(&body).map_err(invalid)?;
        let mut material = Vec::with_capacity(64);
        material.extend_from_slice(&key.encrypt);
        material.extend_from_slice(&key.id);
        let mac_key = blake3::derive_key(MAC_CONTEXT, &material);
        Ok(blake3::keyed_hash(&mac_key, &json))
    }

    /// Sets the MAC of an encrypted config.
    pub(crate) fn seal(&mut self, key: &MasterKey) -> Result<(), StoreError> {
        self.mac = self.compute_mac(key)?.to_hex().to_string();
        Ok(())
    }

    /// Checks the MAC of a format-3 encrypted config (constant time).
    pub(crate) fn authenticate(&self, key: &MasterKey) -> Result<(), StoreError> {
        let mut want = [0u8; 32];
        hex::decode_to_slice(&self.mac, &mut want)
            .map_err(|_| StoreError::Crypto("config: the MAC is malformed".into()))?;
        if self.compute_mac(key)? != blake3::Hash::from(want) {
            return Err(StoreError::Crypto(
                "config: authentication failed: the file was edited (or belongs to another repository); refusing to use it".into(),
            ));
        }
        Ok(())
    }

    /// Serialized as written to disk.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec_pretty(self).map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> (Config, MasterKey) {
        let k = MasterKey::random().unwrap();
        let mut c = Config::new(
            "00112233445566778899aabbccddeeff".into(),
            Encryption::XChaCha20Poly1305,
        );
        c.seal(&k).unwrap();
        (c, k)
    }

    #[test]
    fn an_edited_config_fails_authentication() {
        let (c, k) = sealed();
        let back = Config::parse(&c.to_bytes().unwrap()).unwrap();
        back.authenticate(&k).unwrap();
        let mut off = back.clone();
        off.encryption = Encryption::None;
        // Refused by shape (a MAC with no encryption) or by the MAC.
        let bytes = off.to_bytes().unwrap();
        assert!(Config::parse(&bytes).is_err() || off.authenticate(&k).is_err());
        let mut unkeyed = back.clone();
        unkeyed.chunking = Chunking::Standard;
        assert!(unkeyed.authenticate(&k).is_err());
        assert!(back.authenticate(&MasterKey::random().unwrap()).is_err());
    }

    #[test]
    fn legacy_configs_are_accepted_only_as_written() {
        let legacy = br#"{"format":2,"id":"00112233445566778899aabbccddeeff","chunker":{"min":524288,"avg":1048576,"max":8388608},"encryption":"xchacha20-poly1305"}"#;
        let c = Config::parse(legacy).unwrap();
        assert_eq!(c.chunking, Chunking::Standard);
        let tiny = br#"{"format":2,"id":"00112233445566778899aabbccddeeff","chunker":{"min":65536,"avg":131072,"max":262144},"encryption":"xchacha20-poly1305"}"#;
        assert!(Config::parse(tiny).is_err());
        let bad = br#"{"format":2,"id":"00112233445566778899aabbccddeeff","chunker":{"min":0,"avg":1,"max":1},"encryption":"none"}"#;
        assert!(Config::parse(bad).is_err());
    }
}
