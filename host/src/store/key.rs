//! The key file: the master key sealed under a key derived from the
//! passphrase with Argon2id.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use super::crypto::{random, MasterKey};
use super::StoreError;

/// Bounds on the Argon2id parameters a key file may ask for, checked before
/// any derivation: a tampered key file must not make a command abort on an
/// allocation, hang, or take gigabytes. The defaults of [`KeyFile::create`]
/// (32 MiB, 4 passes, 1 lane) are well inside them.
pub(crate) mod bounds {
    /// Memory in KiB: 8 MiB to 512 MiB.
    pub(crate) const M_COST: (u32, u32) = (8 << 10, 512 << 10);
    /// Passes.
    pub(crate) const T_COST: (u32, u32) = (1, 16);
    /// Lanes.
    pub(crate) const P_COST: (u32, u32) = (1, 16);
    /// Memory × passes in KiB: at most 16 times the default work (about
    /// 4 s of a core).
    pub(crate) const WORK: u64 = 16 * 32 * 1024 * 4;
    /// Salt bytes.
    pub(crate) const SALT: (usize, usize) = (16, 64);
}

/// `keys/default`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyFile {
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

/// Key-encryption keys this process has derived, by a hash of what went
/// into them (passphrase, salt, parameters). A server opens the repository
/// for every job, and Argon2id at the strength chosen in [`KeyFile::create`]
/// costs each open about 80 ms of a core and 32 MiB of fresh pages: a fleet
/// run of many VMs paid it once per VM. Held in memory only, as the
/// passphrase itself already is; a handful of entries, oldest out first.
/// The sealed key is still opened (and a wrong passphrase still refused) on
/// every open.
fn derive_once(pass: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32], StoreError> {
    const KEEP: usize = 8;
    static DERIVED: std::sync::Mutex<Vec<([u8; 32], [u8; 32])>> = std::sync::Mutex::new(Vec::new());
    let mut h = blake3::Hasher::new_derive_key("attache 2026 key-encryption key cache");
    for part in [pass, salt] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    for v in [m, t, p] {
        h.update(&v.to_le_bytes());
    }
    let id = *h.finalize().as_bytes();
    if let Ok(cache) = DERIVED.lock() {
        if let Some((_, kek)) = cache.iter().find(|(i, _)| *i == id) {
            return Ok(*kek);
        }
    }
    let kek = derive(pass, salt, m, t, p)?;
    if let Ok(mut cache) = DERIVED.lock() {
        if cache.len() >= KEEP {
            cache.remove(0);
        }
        cache.push((id, kek));
    }
    Ok(kek)
}

/// Checks Argon2id parameters against [`bounds`].
pub(crate) fn check_params(m: u32, t: u32, p: u32) -> Result<(), StoreError> {
    let within = |v: u32, (lo, hi): (u32, u32), what: &str| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "key file {KEY_FILE}: {what} {v} is outside {lo}..={hi}; the file was damaged or tampered with"
            )))
        }
    };
    within(m, bounds::M_COST, "m_cost (KiB)")?;
    within(t, bounds::T_COST, "t_cost")?;
    within(p, bounds::P_COST, "p_cost")?;
    if u64::from(m) * u64::from(t) > bounds::WORK {
        return Err(StoreError::Invalid(format!(
            "key file {KEY_FILE}: m_cost {m} × t_cost {t} asks for more than {} KiB-passes of work",
            bounds::WORK
        )));
    }
    if m < 8 * p {
        return Err(StoreError::Invalid(format!(
            "key file {KEY_FILE}: m_cost {m} is below 8 KiB per lane ({p} lanes)"
        )));
    }
    Ok(())
}

/// Where the key file lives in a repository.
pub(crate) const KEY_FILE: &str = "keys/default";

