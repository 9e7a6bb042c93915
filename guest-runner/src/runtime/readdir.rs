//! `read-directory` of `wasi:filesystem/types`, served here in place of
//! wasmtime-wasi's, which asks the kernel for a full `statx` of every entry
//! only to learn its type (issue 12: 47,602 `statx` calls in a re-run of
//! a 47,602-item tree that the plugin stats once more itself). The kernel
//! already gives each entry's type in the listing (`d_type`); only a file
//! system that does not (`DT_UNKNOWN`) costs a `statx` of that entry, not
//! following a symlink, as wasmtime-wasi's does.
//!
//! The listing is what wasmtime-wasi's is: the directory read from its
//! start through a descriptor of its own (`openat(fd, ".")`), `.` and `..`
//! left out, every entry read at the call and handed out one at a time, a
//! name that is not UTF-8 an `illegal-byte-sequence` error at its turn. It
//! reads only the directory the plugin already holds; no path is resolved
//! but the entries' own names, one component each.
//!
//! The stream is a resource of this module's type, so the resource and
//! both functions that use it (`read-directory`, and the stream's
//! `read-directory-entry`) are shadowed together.

use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType};
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime::StoreContextMut;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types::{DescriptorType, DirectoryEntry, ErrorCode};

use super::State;

/// The interface wasmtime-wasi serves (a plugin's import of any 0.2.x
/// resolves to it).
const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// An open listing: its entries, in the order the directory gave them.
pub(crate) struct Listing(std::vec::IntoIter<Result<DirectoryEntry, ErrorCode>>);

/// Replaces wasmtime-wasi's `directory-entry-stream`, `read-directory` and
/// `read-directory-entry` in `linker`, where wasmtime-wasi's are defined.
/// Fails when they are not under [`TYPES`] (a wasmtime-wasi serving
/// another version): defined under a name no plugin resolves to, these
/// would go unused without a word.
pub(crate) fn shadow(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(false);
    let taken = linker
        .instance(TYPES)?
        .func_wrap(
            "[method]descriptor.read-directory",
            |_: StoreContextMut<'_, State>, (): ()| Ok(()),
        )
        .is_err();
    if !taken {
        wasmtime::bail!("wasmtime-wasi serves no {TYPES}: its read-directory cannot be replaced");
    }
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.resource(
        "directory-entry-stream",
        ResourceType::host::<Listing>(),
        |mut store, rep| {
            store
                .data_mut()
                .table
                .delete(Resource::<Listing>::new_own(rep))?;
            Ok(())
        },
    )?;
    types.func_wrap(
        "[method]descriptor.read-directory",
        |mut store: StoreContextMut<'_, State>, (fd,): (Resource<Descriptor>,)| {
            let state = store.data_mut();
            let listed = match state.table.get(&fd)? {
                Descriptor::Dir(d) => list(&*d.dir),
                Descriptor::File(_) => Err(ErrorCode::NotDirectory),
            };
            Ok((match listed {
                Ok(entries) => Ok(state.table.push(Listing(entries.into_iter()))?),
                Err(e) => Err(e),
            },))
        },
    )?;
    types.func_wrap(
        "[method]directory-entry-stream.read-directory-entry",
        |mut store: StoreContextMut<'_, State>, (stream,): (Resource<Listing>,)| {
            let listing = store.data_mut().table.get_mut(&stream)?;
            Ok((listing.0.next().transpose(),))
        },
    )?;
    Ok(())
}

/// Every entry of the directory `dir`, but `.` and `..`.
fn list(dir: &impl AsFd) -> Result<Vec<Result<DirectoryEntry, ErrorCode>>, ErrorCode> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(io)? {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // As wasmtime-wasi: the error at its turn, and no more.
                out.push(Err(io(e)));
                break;
            }
        };
        let name = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(e) => {
                    out.push(Err(io(e)));
                    continue;
                }
            },
            known => known,
        };
        out.push(match std::str::from_utf8(bytes) {
            Ok(name) => Ok(DirectoryEntry {
                type_: descriptor_type(kind),
                name: name.to_owned(),
            }),
            Err(_) => Err(ErrorCode::IllegalByteSequence),
        });
    }
    Ok(out)
}

fn io(e: rustix::io::Errno) -> ErrorCode {
    ErrorCode::from(std::io::Error::from(e))
}

/// The WASI type of a file of `kind`.
fn descriptor_type(kind: FileType) -> DescriptorType {
    match kind {
        FileType::RegularFile => DescriptorType::RegularFile,
        FileType::Directory => DescriptorType::Directory,
        FileType::Symlink => DescriptorType::SymbolicLink,
        FileType::Fifo => DescriptorType::Fifo,
        FileType::Socket => DescriptorType::Socket,
        FileType::CharacterDevice => DescriptorType::CharacterDevice,
        FileType::BlockDevice => DescriptorType::BlockDevice,
        FileType::Unknown => DescriptorType::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn lists_every_entry_with_its_type_and_no_dots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::write(p.join("file"), b"x").expect("file");
        std::fs::create_dir(p.join("sub")).expect("dir");
        std::os::unix::fs::symlink("sub", p.join("link")).expect("symlink");
        std::os::unix::fs::symlink("gone", p.join("dangling")).expect("symlink");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.join("fifo"),
            FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .expect("fifo");
        let d = std::fs::File::open(p).expect("open");
        let mut got: Vec<(String, DescriptorType)> = list(&d)
            .expect("list")
            .into_iter()
            .map(|e| e.map(|e| (e.name, e.type_)).expect("entry"))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let want = [
            ("dangling", DescriptorType::SymbolicLink),
            ("fifo", DescriptorType::Fifo),
            ("file", DescriptorType::RegularFile),
            ("link", DescriptorType::SymbolicLink),
            ("sub", DescriptorType::Directory),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((name, ty), (wn, wt)) in got.iter().zip(want) {
            assert_eq!(name, wn);
            assert!(
                std::mem::discriminant(ty) == std::mem::discriminant(&wt),
                "{name}: {ty:?}"
            );
        }
    }

    #[test]
    fn a_name_that_is_not_utf8_is_an_error_at_its_turn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = std::ffi::OsStr::from_bytes(b"bad-\xff");
        std::fs::write(dir.path().join(bad), b"").expect("file");
        std::fs::write(dir.path().join("good"), b"").expect("file");
        let d = std::fs::File::open(dir.path()).expect("open");
        let got = list(&d).expect("list");
        assert_eq!(got.len(), 2);
        assert_eq!(got.iter().filter(|e| e.is_ok()).count(), 1);
        assert!(got
            .iter()
            .any(|e| matches!(e, Err(ErrorCode::IllegalByteSequence))));
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), b"").expect("file");
        let f = std::fs::File::open(dir.path().join("f")).expect("open");
        assert!(matches!(list(&f), Err(ErrorCode::NotDirectory)));
    }

    #[test]
    fn the_sandbox_serves_this_listing() {
        // Sandbox::new fails when wasmtime-wasi's read-directory is not
        // where this module replaces it.
        super::super::Sandbox::new(None).expect("sandbox");
    }
}
