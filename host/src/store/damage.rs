//! `REPO/damage`: blob copies `verify --read-data` found damaged, so that
//! every later command knows them without reading the data again: reads try
//! another copy, and a backup stores such a blob again instead of pointing a
//! new snapshot at the damaged copy. Sealed like the index (authenticated in
//! an encrypted repository); `attache repair index` rebuilds the index
//! without damaged copies and removes the file.

use serde::{Deserialize, Serialize};

use super::backend::Backend;
use super::crypto::{BlobId, Cipher};
use super::pack::{compress_json, decompress_json, PackId};
use super::StoreError;

/// `magic` of the file.
pub(crate) const MAGIC: &str = "attache-damage";
/// Its format version.
pub(crate) const VERSION: u32 = 1;

/// One damaged copy of a blob.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Damaged {
    pub pack: PackId,
    pub blob: BlobId,
    pub why: String,
}

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DamageRecord {
    pub magic: String,
    pub version: u32,
    pub damaged: Vec<Damaged>,
}

/// Where the record lives.
pub(crate) const KEY: &str = "damage";

/// Parses the record's bytes.
pub(crate) fn decode(cipher: &Cipher, sealed: &[u8]) -> Result<DamageRecord, StoreError> {
    let plain = cipher
        .open(sealed)
        .map_err(|e| StoreError::Corrupt(format!("damage record: {e}")))?;
    let r: DamageRecord = decompress_json(&plain, "damage record")?;
    if r.magic != MAGIC || r.version != VERSION {
        return Err(StoreError::Corrupt(format!(
            "damage record: magic {:?} version {} is not {MAGIC:?} {VERSION}",
            r.magic, r.version
        )));
    }
    Ok(r)
}

/// Reads the record; none is an empty one. A damaged record is named and
/// ignored (it only ever saves re-reading data).
pub(crate) fn load(b: &dyn Backend, cipher: &Cipher) -> Vec<Damaged> {
    match b.read(KEY) {
        Ok(bytes) => match decode(cipher, &bytes) {
            Ok(r) => r.damaged,
            Err(e) => {
                tracing::warn!("{}: {e}; ignored", b.name(KEY).display());
                Vec::new()
            }
        },
        Err(_) => Vec::new(),
    }
}

/// Adds `found` to the record (durably).
pub(crate) fn record(
    b: &dyn Backend,
    cipher: &Cipher,
    found: &[Damaged],
) -> Result<(), StoreError> {
    let mut all = load(b, cipher);
    for d in found {
        if !all.iter().any(|a| a.pack == d.pack && a.blob == d.blob) {
            all.push(d.clone());
        }
    }
    let r = DamageRecord {
        magic: MAGIC.into(),
        version: VERSION,
        damaged: all,
    };
    b.write(KEY, &cipher.seal(&compress_json(&r)?)?)
}

/// Removes the record (after the index was rebuilt without what it names).
pub(crate) fn clear(b: &dyn Backend) -> Result<(), StoreError> {
    b.delete(KEY)
}
