//! Which queued job starts next: the queue's scheduling, apart from its
//! threads so that it can be tested with fake jobs.
//!
//! A job needs a slot of everything it touches: the server's (global), its
//! target's (one VM, `local` or the repository), and for VM jobs its
//! hypervisor's and its datastore's. Jobs wait in lanes, one per
//! hypervisor (VM-less jobs share one lane); when slots free up the lanes
//! are served round-robin, and within a lane the oldest job that can start
//! starts (FIFO, skipping jobs whose VM or datastore is busy). So a fleet
//! run on one hypervisor cannot hold back another hypervisor's VMs, and a
//! VM's job waits behind at most one job of each other lane per turn:
//! none starves.

use std::collections::{BTreeMap, HashMap};

/// Concurrency limits (each at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub global: usize,
    pub per_target: usize,
    pub per_hypervisor: usize,
    pub per_datastore: usize,
}

impl Default for Limits {
    /// `attache serve`'s defaults.
    fn default() -> Self {
        Self {
            global: 4,
            per_target: 1,
            per_hypervisor: 2,
            per_datastore: 2,
        }
    }
}

/// What a job takes slots of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Needs {
    pub target: String,
    pub hypervisor: Option<String>,
    pub datastore: Option<String>,
}

impl Needs {
    fn lane(&self) -> &str {
        self.hypervisor.as_deref().unwrap_or("")
    }
}

/// Queued and running jobs, keyed by `K` (the queue's job ids).
#[derive(Debug, Clone)]
pub(crate) struct Fair<K> {
    limits: Limits,
    seq: u64,
    /// Lane -> (arrival, job) in arrival order.
    lanes: BTreeMap<String, Vec<(u64, K, Needs)>>,
    running: usize,
    targets: HashMap<String, usize>,
    hypervisors: HashMap<String, usize>,
    datastores: HashMap<String, usize>,
    /// The lane served last: the next turn starts after it.
    last_lane: Option<String>,
}

fn count(m: &HashMap<String, usize>, k: &str) -> usize {
    m.get(k).copied().unwrap_or(0)
}

fn add(m: &mut HashMap<String, usize>, k: &str, d: isize) {
    let v = m.entry(k.to_owned()).or_insert(0);
    *v = v.saturating_add_signed(d);
    if *v == 0 {
        m.remove(k);
    }
}

