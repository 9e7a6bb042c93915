//! A bounded window on a previous catalog read forward, in the order it
//! was written (issue 12): what a re-run looks up instead of a map of the
//! whole catalog, so that its memory does not grow with the tree.
//!
//! A re-run walks its source in nearly the order the previous backup did,
//! so a lookup mostly finds its item among those just read, or a little
//! further on. The window keeps the latest records read (at most
//! `ahead + behind` of them) and reads on only as far as a lookup needs:
//! - a catalog whose ids come in component order (ids compared as their
//!   `/`-separated parts, the order of a walk that lists each directory
//!   sorted) is read on until it passes the id looked up: an id it has
//!   passed without holding is not there, so an insertion costs nothing
//!   and a deletion of any size only skips records. A walk in that order
//!   looks nothing up behind what it found last, so such a window keeps
//!   at most [`SORTED_BEHIND`] records behind the furthest found, besides
//!   the few read past it: a re-run of a large tree then holds a few
//!   thousand records, not `ahead + behind`;
//! - any other catalog is read at most `ahead` records past the furthest
//!   record found so far.
//!
//! A miss is always safe: the caller treats the item as new (the runner
//! reads it again) or looks it up another way (the host checks the
//! catalog on disk). Ids are compared bytewise; a catalog that holds an id
//! twice answers with the later record.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};

/// Records a window keeps past the furthest one found, by default.
pub const AHEAD: usize = 1 << 14;
/// Records a window keeps behind the furthest one found, by default.
pub const BEHIND: usize = 1 << 14;

/// Records a window on a catalog in component order keeps behind the
/// furthest one found (or `behind`, when that is less): enough for a walk
/// that looks an item up again after a few others.
pub const SORTED_BEHIND: usize = 1 << 10;

/// The next records of a catalog, each as its id and what a window keeps
/// of it; `None` at the catalog's end.
pub type Batch<T> = Option<Vec<(String, T)>>;

/// The window; `T` is what it keeps of each record besides its id.
pub struct Window<T> {
    /// Records read, oldest first; the front one is number `first`.
    entries: VecDeque<(String, T)>,
    /// Each id's number.
    seqs: HashMap<String, u64>,
    first: u64,
    /// One past the furthest record found.
    horizon: u64,
    ahead: u64,
    cap: usize,
    /// What is kept behind the horizon while `sorted`.
    sorted_behind: u64,
    /// Whether every id so far came after the one before it in component
    /// order.
    sorted: bool,
    ended: bool,
}

