//! Label values: small enums with `as_str()`, and [`BoundedLabels`] for the
//! values that come from names (models, orchestrators, tenants, regions,
//! nodes), so a client sending random model ids cannot grow the registry
//! without bound.

use std::collections::HashSet;
use std::sync::Mutex;

use mesh_core::JobError;

/// The label value used once a [`BoundedLabels`] is full.
pub const OTHER: &str = "other";

/// The label value when a job ended before any orchestrator or region was
/// involved.
pub const NONE: &str = "none";

/// Longest label value kept; longer ones are cut (ids are at most 256 bytes,
/// but a dashboard legend does not need more than this).
pub const MAX_LABEL_VALUE_LEN: usize = 160;

/// A set of label values that admits at most `max` distinct values; every
/// later value is reported as [`OTHER`].
#[derive(Debug)]
pub struct BoundedLabels {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl BoundedLabels {
    /// A set admitting `max` distinct values.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// `value` itself if it is known or there is room, else [`OTHER`].
    pub fn admit(&self, value: &str) -> String {
        let value = cut(value);
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() >= self.max {
            return OTHER.to_owned();
        }
        seen.insert(value.to_owned());
        value.to_owned()
    }
}

fn cut(value: &str) -> &str {
    if value.len() <= MAX_LABEL_VALUE_LEN {
        return value;
    }
    let mut end = MAX_LABEL_VALUE_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }
    };
}

label_enum!(
    /// How a job ended (`outcome` of `gatemesh_jobs_total`).
    JobOutcome {
        /// A result was returned (or a stream started).
        Success => "success",
        /// The runner rejected the input (client fault).
        Rejected => "rejected",
        /// No orchestrator offers the pipeline and model.
        NoOrchestrator => "no_orchestrator",
        /// Every attempt failed.
        Exhausted => "exhausted",
        /// The request deadline passed.
        Timeout => "timeout",
        /// The node is draining.
        Draining => "draining",
        /// A bug or internal failure.
        Internal => "internal",
    }
);

impl JobOutcome {
    /// The outcome of a job result.
    pub fn of<T>(result: &Result<T, JobError>) -> Self {
        match result {
            Ok(_) => Self::Success,
            Err(error) => Self::from_error(error),
        }
    }

    /// The outcome of a job error.
    pub fn from_error(error: &JobError) -> Self {
        match error {
            JobError::NoCapableOrchestrator { .. } => Self::NoOrchestrator,
            JobError::AttemptsExhausted { .. } => Self::Exhausted,
            JobError::RejectedByRunner(_) => Self::Rejected,
            JobError::DeadlineExceeded { .. } => Self::Timeout,
            JobError::Draining => Self::Draining,
            JobError::Internal(_) => Self::Internal,
        }
    }

    /// Whether the job failed (anything but success).
    pub const fn is_failure(self) -> bool {
        !matches!(self, Self::Success)
    }
}

label_enum!(
    /// Why an attempt was retried (`reason` of `gatemesh_job_retries_total`).
    RetryReason {
        /// The orchestrator said it has no capacity.
        Capacity => "capacity",
        /// The session was refreshed (403) and the same orchestrator retried.
        Refresh => "refresh",
        /// The attempt failed (5xx, connect, TLS, garbage).
        Failed => "failed",
        /// The attempt timed out.
        Timeout => "timeout",
    }
);

label_enum!(
    /// Where a job went after its first orchestrator failed.
    FailoverKind {
        /// Another orchestrator observed from this region.
        InRegion => "in_region",
        /// An orchestrator observed only by other regions, called directly.
        CrossRegion => "cross_region",
        /// Forwarded to a node of another region.
        Forwarded => "forwarded",
    }
);

label_enum!(
    /// Direction of gossip bytes or forwarded jobs, seen from this node.
    Direction {
        /// Received / accepted from a peer.
        In => "in",
        /// Sent / handed to a peer.
        Out => "out",
    }
);

label_enum!(
    /// What happened to load announcements (`direction` of
    /// `gatemesh_mesh_load_announcements_total`).
    LoadEvent {
        /// Written to a peer (one per peer and announcement).
        Sent => "sent",
        /// Received from a peer and applied.
        Received => "received",
        /// Received but undecodable or refused (too large, too many peers).
        Refused => "refused",
        /// Not sent (send slots busy, send failed) or lost by a lagging
        /// receiver.
        Dropped => "dropped",
    }
);

label_enum!(
    /// How a forwarded job ended.
    ForwardOutcome {
        /// The peer returned a result.
        Success => "success",
        /// The peer returned an error.
        Failed => "failed",
        /// The peer refused it (busy, draining, not allowed).
        Refused => "refused",
        /// The peer could not be reached or did not answer in time.
        Unreachable => "unreachable",
    }
);

label_enum!(
    /// Which tenant limit rejected a request.
    TenantLimit {
        /// Requests per minute, cluster-wide.
        RequestsPerMinute => "requests_per_minute",
        /// Concurrent jobs.
        ConcurrentJobs => "concurrent_jobs",
        /// Spend per UTC day.
        SpendPerDay => "spend_per_day",
        /// Spend per UTC month.
        SpendPerMonth => "spend_per_month",
        /// Price cap.
        Price => "price",
    }
);

impl From<mesh_core::tenancy::LimitKind> for TenantLimit {
    fn from(kind: mesh_core::tenancy::LimitKind) -> Self {
        use mesh_core::tenancy::LimitKind as K;
        match kind {
            K::RequestsPerMinute => Self::RequestsPerMinute,
            K::ConcurrentJobs => Self::ConcurrentJobs,
            K::SpendPerDay => Self::SpendPerDay,
            K::SpendPerMonth => Self::SpendPerMonth,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_labels_fold_overflow_into_other() {
        let labels = BoundedLabels::new(2);
        assert_eq!(labels.admit("a"), "a");
        assert_eq!(labels.admit("b"), "b");
        assert_eq!(labels.admit("c"), OTHER);
        assert_eq!(labels.admit("a"), "a");
        let long = "é".repeat(MAX_LABEL_VALUE_LEN);
        assert!(BoundedLabels::new(1).admit(&long).len() <= MAX_LABEL_VALUE_LEN);
    }
}
