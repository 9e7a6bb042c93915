//! A mock runner for a plugin's native `cargo test` (native targets only).
//!
//! The SDK's façades ([`crate::sink`], [`crate::source`], [`crate::host`])
//! reach the runner through imports that exist only inside a WebAssembly
//! component. Natively they come here instead: a test sets up a
//! [`MockHost`] with the previous backup's metadata and the items a restore
//! reads, runs a plugin call inside [`MockHost::run`], and inspects what
//! was emitted, warned and logged.
//!
//! ```ignore
//! let mut host = MockHost::new().restoring(Item::new("kv:///s.kv#a", ItemKind::Blob, Meta::new(1)), b"1");
//! let summary = host.run(|| MyPlugin::restore(request))?;
//! assert_eq!(host.emitted().len(), 0);
//! ```
//!
//! What it cannot do: WASI descriptors do not exist natively, so
//! [`crate::preopens::all`] is empty, `ItemData::File`,
//! [`crate::sink::Writer::write_file`] and [`crate::source::Content::copy_to`]
//! are unavailable (the last two return an error), and the raw WASI and
//! `posix` imports abort the test. Test file-handling code through the
//! runner (`attache plugin test`), and the rest here.
//!
//! Like the runner, the mock refuses ids the contract forbids (empty, NUL,
//! `.`/`..`/empty components in a path-like id), a hard link before the
//! item it names, and a second item begun while one is open.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use crate::wasi::filesystem::types::Descriptor;
use crate::{Item, ItemData, ItemKind, ItemMetadata, Level, PluginError};

/// A mock runner: what a plugin call will find, and what it did.
#[derive(Default)]
pub struct MockHost {
    state: State,
}

/// What the mock holds while a call runs.
#[derive(Default)]
struct State {
    previous: HashMap<String, ItemMetadata>,
    to_restore: VecDeque<(Item, Vec<u8>)>,
    emitted: Vec<Emitted>,
    warnings: Vec<Warning>,
    logs: Vec<(Level, String)>,
    progress: Option<Progress>,
    writer_open: bool,
}

/// One item a backup emitted, with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// The item as emitted (for a written item, its size is what was
    /// written, as the runner records it).
    pub item: Item,
    /// Its content.
    pub data: Data,
}

impl Emitted {
    /// The content's bytes, for inline or written content.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.data {
            Data::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// The content of an emitted item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// No content.
    None,
    /// Inline content, or content written and finished.
    Bytes(Vec<u8>),
    /// Marked unchanged since the previous backup.
    Unchanged,
    /// A file descriptor (cannot occur natively; listed for completeness).
    Descriptor,
    /// Content written but never finished: the item failed.
    Aborted(Vec<u8>),
}

/// A warning a plugin recorded on an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The item's id.
    pub id: String,
    /// What went wrong.
    pub message: String,
}

/// The last progress a plugin reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Items done.
    pub items_done: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Items in all, if known.
    pub items_total: Option<u64>,
    /// Bytes in all, if known.
    pub bytes_total: Option<u64>,
}

thread_local! {
    static CURRENT: RefCell<Option<State>> = const { RefCell::new(None) };
}

impl MockHost {
    /// A mock with no previous backup and nothing to restore.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `sink::previous(id)` return `metadata`.
    pub fn previous(mut self, id: &str, metadata: ItemMetadata) -> Self {
        self.state.previous.insert(id.to_owned(), metadata);
        self
    }

    /// Adds an item for `source::next` to yield, with its content, after
    /// those added before.
    pub fn restoring(mut self, item: Item, content: &[u8]) -> Self {
        self.state.to_restore.push_back((item, content.to_vec()));
        self
    }

    /// Runs `call` (a plugin function) with this mock as its runner, on
    /// this thread. What the call does is kept for inspection, also when
    /// it panics.
    pub fn run<R>(&mut self, call: impl FnOnce() -> R) -> R {
        struct Installed<'a>(&'a mut MockHost);
        impl Drop for Installed<'_> {
            fn drop(&mut self) {
                if let Some(state) = CURRENT.with(|c| c.borrow_mut().take()) {
                    self.0.state = state;
                }
            }
        }
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            assert!(c.is_none(), "a MockHost is already running on this thread");
            *c = Some(std::mem::take(&mut self.state));
        });
        let _installed = Installed(self);
        call()
    }

    /// The items emitted, in order.
    pub fn emitted(&self) -> &[Emitted] {
        &self.state.emitted
    }

    /// The last item emitted with this id.
    pub fn item(&self, id: &str) -> Option<&Emitted> {
        self.state.emitted.iter().rev().find(|e| e.item.id == id)
    }

    /// Warnings recorded through `sink::warn` or `source::warn`, in order.
    pub fn warnings(&self) -> &[Warning] {
        &self.state.warnings
    }

    /// Log lines, in order.
    pub fn logs(&self) -> &[(Level, String)] {
        &self.state.logs
    }

    /// The last progress reported.
    pub fn progress(&self) -> Option<Progress> {
        self.state.progress
    }

    /// How many items to restore `source::next` has not yet yielded.
    pub fn unread(&self) -> usize {
        self.state.to_restore.len()
    }
}

