//! Metrics of load announcements (jobs in flight shared directly with
//! peers): `gatemesh_mesh_load_announcements_total{direction}` and
//! `gatemesh_mesh_load_bytes_total{direction}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{Direction, LoadEvent, Metrics};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadLabels {
    direction: &'static str,
}

/// The handles, registered once with the node's registry.
#[derive(Debug)]
pub(super) struct LoadMetrics {
    announcements: Family<LoadLabels, Counter>,
    bytes: Family<LoadLabels, Counter>,
}

impl LoadMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let this = Self {
            announcements: Family::default(),
            bytes: Family::default(),
        };
        registry.register(
            "mesh_load_announcements",
            "Load announcements (jobs in flight) sent, received, refused or dropped",
            this.announcements.clone(),
        );
        registry.register(
            "mesh_load_bytes",
            "Bytes of load announcement frames sent and received",
            this.bytes.clone(),
        );
        this
    }
}

impl Metrics {
    /// `n` load announcements: `gatemesh_mesh_load_announcements_total{direction}`.
    pub fn record_load_announcements(&self, event: LoadEvent, n: u64) {
        self.inner
            .load
            .announcements
            .get_or_create(&LoadLabels {
                direction: event.as_str(),
            })
            .inc_by(n);
    }

    /// Load frame traffic: `gatemesh_mesh_load_bytes_total{direction}`.
    pub fn record_load_bytes(&self, direction: Direction, bytes: u64) {
        self.inner
            .load
            .bytes
            .get_or_create(&LoadLabels {
                direction: direction.as_str(),
            })
            .inc_by(bytes);
    }
}
