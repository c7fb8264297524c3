//! Hybrid logical clock: wall time in milliseconds plus a logical counter and
//! a node tag, totally ordered, so that every version a node writes is unique
//! and larger than everything it has seen.
//!
//! The caller passes the current wall time in (`now_ms`); the clock never
//! reads one. A remote timestamp too far in the future is refused with
//! [`HlcError::TooFarAhead`] instead of dragging our clock along.

use serde::{Deserialize, Serialize};

use crate::id::NodeId;

/// How far ahead of our wall clock a remote timestamp may be before
/// [`HlcClock::observe`] refuses it: NTP keeps hosts within tens of ms, so
/// 5 s is a broken clock, not skew.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 5_000;

/// One hybrid-logical-clock timestamp. Ordered by wall time, then counter,
/// then node tag, so two nodes never produce equal timestamps.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Physical component: unix milliseconds (the largest seen).
    pub wall_ms: u64,
    /// Logical component: events within the same `wall_ms`.
    pub counter: u32,
    /// The writer's tag ([`Hlc::node_tag`]); breaks ties between nodes.
    pub node: u64,
}

impl Hlc {
    /// The zero timestamp (smaller than any a clock hands out).
    pub const ZERO: Self = Self {
        wall_ms: 0,
        counter: 0,
        node: 0,
    };

    /// A stable 64-bit tag for a node id (FNV-1a of its bytes), equal on every
    /// machine and every run.
    pub fn node_tag(node: &NodeId) -> u64 {
        fnv1a(node.as_str().as_bytes())
    }
}

/// FNV-1a, 64 bit. Stable across processes, unlike `std`'s `RandomState`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A remote timestamp we refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HlcError {
    /// The remote wall time is more than the allowed drift ahead of ours.
    #[error(
        "remote timestamp {remote_ms} ms is {ahead_ms} ms ahead of local time (max {max_drift_ms} ms)"
    )]
    TooFarAhead {
        /// The remote wall time.
        remote_ms: u64,
        /// How far ahead of `now_ms` it is.
        ahead_ms: u64,
        /// The configured bound.
        max_drift_ms: u64,
    },
}

/// A node's hybrid logical clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlcClock {
    last: Hlc,
    max_drift_ms: u64,
}

impl HlcClock {
    /// A clock for `node` that refuses remote timestamps more than
    /// `max_drift_ms` ahead of local time.
    pub fn new(node: &NodeId, max_drift_ms: u64) -> Self {
        Self::with_tag(Hlc::node_tag(node), max_drift_ms)
    }

    /// A clock with an explicit node tag (simulations, tests).
    pub fn with_tag(node_tag: u64, max_drift_ms: u64) -> Self {
        Self {
            last: Hlc {
                node: node_tag,
                ..Hlc::ZERO
            },
            max_drift_ms,
        }
    }

    /// The last timestamp handed out or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A new timestamp for a local event, strictly larger than every earlier
    /// one of this clock. Never fails: a wall clock that went backwards only
    /// advances the counter.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let wall_ms = self.last.wall_ms.max(now_ms);
        self.last = self.advance(wall_ms, self.last.wall_ms, self.last.counter);
        self.last
    }

    /// Takes a remote timestamp into account (on receipt of a record) and
    /// returns a new local timestamp larger than both. Refuses, without
    /// changing the clock, a remote wall time more than the drift bound ahead
    /// of `now_ms`.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) -> Result<Hlc, HlcError> {
        let ahead_ms = remote.wall_ms.saturating_sub(now_ms);
        if ahead_ms > self.max_drift_ms {
            return Err(HlcError::TooFarAhead {
                remote_ms: remote.wall_ms,
                ahead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        let wall_ms = self.last.wall_ms.max(remote.wall_ms).max(now_ms);
        let counter_base = match (wall_ms == self.last.wall_ms, wall_ms == remote.wall_ms) {
            (true, true) => Some(self.last.counter.max(remote.counter)),
            (true, false) => Some(self.last.counter),
            (false, true) => Some(remote.counter),
            (false, false) => None,
        };
        self.last = match counter_base {
            Some(counter) => self.advance(wall_ms, wall_ms, counter),
            None => Hlc {
                wall_ms,
                counter: 0,
                node: self.last.node,
            },
        };
        Ok(self.last)
    }

    /// The timestamp after (`prev_wall_ms`, `counter`) at `wall_ms`; when the
    /// counter would overflow, borrows one millisecond instead.
    fn advance(&self, wall_ms: u64, prev_wall_ms: u64, counter: u32) -> Hlc {
        let node = self.last.node;
        if wall_ms != prev_wall_ms {
            return Hlc {
                wall_ms,
                counter: 0,
                node,
            };
        }
        match counter.checked_add(1) {
            Some(counter) => Hlc {
                wall_ms,
                counter,
                node,
            },
            None => Hlc {
                wall_ms: wall_ms.saturating_add(1),
                counter: 0,
                node,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(tag: u64) -> HlcClock {
        HlcClock::with_tag(tag, 1_000)
    }

    #[test]
    fn ticks_are_strictly_increasing_even_when_time_goes_back() {
        let mut c = clock(1);
        let a = c.tick(100);
        let b = c.tick(100);
        let d = c.tick(50);
        let e = c.tick(200);
        assert!(a < b && b < d && d < e);
        assert_eq!(d.wall_ms, 100);
        assert_eq!(
            e,
            Hlc {
                wall_ms: 200,
                counter: 0,
                node: 1
            }
        );
    }

    #[test]
    fn observe_moves_past_remote_and_refuses_the_future() {
        let mut c = clock(1);
        c.tick(100);
        let remote = Hlc {
            wall_ms: 150,
            counter: 7,
            node: 2,
        };
        let after = c.observe(remote, 120).unwrap();
        assert!(after > remote);
        assert_eq!(after.wall_ms, 150);
        assert_eq!(after.counter, 8);
        assert_eq!(after.node, 1);

        let before = c.last();
        let far = Hlc {
            wall_ms: 10_000,
            counter: 0,
            node: 2,
        };
        assert!(matches!(
            c.observe(far, 120),
            Err(HlcError::TooFarAhead {
                ahead_ms: 9_880,
                ..
            })
        ));
        assert_eq!(c.last(), before);
    }

    #[test]
    fn counter_overflow_borrows_a_millisecond() {
        let mut c = clock(1);
        c.observe(
            Hlc {
                wall_ms: 10,
                counter: u32::MAX,
                node: 2,
            },
            10,
        )
        .unwrap_or_default();
        let t = c.tick(10);
        assert!(
            t > Hlc {
                wall_ms: 10,
                counter: u32::MAX,
                node: 2
            }
        );
    }

    #[test]
    fn node_tags_are_stable() {
        let n = NodeId::new("fra-1").unwrap();
        assert_eq!(
            Hlc::node_tag(&n),
            Hlc::node_tag(&NodeId::new("fra-1").unwrap())
        );
        assert_ne!(
            Hlc::node_tag(&n),
            Hlc::node_tag(&NodeId::new("fra-2").unwrap())
        );
    }
}
