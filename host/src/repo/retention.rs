//! Which snapshots a retention policy keeps: the last N, and the newest of
//! each of the last N days, weeks and months, per group of snapshots of the
//! same source, plugin and selection (as restic counts them) and backup
//! policy: a policy's snapshots and manual ones are counted apart.

use std::collections::{BTreeMap, HashSet};

use crate::store::snapshot::SnapshotInfo;

/// `--keep-*` counts; zero keeps none by that rule.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Policy {
    pub last: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
}

impl Policy {
    pub(crate) fn is_empty(&self) -> bool {
        self.last + self.daily + self.weekly + self.monthly == 0
    }
}

fn days(t: i64) -> i64 {
    t.div_euclid(86_400)
}

/// Monday-based week number since the epoch (1970-01-01 was a Thursday).
fn week(t: i64) -> i64 {
    (days(t) + 3).div_euclid(7)
}

/// Year * 12 + month, from days since the epoch (Hinnant's civil_from_days).
fn month(t: i64) -> i64 {
    let z = days(t) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    y * 12 + m - 1
}

/// A retention rule: how many periods to keep, and the period a time
/// (seconds) falls in.
type Rule = (usize, fn(i64) -> i64);

/// The ids of the snapshots to keep.
pub(crate) fn keep(snaps: &[SnapshotInfo], p: Policy) -> HashSet<String> {
    type Group = (String, String, Vec<String>, Option<String>);
    let mut groups: BTreeMap<Group, Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in snaps {
        let mut inc = s.includes.clone();
        inc.sort();
        groups
            .entry((s.source.clone(), s.plugin.clone(), inc, s.policy.clone()))
            .or_default()
            .push(s);
    }
    let mut kept = HashSet::new();
    for list in groups.values_mut() {
        list.sort_by(|a, b| (b.time, b.nanos, &b.id).cmp(&(a.time, a.nanos, &a.id)));
        let rules: [Rule; 3] = [(p.daily, days), (p.weekly, week), (p.monthly, month)];
        for s in list.iter().take(p.last) {
            kept.insert(s.id.clone());
        }
        for (n, bucket) in rules {
            let mut last = None;
            let mut count = 0;
            for s in list.iter() {
                if count == n {
                    break;
                }
                let b = bucket(s.time);
                if last != Some(b) {
                    kept.insert(s.id.clone());
                    last = Some(b);
                    count += 1;
                }
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, time: i64) -> SnapshotInfo {
        SnapshotInfo {
            id: id.into(),
            time,
            nanos: 0,
            source: "local".into(),
            plugin: "filesystem".into(),
            plugin_version: "1".into(),
            includes: vec!["/srv".into()],
            parent: None,
            items: 0,
            bytes: 0,
            added_bytes: 0,
            read_bytes: 0,
            warnings: vec![],
            container: None,
            policy: None,
            tree: vec![],
        }
    }

    #[test]
    fn calendar_buckets() {
        assert_eq!(month(0), 1970 * 12);
        assert_eq!(month(951_782_400), 2000 * 12 + 1); // 2000-02-29
        assert_eq!(month(1_709_251_200), 2024 * 12 + 2); // 2024-03-01
        assert_eq!(week(4 * 86_400), week(10 * 86_400)); // Mon 1970-01-05 .. Sun 01-11
        assert_ne!(week(10 * 86_400), week(11 * 86_400));
    }

    #[test]
    fn keeps_last_and_one_per_day() {
        let d = 86_400;
        // Three a day for four days.
        let snaps: Vec<_> = (0..12)
            .map(|i| {
                snap(
                    &format!("s{i:02}"),
                    1_700_000_000 + (i / 3) * d + (i % 3) * 60,
                )
            })
            .collect();
        let k = keep(
            &snaps,
            Policy {
                last: 2,
                ..Default::default()
            },
        );
        assert_eq!(k, ["s11", "s10"].iter().map(|s| s.to_string()).collect());
        let k = keep(
            &snaps,
            Policy {
                daily: 3,
                ..Default::default()
            },
        );
        assert_eq!(
            k,
            ["s11", "s08", "s05"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        let k = keep(
            &snaps,
            Policy {
                last: 1,
                daily: 2,
                ..Default::default()
            },
        );
        assert_eq!(k, ["s11", "s08"].iter().map(|s| s.to_string()).collect());
    }
}
