//! Property tests of every repository file parser: the pack header, index
//! files, snapshot files (with and without their file header), the config, the key file and the damage record,
//! fed arbitrary bytes and valid files truncated or with bytes flipped.
//! Each must return an error or a value, never panic, and answer quickly
//! (the cases are small and few, so `cargo test` stays bounded).

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::backend::local::LocalBackend;
use super::blob;
use super::config::{Config, Encryption};
use super::crypto::{BlobId, Cipher, MasterKey};
use super::damage::{self, DamageRecord, Damaged};
use super::header;
use super::index::{self, IndexFile, IndexedPack};
use super::key::KeyFile;
use super::pack::{self, compress_json, BlobKind, PackWriter};
use super::snapshot;

/// How long one parse may take.
const QUICK: Duration = Duration::from_secs(2);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 192,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

fn ciphers() -> Vec<Cipher> {
    vec![
        Cipher::None,
        Cipher::new(Some(&MasterKey::random().expect("key"))),
    ]
}

/// Damages `valid`: cut at `cut` (as a fraction) or flip `flip` bytes.
fn damage(mut valid: Vec<u8>, cut: Option<f64>, flips: &[(f64, u8)]) -> Vec<u8> {
    if valid.is_empty() {
        return valid;
    }
    for (at, x) in flips {
        let i = ((valid.len() - 1) as f64 * at) as usize;
        valid[i] ^= x.max(&1);
    }
    if let Some(c) = cut {
        valid.truncate((valid.len() as f64 * c) as usize);
    }
    valid
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    assert!(t.elapsed() < QUICK, "{what} took {:?}", t.elapsed());
    r
}

/// A valid pack of two blobs written by [`PackWriter`], as bytes.
fn valid_pack(cipher: &Cipher) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = PackWriter::default();
    for b in [&b"first blob"[..], &[7u8; 3000][..]] {
        let e = blob::encode_with_id(cipher, cipher.id(b), b).expect("encode");
        w.add(BlobKind::Data, e);
    }
    let (id, _) = w
        .finish(&LocalBackend::new(dir.path()), cipher)
        .expect("finish");
    std::fs::read(dir.path().join(pack::pack_key(&id))).expect("read pack")
}

fn valid_index(cipher: &Cipher) -> Vec<u8> {
    let f = IndexFile {
        packs: vec![IndexedPack {
            pack: BlobId([1; 32]),
            blobs: vec![pack::PackedBlob {
                id: BlobId([2; 32]),
                kind: BlobKind::Tree,
                offset: 0,
                len: 100,
                raw_len: 80,
            }],
        }],
    };
    cipher
        .seal(&compress_json(&f).expect("json"))
        .expect("seal")
}

fn valid_snapshot(cipher: &Cipher) -> (String, Vec<u8>) {
    let body = br#"{"time":1,"source":"local","plugin":"filesystem","plugin_version":"1","includes":["/"],"items":0,"bytes":0,"warnings":[],"tree":[]}"#;
    let sealed = cipher.seal(body).expect("seal");
    (blake3::hash(&sealed).to_hex().to_string(), sealed)
}

fn valid_config() -> Vec<u8> {
    let k = MasterKey::random().expect("key");
    let mut c = Config::new(
        "00112233445566778899aabbccddeeff".into(),
        Encryption::XChaCha20Poly1305,
    );
    c.seal(&k).expect("seal");
    c.to_bytes().expect("bytes")
}

fn valid_key() -> Vec<u8> {
    let f = KeyFile::create(&MasterKey::random().expect("key"), "pw").expect("create");
    serde_json::to_vec(&f).expect("json")
}

fn valid_damage(cipher: &Cipher) -> Vec<u8> {
    let r = DamageRecord {
        magic: damage::MAGIC.into(),
        version: damage::VERSION,
        damaged: vec![Damaged {
            pack: BlobId([3; 32]),
            blob: BlobId([4; 32]),
            why: "flipped".into(),
        }],
    };
    cipher
        .seal(&compress_json(&r).expect("json"))
        .expect("seal")
}

/// The ciphers and one valid file of each kind per cipher, made once
/// (a key file costs an Argon2 derivation).
fn corpus() -> &'static (Vec<Cipher>, Vec<Vec<u8>>) {
    static CORPUS: std::sync::OnceLock<(Vec<Cipher>, Vec<Vec<u8>>)> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        let cs = ciphers();
        let mut files = vec![valid_config(), valid_key()];
        for c in &cs {
            files.push(valid_pack(c));
            // Index files and snapshots as written before the file header,
            // and as written now, behind it.
            files.push(valid_index(c));
            files.push(header::INDEX.prepend(&valid_index(c)));
            files.push(valid_snapshot(c).1);
            files.push(header::SNAPSHOT.prepend(&valid_snapshot(c).1));
            files.push(valid_damage(c));
        }
        (cs, files)
    })
}

/// Every parser on `bytes`, with each cipher.
fn parse_all(bytes: &[u8], ciphers: &[Cipher]) {
    for c in ciphers {
        timed("pack header", || pack::read_header(c, bytes).ok());
        timed("index", || index::decode(c, bytes, "index").ok());
        let id = blake3::hash(bytes).to_hex().to_string();
        timed("snapshot", || snapshot::decode(c, &id, bytes).ok());
        timed("snapshot (wrong name)", || {
            snapshot::decode(c, "00", bytes).ok()
        });
        timed("damage record", || damage::decode(c, bytes).ok());
    }
    timed("config", || Config::parse(bytes).ok());
    timed("key file", || KeyFile::parse(bytes).ok());
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        parse_all(&bytes, &corpus().0);
    }

    #[test]
    fn damaged_valid_files_never_panic(
        cut in proptest::option::of(0.0f64..1.0),
        flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..4),
    ) {
        let (cs, files) = corpus();
        for f in files {
            parse_all(&damage(f.clone(), cut, &flips), cs);
        }
    }
}

#[test]
fn valid_files_parse() {
    for c in ciphers() {
        assert_eq!(
            pack::read_header(&c, &valid_pack(&c)).expect("pack").len(),
            2
        );
        assert_eq!(
            index::decode(&c, &valid_index(&c), "index")
                .expect("index")
                .packs
                .len(),
            1
        );
        let (id, s) = valid_snapshot(&c);
        assert_eq!(
            snapshot::decode(&c, &id, &s).expect("snapshot").source,
            "local"
        );
        assert_eq!(
            damage::decode(&c, &valid_damage(&c))
                .expect("damage")
                .damaged
                .len(),
            1
        );
    }
    Config::parse(&valid_config()).expect("config");
    KeyFile::parse(&valid_key()).expect("key file");
}

#[test]
fn a_pack_header_pointing_outside_the_pack_is_refused() {
    let c = Cipher::None;
    let mut p = valid_pack(&c);
    // A header claiming more bytes than the pack has.
    let n = p.len();
    p[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(pack::read_header(&c, &p).is_err());
    assert!(pack::read_header(&c, &[1, 2]).is_err());
}
