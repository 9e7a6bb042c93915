//! The gear table FastCDC's rolling hash adds up: FastCDC's own fixed table
//! for unkeyed repositories, or one derived from the repository key, so that
//! in an encrypted repository chunk boundaries (and so chunk sizes, which the
//! packs reveal) depend on the key and not on the content alone (Truong et
//! al., "Breaking and Fixing Content-Defined Chunking", CCS 2025).

use std::sync::Arc;

/// BLAKE3 key-derivation context of the keyed gear table. Changing it changes
/// every cut point of every keyed repository: never change it.
const CONTEXT: &str = "attache 2026-01 fastcdc gear table";

/// A gear table and its left-shifted twin (FastCDC 2020 rolls two bytes at a
/// time, adding the shifted value for the first).
pub(crate) struct Gear {
    pub(crate) gear: Box<[u64; 256]>,
    pub(crate) gear_ls: Box<[u64; 256]>,
}

impl Gear {
    /// FastCDC's standard table, as the `fastcdc` crate uses it.
    pub(crate) fn standard() -> Arc<Self> {
        let (gear, gear_ls) = fastcdc::v2020::get_gear_with_seed(0);
        Arc::new(Self { gear, gear_ls })
    }

    /// A table derived from `key` (secret key material of the repository):
    /// 256 pseudo-random 64-bit values from BLAKE3 in key-derivation mode.
    pub(crate) fn keyed(key: &[u8]) -> Arc<Self> {
        let seed = blake3::derive_key(CONTEXT, key);
        let mut bytes = [0u8; 256 * 8];
        blake3::Hasher::new_keyed(&seed)
            .finalize_xof()
            .fill(&mut bytes);
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for (i, b) in bytes.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            gear[i] = u64::from_le_bytes(w);
            gear_ls[i] = gear[i] << 1;
        }
        Arc::new(Self { gear, gear_ls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_table_is_fastcdcs_and_keyed_tables_differ_by_key() {
        let s = Gear::standard();
        for i in 0..256 {
            assert_eq!(s.gear_ls[i], s.gear[i] << 1);
        }
        let a = Gear::keyed(&[1; 32]);
        let b = Gear::keyed(&[2; 32]);
        assert_ne!(a.gear, b.gear);
        assert_ne!(a.gear, s.gear);
        assert_eq!(a.gear, Gear::keyed(&[1; 32]).gear, "deterministic");
    }
}
