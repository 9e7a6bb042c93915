//! When a policy's schedule is due: cron expressions (UTC; five fields, or
//! six with seconds first) stepped by `croner`. The clock is a parameter:
//! the server passes the time now, tests any time they like.

use chrono::{DateTime, TimeZone, Utc};

use crate::db::PolicyRecord;

/// A parsed schedule.
pub(crate) struct Schedule(croner::Cron);

/// A schedule that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("schedule {text:?}: {why}")]
pub(crate) struct BadSchedule {
    text: String,
    why: String,
}

impl Schedule {
    pub(crate) fn parse(text: &str) -> Result<Self, BadSchedule> {
        let bad = |why: String| BadSchedule {
            text: text.to_owned(),
            why,
        };
        let fields = text.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(bad(format!(
                "{fields} fields; a cron expression has 5 (minute hour day month weekday) or 6 (seconds first)"
            )));
        }
        croner::Cron::new(text)
            .with_seconds_optional()
            .parse()
            .map(Self)
            .map_err(|e| bad(e.to_string()))
    }

    /// The first time after `t` (seconds since the epoch) it fires.
    pub(crate) fn next_after(&self, t: i64) -> Option<i64> {
        let from: DateTime<Utc> = Utc.timestamp_opt(t, 0).single()?;
        self.0
            .find_next_occurrence(&from, false)
            .ok()
            .map(|d| d.timestamp())
    }
}

/// Whether `p` is due at `now`: its schedule has fired since it last ran
/// on schedule (or since it was added). A server that was down when it
/// should have fired runs it once when it is back, not once per miss.
pub(crate) fn due(p: &PolicyRecord, now: i64) -> bool {
    let Ok(s) = Schedule::parse(&p.schedule) else {
        return false;
    };
    let since = p.last_fired.unwrap_or(p.created).max(p.created);
    s.next_after(since).is_some_and(|next| next <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(schedule: &str, created: i64, last_fired: Option<i64>) -> PolicyRecord {
        PolicyRecord {
            name: "p".into(),
            vms: vec!["hv/*".into()],
            plugin: "filesystem".into(),
            include: vec!["/data".into()],
            options: Default::default(),
            schedule: schedule.into(),
            keep: Default::default(),
            retries: 0,
            created,
            last_fired,
        }
    }

    // 2026-12-01T00:00:00Z
    const MIDNIGHT: i64 = 1_796_083_200;

    #[test]
    fn a_daily_schedule_fires_once_a_day() {
        let s = Schedule::parse("0 3 * * *").unwrap();
        assert_eq!(s.next_after(MIDNIGHT), Some(MIDNIGHT + 3 * 3600));
        let p = policy("0 3 * * *", MIDNIGHT, None);
        assert!(!due(&p, MIDNIGHT + 3 * 3600 - 1));
        assert!(due(&p, MIDNIGHT + 3 * 3600));
        // Fired at 03:00:01: not again until tomorrow, however late.
        let p = policy("0 3 * * *", MIDNIGHT, Some(MIDNIGHT + 3 * 3600 + 1));
        assert!(!due(&p, MIDNIGHT + 20 * 3600));
        assert!(due(&p, MIDNIGHT + 27 * 3600));
    }

    #[test]
    fn seconds_fields_and_missed_runs() {
        let p = policy("*/5 * * * * *", MIDNIGHT + 1, None);
        assert!(!due(&p, MIDNIGHT + 4));
        assert!(due(&p, MIDNIGHT + 5));
        // Down for an hour: due once, and after firing not until the next step.
        let p = policy("*/5 * * * * *", MIDNIGHT, Some(MIDNIGHT + 5));
        assert!(due(&p, MIDNIGHT + 3600));
        let p = policy("*/5 * * * * *", MIDNIGHT, Some(MIDNIGHT + 3600));
        assert!(!due(&p, MIDNIGHT + 3604));
        assert!(due(&p, MIDNIGHT + 3605));
    }

    #[test]
    fn bad_schedules_are_refused() {
        for s in ["", "* * *", "61 * * * *", "* * * * * * *", "a b c d e"] {
            assert!(Schedule::parse(s).is_err(), "{s}");
        }
        assert!(!due(&policy("nonsense", 0, None), i64::MAX / 2));
    }
}