impl KeyFile {
    /// Parses and checks a key file's bytes: every field present, the KDF
    /// known and its parameters within [`bounds`], salt and nonce of sane
    /// lengths. Nothing is derived yet, so this is cheap on any input.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, StoreError> {
        let bad = |what: String| StoreError::Corrupt(format!("key file {KEY_FILE}: {what}"));
        let f: KeyFile = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if f.kdf != "argon2id" {
            return Err(bad(format!("unknown kdf {:?}", f.kdf)));
        }
        check_params(f.m_cost, f.t_cost, f.p_cost)?;
        let salt = hex::decode(&f.salt).map_err(|_| bad("salt is not hex".into()))?;
        if !(bounds::SALT.0..=bounds::SALT.1).contains(&salt.len()) {
            return Err(bad(format!("salt of {} bytes", salt.len())));
        }
        let nonce = hex::decode(&f.nonce).map_err(|_| bad("nonce is not hex".into()))?;
        if nonce.len() != 24 {
            return Err(bad(format!("nonce of {} bytes", nonce.len())));
        }
        let sealed = hex::decode(&f.sealed).map_err(|_| bad("sealed key is not hex".into()))?;
        if !(16..=4096).contains(&sealed.len()) {
            return Err(bad(format!("sealed key of {} bytes", sealed.len())));
        }
        Ok(f)
    }

    /// Seals `key` under `passphrase` with Argon2id at 32 MiB and 4 passes
    /// (the memory restic's scrypt takes, several times its time), so that
    /// a guess costs an attacker about a quarter second of a core.
    pub(crate) fn create(key: &MasterKey, passphrase: &str) -> Result<Self, StoreError> {
        let (m, t, p) = (32 * 1024, 4, 1);
        check_params(m, t, p)?;
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        random(&mut salt)?;
        random(&mut nonce)?;
        let kek = derive(passphrase.as_bytes(), &salt, m, t, p)?;
        let plain = serde_json::to_vec(key).map_err(StoreError::json("master key"))?;
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

    /// Opens the master key; a wrong passphrase is `WrongPassword`. The
    /// parameters are checked again here, whoever built `self`.
    pub(crate) fn open(&self, passphrase: &str) -> Result<MasterKey, StoreError> {
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
        check_params(self.m_cost, self.t_cost, self.p_cost)?;
        let kek = derive_once(
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
        let bytes = serde_json::to_vec(&f).unwrap();
        assert!(KeyFile::parse(&bytes).is_ok());
    }

    #[test]
    fn a_derived_key_is_reused_only_for_the_same_passphrase_and_salt() {
        let k = MasterKey::random().unwrap();
        let f = KeyFile::create(&k, "pw one").unwrap();
        assert_eq!(f.open("pw one").unwrap().encrypt, k.encrypt);
        // From the cache: still the right key, and the wrong passphrase
        // still refused.
        assert_eq!(f.open("pw one").unwrap().encrypt, k.encrypt);
        assert!(matches!(f.open("pw two"), Err(StoreError::WrongPassword)));
        // Another key file under the same passphrase has its own salt.
        let other = MasterKey::random().unwrap();
        let g = KeyFile::create(&other, "pw one").unwrap();
        assert_eq!(g.open("pw one").unwrap().encrypt, other.encrypt);
        // A sealed key swapped under the same salt is not opened by the
        // cached key-encryption key of the first.
        let mut swapped = f.clone();
        swapped.sealed = g.sealed.clone();
        swapped.nonce = g.nonce.clone();
        assert!(matches!(
            swapped.open("pw one"),
            Err(StoreError::WrongPassword)
        ));
    }

    #[test]
    fn hostile_parameters_are_refused_before_deriving() {
        let k = MasterKey::random().unwrap();
        let good = KeyFile::create(&k, "pw").unwrap();
        for (m, t, p) in [
            (4_000_000_000u32, 4u32, 1u32),
            (32 * 1024, u32::MAX, 1),
            (2_097_152, 4, 1),
            (0, 0, 0),
            (32 * 1024, 4, 1000),
            (512 << 10, 16, 1),
        ] {
            let mut v: serde_json::Value = serde_json::to_value(&good).unwrap();
            v["m_cost"] = m.into();
            v["t_cost"] = t.into();
            v["p_cost"] = p.into();
            let started = std::time::Instant::now();
            let e = KeyFile::parse(&serde_json::to_vec(&v).unwrap())
                .err()
                .unwrap_or_else(|| panic!("{m} {t} {p} accepted"));
            assert!(e.to_string().contains(KEY_FILE), "{e}");
            let f: KeyFile = serde_json::from_value(v).unwrap();
            assert!(f.open("pw").is_err());
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }
}