impl<K: Clone + PartialEq> Fair<K> {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                global: limits.global.max(1),
                per_target: limits.per_target.max(1),
                per_hypervisor: limits.per_hypervisor.max(1),
                per_datastore: limits.per_datastore.max(1),
            },
            seq: 0,
            lanes: BTreeMap::new(),
            running: 0,
            targets: HashMap::new(),
            hypervisors: HashMap::new(),
            datastores: HashMap::new(),
            last_lane: None,
        }
    }

    /// Queues a job.
    pub(crate) fn push(&mut self, key: K, needs: Needs) {
        self.seq += 1;
        self.lanes
            .entry(needs.lane().to_owned())
            .or_default()
            .push((self.seq, key, needs));
    }

    /// Takes a queued job out (cancelled before it started); whether it
    /// was queued.
    pub(crate) fn remove(&mut self, key: &K) -> bool {
        for jobs in self.lanes.values_mut() {
            if let Some(i) = jobs.iter().position(|(_, k, _)| k == key) {
                jobs.remove(i);
                self.lanes.retain(|_, v| !v.is_empty());
                return true;
            }
        }
        false
    }

    fn fits(&self, n: &Needs) -> bool {
        count(&self.targets, &n.target) < self.limits.per_target
            && n.hypervisor
                .as_ref()
                .is_none_or(|h| count(&self.hypervisors, h) < self.limits.per_hypervisor)
            && n.datastore
                .as_ref()
                .is_none_or(|d| count(&self.datastores, d) < self.limits.per_datastore)
    }

    fn take(&mut self, n: &Needs, d: isize) {
        self.running = self.running.saturating_add_signed(d);
        add(&mut self.targets, &n.target, d);
        if let Some(h) = &n.hypervisor {
            add(&mut self.hypervisors, h, d);
        }
        if let Some(ds) = &n.datastore {
            add(&mut self.datastores, ds, d);
        }
    }

    /// The next job to start, now counted as running; `None` when none
    /// can start (all slots it would need are taken) or none is queued.
    pub(crate) fn next(&mut self) -> Option<(K, Needs)> {
        if self.running >= self.limits.global {
            return None;
        }
        let names: Vec<String> = self.lanes.keys().cloned().collect();
        // Lanes after the last one served first, then the rest, in order.
        let start = match &self.last_lane {
            Some(l) => names.iter().position(|n| n > l).unwrap_or(0),
            None => 0,
        };
        for lane in names[start..].iter().chain(&names[..start]) {
            let jobs = &self.lanes[lane];
            let Some(i) = jobs.iter().position(|(_, _, n)| self.fits(n)) else {
                continue;
            };
            let jobs = self.lanes.get_mut(lane).expect("listed above");
            let (_, key, needs) = jobs.remove(i);
            if jobs.is_empty() {
                self.lanes.remove(lane);
            }
            self.take(&needs, 1);
            self.last_lane = Some(lane.clone());
            return Some((key, needs));
        }
        None
    }

    /// A job started by [`Fair::next`] has ended: its slots are free.
    pub(crate) fn done(&mut self, needs: &Needs) {
        self.take(needs, -1);
    }

    /// Jobs queued, and running.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.lanes.values().map(Vec::len).sum(), self.running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(hv: &str, vm: &str) -> Needs {
        Needs {
            target: format!("{hv}/{vm}"),
            hypervisor: Some(hv.into()),
            datastore: Some(format!("/ds/{hv}")),
        }
    }

    fn limits(global: usize, per_hv: usize) -> Limits {
        Limits {
            global,
            per_target: 1,
            per_hypervisor: per_hv,
            per_datastore: 8,
        }
    }

    /// Runs `jobs` to the end with a fake clock: every job takes
    /// `took(key)` ticks; returns (key, start, end) and checks the limits
    /// at every tick.
    fn simulate(
        l: Limits,
        jobs: Vec<(u32, Needs)>,
        took: impl Fn(u32) -> u64,
    ) -> Vec<(u32, u64, u64)> {
        let mut f = Fair::new(l);
        for (k, n) in &jobs {
            f.push(*k, n.clone());
        }
        let mut clock = 0u64;
        let mut running: Vec<(u32, Needs, u64, u64)> = Vec::new();
        let mut out = Vec::new();
        loop {
            while let Some((k, n)) = f.next() {
                running.push((k, n, clock, clock + took(k)));
            }
            assert!(running.len() <= l.global);
            let mut per_hv: HashMap<&str, usize> = HashMap::new();
            let mut per_target: HashMap<&str, usize> = HashMap::new();
            for (_, n, _, _) in &running {
                *per_hv
                    .entry(n.hypervisor.as_deref().unwrap_or(""))
                    .or_default() += 1;
                *per_target.entry(&n.target).or_default() += 1;
            }
            assert!(
                per_hv.values().all(|&c| c <= l.per_hypervisor),
                "{per_hv:?}"
            );
            assert!(per_target.values().all(|&c| c <= l.per_target));
            if running.is_empty() {
                assert_eq!(f.counts(), (0, 0), "jobs left that can never start");
                return out;
            }
            clock = running.iter().map(|r| r.3).min().expect("running");
            let (ended, still): (Vec<_>, Vec<_>) = running.into_iter().partition(|r| r.3 == clock);
            running = still;
            for (k, n, s, e) in ended {
                f.done(&n);
                out.push((k, s, e));
            }
        }
    }

    #[test]
    fn limits_hold_and_everything_runs() {
        // 8 VMs on hv1, 2 on hv2, two jobs of hv1/vm0 (per target 1).
        let mut jobs: Vec<(u32, Needs)> =
            (0..8).map(|i| (i, vm("hv1", &format!("vm{i}")))).collect();
        jobs.push((8, vm("hv2", "a")));
        jobs.push((9, vm("hv2", "b")));
        jobs.push((10, vm("hv1", "vm0")));
        let out = simulate(limits(3, 2), jobs, |k| 1 + u64::from(k % 3));
        assert_eq!(out.len(), 11);
    }

    #[test]
    fn a_big_lane_does_not_starve_a_small_one() {
        // 20 jobs of hv1 queued before one of hv2, global 2: hv2's starts
        // in the first round, not after hv1's twenty.
        let mut jobs: Vec<(u32, Needs)> =
            (0..20).map(|i| (i, vm("hv1", &format!("vm{i}")))).collect();
        jobs.push((99, vm("hv2", "late")));
        let out = simulate(limits(2, 4), jobs, |_| 10);
        let late = out.iter().find(|r| r.0 == 99).expect("ran");
        assert_eq!(late.1, 0, "hv2's job started at once");
        // FIFO within a lane: hv1's jobs start in arrival order.
        let mut hv1: Vec<_> = out.iter().filter(|r| r.0 != 99).collect();
        hv1.sort_by_key(|r| (r.1, r.0));
        assert!(hv1.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_busy_vm_does_not_block_the_jobs_behind_it() {
        // Two jobs of vm0, then vm1: vm1 starts beside vm0's first.
        let jobs = vec![
            (0, vm("hv", "vm0")),
            (1, vm("hv", "vm0")),
            (2, vm("hv", "vm1")),
        ];
        let out = simulate(limits(4, 4), jobs, |_| 5);
        let start = |k| out.iter().find(|r| r.0 == k).expect("ran").1;
        assert_eq!((start(0), start(2), start(1)), (0, 0, 5));
    }

    #[test]
    fn datastore_limits_and_cancelled_jobs() {
        let mut f: Fair<u32> = Fair::new(Limits {
            global: 8,
            per_target: 1,
            per_hypervisor: 8,
            per_datastore: 1,
        });
        f.push(0, vm("hv", "a"));
        f.push(1, vm("hv", "b"));
        f.push(
            2,
            Needs {
                target: "local".into(),
                hypervisor: None,
                datastore: None,
            },
        );
        // The VM-less lane sorts first, then hv's.
        let local = f.next().expect("the local job");
        let a = f.next().expect("a");
        assert_eq!((local.0, a.0), (2, 0));
        // b shares a's datastore.
        assert!(f.next().is_none());
        assert_eq!(f.counts(), (1, 2));
        assert!(f.remove(&1));
        assert!(!f.remove(&1));
        f.done(&a.1);
        assert!(f.next().is_none());
        assert_eq!(f.counts(), (0, 1));
    }
}
