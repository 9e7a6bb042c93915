//! Timestamps: the contract's [`Timestamp`] from the clock or a
//! [`SystemTime`], and as the WASI times a restore sets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wasi::filesystem::types::{Datetime, NewTimestamp};
use crate::Timestamp;

/// The current time.
pub fn now() -> Timestamp {
    from_system(SystemTime::now())
}

/// A [`SystemTime`] as a [`Timestamp`] (before the epoch, negative seconds
/// with nanoseconds counted forward, as `st_mtim`).
pub fn from_system(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanoseconds: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => Timestamp {
                    seconds: -secs,
                    nanoseconds: 0,
                },
                n => Timestamp {
                    seconds: -secs - 1,
                    nanoseconds: 1_000_000_000 - n,
                },
            }
        }
    }
}

/// A [`Timestamp`] as a [`SystemTime`].
pub fn to_system(t: Timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(t.nanoseconds));
    if t.seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.seconds.unsigned_abs()) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs()) + nanos
    }
}

/// A [`Timestamp`] as a WASI [`Datetime`]. WASI times cannot be before the
/// epoch: earlier times become the epoch.
pub fn to_datetime(t: Timestamp) -> Datetime {
    if t.seconds < 0 {
        return Datetime {
            seconds: 0,
            nanoseconds: 0,
        };
    }
    Datetime {
        seconds: t.seconds.unsigned_abs(),
        nanoseconds: t.nanoseconds,
    }
}

/// A [`Timestamp`] to set with WASI's `set-times`.
pub fn to_new_timestamp(t: Timestamp) -> NewTimestamp {
    NewTimestamp::Timestamp(to_datetime(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_around_the_epoch() {
        for (s, n) in [(0, 0), (1_700_000_000, 5), (-1, 999_999_999), (-10, 0)] {
            let t = Timestamp {
                seconds: s,
                nanoseconds: n,
            };
            assert_eq!(from_system(to_system(t)), t);
        }
        let before = Timestamp {
            seconds: -5,
            nanoseconds: 3,
        };
        assert_eq!(to_datetime(before).seconds, 0);
        assert!(now().seconds > 1_600_000_000);
    }
}
