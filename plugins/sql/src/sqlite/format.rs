//! The on-disk formats of SQLite that the copy protocol reads: the database
//! header, the write-ahead log (frames, salts, cumulative checksums), and
//! the checkpoint fields of the shared-memory wal-index. See
//! <https://www.sqlite.org/fileformat2.html> and <https://www.sqlite.org/walformat.html>.

/// The first 16 bytes of every SQLite database.
pub(crate) const MAGIC: &[u8; 16] = b"SQLite format 3\0";
pub(crate) const HEADER_LEN: usize = 100;
pub(crate) const WAL_HEADER_LEN: u64 = 32;
pub(crate) const FRAME_HEADER_LEN: u64 = 24;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// What the database header tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DbHeader {
    pub page_size: u32,
    /// 1: rollback journal, 2: WAL.
    pub write_version: u8,
    pub change_counter: u32,
    pub pages: u32,
}

impl DbHeader {
    pub(crate) fn parse(b: &[u8]) -> Result<DbHeader, String> {
        if b.len() < HEADER_LEN || &b[..16] != MAGIC {
            return Err("not an SQLite 3 database (bad header)".into());
        }
        let raw = u16::from_be_bytes([b[16], b[17]]) as u32;
        let page_size = if raw == 1 { 65536 } else { raw };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(format!("impossible page size {page_size}"));
        }
        Ok(DbHeader {
            page_size,
            write_version: b[18],
            change_counter: be32(b, 24),
            pages: be32(b, 28),
        })
    }

    pub(crate) fn wal_mode(&self) -> bool {
        self.write_version == 2
    }
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing
/// from `s`; words are big-endian when `big` (WAL magic 0x377f0683).
pub(crate) fn checksum(data: &[u8], big: bool, s: (u32, u32)) -> (u32, u32) {
    let (mut s0, mut s1) = s;
    for w in data.chunks_exact(8) {
        let (x0, x1) = if big {
            (be32(w, 0), be32(w, 4))
        } else {
            (
                u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_le_bytes([w[4], w[5], w[6], w[7]]),
            )
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

/// A WAL header that checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalHeader {
    pub big_endian: bool,
    pub page_size: u32,
    pub checkpoint_seq: u32,
    pub salt: (u32, u32),
    pub checksum: (u32, u32),
}

impl WalHeader {
    /// `None` for a WAL that is empty, reset or garbage: none of its
    /// frames count.
    pub(crate) fn parse(b: &[u8]) -> Option<WalHeader> {
        if b.len() < WAL_HEADER_LEN as usize {
            return None;
        }
        let magic = be32(b, 0);
        if magic & !1 != 0x377f0682 {
            return None;
        }
        let big = magic & 1 == 1;
        let page_size = be32(b, 8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return None;
        }
        let sum = checksum(&b[..24], big, (0, 0));
        if sum != (be32(b, 24), be32(b, 28)) {
            return None;
        }
        Some(WalHeader {
            big_endian: big,
            page_size,
            checkpoint_seq: be32(b, 12),
            salt: (be32(b, 16), be32(b, 20)),
            checksum: sum,
        })
    }
}

/// The committed part of a WAL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct WalScan {
    pub header: Option<WalHeader>,
    /// Frames up to and including the last valid commit frame.
    pub frames: u32,
    /// Bytes of the WAL holding them (0 when there are none).
    pub bytes: u64,
    /// The database size in pages after that commit.
    pub db_pages: u32,
}

/// Reads `len` bytes at `offset`; fewer at the end of the file.
pub(crate) trait ReadAt {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, String>;
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        let start = (offset as usize).min(self.len());
        let end = (start + len as usize).min(self.len());
        Ok(self[start..end].to_vec())
    }
}

/// Frame size for a page size.
pub(crate) fn frame_len(page_size: u32) -> u64 {
    FRAME_HEADER_LEN + page_size as u64
}

