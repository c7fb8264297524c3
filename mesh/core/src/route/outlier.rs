//! Outlier ejection: when one node's failures should take an orchestrator out
//! of rotation (on every node, once gossiped), and for how long. One
//! exception to "every node": an ejection whose failure was a timeout (no
//! connection or no answer in time, `ErrorClass::is_path_local`) binds only
//! the ejecting node's region, because a cut or slow path between two
//! regions looks exactly like a dead host from one side (see
//! `ViewSnapshot`'s summaries).

use crate::view::{ErrorClass, ObservationRecord};

/// When to eject and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionPolicy {
    /// Failures in a row (of classes that may eject) that eject.
    pub consecutive_failures: u32,
    /// First ejection length, ms.
    pub base_ms: u64,
    /// Longest ejection, ms (the doubling stops here).
    pub max_ms: u64,
    /// Longest ejection for an "unreachable" failure (connect, timeout,
    /// TLS), ms. Short, because the node probes ejected orchestrators about
    /// every second and a failed probe ejects again: the ejection then lasts
    /// exactly as long as the outage, and traffic returns at the first
    /// answered probe (or when this runs out).
    pub unreachable_max_ms: u64,
}

impl Default for EjectionPolicy {
    /// Three failures in a row, or one "unreachable" failure, eject for 1 s,
    /// doubling per consecutive ejection up to 60 s (2 s for unreachable).
    /// A dead orchestrator is dropped after one failed request; a recovered
    /// one is probed back within a second or two (a successful probe lifts an
    /// unreachable ejection early, see `ObservationRecord::record_probe`).
    fn default() -> Self {
        Self {
            consecutive_failures: 3,
            base_ms: 1_000,
            max_ms: 60_000,
            unreachable_max_ms: 2_000,
        }
    }
}

impl EjectionPolicy {
    /// Whether `record`, which has just recorded a failure of `class`, should
    /// be ejected, and for how long (ms).
    pub fn decide(&self, record: &ObservationRecord, class: ErrorClass) -> Option<u64> {
        if !class.may_eject() {
            return None;
        }
        let eject =
            class.is_unreachable() || record.consecutive_failures >= self.consecutive_failures;
        eject.then(|| record.ejection_duration_ms(self.base_ms, self.max_for(class)))
    }

    /// The longest ejection for a failure of `class`.
    pub fn max_for(&self, class: ErrorClass) -> u64 {
        if class.is_unreachable() {
            self.max_ms.min(self.unreachable_max_ms)
        } else {
            self.max_ms
        }
    }

    /// [`Self::decide`] and, if so, eject: returns the ejection's end.
    pub fn after_failure(
        &self,
        record: &mut ObservationRecord,
        class: ErrorClass,
        now_ms: u64,
    ) -> Option<u64> {
        self.decide(record, class)?;
        Some(record.eject(now_ms, self.base_ms, self.max_for(class)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{NodeId, OrchestratorId, RegionId};
    use crate::pipeline::Pipeline;

    fn record() -> ObservationRecord {
        ObservationRecord::new(
            OrchestratorId::parse("o:1").unwrap(),
            NodeId::new("n").unwrap(),
            RegionId::new("r").unwrap(),
        )
    }

    #[test]
    fn unreachable_ejects_at_once_server_errors_after_three_busy_never() {
        let policy = EjectionPolicy::default();
        let mut r = record();
        r.record_failure(Pipeline::Llm, "m", ErrorClass::Connect, 0);
        assert_eq!(
            policy.after_failure(&mut r, ErrorClass::Connect, 0),
            Some(1_000)
        );

        let mut r = record();
        for i in 0..2 {
            r.record_failure(Pipeline::Llm, "m", ErrorClass::Server, i);
            assert_eq!(policy.after_failure(&mut r, ErrorClass::Server, i), None);
        }
        r.record_failure(Pipeline::Llm, "m", ErrorClass::Server, 2);
        assert_eq!(
            policy.after_failure(&mut r, ErrorClass::Server, 2),
            Some(1_002)
        );

        let mut r = record();
        for i in 0..10 {
            r.record_failure(Pipeline::Llm, "m", ErrorClass::Busy, i);
            assert_eq!(policy.after_failure(&mut r, ErrorClass::Busy, i), None);
        }
    }

    #[test]
    fn repeated_ejections_double_up_to_the_cap() {
        let policy = EjectionPolicy::default();
        let mut r = record();
        let mut lengths = Vec::new();
        let mut now = 0;
        for _ in 0..8 {
            r.record_failure(Pipeline::Llm, "m", ErrorClass::Server, now);
            r.record_failure(Pipeline::Llm, "m", ErrorClass::Server, now);
            r.record_failure(Pipeline::Llm, "m", ErrorClass::Server, now);
            let until = policy
                .after_failure(&mut r, ErrorClass::Server, now)
                .unwrap();
            lengths.push(until - now);
            now = until;
        }
        assert_eq!(
            lengths,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
    }

    #[test]
    fn unreachable_ejections_stay_short_so_recovery_is_seen_quickly() {
        let policy = EjectionPolicy::default();
        let mut r = record();
        let mut lengths = Vec::new();
        let mut now = 0;
        for _ in 0..5 {
            r.record_failure(Pipeline::Llm, "m", ErrorClass::Timeout, now);
            let until = policy
                .after_failure(&mut r, ErrorClass::Timeout, now)
                .unwrap();
            lengths.push(until - now);
            now = until;
        }
        assert_eq!(lengths, [1_000, 2_000, 2_000, 2_000, 2_000]);
        // An answered probe ends it at once.
        r.record_failure(Pipeline::Llm, "m", ErrorClass::Connect, now);
        policy.after_failure(&mut r, ErrorClass::Connect, now);
        assert!(r.is_ejected(now + 1));
        r.record_probe(5, now + 1);
        assert!(!r.is_ejected(now + 1));
    }
}
