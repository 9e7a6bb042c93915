//! Making a realistic test tree, and comparing two trees down to modes,
//! owners, mtimes, link targets, hard links and content.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{chownat, utimensat, AtFlags, Gid, Timespec, Timestamps, Uid, CWD};

/// Fills a file with `len` pseudo-random bytes (incompressible, fast).
pub fn random_file(path: &Path, len: u64, seed: u64) {
    let mut out = std::io::BufWriter::new(fs::File::create(path).expect("create"));
    let mut reader = blake3::Hasher::new_derive_key("attache test data")
        .update(&seed.to_le_bytes())
        .finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        reader.fill(&mut buf[..n]);
        std::io::Write::write_all(&mut out, &buf[..n]).expect("write");
        left -= n as u64;
    }
}

fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

/// What the tests back up: `files` small files in nested directories, with
/// symlinks (relative, absolute, dangling), a hard link, a large file of
/// `big` bytes, names with spaces and non-ASCII, odd modes and owners, and
/// mtimes set to the nanosecond (directories' last, as a restore must).
pub fn make(root: &Path, files: usize, big: u64) {
    fs::create_dir_all(root).expect("root");
    let dirs = [
        "a",
        "a/b",
        "a/b/c d",
        "ünïcødé",
        "ünïcødé/日本語",
        "empty",
        "deep/1/2/3/4/5/6/7/8",
    ];
    for d in dirs {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let homes = [
        "a",
        "a/b",
        "a/b/c d",
        "ünïcødé/日本語",
        "deep/1/2/3/4/5/6/7/8",
    ];
    for i in 0..files {
        let p = root
            .join(homes[i % homes.len()])
            .join(format!("file {i:05} ✓.txt"));
        let size = (i * 37 % 9000) as u64;
        random_file(&p, size, i as u64);
        let mode = [0o644, 0o600, 0o755, 0o444, 0o640][i % 5];
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        set_mtime(
            &p,
            1_600_000_000 + i as i64 * 61,
            (i as i64 * 7919) % 1_000_000_000,
        );
    }
    fs::write(root.join("empty file"), b"").expect("empty");
    random_file(&root.join("big.bin"), big, 42);
    fs::write(root.join("a/original"), b"shared by two names\n").expect("original");
    fs::hard_link(root.join("a/original"), root.join("ünïcødé/second name")).expect("hard link");
    symlink("b/c d", root.join("a/rel-link")).expect("symlink");
    symlink("/etc/hostname", root.join("abs-link")).expect("symlink");
    symlink("does/not/exist", root.join("dangling")).expect("symlink");
    chownat(
        CWD,
        root.join("a/original"),
        Some(Uid::from_raw(1234)),
        Some(Gid::from_raw(5678)),
        AtFlags::empty(),
    )
    .ok();
    chownat(
        CWD,
        root.join("a/rel-link"),
        Some(Uid::from_raw(4321)),
        Some(Gid::from_raw(8765)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .ok();
    fs::set_permissions(root.join("a/b"), fs::Permissions::from_mode(0o750)).expect("chmod dir");
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o2775)).expect("chmod dir");
    set_mtime(&root.join("a/rel-link"), 1_500_000_000, 5);
    set_mtime(&root.join("big.bin"), 1_700_000_000, 123_456_789);
    // Directories last, deepest first, as creating entries changes them.
    let mut all: Vec<_> = dirs.iter().flat_map(|d| ancestors(d)).collect();
    all.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    all.dedup();
    for (i, d) in all.iter().enumerate() {
        set_mtime(&root.join(d), 1_400_000_000 + i as i64 * 3600, 999);
    }
}

fn ancestors(d: &str) -> Vec<String> {
    let parts: Vec<&str> = d.split('/').collect();
    (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
}

/// Everything a restore must preserve about one path.
#[derive(Debug, PartialEq)]
pub struct Entry {
    /// `dir`, `file`, `symlink` or `special`.
    pub kind: &'static str,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Length in bytes.
    pub size: u64,
    /// A file's content (hashed when large).
    pub content: Option<String>,
    /// A symlink's target.
    pub link: Option<String>,
    /// Index of the hard-link group (paths sharing an inode), if nlink > 1.
    pub link_group: Option<usize>,
}

/// Describes every path below `root` (the root itself as "").
pub fn describe(root: &Path) -> BTreeMap<String, Entry> {
    let mut inodes: BTreeMap<u64, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    let mut paths = vec![std::path::PathBuf::new()];
    paths.extend(crate::listing(root));
    for rel in paths {
        let p = root.join(&rel);
        let m = fs::symlink_metadata(&p).expect("stat");
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "special"
        };
        let link_group = (ft.is_file() && m.nlink() > 1).then(|| {
            let n = inodes.len();
            *inodes.entry(m.ino()).or_insert(n)
        });
        out.insert(
            rel.to_string_lossy().into_owned(),
            Entry {
                kind,
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec()),
                size: if ft.is_dir() { 0 } else { m.len() },
                content: ft.is_file().then(|| {
                    blake3::hash(&fs::read(&p).expect("read"))
                        .to_hex()
                        .to_string()
                }),
                link: ft.is_symlink().then(|| {
                    fs::read_link(&p)
                        .expect("readlink")
                        .to_string_lossy()
                        .into_owned()
                }),
                link_group,
            },
        );
    }
    out
}

