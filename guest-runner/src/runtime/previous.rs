//! The previous backup's catalog as the backup sink consults it: complete
//! before the plugin starts (a map), or read forward while the plugin
//! walks, through a bounded [`Window`] (issue 12), so that the runner's
//! memory does not grow with the catalog. The catalog comes in backup
//! order, the order a plugin walks an unchanged source in again, so a
//! lookup mostly finds its item among those just read; one the window
//! does not hold reads as absent, and the plugin reads that item again,
//! which is always correct. A catalog that cannot be read fails every
//! lookup that needs what is missing, and the job.
//!
//! The reading side ([`Feed`]) parses on a thread of its own and hands
//! over batches through a channel of a few batches: it waits while the
//! lookups have not taken what it read.

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::stream::ItemRecord;
use crate::window::{Window, AHEAD, BEHIND};

/// Batches read ahead of the lookups.
const BATCHES: usize = 4;

/// A handle on the previous catalog; clones share it.
#[derive(Clone)]
pub struct Previous {
    shared: Arc<Mutex<Source>>,
}

/// The reading side of a catalog still arriving. Dropped without
/// [`Feed::end`] (its reader panicked), the catalog reads as failed.
pub struct Feed {
    tx: SyncSender<Msg>,
    ended: bool,
}

enum Msg {
    Records(Vec<ItemRecord>),
    End(Result<(), String>),
}

enum Source {
    Complete(HashMap<String, ItemRecord>),
    Arriving {
        /// Records without their ids, which the window holds.
        window: Window<ItemRecord>,
        rx: Receiver<Msg>,
        /// Set once the reader has said how it ended.
        end: Option<Result<(), String>>,
    },
}

const STOPPED: &str = "reading the previous catalog stopped";

impl Source {
    /// The next batch for the window: `None` at the catalog's end, an
    /// error when it could not be read.
    fn next(
        rx: &Receiver<Msg>,
        end: &mut Option<Result<(), String>>,
    ) -> Result<Option<Vec<(String, ItemRecord)>>, String> {
        if let Some(e) = end {
            return e.clone().map(|()| None);
        }
        let msg = rx.recv().unwrap_or(Msg::End(Err(STOPPED.into())));
        match msg {
            Msg::Records(rs) => Ok(Some(
                rs.into_iter()
                    .map(|mut r| (std::mem::take(&mut r.id), r))
                    .collect(),
            )),
            Msg::End(r) => {
                *end = Some(r.clone());
                r.map(|()| None)
            }
        }
    }
}

impl Previous {
    /// A catalog read whole already (or none: empty).
    pub fn complete(map: HashMap<String, ItemRecord>) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Source::Complete(map))),
        }
    }

    /// A catalog still to come through the returned [`Feed`], looked up
    /// through a window of the default size.
    pub fn arriving() -> (Self, Feed) {
        Self::arriving_within(AHEAD, BEHIND)
    }

    /// [`Self::arriving`] with a window of `ahead` and `behind` records.
    pub fn arriving_within(ahead: usize, behind: usize) -> (Self, Feed) {
        let (tx, rx) = sync_channel(BATCHES);
        (
            Self {
                shared: Arc::new(Mutex::new(Source::Arriving {
                    window: Window::new(ahead, behind),
                    rx,
                    end: None,
                })),
            },
            Feed { tx, ended: false },
        )
    }

    fn lock(&self) -> MutexGuard<'_, Source> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The previous version of `id` (`None` when the catalog lacks it, or
    /// it lies outside the window), reading on as far as the window goes.
    /// An error when the catalog could not be read to where it would say.
    pub fn get(&self, id: &str) -> Result<Option<ItemRecord>, String> {
        self.find(id, |r| {
            r.map(|r| {
                let mut r = r.clone();
                r.id = id.to_owned();
                r
            })
        })
    }

    /// Whether the catalog has `id`, as [`Self::get`] finds it.
    pub fn contains(&self, id: &str) -> Result<bool, String> {
        self.find(id, |r| r.is_some())
    }

    fn find<T>(&self, id: &str, f: impl FnOnce(Option<&ItemRecord>) -> T) -> Result<T, String> {
        match &mut *self.lock() {
            Source::Complete(map) => Ok(f(map.get(id))),
            Source::Arriving { window, rx, end } => {
                let found = window.find(id, &mut || Source::next(rx, end))?;
                Ok(f(found))
            }
        }
    }

    /// Reads the rest of the catalog (what the lookups did not need is
    /// dropped as it comes); an error when it could not be read.
    pub fn finished(&self) -> Result<(), String> {
        match &mut *self.lock() {
            Source::Complete(_) => Ok(()),
            Source::Arriving { rx, end, .. } => {
                while Source::next(rx, end)?.is_some() {}
                Ok(())
            }
        }
    }
}