/// Whether `a` comes before `b` in component order: compared as their
/// `/`-separated parts, so that a directory's items come right after it
/// (`/a/b` < `/a/b/c` < `/a/b.c`, where bytewise `/a/b.c` < `/a/b/c`).
pub fn component_cmp(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

impl<T> Window<T> {
    /// A window reading at most `ahead` past the furthest record found
    /// and keeping at most `ahead + behind` records.
    pub fn new(ahead: usize, behind: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            seqs: HashMap::new(),
            first: 0,
            horizon: 0,
            ahead: ahead.max(1) as u64,
            cap: ahead.max(1) + behind,
            sorted_behind: behind.min(SORTED_BEHIND) as u64,
            sorted: true,
            ended: false,
        }
    }

    /// Records read so far.
    fn read(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// The record of `id`, reading on with `more` (the next records, or
    /// `None` at the catalog's end) as far as the window allows. `None`
    /// when the window does not hold it: the catalog lacks it, or it lies
    /// outside the window.
    pub fn find<E>(
        &mut self,
        id: &str,
        more: &mut dyn FnMut() -> Result<Batch<T>, E>,
    ) -> Result<Option<&T>, E> {
        loop {
            if let Some(&seq) = self.seqs.get(id) {
                self.horizon = self.horizon.max(seq + 1);
                let at = usize::try_from(seq - self.first).unwrap_or(usize::MAX);
                return Ok(self.entries.get(at).map(|(_, t)| t));
            }
            if self.ended {
                return Ok(None);
            }
            if self.sorted {
                // Passed without being found: not there.
                if let Some((last, _)) = self.entries.back() {
                    if component_cmp(id, last) != Ordering::Greater {
                        return Ok(None);
                    }
                }
            } else if self.read() >= self.horizon + self.ahead {
                return Ok(None);
            }
            match more()? {
                Some(batch) => {
                    for (k, v) in batch {
                        self.push(k, v);
                    }
                }
                None => self.ended = true,
            }
        }
    }

    fn push(&mut self, id: String, t: T) {
        if self.sorted {
            if let Some((last, _)) = self.entries.back() {
                if component_cmp(&id, last) != Ordering::Greater {
                    // From here on, a bounded look-ahead from here.
                    self.sorted = false;
                    self.horizon = self.horizon.max(self.read());
                }
            }
        }
        let seq = self.read();
        self.seqs.insert(id.clone(), seq);
        self.entries.push_back((id, t));
        while self.entries.len() > self.cap
            || (self.sorted && self.first + self.sorted_behind < self.horizon)
        {
            let Some((old, _)) = self.entries.pop_front() else {
                break;
            };
            if self.seqs.get(&old) == Some(&self.first) {
                self.seqs.remove(&old);
            }
            self.first += 1;
        }
    }

    /// Whether the catalog was read to its end.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Records held now (at most `ahead + behind`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// A source handing out `ids` in batches of `batch`, counting reads.
    fn source(
        ids: Vec<String>,
        batch: usize,
    ) -> impl FnMut() -> Result<Option<Vec<(String, usize)>>, Infallible> {
        let mut at = 0;
        move || {
            if at >= ids.len() {
                return Ok(None);
            }
            let end = (at + batch).min(ids.len());
            let out = (at..end).map(|i| (ids[i].clone(), i)).collect();
            at = end;
            Ok(Some(out))
        }
    }

    fn sorted_ids(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("/t/d{:03}/f{:03}", i / 100, i % 100))
            .collect()
    }

    #[test]
    fn component_order_puts_a_directory_before_its_neighbours() {
        assert_eq!(component_cmp("/a/b", "/a/b/c"), Ordering::Less);
        assert_eq!(component_cmp("/a/b/c", "/a/b.c"), Ordering::Less);
        assert_eq!(component_cmp("/a/b.c", "/a/b/c"), Ordering::Greater);
        assert_eq!(component_cmp("/a", "/a"), Ordering::Equal);
    }

    #[test]
    fn a_sorted_catalog_is_found_across_insertions_and_deletions_of_any_size() {
        let ids = sorted_ids(100_000);
        let mut w = Window::new(64, 64);
        let mut more = source(ids.clone(), 7);
        // The walk: every tenth item deleted, 5,000 in a row gone, new ids
        // in between; each found is found twice (previous, then unchanged).
        for (i, id) in ids.iter().enumerate() {
            if i % 10 == 3 || (40_000..45_000).contains(&i) {
                continue;
            }
            let new = format!("{id}.new");
            assert_eq!(w.find(&new, &mut more).unwrap(), None);
            assert_eq!(w.find(id, &mut more).unwrap(), Some(&i), "{id}");
            assert_eq!(w.find(id, &mut more).unwrap(), Some(&i), "{id}");
            assert!(w.len() <= 128);
        }
        assert_eq!(w.find("/zzz", &mut more).unwrap(), None);
        assert!(w.ended());
    }

    /// Issue 12: a re-run of a tree in component order holds a bounded
    /// few records behind what it found, whatever the window's size, and
    /// still finds what it looks up again shortly after.
    #[test]
    fn a_sorted_catalog_keeps_little_behind_what_was_found() {
        let ids = sorted_ids(100_000);
        let mut w = Window::new(AHEAD, BEHIND);
        let mut more = source(ids.clone(), 64);
        let mut most = 0;
        for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 7 != 0) {
            assert_eq!(w.find(id, &mut more).unwrap(), Some(&i), "{id}");
            most = most.max(w.len());
            if i >= 1_000 && i % 1_000 == 1 {
                // A few hundred back: still held.
                assert_eq!(w.find(&ids[i - 500], &mut more).unwrap(), Some(&(i - 500)));
            }
        }
        assert!(most <= SORTED_BEHIND + 64 + 1, "held {most}");
        // Far behind: not held any more, a miss (the caller reads it anew).
        assert_eq!(w.find(&ids[90_000], &mut more).unwrap(), None);
        // A catalog out of order keeps the whole window from then on.
        let mut ids = sorted_ids(100_000);
        ids.swap(10, 11);
        let mut w = Window::new(AHEAD, BEHIND);
        let mut more = source(ids.clone(), 64);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(w.find(id, &mut more).unwrap(), Some(&i), "{id}");
        }
        assert_eq!(w.len(), AHEAD + BEHIND);
        assert_eq!(
            w.find(&ids[100_000 - AHEAD], &mut more).unwrap(),
            Some(&(100_000 - AHEAD))
        );
    }

    #[test]
    fn an_unsorted_catalog_is_found_within_the_window_and_missed_beyond_it() {
        // Reversed in blocks of 50: not in component order.
        let mut ids = sorted_ids(10_000);
        for c in ids.chunks_mut(50) {
            c.reverse();
        }
        let mut w = Window::new(200, 200);
        let mut more = source(ids.clone(), 10);
        // Walked in sorted order: each block's items lie within reach.
        for id in sorted_ids(10_000) {
            let want = ids.iter().position(|x| *x == id).unwrap();
            assert_eq!(w.find(&id, &mut more).unwrap(), Some(&want), "{id}");
            assert!(w.len() <= 400);
        }
        // A record 1,000 further than anything found yet is out of reach,
        // and a miss reads no further than the look-ahead.
        let mut w = Window::new(200, 200);
        let mut more = source(ids.clone(), 10);
        assert_eq!(w.find(&ids[0], &mut more).unwrap(), Some(&0));
        assert_eq!(w.find(&ids[1_000], &mut more).unwrap(), None);
        assert!(w.read() <= 1 + 200 + 10, "{}", w.read());
        assert_eq!(w.find(&ids[150], &mut more).unwrap(), Some(&150));
        assert_eq!(w.find(&ids[300], &mut more).unwrap(), Some(&300));
        // Far behind: evicted.
        for i in (400..2_000).step_by(150) {
            assert_eq!(w.find(&ids[i], &mut more).unwrap(), Some(&i));
        }
        assert_eq!(w.find(&ids[0], &mut more).unwrap(), None);
    }

    #[test]
    fn an_error_of_the_source_is_the_lookups_error() {
        let mut w: Window<()> = Window::new(4, 4);
        let mut more = || -> Result<Batch<()>, String> { Err("bad line".into()) };
        assert_eq!(w.find("/a", &mut more), Err("bad line".into()));
    }
}