/// Walks the WAL from its start as SQLite's recovery does: a frame counts
/// if its salts match the header's and its cumulative checksum is right;
/// the log ends at the first one that does not. Only frames up to the last
/// commit frame (one that records the database size) are kept.
pub(crate) fn scan_wal(wal: &(impl ReadAt + ?Sized), wal_len: u64) -> Result<WalScan, String> {
    let head = wal.read_at(0, WAL_HEADER_LEN)?;
    let Some(h) = WalHeader::parse(&head) else {
        return Ok(WalScan::default());
    };
    let flen = frame_len(h.page_size);
    let mut scan = WalScan {
        header: Some(h.clone()),
        ..WalScan::default()
    };
    let mut sum = h.checksum;
    let mut n = 0u32;
    // Read many frames at a time.
    let batch = (4 << 20) / flen.max(1) + 1;
    let mut offset = WAL_HEADER_LEN;
    'outer: while offset + flen <= wal_len {
        let want = (batch * flen).min((wal_len - offset) / flen * flen);
        let buf = wal.read_at(offset, want)?;
        if (buf.len() as u64) < flen {
            break;
        }
        for f in buf.chunks_exact(flen as usize) {
            let salt = (be32(f, 8), be32(f, 12));
            if salt != h.salt {
                break 'outer;
            }
            let s = checksum(&f[..8], h.big_endian, sum);
            let s = checksum(&f[24..], h.big_endian, s);
            if s != (be32(f, 16), be32(f, 20)) {
                break 'outer;
            }
            sum = s;
            n += 1;
            let commit = be32(f, 4);
            if commit != 0 {
                scan.frames = n;
                scan.bytes = WAL_HEADER_LEN + n as u64 * flen;
                scan.db_pages = commit;
            }
        }
        offset += buf.len() as u64 / flen * flen;
    }
    Ok(scan)
}

/// The last 32 bytes of an SQLite item's content: how much of it is the
/// database file and how much the WAL's committed prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub db_bytes: u64,
    pub wal_bytes: u64,
}

pub(crate) const TRAILER_MAGIC: &[u8; 16] = b"ATTACHE-SQLITE1\n";
pub(crate) const TRAILER_LEN: u64 = 32;

impl Trailer {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = TRAILER_MAGIC.to_vec();
        out.extend_from_slice(&self.db_bytes.to_be_bytes());
        out.extend_from_slice(&self.wal_bytes.to_be_bytes());
        out
    }

    pub(crate) fn parse(b: &[u8]) -> Option<Trailer> {
        if b.len() != TRAILER_LEN as usize || &b[..16] != TRAILER_MAGIC {
            return None;
        }
        let n = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        Some(Trailer {
            db_bytes: n(16),
            wal_bytes: n(24),
        })
    }
}

/// The fields of the wal-index (`-shm`) the protocol watches. Its counters
/// are in the host's byte order; the plugin reads them as little-endian,
/// which every machine Attaché targets is. The salts are the WAL header's
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ShmState {
    /// `iChange`: bumped by every write transaction.
    pub change: u32,
    /// `mxFrame`: the last valid frame.
    pub max_frame: u32,
    pub salt: (u32, u32),
    /// `nBackfill`: frames copied into the database by checkpoints.
    pub backfill: u32,
    /// `nBackfillAttempted`: set before a checkpoint starts copying.
    pub backfill_attempted: u32,
}

pub(crate) const SHM_READ_LEN: u64 = 136;

impl ShmState {
    pub(crate) fn parse(b: &[u8]) -> Option<ShmState> {
        if b.len() < SHM_READ_LEN as usize {
            return None;
        }
        let le = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        // The two copies of the header differ while a writer updates it.
        if b[..48] != b[48..96] {
            return None;
        }
        Some(ShmState {
            change: le(8),
            max_frame: le(16),
            // Copied byte for byte from the WAL header, so big-endian like it.
            salt: (be32(b, 32), be32(b, 36)),
            backfill: le(96),
            backfill_attempted: le(128),
        })
    }
}

/// A file that can also be written (the restore's temporary file).
pub(crate) trait WriteAt: ReadAt {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), String>;
    fn set_len(&self, len: u64) -> Result<(), String>;
}

/// `base` bytes into another file.
pub(crate) struct Offset<'a, R: ?Sized> {
    pub inner: &'a R,
    pub base: u64,
}

impl<R: ReadAt + ?Sized> ReadAt for Offset<'_, R> {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        self.inner.read_at(self.base + offset, len)
    }
}