impl Feed {
    /// Adds records read, waiting while the lookups are a few batches
    /// behind. `false` once nothing will take them any more (the backup
    /// has ended): the reader can stop.
    pub fn add(&self, records: Vec<ItemRecord>) -> bool {
        records.is_empty() || self.tx.send(Msg::Records(records)).is_ok()
    }

    /// The catalog is read whole, or could not be, and why.
    pub fn end(mut self, result: Result<(), String>) {
        self.ended = true;
        let _ = self.tx.send(Msg::End(result));
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.tx.try_send(Msg::End(Err(STOPPED.into())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::ItemKind;

    fn rec(id: &str) -> ItemRecord {
        ItemRecord::new(id, ItemKind::File, 1)
    }

    #[test]
    fn lookups_wait_for_what_is_still_arriving() {
        let (prev, feed) = Previous::arriving();
        let walker = {
            let prev = prev.clone();
            std::thread::spawn(move || {
                (
                    prev.get("/b").map(|r| r.map(|r| r.id)),
                    prev.contains("/absent"),
                )
            })
        };
        assert!(feed.add(vec![rec("/a")]));
        assert!(feed.add(vec![rec("/b")]));
        feed.end(Ok(()));
        let (b, absent) = walker.join().unwrap();
        assert_eq!(b, Ok(Some("/b".to_owned())));
        assert_eq!(absent, Ok(false));
        assert_eq!(
            prev.get("/a").map(|r| r.map(|r| r.id)),
            Ok(Some("/a".into()))
        );
        assert_eq!(prev.finished(), Ok(()));

        let done = Previous::complete(HashMap::from([("/x".to_owned(), rec("/x"))]));
        assert_eq!(done.contains("/x"), Ok(true));
        assert_eq!(done.get("/y"), Ok(None));
    }

    #[test]
    fn a_catalog_that_fails_fails_what_it_lacks() {
        let (prev, feed) = Previous::arriving();
        feed.add(vec![rec("/a")]);
        feed.end(Err("line 2: bad".into()));
        assert_eq!(prev.contains("/a"), Ok(true));
        assert_eq!(prev.get("/b"), Err("line 2: bad".into()));
        assert_eq!(prev.finished(), Err("line 2: bad".into()));

        // A reader that stops without a word fails it too.
        let (prev, feed) = Previous::arriving();
        drop(feed);
        assert!(prev.contains("/a").is_err());
        assert!(prev.finished().is_err());
    }

    #[test]
    fn the_reader_waits_for_the_lookups_and_stops_when_nobody_looks() {
        // A catalog far larger than the window and the channel: the reader
        // is held back, the lookups find what they walk to, and what they
        // skip is dropped.
        let (prev, feed) = Previous::arriving_within(8, 8);
        let reader = std::thread::spawn(move || {
            for i in 0..10_000 {
                if !feed.add(vec![rec(&format!("/t/f{i:05}"))]) {
                    return false;
                }
            }
            feed.end(Ok(()));
            true
        });
        for i in (0..10_000).step_by(3) {
            let id = format!("/t/f{i:05}");
            assert_eq!(prev.get(&id).unwrap().map(|r| r.id), Some(id.clone()));
            assert_eq!(prev.contains(&format!("{id}.new")), Ok(false));
        }
        assert_eq!(prev.finished(), Ok(()));
        assert!(reader.join().unwrap());

        // Nobody looks any more: the reader's next batch is refused.
        let (prev, feed) = Previous::arriving_within(8, 8);
        drop(prev);
        assert!(!feed.add(vec![rec("/a")]));
    }
}