/// Runs `f` on the running mock; panics with a hint when there is none.
fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    CURRENT.with(|c| match c.borrow_mut().as_mut() {
        Some(state) => f(state),
        None => panic!(
            "a plugin called the runner outside attache_plugin_sdk::mock::MockHost::run; \
             natively, run plugin calls inside a MockHost"
        ),
    })
}

/// Runs `f` on the running mock, if any.
fn try_with(f: impl FnOnce(&mut State)) -> bool {
    CURRENT.with(|c| match c.borrow_mut().as_mut() {
        Some(state) => {
            f(state);
            true
        }
        None => false,
    })
}

pub(crate) fn log(level: Level, message: &str) {
    if !try_with(|s| s.logs.push((level, message.to_owned()))) {
        eprintln!("[{level:?}] {message}");
    }
}

pub(crate) fn progress(
    items_done: u64,
    bytes_done: u64,
    items_total: Option<u64>,
    bytes_total: Option<u64>,
) {
    try_with(|s| {
        s.progress = Some(Progress {
            items_done,
            bytes_done,
            items_total,
            bytes_total,
        })
    });
}

pub(crate) fn previous(id: &str) -> Option<ItemMetadata> {
    with(|s| s.previous.get(id).cloned())
}

/// The runner's checks on an emitted item.
fn check(s: &State, item: &Item) -> Result<(), PluginError> {
    let bad = |why: &str| {
        Err(PluginError::transport(format!(
            "item id {:?} {why}",
            item.id
        )))
    };
    if item.id.is_empty() {
        return bad("is empty");
    }
    if item.id.contains('\0') {
        return bad("contains NUL");
    }
    if let Some(rest) = item.id.strip_prefix('/') {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if !rest.is_empty()
            && rest
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return bad("has a '.', '..' or empty component");
        }
    }
    if item.kind == ItemKind::Hardlink {
        let target = item.metadata.hardlink_target.as_deref().unwrap_or_default();
        if !s.emitted.iter().any(|e| e.item.id == target) {
            return bad("is a hard link to an item not emitted before it");
        }
    }
    if s.writer_open {
        return Err(PluginError::transport(
            "an item is still being written; finish it first",
        ));
    }
    Ok(())
}

pub(crate) fn emit(item: &Item, data: &ItemData<'_>) -> Result<(), PluginError> {
    with(|s| {
        check(s, item)?;
        let data = match data {
            ItemData::None => Data::None,
            ItemData::Inline(b) => Data::Bytes(b.clone()),
            ItemData::File(_) => Data::Descriptor,
            ItemData::Unchanged => Data::Unchanged,
        };
        s.emitted.push(Emitted {
            item: item.clone(),
            data,
        });
        Ok(())
    })
}

pub(crate) fn begin(item: &Item) -> Result<MockWriter, PluginError> {
    with(|s| {
        check(s, item)?;
        s.writer_open = true;
        Ok(MockWriter {
            item: item.clone(),
            buf: RefCell::new(Vec::new()),
            done: Cell::new(false),
        })
    })
}

pub(crate) fn sink_warn(id: &str, message: &str) {
    with(|s| warn(s, id, message));
}

pub(crate) fn source_warn(id: &str, message: &str) {
    with(|s| warn(s, id, message));
}

fn warn(s: &mut State, id: &str, message: &str) {
    s.warnings.push(Warning {
        id: id.to_owned(),
        message: message.to_owned(),
    });
}

pub(crate) fn next() -> Result<Option<(Item, MockContent)>, PluginError> {
    Ok(with(|s| s.to_restore.pop_front()).map(|(item, bytes)| {
        (
            item,
            MockContent {
                bytes,
                pos: Cell::new(0),
            },
        )
    }))
}

fn no_descriptors(what: &str) -> PluginError {
    PluginError::other(format!(
        "{what} needs a WASI descriptor, which the native mock host cannot provide"
    ))
}

/// The mock's side of [`crate::sink::Writer`].
#[derive(Debug)]
pub struct MockWriter {
    item: Item,
    buf: RefCell<Vec<u8>>,
    done: Cell<bool>,
}