/// Turns a restored item's content, written as it is into `file`
/// (`content_len` bytes: database, committed WAL prefix, trailer), into the
/// database it stands for: the trailer is cut off, the WAL's frames are
/// applied (the latest frame of each page wins) and the file is truncated
/// to the size the last commit records — what an SQLite checkpoint does.
pub(crate) fn checkpoint(file: &impl WriteAt, content_len: u64) -> Result<Trailer, String> {
    let tail = if content_len >= TRAILER_LEN {
        file.read_at(content_len - TRAILER_LEN, TRAILER_LEN)?
    } else {
        Vec::new()
    };
    let t = Trailer::parse(&tail).ok_or("not an SQLite item (no trailer)")?;
    if t.db_bytes + t.wal_bytes + TRAILER_LEN != content_len {
        return Err(format!(
            "the item holds {content_len} bytes, not the {} its trailer announces",
            t.db_bytes + t.wal_bytes + TRAILER_LEN
        ));
    }
    file.set_len(t.db_bytes + t.wal_bytes)?;
    let header = DbHeader::parse(&file.read_at(0, HEADER_LEN as u64)?)?;
    if t.wal_bytes == 0 {
        file.set_len(t.db_bytes)?;
        return Ok(t);
    }
    let wal = Offset {
        inner: file,
        base: t.db_bytes,
    };
    let scan = scan_wal(&wal, t.wal_bytes)?;
    if scan.bytes != t.wal_bytes {
        return Err(format!(
            "the WAL in the backup does not check out ({} of {} bytes valid)",
            scan.bytes, t.wal_bytes
        ));
    }
    let ps = header.page_size as u64;
    if scan.header.as_ref().map(|h| h.page_size as u64) != Some(ps) {
        return Err("the WAL's page size differs from the database's".into());
    }
    // Pages that land on the WAL's own bytes are read before any of them
    // is written; the others never touch the WAL.
    let mut late = Vec::new();
    for (pgno, at) in latest_pages(&wal, &scan)? {
        let off = (pgno as u64 - 1) * ps;
        let page = wal.read_at(at, ps)?;
        if off + ps > t.db_bytes {
            late.push((off, page));
        } else {
            file.write_at(off, &page)?;
        }
    }
    for (off, page) in late {
        file.write_at(off, &page)?;
    }
    file.set_len(scan.db_pages as u64 * ps)?;
    Ok(t)
}

