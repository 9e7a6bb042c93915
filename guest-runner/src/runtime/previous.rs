//! The previous backup's catalog as the backup sink consults it: complete
//! before the plugin starts, or still arriving while the plugin already
//! walks (issue 12). The catalog comes in backup order, the order a plugin
//! walks an unchanged source in again, so a lookup mostly finds its item
//! just read; one that is not there yet waits for the next lines, and an
//! item that is not in the catalog at all is known absent once it has been
//! read whole. A catalog that cannot be read fails every lookup that needs
//! what is missing, and the job.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::stream::ItemRecord;

/// A handle on the previous catalog; clones share it.
#[derive(Clone)]
pub struct Previous {
    shared: Arc<Shared>,
}

/// The reading side of a catalog still arriving: what it adds becomes
/// visible to lookups. Dropped without [`Feed::end`] (its reader panicked),
/// the catalog reads as failed.
pub struct Feed {
    shared: Arc<Shared>,
    ended: bool,
}

struct Shared {
    state: Mutex<Loading>,
    more: Condvar,
}

struct Loading {
    map: HashMap<String, ItemRecord>,
    done: bool,
    failed: Option<String>,
}

impl Previous {
    /// A catalog read whole already (or none: empty).
    pub fn complete(map: HashMap<String, ItemRecord>) -> Self {
        Self::new(map, true).0
    }

    /// A catalog still to come through the returned [`Feed`].
    pub fn arriving() -> (Self, Feed) {
        let (previous, shared) = Self::new(HashMap::new(), false);
        (
            previous,
            Feed {
                shared,
                ended: false,
            },
        )
    }

    fn new(map: HashMap<String, ItemRecord>, done: bool) -> (Self, Arc<Shared>) {
        let shared = Arc::new(Shared {
            state: Mutex::new(Loading {
                map,
                done,
                failed: None,
            }),
            more: Condvar::new(),
        });
        (
            Self {
                shared: shared.clone(),
            },
            shared,
        )
    }

    /// The previous version of `id`, waiting while the catalog is still
    /// arriving and `id` is not in it yet. An error when the catalog could
    /// not be read to where it would say.
    pub fn get(&self, id: &str) -> Result<Option<ItemRecord>, String> {
        self.find(id, |r| r.cloned())
    }

    /// Whether the catalog has `id`, waiting as [`Self::get`] does.
    pub fn contains(&self, id: &str) -> Result<bool, String> {
        self.find(id, |r| r.is_some())
    }

    fn find<T>(&self, id: &str, f: impl FnOnce(Option<&ItemRecord>) -> T) -> Result<T, String> {
        let mut st = self.shared.lock();
        loop {
            if let Some(r) = st.map.get(id) {
                return Ok(f(Some(r)));
            }
            if let Some(why) = &st.failed {
                return Err(why.clone());
            }
            if st.done {
                return Ok(f(None));
            }
            st = self.shared.more.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits for the whole catalog; an error when it could not be read.
    pub fn finished(&self) -> Result<(), String> {
        let mut st = self.shared.lock();
        while !st.done {
            st = self.shared.more.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.failed.clone().map_or(Ok(()), Err)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Loading> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Feed {
    /// Adds records read; lookups waiting for them go on.
    pub fn add(&self, records: Vec<ItemRecord>) {
        if records.is_empty() {
            return;
        }
        let mut st = self.shared.lock();
        for r in records {
            st.map.insert(r.id.clone(), r);
        }
        drop(st);
        self.shared.more.notify_all();
    }

    /// The catalog is read whole, or could not be, and why.
    pub fn end(mut self, result: Result<(), String>) {
        self.ended = true;
        self.close(result.err());
    }

    fn close(&self, failed: Option<String>) {
        let mut st = self.shared.lock();
        st.done = true;
        st.failed = failed;
        drop(st);
        self.shared.more.notify_all();
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if !self.ended {
            self.close(Some("reading the previous catalog stopped".into()));
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
        feed.add(vec![rec("/a")]);
        feed.add(vec![rec("/b")]);
        feed.end(Ok(()));
        let (b, absent) = walker.join().unwrap();
        assert_eq!(b, Ok(Some("/b".to_owned())));
        assert_eq!(absent, Ok(false));
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
}