impl MockWriter {
    pub(crate) fn write(&self, bytes: &[u8]) -> Result<(), PluginError> {
        self.buf.borrow_mut().extend_from_slice(bytes);
        Ok(())
    }

    pub(crate) fn write_file(
        &self,
        _fd: &Descriptor,
        _offset: u64,
        _length: u64,
    ) -> Result<u64, PluginError> {
        Err(no_descriptors("write-file"))
    }

    pub(crate) fn finish(self) -> Result<u64, PluginError> {
        self.done.set(true);
        let bytes = self.buf.take();
        let size = bytes.len() as u64;
        let mut item = self.item.clone();
        item.metadata.size = size;
        with(|s| {
            s.writer_open = false;
            s.emitted.push(Emitted {
                item,
                data: Data::Bytes(bytes),
            });
        });
        Ok(size)
    }
}

impl Drop for MockWriter {
    fn drop(&mut self) {
        if self.done.get() {
            return;
        }
        let bytes = self.buf.take();
        let item = self.item.clone();
        try_with(|s| {
            s.writer_open = false;
            s.emitted.push(Emitted {
                item,
                data: Data::Aborted(bytes),
            });
        });
    }
}

/// The mock's side of [`crate::source::Content`].
#[derive(Debug)]
pub struct MockContent {
    bytes: Vec<u8>,
    pos: Cell<usize>,
}

impl MockContent {
    pub(crate) fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos.get()) as u64
    }

    pub(crate) fn read(&self, max: u32) -> Result<Vec<u8>, PluginError> {
        let start = self.pos.get();
        let end = self
            .bytes
            .len()
            .min(start.saturating_add(usize::try_from(max).unwrap_or(usize::MAX)));
        self.pos.set(end);
        Ok(self.bytes[start..end].to_vec())
    }

    pub(crate) fn copy_to(&self, _fd: &Descriptor) -> Result<u64, PluginError> {
        Err(no_descriptors("copy-to"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sink, source, Meta};

    #[test]
    fn records_a_backup() {
        let mut host = MockHost::new().previous("a", Meta::new(1).token("t"));
        let r = host.run(|| -> Result<(), PluginError> {
            assert!(sink::previous("a").is_some());
            assert!(sink::previous("b").is_none());
            sink::emit(
                &Item::new("a", ItemKind::Blob, Meta::new(2)),
                &ItemData::Inline(b"hi".to_vec()),
            )?;
            let w = sink::begin(&Item::new("b", ItemKind::Blob, Meta::new(0)))?;
            assert!(sink::emit(
                &Item::new("c", ItemKind::Blob, Meta::new(0)),
                &ItemData::None
            )
            .is_err());
            w.write(b"abc")?;
            assert_eq!(w.finish()?, 3);
            drop(sink::begin(&Item::new("d", ItemKind::Blob, Meta::new(0)))?);
            sink::warn("e", "unreadable");
            crate::host::info("done");
            crate::host::progress(2, 5, None, None);
            assert!(sink::emit(
                &Item::new("/a/../b", ItemKind::File, Meta::new(0)),
                &ItemData::None
            )
            .is_err());
            Ok(())
        });
        assert_eq!(r, Ok(()));
        assert_eq!(host.item("a").and_then(Emitted::bytes), Some(&b"hi"[..]));
        assert_eq!(host.item("b").map(|e| e.item.metadata.size), Some(3));
        assert_eq!(
            host.item("d").map(|e| &e.data),
            Some(&Data::Aborted(vec![]))
        );
        assert_eq!(host.warnings()[0].id, "e");
        assert_eq!(host.logs()[0], (Level::Info, "done".to_string()));
        assert_eq!(host.progress().map(|p| p.bytes_done), Some(5));
    }

    #[test]
    fn feeds_a_restore() {
        let mut host = MockHost::new()
            .restoring(Item::new("x", ItemKind::Blob, Meta::new(3)), b"xyz")
            .restoring(Item::new("y", ItemKind::Blob, Meta::new(0)), b"");
        let got = host.run(|| {
            let mut got = Vec::new();
            while let Some((item, content)) = source::next()? {
                assert_eq!(content.remaining(), item.metadata.size);
                got.push((item.id, content.read_all()?));
            }
            Ok::<_, PluginError>(got)
        });
        assert_eq!(
            got,
            Ok(vec![
                ("x".to_string(), b"xyz".to_vec()),
                ("y".to_string(), vec![])
            ])
        );
        assert_eq!(host.unread(), 0);
    }
}
