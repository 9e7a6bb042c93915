//! Unit tests of the on-disk formats of packs, pack sets, index files and
//! snapshots: each round-trips, reads in its layout of before the file
//! header (version 0), and refuses a truncated file and a damaged or newer
//! header with an error, never a wrong value.

use super::backend::local::LocalBackend;
use super::blob;
use super::crypto::{BlobId, Cipher, MasterKey};
use super::header::{self, Header};
use super::index::{self, IndexFile, IndexedPack};
use super::pack::{self, compress_json, BlobKind, PackWriter, PackedBlob};
use super::snapshot::{self, SnapshotInfo};
use super::{ErrorKind, PackSet, Store, StoreError};

fn ciphers() -> [Cipher; 2] {
    [
        Cipher::None,
        Cipher::new(Some(&MasterKey::random().expect("key"))),
    ]
}

const BLOBS: [&[u8]; 3] = [b"first blob", &[7u8; 3000], b"third"];

/// A pack of [`BLOBS`] written by [`PackWriter`]: its bytes and blobs.
fn new_pack(cipher: &Cipher) -> (Vec<u8>, Vec<PackedBlob>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = PackWriter::default();
    for b in BLOBS {
        w.add(BlobKind::Data, blob::encode(cipher, b).expect("encode"));
    }
    let (id, blobs) = w
        .finish(&LocalBackend::new(dir.path()), cipher)
        .expect("finish");
    let bytes = std::fs::read(dir.path().join(pack::pack_key(&id))).expect("read");
    assert_eq!(
        BlobId(*blake3::hash(&bytes).as_bytes()),
        id,
        "named by its hash"
    );
    (bytes, blobs)
}

/// A pack of [`BLOBS`] as packs were written before the file header.
fn legacy_pack(cipher: &Cipher) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut blobs = Vec::new();
    for b in BLOBS {
        let e = blob::encode(cipher, b).expect("encode");
        blobs.push(PackedBlob {
            id: e.id,
            kind: BlobKind::Data,
            offset: bytes.len() as u64,
            len: e.bytes.len() as u32,
            raw_len: e.raw_len,
        });
        bytes.extend_from_slice(&e.bytes);
    }
    let h = cipher
        .seal(&compress_json(&blobs).expect("json"))
        .expect("seal");
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(&(h.len() as u32).to_le_bytes());
    bytes
}

/// Every blob of a pack's bytes, opened.
fn contents(cipher: &Cipher, bytes: &[u8]) -> Vec<Vec<u8>> {
    pack::read_header(cipher, bytes)
        .expect("header")
        .iter()
        .map(|b| {
            let at = b.offset as usize..b.offset as usize + b.len as usize;
            blob::decode(cipher, &b.id, b.raw_len, &bytes[at]).expect("blob")
        })
        .collect()
}

fn expected() -> Vec<Vec<u8>> {
    BLOBS.iter().map(|b| b.to_vec()).collect()
}

#[test]
fn a_pack_round_trips_behind_its_file_header() {
    for c in ciphers() {
        let (bytes, blobs) = new_pack(&c);
        assert_eq!(bytes[..Header::LEN], header::PACK.bytes());
        assert_eq!(pack::read_header(&c, &bytes).expect("header"), blobs);
        assert_eq!(blobs[0].offset, Header::LEN as u64);
        assert_eq!(contents(&c, &bytes), expected());
    }
}

#[test]
fn a_pack_of_before_the_file_header_still_reads() {
    for c in ciphers() {
        let bytes = legacy_pack(&c);
        assert_ne!(bytes[..7], header::PACK.magic);
        assert_eq!(contents(&c, &bytes), expected());
    }
}

#[test]
fn a_truncated_pack_is_refused_at_every_length() {
    for c in ciphers() {
        for bytes in [new_pack(&c).0, legacy_pack(&c)] {
            for n in 0..bytes.len() {
                let e = pack::read_header(&c, &bytes[..n]).expect_err("truncated");
                assert_eq!(e.kind(), ErrorKind::Corrupt, "cut at {n}: {e}");
            }
        }
    }
}

#[test]
fn a_pack_with_a_damaged_or_newer_file_header_is_refused() {
    for c in ciphers() {
        let (bytes, _) = new_pack(&c);
        // A flipped magic byte: read as a pack without a header, whose
        // first blob then does not start where such a pack's does.
        for i in 0..7 {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            let e = pack::read_header(&c, &b).expect_err("damaged magic");
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
            assert!(e.to_string().contains("file header is damaged"), "{e}");
        }
        let mut b = bytes.clone();
        b[7] = 0;
        let e = pack::read_header(&c, &b).expect_err("version 0");
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        b[7] = header::PACK.version + 1;
        let e = pack::read_header(&c, &b).expect_err("newer");
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        assert!(e.to_string().contains("newer attache"), "{e}");
    }
}

