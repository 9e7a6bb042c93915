//! `attache:plugin/posix`: the POSIX metadata WASI 0.2 lacks, on descriptors
//! the plugin already holds. Paths are resolved with cap-std's sandboxing,
//! exactly as WASI resolves them, so this interface reaches nothing more.

use std::path::Path;

use cap_primitives::fs::{FollowSymlinks, MetadataExt};
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::sync::filesystem::types::ErrorCode;

use super::bindings::attache::plugin::posix::{Host, Stat};
use super::bindings::attache::plugin::types::Timestamp;
use super::State;

impl Host for State {
    fn readlink_at(
        &mut self,
        dir: Resource<Descriptor>,
        name: String,
    ) -> wasmtime::Result<Result<String, ErrorCode>> {
        let (d, _) = match dir_of(self, &dir)? {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        if !plain_name(&name) {
            return Ok(Err(ErrorCode::Invalid));
        }
        Ok(
            match rustix::fs::readlinkat(d.as_ref(), name.as_str(), Vec::new()) {
                Ok(t) => t.into_string().map_err(|_| ErrorCode::IllegalByteSequence),
                Err(e) => Err(error_code(&e.into())),
            },
        )
    }

    fn symlink_at(
        &mut self,
        dir: Resource<Descriptor>,
        name: String,
        target: String,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        let (d, writable) = match dir_of(self, &dir)? {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        if !writable {
            return Ok(Err(ErrorCode::NotPermitted));
        }
        if !plain_name(&name) || target.is_empty() || target.contains('\0') {
            return Ok(Err(ErrorCode::Invalid));
        }
        Ok(
            rustix::fs::symlinkat(target.as_str(), d.as_ref(), name.as_str())
                .map_err(|e| error_code(&e.into())),
        )
    }

    fn stat_at(
        &mut self,
        dir: Resource<Descriptor>,
        path: String,
        follow: bool,
    ) -> wasmtime::Result<Result<Stat, ErrorCode>> {
        let d = match self.table.get(&dir)? {
            Descriptor::Dir(d) => d,
            Descriptor::File(_) => return Ok(Err(ErrorCode::NotDirectory)),
        };
        let follow = if follow {
            FollowSymlinks::Yes
        } else {
            FollowSymlinks::No
        };
        Ok(cap_primitives::fs::stat(&d.dir, Path::new(&path), follow)
            .map(|m| to_stat(&m))
            .map_err(|e| error_code(&e)))
    }

    fn fstat(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<Result<Stat, ErrorCode>> {
        let file = match self.table.get(&fd)? {
            Descriptor::Dir(d) => &d.dir,
            Descriptor::File(f) => &f.file,
        };
        Ok(cap_primitives::fs::Metadata::from_file(file)
            .map(|m| to_stat(&m))
            .map_err(|e| error_code(&e)))
    }

    fn set_mode(
        &mut self,
        fd: Resource<Descriptor>,
        mode: u32,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        let file = match owned_fd(self, &fd)? {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let mode = rustix::fs::Mode::from_raw_mode(mode & 0o7777);
        Ok(rustix::fs::fchmod(file.as_ref(), mode).map_err(|e| error_code(&e.into())))
    }

    fn set_owner(
        &mut self,
        fd: Resource<Descriptor>,
        uid: u32,
        gid: u32,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        let file = match owned_fd(self, &fd)? {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let r = rustix::fs::fchown(
            file.as_ref(),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        );
        Ok(r.map_err(|e| error_code(&e.into())))
    }

    fn set_owner_at(
        &mut self,
        dir: Resource<Descriptor>,
        path: String,
        uid: u32,
        gid: u32,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        if !self.ownership {
            return Ok(Err(ErrorCode::NotPermitted));
        }
        let d = match self.table.get(&dir)? {
            Descriptor::Dir(d) => d,
            Descriptor::File(_) => return Ok(Err(ErrorCode::NotDirectory)),
        };
        if d.perms.write_not_permitted() {
            return Ok(Err(ErrorCode::NotPermitted));
        }
        // One plain name relative to a directory the plugin holds: nothing to
        // resolve, so nothing to escape through.
        if path.is_empty()
            || path == "."
            || path == ".."
            || path.contains('/')
            || path.contains('\0')
        {
            return Ok(Err(ErrorCode::Invalid));
        }
        let r = rustix::fs::chownat(
            d.dir.as_ref(),
            path.as_str(),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
        Ok(r.map_err(|e| error_code(&e.into())))
    }
}

/// The file behind a descriptor whose owner or mode the plugin may change:
/// the plan asked for ownership and the descriptor is writable.
fn owned_fd<'a>(
    state: &'a State,
    fd: &Resource<Descriptor>,
) -> wasmtime::Result<Result<&'a std::sync::Arc<std::fs::File>, ErrorCode>> {
    if !state.ownership {
        return Ok(Err(ErrorCode::NotPermitted));
    }
    let (file, perms) = match state.table.get(fd)? {
        Descriptor::Dir(d) => (&d.dir, d.perms),
        Descriptor::File(f) => (&f.file, f.perms),
    };
    Ok(if perms.write_not_permitted() {
        Err(ErrorCode::NotPermitted)
    } else {
        Ok(file)
    })
}

/// The contract's stat of cap-std metadata.
fn to_stat(m: &cap_primitives::fs::Metadata) -> Stat {
    Stat {
        dev: m.dev(),
        ino: m.ino(),
        mode: m.mode(),
        nlink: m.nlink(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        mtime: Timestamp {
            seconds: m.mtime(),
            nanoseconds: m.mtime_nsec() as u32,
        },
        ctime: Timestamp {
            seconds: m.ctime(),
            nanoseconds: m.ctime_nsec() as u32,
        },
    }
}

/// One plain name relative to a directory the plugin holds: nothing to
/// resolve, so nothing to escape through.
fn plain_name(name: &str) -> bool {
    !(name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0'))
}

/// The directory behind a descriptor, and whether it may be changed.
fn dir_of(
    state: &State,
    fd: &Resource<Descriptor>,
) -> wasmtime::Result<Result<(std::sync::Arc<std::fs::File>, bool), ErrorCode>> {
    Ok(match state.table.get(fd)? {
        Descriptor::Dir(d) => Ok((d.dir.clone(), !d.perms.write_not_permitted())),
        Descriptor::File(_) => Err(ErrorCode::NotDirectory),
    })
}

/// The WASI error code for an I/O error.
pub(crate) fn error_code(e: &std::io::Error) -> ErrorCode {
    use rustix::io::Errno;
    match e.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::NOENT) => ErrorCode::NoEntry,
        Some(Errno::ACCESS) => ErrorCode::Access,
        Some(Errno::PERM) => ErrorCode::NotPermitted,
        Some(Errno::LOOP) => ErrorCode::Loop,
        Some(Errno::NOTDIR) => ErrorCode::NotDirectory,
        Some(Errno::EXIST) => ErrorCode::Exist,
        Some(Errno::ISDIR) => ErrorCode::IsDirectory,
        Some(Errno::INVAL) => ErrorCode::Invalid,
        Some(Errno::NAMETOOLONG) => ErrorCode::NameTooLong,
        Some(Errno::NOSPC) => ErrorCode::InsufficientSpace,
        Some(Errno::ROFS) => ErrorCode::ReadOnly,
        Some(Errno::BADF) => ErrorCode::BadDescriptor,
        _ if e.kind() == std::io::ErrorKind::PermissionDenied => ErrorCode::NotPermitted,
        _ if e.kind() == std::io::ErrorKind::NotFound => ErrorCode::NoEntry,
        _ => ErrorCode::Io,
    }
}