/// Asserts that two trees are identical in every respect `describe` sees.
pub fn assert_same(expected: &Path, actual: &Path) {
    let a = describe(expected);
    let b = describe(actual);
    let missing: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let extra: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:?}\nextra: {extra:?}"
    );
    for (k, e) in &a {
        assert_eq!(e, &b[k], "{k:?} differs");
    }
}

/// A small file of `len` pseudo-random bytes.
fn small_file(path: &Path, len: usize, seed: u64) {
    let mut buf = vec![0u8; len];
    blake3::Hasher::new_derive_key("attache test data")
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut buf);
    fs::write(path, &buf).expect("write");
}

/// A tree of at least `items` entries in the shape of a real one: many
/// small directories nested a few levels deep (a fan-out of 8), each with
/// files of varied sizes, modes, owners and nanosecond mtimes, relative,
/// absolute and dangling symlinks, and hard links within and across
/// directories; directories with their own modes, and mtimes set last,
/// deepest first, as a restore must keep them.
pub fn make_many(root: &Path, items: usize) {
    const PER_DIR: usize = 40;
    fs::create_dir_all(root).expect("root");
    let ndirs = items / PER_DIR + 1;
    let mut dirs: Vec<String> = Vec::with_capacity(ndirs);
    for d in 0..ndirs {
        let rel = if d == 0 {
            "d0".to_owned()
        } else {
            format!("{}/d{d} ✓", dirs[(d - 1) / 8])
        };
        fs::create_dir(root.join(&rel)).expect("mkdir");
        dirs.push(rel);
    }
    let mut files: Vec<String> = Vec::new();
    let mut n = 0usize;
    for dir in &dirs {
        for i in 0..PER_DIR - 1 {
            n += 1;
            let rel = format!("{dir}/e{i:02}");
            let p = root.join(&rel);
            match n % 20 {
                7 => symlink(["../d0", "/etc/hostname", "no/such/thing"][n % 3], &p)
                    .expect("symlink"),
                13 if !files.is_empty() => {
                    let target = &files[n * 7919 % files.len()];
                    fs::hard_link(root.join(target), &p).expect("hard link");
                    continue;
                }
                _ => {
                    small_file(&p, n * 131 % 5000, n as u64);
                    let mode = [0o644, 0o600, 0o755, 0o444, 0o640, 0o4755][n % 6];
                    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
                    files.push(rel);
                }
            }
            if n.is_multiple_of(11) {
                chownat(
                    CWD,
                    &p,
                    Some(Uid::from_raw(1000 + (n % 50) as u32)),
                    Some(Gid::from_raw(2000 + (n % 30) as u32)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .ok();
            }
            set_mtime(
                &p,
                1_600_000_000 + n as i64 * 17,
                (n as i64 * 7919) % 1_000_000_000,
            );
        }
    }
    for (d, dir) in dirs.iter().enumerate() {
        let mode = [0o755, 0o750, 0o700, 0o2775, 0o1777][d % 5];
        fs::set_permissions(root.join(dir), fs::Permissions::from_mode(mode)).expect("chmod dir");
    }
    // Deepest first: a directory's mtime is set after its children's.
    for (d, dir) in dirs.iter().enumerate().rev() {
        set_mtime(
            &root.join(dir),
            1_400_000_000 + d as i64 * 3600,
            d as i64 * 1009,
        );
    }
}