fn index_file() -> IndexFile {
    IndexFile {
        packs: vec![IndexedPack {
            pack: BlobId([1; 32]),
            blobs: vec![PackedBlob {
                id: BlobId([2; 32]),
                kind: BlobKind::Tree,
                offset: Header::LEN as u64,
                len: 100,
                raw_len: 80,
            }],
        }],
    }
}

fn same_index(a: &IndexFile, b: &IndexFile) -> bool {
    a.packs.len() == b.packs.len()
        && a.packs
            .iter()
            .zip(&b.packs)
            .all(|(x, y)| x.pack == y.pack && x.blobs == y.blobs)
}

/// The one index file of `root`.
fn index_path(root: &std::path::Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(root.join("index"))
        .expect("index dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1);
    files.pop().expect("one")
}

#[test]
fn an_index_file_round_trips_behind_its_file_header_and_an_old_one_reads() {
    for c in ciphers() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("index")).expect("mkdir");
        let be = LocalBackend::new(d.path());
        let id = index::write_index(&be, &c, &index_file()).expect("write");
        let path = index_path(d.path());
        assert_eq!(
            path.file_name().and_then(|n| n.to_str()),
            Some(&*id.to_hex())
        );
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes[..Header::LEN], header::INDEX.bytes());
        assert!(same_index(
            &index::read_index(&be, &index::index_key(&id), bytes.len() as u64, &c, None)
                .expect("read"),
            &index_file()
        ));
        // Without the header, as written before it: the same.
        let old = c
            .seal(&compress_json(&index_file()).expect("json"))
            .expect("seal");
        assert!(same_index(
            &index::decode(&c, &old, "old").expect("old"),
            &index_file()
        ));
    }
}

#[test]
fn a_truncated_or_damaged_index_file_is_damage_and_a_newer_one_is_refused() {
    for c in ciphers() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("index")).expect("mkdir");
        let be = LocalBackend::new(d.path());
        let id = index::write_index(&be, &c, &index_file()).expect("write");
        let path = index_path(d.path());
        let bytes = std::fs::read(&path).expect("read");
        let read = |b: &[u8]| {
            std::fs::write(&path, b).expect("write");
            index::read_index(&be, &index::index_key(&id), b.len() as u64, &c, None)
        };
        for n in 0..bytes.len() {
            let e = read(&bytes[..n]).expect_err("truncated");
            assert!(
                matches!(e, StoreError::DamagedFile { .. }),
                "cut at {n}: {e}"
            );
        }
        for i in 0..Header::LEN {
            let mut b = bytes.clone();
            b[i] = if i == 7 { 0 } else { b[i] ^ 0x20 };
            let e = read(&b).expect_err("damaged header");
            assert!(matches!(e, StoreError::DamagedFile { .. }), "byte {i}: {e}");
        }
        let mut b = bytes.clone();
        b[7] = header::INDEX.version + 1;
        let e = read(&b).expect_err("newer");
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        // Opening the repository refuses it rather than leaving it out
        // (its packs would look unreferenced).
        match index::Index::load(&be, &c, None) {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Invalid, "{e}"),
            Ok(_) => panic!("an index of a newer format was left out, not refused"),
        }
    }
}

fn info() -> SnapshotInfo {
    serde_json::from_str(
        r#"{"time":1700000000,"source":"local","plugin":"filesystem","plugin_version":"1",
            "includes":["/srv"],"items":3,"bytes":42,"warnings":[],"tree":[]}"#,
    )
    .expect("info")
}

/// A new repository in `dir` (encrypted with `pw`, if given) holding one
/// snapshot of [`info`]: the store, the snapshot's id and its file's bytes.
fn written_snapshot(dir: &std::path::Path, pw: Option<&str>) -> (Store, String, Vec<u8>) {
    let store =
        Store::init(&dir.join(if pw.is_some() { "sealed" } else { "plain" }), pw).expect("init");
    let id = store.write_snapshot(&info()).expect("write");
    let bytes = store
        .backend()
        .read(&format!("snapshots/{id}"))
        .expect("read");
    (store, id, bytes)
}

