//! A policy's retention: after each run, its keep rules are applied to the
//! snapshots that policy made, per VM (and plugin and selection, as
//! `attache forget` groups them), and to no other snapshot: a manual
//! backup of the same VM, or another policy's, is never forgotten by it.
//! The data only they referenced stays until `attache prune`.

use crate::db::records::Keep;
use crate::repo::retention::keep;
use crate::repo::Repository;
use crate::store::lock::Lock;
use crate::store::snapshot::SnapshotInfo;

/// The ids, among `snaps`, that policy `name`'s rules `k` forget.
pub(crate) fn forgotten(snaps: &[SnapshotInfo], name: &str, k: Keep) -> Vec<String> {
    if k.retention().is_empty() {
        return Vec::new();
    }
    let own: Vec<SnapshotInfo> = snaps
        .iter()
        .filter(|s| s.policy.as_deref() == Some(name))
        .cloned()
        .collect();
    let kept = keep(&own, k.retention());
    own.into_iter()
        .filter(|s| !kept.contains(&s.id))
        .map(|s| s.id)
        .collect()
}

/// Forgets what [`forgotten`] names in `repo`; their ids.
pub(crate) fn apply(repo: &Repository, name: &str, k: Keep) -> anyhow::Result<Vec<String>> {
    if k.retention().is_empty() {
        return Ok(Vec::new());
    }
    // Shared, as `attache forget` without --prune: backups go on.
    let _lock = Lock::acquire(&repo.store, false, "forget")?;
    let gone = forgotten(&repo.store.snapshots()?, name, k);
    for id in &gone {
        repo.store.remove_snapshot(id)?;
    }
    if !gone.is_empty() {
        repo.catalog.sync(&repo.store)?;
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, source: &str, policy: Option<&str>, time: i64) -> SnapshotInfo {
        SnapshotInfo {
            id: id.into(),
            time,
            nanos: 0,
            source: source.into(),
            plugin: "filesystem".into(),
            plugin_version: "1".into(),
            includes: vec!["/data".into()],
            parent: None,
            items: 0,
            bytes: 0,
            added_bytes: 0,
            read_bytes: 0,
            warnings: vec![],
            container: None,
            policy: policy.map(str::to_owned),
            tree: vec![],
        }
    }

    #[test]
    fn only_the_policys_own_snapshots_are_forgotten() {
        let snaps = vec![
            snap("p1", "hv/a", Some("nightly"), 1),
            snap("m1", "hv/a", None, 2),
            snap("p2", "hv/a", Some("nightly"), 3),
            snap("o1", "hv/a", Some("other"), 4),
            snap("p3", "hv/a", Some("nightly"), 5),
            snap("q1", "hv/b", Some("nightly"), 6),
        ];
        let k = Keep {
            last: 1,
            ..Default::default()
        };
        let mut gone = forgotten(&snaps, "nightly", k);
        gone.sort();
        // hv/a keeps p3, hv/b its only one; the manual and the other
        // policy's snapshots are not the policy's to forget.
        assert_eq!(gone, ["p1", "p2"]);
        assert!(forgotten(&snaps, "nightly", Keep::default()).is_empty());
    }
}
