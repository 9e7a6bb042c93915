//! The fixed header every pack, index file and snapshot starts with: seven
//! bytes of magic naming the kind of file, then one byte of format version
//! (Proxmox's datastore gives each of its formats such a magic number).
//!
//! ```text
//! pack      "attpack" 1   then the sealed blobs, the sealed pack header, its length (u32 LE)
//! index     "attindx" 1   then the sealed, compressed index JSON
//! snapshot  "attsnap" 1   then the sealed snapshot JSON
//! ```
//!
//! Files written before the header existed (repository formats up to 3)
//! start directly with their sealed bytes; they read as version 0 and stay
//! readable. A sealed file cannot be mistaken for a headed one by accident:
//! an encrypted one starts with a random nonce, an unencrypted one with
//! zstd's or JSON's own first bytes, never with this magic. A header that
//! names a version newer than this build reads is refused with a message
//! saying so, rather than misread.
//!
//! The version is that of the file's layout, not the repository's config
//! `format`: a repository of format 3 holds headed and unheaded files side
//! by side, as old files are never rewritten.

use super::StoreError;

/// A kind of repository file and the newest layout version of it this build
/// writes and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Seven bytes naming the kind of file.
    pub magic: [u8; 7],
    /// The layout this build writes (and the newest it reads).
    pub version: u8,
    /// The kind of file, for messages.
    pub what: &'static str,
}

/// Pack files.
pub(crate) const PACK: Header = Header {
    magic: *b"attpack",
    version: 1,
    what: "pack",
};

/// Index files.
pub(crate) const INDEX: Header = Header {
    magic: *b"attindx",
    version: 1,
    what: "index file",
};

/// Snapshot files.
pub(crate) const SNAPSHOT: Header = Header {
    magic: *b"attsnap",
    version: 1,
    what: "snapshot",
};

/// The layout of files written before the header existed.
pub(crate) const LEGACY: u8 = 0;

impl Header {
    /// Bytes of the header.
    pub(crate) const LEN: usize = 8;

    /// The header's bytes, as a new file starts.
    pub(crate) fn bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..7].copy_from_slice(&self.magic);
        b[7] = self.version;
        b
    }

    /// The layout version of a file's bytes and the length of its header:
    /// `(LEGACY, 0)` for a file without one. A header of a version this
    /// build does not know is refused.
    pub(crate) fn detect(&self, bytes: &[u8]) -> Result<(u8, usize), StoreError> {
        match bytes.get(..Self::LEN) {
            Some(h) if h[..7] == self.magic => match h[7] {
                LEGACY => Err(StoreError::Corrupt(format!(
                    "{}: a header of version 0, which is never written",
                    self.what
                ))),
                v if v <= self.version => Ok((v, Self::LEN)),
                v => Err(StoreError::Invalid(format!(
                    "{} of format version {v}: this attache reads up to version {} (a newer attache wrote it)",
                    self.what, self.version
                ))),
            },
            _ => Ok((LEGACY, 0)),
        }
    }

    /// A file's bytes after its header (all of them for a legacy file).
    pub(crate) fn strip<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], StoreError> {
        let (_, len) = self.detect(bytes)?;
        Ok(&bytes[len..])
    }

    /// `body` with the header in front, as a new file is written.
    pub(crate) fn prepend(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN + body.len());
        out.extend_from_slice(&self.bytes());
        out.extend_from_slice(body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ErrorKind;

    #[test]
    fn a_headed_file_round_trips_and_a_legacy_one_reads_whole() {
        for h in [PACK, INDEX, SNAPSHOT] {
            let file = h.prepend(b"sealed body");
            assert_eq!(&file[..7], &h.magic);
            assert_eq!(h.detect(&file).expect("headed"), (h.version, Header::LEN));
            assert_eq!(h.strip(&file).expect("headed"), b"sealed body");
            // No header: the bytes are the sealed body itself.
            assert_eq!(
                h.detect(b"\x28\xb5\x2f\xfd...").expect("legacy"),
                (LEGACY, 0)
            );
            assert_eq!(h.strip(b"sealed").expect("legacy"), b"sealed");
            // Shorter than a header: legacy too; the parser below says
            // what is wrong with it.
            assert_eq!(h.detect(b"att").expect("short"), (LEGACY, 0));
        }
    }

    #[test]
    fn each_kind_has_its_own_magic() {
        let file = PACK.prepend(b"x");
        assert_eq!(
            INDEX.detect(&file).expect("not an index header"),
            (LEGACY, 0)
        );
        assert_eq!(
            SNAPSHOT.detect(&file).expect("not a snapshot header"),
            (LEGACY, 0)
        );
    }

    #[test]
    fn a_newer_version_is_refused_by_name_and_version_0_is_corrupt() {
        let mut file = SNAPSHOT.prepend(b"x");
        file[7] = SNAPSHOT.version + 1;
        let e = SNAPSHOT.detect(&file).expect_err("newer");
        assert_eq!(e.kind(), ErrorKind::Invalid);
        let msg = e.to_string();
        assert!(
            msg.contains("version 2") && msg.contains("newer attache"),
            "{msg}"
        );
        file[7] = 0;
        assert_eq!(
            SNAPSHOT.detect(&file).expect_err("v0").kind(),
            ErrorKind::Corrupt
        );
    }
}