#[test]
fn a_snapshot_round_trips_behind_its_file_header_and_an_old_one_reads() {
    let d = tempfile::tempdir().expect("tempdir");
    for pw in [None, Some("pw")] {
        let (store, id, bytes) = written_snapshot(d.path(), pw);
        assert_eq!(bytes[..Header::LEN], header::SNAPSHOT.bytes());
        let back = store.read_snapshot(&id, None).expect("read back");
        assert_eq!(
            (back.id.as_str(), back.time, back.items),
            (&*id, 1700000000, 3)
        );
        assert_eq!(back.includes, ["/srv"]);
        // As written before the header: sealed JSON, named by its hash.
        let old = store
            .cipher()
            .seal(&serde_json::to_vec(&info()).expect("json"))
            .expect("seal");
        let old_id = blake3::hash(&old).to_hex().to_string();
        let back = snapshot::decode(store.cipher(), &old_id, &old).expect("old");
        assert_eq!((back.id, back.items), (old_id, 3));
    }
}

#[test]
fn a_truncated_damaged_or_newer_snapshot_is_refused() {
    let d = tempfile::tempdir().expect("tempdir");
    for pw in [None, Some("pw")] {
        let (store, id, bytes) = written_snapshot(d.path(), pw);
        // Named by the hash of what is read, so that the parse itself,
        // not the name check, must refuse it.
        let decode = |b: &[u8]| {
            let id = blake3::hash(b).to_hex().to_string();
            snapshot::decode(store.cipher(), &id, b)
        };
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        for i in 0..Header::LEN {
            let mut b = bytes.clone();
            b[i] = if i == 7 { 0 } else { b[i] ^ 0x20 };
            assert!(decode(&b).is_err(), "byte {i} damaged");
        }
        let mut b = bytes.clone();
        b[7] = header::SNAPSHOT.version + 1;
        let e = decode(&b).expect_err("newer");
        assert!(e.contains("newer attache"), "{e}");
        // The name check: the file's bytes changed, its name did not.
        assert!(snapshot::decode(store.cipher(), &id, &b[..b.len() - 1]).is_err());
    }
}

#[test]
fn a_pack_set_writes_headed_packs_and_an_index_that_find_every_blob() {
    let d = tempfile::tempdir().expect("tempdir");
    for (name, pw) in [("plain", None), ("sealed", Some("pw"))] {
        let root = d.path().join(name);
        let store = Store::init(&root, pw).expect("init");
        let mut set = PackSet::new(&store);
        // Enough to fill more than one pack, and a duplicate.
        let mut chunks: Vec<Vec<u8>> = (0u32..24)
            .map(|i| {
                let mut c = vec![0u8; 1 << 20];
                super::crypto::random(&mut c).expect("random");
                c[..4].copy_from_slice(&i.to_le_bytes());
                c
            })
            .collect();
        chunks.push(chunks[0].clone());
        let ids: Vec<BlobId> = chunks
            .iter()
            .map(|c| set.add(BlobKind::Data, c).expect("add"))
            .collect();
        assert_eq!(ids[0], ids[24], "the same content, the same id");
        assert!(set.commit().expect("commit") > 0);
        let packs = pack::list_packs(&LocalBackend::new(&root)).expect("packs");
        assert!(packs.len() >= 2, "{} packs", packs.len());
        for p in &packs {
            let bytes = std::fs::read(root.join(pack::pack_key(p))).expect("pack");
            assert_eq!(bytes[..Header::LEN], header::PACK.bytes());
            assert!(!pack::read_header(store.cipher(), &bytes)
                .expect("header")
                .is_empty());
        }
        // Reopened, from the index files on disk: every blob reads back.
        drop(store);
        let store = Store::open(&root, pw).expect("open");
        for (id, c) in ids.iter().zip(&chunks) {
            assert_eq!(&store.read_blob(id).expect("blob"), c);
        }
    }
}

#[test]
fn a_pack_set_that_cannot_write_its_packs_fails_with_why_and_writes_no_index() {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("repo");
    let store = Store::init(&root, Some("pw")).expect("init");
    // Packs go under data/: a file in its place fails every pack's write.
    let _ = std::fs::remove_dir_all(root.join("data"));
    std::fs::write(root.join("data"), b"in the way").expect("file");
    let indexes = || std::fs::read_dir(root.join("index")).map_or(0, |r| r.count());
    let before = indexes();
    let mut set = PackSet::new(&store);
    // Three packs' worth: the storer fails on the first while the writer
    // fills the next.
    let mut failed = None;
    for i in 0u32..24 {
        let mut c = vec![0u8; 1 << 20];
        super::crypto::random(&mut c).expect("random");
        c[..4].copy_from_slice(&i.to_le_bytes());
        if let Err(e) = set.add(BlobKind::Data, &c) {
            failed = Some(e);
            break;
        }
    }
    let e = match failed {
        Some(e) => e,
        None => set.commit().expect_err("no pack can be written"),
    };
    // The backend's own error, with the path, not "the storer stopped".
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("data"), "{e}");
    assert_eq!(indexes(), before, "no index names packs that are not there");
}
