//! Fuzzing of the backup stream reader, which the server runs on whatever
//! an untrusted guest sends: the seed streams in `tests/fuzz/stream/` (kept
//! in the repository, and rewritten by this test when missing) are cut,
//! have bytes flipped, spliced in or length fields inflated. The reader
//! must answer each with events or an error — never a panic, never an
//! allocation a length field asks for beyond its frame limit, never a long
//! wait. Bounded: a few hundred cases, each under a second.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use guest_runner::stream::{Event, Header, ItemKind, ItemRecord, StreamReader, StreamWriter};
use proptest::prelude::*;

fn corpus_dir() -> PathBuf {
    attache_tests::root().join("tests/fuzz/stream")
}

fn record(id: &str, kind: ItemKind, size: u64) -> ItemRecord {
    ItemRecord {
        id: id.into(),
        kind,
        size,
        mode: Some(0o100644),
        uid: Some(1000),
        gid: Some(1000),
        mtime: None,
        symlink_target: None,
        hardlink_target: None,
        attributes: vec![("subject".into(), "Grüße".into())],
        change_token: Some("1:2:3".into()),
        unchanged: false,
    }
}

/// A valid stream: a directory, files with data in several frames, a
/// warning, an aborted item and the trailer.
fn seed() -> Vec<u8> {
    let header = Header {
        format: 1,
        plugin: "fuzz".into(),
        plugin_version: "1".into(),
        created: 0,
    };
    let mut w = StreamWriter::new(Vec::new(), &header).expect("header");
    w.begin_item(&record("/d", ItemKind::Directory, 0))
        .expect("item");
    w.end_item().expect("end");
    for (n, size) in [(1usize, 10usize), (2, 70_000), (3, 0)] {
        w.begin_item(&record(&format!("/d/f{n}"), ItemKind::File, size as u64))
            .expect("item");
        w.data(&vec![n as u8; size]).expect("data");
        w.end_item().expect("end");
    }
    w.warning("/d/f2", "changed while read").expect("warning");
    w.begin_item(&record("/d/gone", ItemKind::File, 5))
        .expect("item");
    w.abort_item("/d/gone", "vanished").expect("abort");
    w.finish().expect("finish").0
}

/// The committed seeds; written from [`seed`] when the folder is empty.
fn corpus() -> Vec<Vec<u8>> {
    let dir = corpus_dir();
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "stream"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    if seeds.is_empty() {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        let s = seed();
        std::fs::write(dir.join("valid.stream"), &s).expect("write seed");
        seeds.push(s);
    }
    seeds
}

/// Reads a whole stream; how many events it gave before its end or error.
fn read_all(bytes: &[u8]) -> (usize, bool) {
    let mut r = StreamReader::new(bytes);
    let mut events = 0;
    loop {
        match r.next_event() {
            Ok(Some(Event::Trailer(_))) => return (events + 1, true),
            Ok(Some(_)) => events += 1,
            Ok(None) => return (events, false),
            Err(_) => return (events, false),
        }
        assert!(events < 1_000_000, "the reader never ends");
    }
}

#[test]
fn the_seeds_read_whole() {
    for s in corpus() {
        let (events, complete) = read_all(&s);
        assert!(complete && events > 5, "a seed does not read whole");
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Cut(f64),
    Flip(f64, u8),
    Splice(f64, Vec<u8>),
    /// Overwrites 4 bytes with a huge little-endian length.
    Inflate(f64, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0.0..1.0f64).prop_map(Mutation::Cut),
        (0.0..1.0f64, 1..=255u8).prop_map(|(at, x)| Mutation::Flip(at, x)),
        (0.0..1.0f64, proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, b)| Mutation::Splice(at, b)),
        (0.0..1.0f64, (1u32 << 24)..=u32::MAX).prop_map(|(at, n)| Mutation::Inflate(at, n)),
    ]
}

fn apply(mut s: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len.saturating_sub(1));
    match m {
        Mutation::Cut(f) => s.truncate(at(*f, s.len())),
        // A stream an earlier mutation cut too short for this one is left
        // as it is.
        Mutation::Flip(_, _) if s.is_empty() => {}
        Mutation::Flip(f, x) => {
            let i = at(*f, s.len());
            s[i] ^= x;
        }
        Mutation::Splice(f, b) => {
            let i = at(*f, s.len());
            s.splice(i..i, b.iter().copied());
        }
        Mutation::Inflate(_, _) if s.len() < 4 => {}
        Mutation::Inflate(f, n) => {
            let i = at(*f, s.len().saturating_sub(4));
            s[i..i + 4].copy_from_slice(&n.to_le_bytes());
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn damaged_streams_are_refused_quickly_and_never_panic(
        pick in any::<usize>(),
        ms in proptest::collection::vec(mutation(), 1..4),
    ) {
        let seeds = corpus();
        let mut s = seeds[pick % seeds.len()].clone();
        for m in &ms {
            s = apply(s, m);
        }
        let t = Instant::now();
        let _ = read_all(&s);
        prop_assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn arbitrary_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let (_, complete) = read_all(&bytes);
        prop_assert!(!complete);
    }
}
