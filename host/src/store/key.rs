//! The key file: the master key sealed under a key derived from the
//! passphrase with Argon2id.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use super::crypto::{random, MasterKey};
use super::StoreError;

/// `keys/default`.
#[derive(Serialize, Deserialize)]
pub struct KeyFile {
    pub kdf: String,
    /// Argon2 memory in KiB, iterations, parallelism.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: String,
    pub nonce: String,
    /// The master key, sealed.
    pub sealed: String,
}

fn derive(pass: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32], StoreError> {
    let params = Params::new(m, t, p, Some(32)).map_err(|e| StoreError::Crypto(e.to_string()))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pass, salt, &mut out)
        .map_err(|e| StoreError::Crypto(e.to_string()))?;
    Ok(out)
}

impl KeyFile {
    /// Seals `key` under `passphrase` with Argon2id at 32 MiB and 4 passes
    /// (the memory restic's scrypt takes, several times its time), so that
    /// a guess costs an attacker about a quarter second of a core.
    pub fn create(key: &MasterKey, passphrase: &str) -> Result<Self, StoreError> {
        let (m, t, p) = (32 * 1024, 4, 1);
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        random(&mut salt)?;
        random(&mut nonce)?;
        let kek = derive(passphrase.as_bytes(), &salt, m, t, p)?;
        let plain = serde_json::to_vec(key).map_err(|e| StoreError::Crypto(e.to_string()))?;
        let sealed = XChaCha20Poly1305::new((&kek).into())
            .encrypt(XNonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| StoreError::Crypto("sealing the key failed".into()))?;
        Ok(Self {
            kdf: "argon2id".into(),
            m_cost: m,
            t_cost: t,
            p_cost: p,
            salt: hex::encode(salt),
            nonce: hex::encode(nonce),
            sealed: hex::encode(sealed),
        })
    }

    /// Opens the master key; a wrong passphrase is `WrongPassword`.
    pub fn open(&self, passphrase: &str) -> Result<MasterKey, StoreError> {
        let bad = |what: &str| StoreError::Corrupt(format!("key file: {what}"));
        if self.kdf != "argon2id" {
            return Err(bad("unknown kdf"));
        }
        let salt = hex::decode(&self.salt).map_err(|_| bad("salt"))?;
        let nonce = hex::decode(&self.nonce).map_err(|_| bad("nonce"))?;
        let sealed = hex::decode(&self.sealed).map_err(|_| bad("sealed key"))?;
        if nonce.len() != 24 {
            return Err(bad("nonce length"));
        }
        let kek = derive(
            passphrase.as_bytes(),
            &salt,
            self.m_cost,
            self.t_cost,
            self.p_cost,
        )?;
        let plain = XChaCha20Poly1305::new((&kek).into())
            .decrypt(XNonce::from_slice(&nonce), sealed.as_slice())
            .map_err(|_| StoreError::WrongPassword)?;
        serde_json::from_slice(&plain).map_err(|_| bad("master key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_with_the_right_passphrase_only() {
        let k = MasterKey::random().unwrap();
        let f = KeyFile::create(&k, "correct horse").unwrap();
        assert_eq!(f.open("correct horse").unwrap().encrypt, k.encrypt);
        assert!(matches!(f.open("wrong"), Err(StoreError::WrongPassword)));
    }
}