/// For restore: the pages the committed WAL frames leave in the database,
/// as `(page number, offset of the frame's page data in the WAL)`, the
/// latest frame of each page winning, in page order.
pub(crate) fn latest_pages(
    wal: &(impl ReadAt + ?Sized),
    scan: &WalScan,
) -> Result<Vec<(u32, u64)>, String> {
    let Some(h) = &scan.header else {
        return Ok(Vec::new());
    };
    let flen = frame_len(h.page_size);
    let mut map = std::collections::BTreeMap::new();
    for i in 0..scan.frames as u64 {
        let off = WAL_HEADER_LEN + i * flen;
        let fh = wal.read_at(off, FRAME_HEADER_LEN)?;
        if fh.len() < FRAME_HEADER_LEN as usize {
            return Err("the WAL is shorter than its scan".into());
        }
        let pgno = be32(&fh, 0);
        if pgno == 0 {
            return Err("a WAL frame for page 0".into());
        }
        map.insert(pgno, off + FRAME_HEADER_LEN);
    }
    Ok(map.into_iter().collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a WAL the way SQLite writes one.
    pub(crate) struct WalBuilder {
        pub bytes: Vec<u8>,
        sum: (u32, u32),
        salt: (u32, u32),
        big: bool,
        page_size: u32,
    }

    impl WalBuilder {
        pub(crate) fn new(page_size: u32, salt: (u32, u32), big: bool) -> WalBuilder {
            let mut b = Vec::new();
            b.extend_from_slice(&(0x377f0682u32 | big as u32).to_be_bytes());
            b.extend_from_slice(&3007000u32.to_be_bytes());
            b.extend_from_slice(&page_size.to_be_bytes());
            b.extend_from_slice(&0u32.to_be_bytes());
            b.extend_from_slice(&salt.0.to_be_bytes());
            b.extend_from_slice(&salt.1.to_be_bytes());
            let sum = checksum(&b, big, (0, 0));
            b.extend_from_slice(&sum.0.to_be_bytes());
            b.extend_from_slice(&sum.1.to_be_bytes());
            WalBuilder {
                bytes: b,
                sum,
                salt,
                big,
                page_size,
            }
        }

        pub(crate) fn frame(&mut self, pgno: u32, commit: u32, fill: u8) -> &mut Self {
            let page = vec![fill; self.page_size as usize];
            let mut fh = Vec::new();
            fh.extend_from_slice(&pgno.to_be_bytes());
            fh.extend_from_slice(&commit.to_be_bytes());
            let s = checksum(&fh, self.big, self.sum);
            let s = checksum(&page, self.big, s);
            self.sum = s;
            fh.extend_from_slice(&self.salt.0.to_be_bytes());
            fh.extend_from_slice(&self.salt.1.to_be_bytes());
            fh.extend_from_slice(&s.0.to_be_bytes());
            fh.extend_from_slice(&s.1.to_be_bytes());
            self.bytes.extend_from_slice(&fh);
            self.bytes.extend_from_slice(&page);
            self
        }
    }

    #[test]
    fn scans_to_the_last_commit() {
        for big in [false, true] {
            let mut w = WalBuilder::new(512, (7, 9), big);
            w.frame(1, 0, 1)
                .frame(2, 3, 2)
                .frame(3, 0, 3)
                .frame(1, 4, 4)
                .frame(4, 0, 5);
            let s = scan_wal(&w.bytes[..], w.bytes.len() as u64).unwrap();
            assert_eq!((s.frames, s.db_pages), (4, 4), "big-endian {big}");
            assert_eq!(s.bytes, 32 + 4 * (24 + 512));
            let pages = latest_pages(&w.bytes[..], &s).unwrap();
            let pgnos: Vec<u32> = pages.iter().map(|p| p.0).collect();
            assert_eq!(pgnos, vec![1, 2, 3]);
            // Page 1's latest version is frame 4's.
            assert_eq!(w.bytes[pages[0].1 as usize], 4);
        }
    }

    #[test]
    fn stops_at_bad_checksums_and_foreign_salts() {
        let mut w = WalBuilder::new(512, (7, 9), false);
        w.frame(1, 1, 1).frame(2, 2, 2).frame(3, 3, 3);
        let full = scan_wal(&w.bytes[..], w.bytes.len() as u64).unwrap();
        assert_eq!(full.frames, 3);
        // A flipped byte in frame 2's page ends the log after frame 1.
        let mut bad = w.bytes.clone();
        bad[32 + (24 + 512) + 24 + 100] ^= 1;
        assert_eq!(scan_wal(&bad[..], bad.len() as u64).unwrap().frames, 1);
        // A frame left over from before a reset (other salts) ends it too.
        let mut old = WalBuilder::new(512, (6, 9), false);
        old.frame(1, 1, 1).frame(2, 2, 2).frame(3, 3, 3);
        let mut mixed = w.bytes[..32 + 2 * (24 + 512)].to_vec();
        mixed.extend_from_slice(&old.bytes[32 + 2 * (24 + 512)..]);
        assert_eq!(scan_wal(&mixed[..], mixed.len() as u64).unwrap().frames, 2);
        // A torn last frame does not count.
        let torn = &w.bytes[..w.bytes.len() - 10];
        assert_eq!(scan_wal(torn, torn.len() as u64).unwrap().frames, 2);
        // A bad header: nothing counts.
        let mut hdr = w.bytes.clone();
        hdr[20] ^= 1;
        assert_eq!(
            scan_wal(&hdr[..], hdr.len() as u64).unwrap(),
            WalScan::default()
        );
        assert_eq!(scan_wal(&[][..], 0).unwrap(), WalScan::default());
    }

    impl WriteAt for std::cell::RefCell<Vec<u8>> {
        fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), String> {
            let mut v = self.borrow_mut();
            let end = offset as usize + bytes.len();
            if v.len() < end {
                v.resize(end, 0);
            }
            v[offset as usize..end].copy_from_slice(bytes);
            Ok(())
        }
        fn set_len(&self, len: u64) -> Result<(), String> {
            self.borrow_mut().resize(len as usize, 0);
            Ok(())
        }
    }

    impl ReadAt for std::cell::RefCell<Vec<u8>> {
        fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
            self.borrow()[..].read_at(offset, len)
        }
    }

    /// A database of `pages` pages of 512 bytes, page N filled with N.
    fn db_image(pages: u8) -> Vec<u8> {
        let mut db = Vec::new();
        for p in 1..=pages {
            db.extend_from_slice(&[p; 512]);
        }
        db[..16].copy_from_slice(MAGIC);
        db[16..18].copy_from_slice(&512u16.to_be_bytes());
        db[18] = 2;
        db[19] = 2;
        db
    }

    #[test]
    fn checkpoint_applies_committed_frames_and_growth() {
        let db = db_image(3);
        let mut w = WalBuilder::new(512, (1, 2), false);
        // Page 2 twice, then growth to pages 4 and 5 (whose bytes in the
        // file overlap the WAL itself), commit at 5 pages; then a frame of a
        // transaction that never committed.
        w.frame(2, 0, 0xa1)
            .frame(4, 0, 0xa4)
            .frame(2, 0, 0xa2)
            .frame(5, 5, 0xa5)
            .frame(3, 0, 0xee);
        let wal_len = 32 + 4 * (24 + 512) as u64; // the committed prefix
        let mut content = db.clone();
        content.extend_from_slice(&w.bytes[..wal_len as usize]);
        content.extend_from_slice(
            &Trailer {
                db_bytes: db.len() as u64,
                wal_bytes: wal_len,
            }
            .encode(),
        );
        let file = std::cell::RefCell::new(content.clone());
        checkpoint(&file, content.len() as u64).unwrap();
        let out = file.into_inner();
        assert_eq!(out.len(), 5 * 512);
        assert_eq!(&out[..100], &db[..100]);
        assert!(
            out[512..1024].iter().all(|&b| b == 0xa2),
            "page 2 has its latest version"
        );
        assert!(
            out[1024..1536].iter().all(|&b| b == 3),
            "page 3 untouched by the uncommitted frame"
        );
        assert!(out[1536..2048].iter().all(|&b| b == 0xa4));
        assert!(out[2048..2560].iter().all(|&b| b == 0xa5));
    }

    #[test]
    fn checkpoint_without_wal_and_refusals() {
        let db = db_image(2);
        let mut content = db.clone();
        content.extend_from_slice(
            &Trailer {
                db_bytes: 1024,
                wal_bytes: 0,
            }
            .encode(),
        );
        let file = std::cell::RefCell::new(content.clone());
        checkpoint(&file, content.len() as u64).unwrap();
        assert_eq!(file.into_inner(), db);
        // A trailer that does not add up, or none.
        let file = std::cell::RefCell::new(content.clone());
        assert!(checkpoint(&file, content.len() as u64 - 1).is_err());
        let file = std::cell::RefCell::new(db.clone());
        assert!(checkpoint(&file, db.len() as u64).is_err());
        // A damaged WAL is refused, not half applied.
        let mut w = WalBuilder::new(512, (1, 2), false);
        w.frame(1, 2, 9);
        let mut bad = db.clone();
        let mut wal = w.bytes.clone();
        wal[100] ^= 1;
        bad.extend_from_slice(&wal);
        bad.extend_from_slice(
            &Trailer {
                db_bytes: 1024,
                wal_bytes: wal.len() as u64,
            }
            .encode(),
        );
        let file = std::cell::RefCell::new(bad.clone());
        assert!(checkpoint(&file, bad.len() as u64).is_err());
    }

    #[test]
    fn trailer_round_trips() {
        let t = Trailer {
            db_bytes: 4096 * 3,
            wal_bytes: 32 + 536,
        };
        assert_eq!(Trailer::parse(&t.encode()), Some(t));
        assert_eq!(Trailer::parse(&[0; 32]), None);
    }

    #[test]
    fn parses_database_headers() {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(MAGIC);
        h[16..18].copy_from_slice(&4096u16.to_be_bytes());
        h[18] = 2;
        h[19] = 2;
        h[24..28].copy_from_slice(&5u32.to_be_bytes());
        h[28..32].copy_from_slice(&3u32.to_be_bytes());
        let d = DbHeader::parse(&h).unwrap();
        assert_eq!(
            (d.page_size, d.change_counter, d.pages, d.wal_mode()),
            (4096, 5, 3, true)
        );
        h[16..18].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(DbHeader::parse(&h).unwrap().page_size, 65536);
        h[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert!(DbHeader::parse(&h).is_err());
        assert!(DbHeader::parse(b"SQLite format 2\0").is_err());
    }

    #[test]
    fn parses_the_wal_index() {
        let mut b = vec![0u8; 136];
        for base in [0, 48] {
            b[base + 8..base + 12].copy_from_slice(&3u32.to_le_bytes());
            b[base + 16..base + 20].copy_from_slice(&10u32.to_le_bytes());
            b[base + 32..base + 36].copy_from_slice(&7u32.to_be_bytes());
        }
        b[96..100].copy_from_slice(&4u32.to_le_bytes());
        b[128..132].copy_from_slice(&6u32.to_le_bytes());
        let s = ShmState::parse(&b).unwrap();
        assert_eq!(
            (
                s.change,
                s.max_frame,
                s.salt.0,
                s.backfill,
                s.backfill_attempted
            ),
            (3, 10, 7, 4, 6)
        );
        b[8] = 9;
        assert_eq!(ShmState::parse(&b), None);
    }
}
