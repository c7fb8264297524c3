//! Benchmarks from live traffic, cluster-wide: this node counts its jobs in
//! a [`PerfRecorder`], publishes its window as the mesh record `perf` (at
//! most every [`PUBLISH_EVERY`], only when it changed or every
//! [`REPUBLISH_EVERY`]), and keeps the latest record of every other node.
//! [`Benchmarks::by_region`] merges them per region.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh::MeshHandle;
use mesh_core::perf::{JobResult, PerfKey, PerfRecorder, PerfWindow};
use mesh_core::{JobError, NodeId, Pipeline, RegionId};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cluster::unix_ms;

/// Record key of a node's benchmark window.
pub const PERF_RECORD_KEY: &str = "perf";
/// Shortest time between two publications: benchmarks are read by humans
/// and registries, so a few seconds of delay cost nothing, and under load
/// the record would otherwise change with every job.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(5);
/// An unchanged window is re-published this often, so readers see the node
/// is alive and its window end moves.
pub const REPUBLISH_EVERY: Duration = Duration::from_secs(60);
/// Byte budget of one record (the mesh allows 16 KiB; a window with 32
/// pairs of typical traffic takes about 1–2 KiB).
pub const RECORD_BUDGET_BYTES: usize = 8 * 1024;
/// Most other nodes whose windows are kept (far above any cluster we run;
/// origins are authenticated members).
const MAX_REMOTE_NODES: usize = 1_024;

/// The node's benchmark recorder and the cluster's windows. Cheap to clone.
#[derive(Clone)]
pub struct Benchmarks {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeId,
    region: RegionId,
    local: Mutex<PerfRecorder>,
    remote: Mutex<BTreeMap<NodeId, (RegionId, PerfWindow)>>,
}

impl std::fmt::Debug for Benchmarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Benchmarks")
            .field("node", &self.inner.node)
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

/// What a node publishes: its region and its window.
#[derive(Debug, Serialize, Deserialize)]
struct PerfRecord {
    region: RegionId,
    window: Vec<u8>,
}

impl Benchmarks {
    /// A recorder for `node` in `region` over a window of `window_ms`.
    pub fn new(node: NodeId, region: RegionId, window_ms: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                node,
                region,
                local: Mutex::new(PerfRecorder::new(window_ms)),
                remote: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The window length.
    pub fn window_ms(&self) -> u64 {
        self.lock_local().window_ms()
    }

    /// Counts a job that a client of this node's region sent. Errors that
    /// are the client's (rejected input) and refusals while draining are
    /// not counted.
    pub fn record<T>(
        &self,
        pipeline: Pipeline,
        model_id: &str,
        outcome: &Result<T, JobError>,
        elapsed: Duration,
    ) {
        let result = match outcome {
            Ok(_) => JobResult::Success {
                latency_ms: elapsed.as_millis().min(u128::from(u32::MAX)) as u32,
            },
            Err(JobError::RejectedByRunner(_) | JobError::Draining) => return,
            Err(_) => JobResult::Failure,
        };
        let key = PerfKey {
            pipeline,
            model_id: model_id.to_owned(),
        };
        self.lock_local().record(unix_ms(), key, result);
    }

    /// This node's window now.
    pub fn local_window(&self, now_ms: u64) -> PerfWindow {
        self.lock_local().window(now_ms)
    }

    /// Every region's merged window: this node's and the latest of every
    /// other node whose window ended less than one window ago.
    pub fn by_region(&self, now_ms: u64) -> BTreeMap<RegionId, PerfWindow> {
        let window_ms = self.window_ms();
        let mut regions: BTreeMap<RegionId, PerfWindow> = BTreeMap::new();
        regions
            .entry(self.inner.region.clone())
            .or_default()
            .merge(&self.local_window(now_ms));
        let remote = self.inner.remote.lock().unwrap_or_else(|p| p.into_inner());
        for (region, window) in remote.values() {
            if window.end_ms.saturating_add(window_ms) >= now_ms {
                regions.entry(region.clone()).or_default().merge(window);
            }
        }
        regions
    }

    /// Publishes this node's window and merges other nodes' until `stop`.
    pub fn spawn(&self, mesh: MeshHandle, stop: watch::Receiver<bool>) {
        tokio::spawn(self.clone().publish_loop(mesh.clone(), stop.clone()));
        tokio::spawn(self.clone().receive_loop(mesh, stop));
    }

    async fn publish_loop(self, mesh: MeshHandle, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<(mesh_core::perf::PerfTable, tokio::time::Instant)> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let window = {
                let mut local = self.lock_local();
                let now = unix_ms();
                local.expire(now);
                local.window(now)
            };
            let fresh = last.as_ref().is_some_and(|(table, at)| {
                *table == window.table && at.elapsed() < REPUBLISH_EVERY
            });
            if fresh || (last.is_none() && window.table.is_empty()) {
                continue;
            }
            let bytes = window
                .encode(RECORD_BUDGET_BYTES - 64)
                .map_err(|e| e.to_string())
                .and_then(|window| {
                    postcard::to_stdvec(&PerfRecord {
                        region: self.inner.region.clone(),
                        window,
                    })
                    .map_err(|e| e.to_string())
                });
            match bytes {
                Ok(bytes) => match mesh.publish_record(PERF_RECORD_KEY, &bytes).await {
                    Ok(()) => last = Some((window.table, tokio::time::Instant::now())),
                    Err(error) => tracing::warn!(%error, "cannot publish the benchmark record"),
                },
                Err(error) => tracing::warn!(%error, "benchmark record not encoded"),
            }
        }
    }

    async fn receive_loop(self, mesh: MeshHandle, mut stop: watch::Receiver<bool>) {
        crate::cluster::follow_records(&mesh, &mut stop, |record| self.merge_record(record)).await;
    }

    /// Keeps another node's latest window (our own echo is ignored: the
    /// local recorder is fresher).
    pub fn merge_record(&self, record: &mesh::Record) {
        if record.key != PERF_RECORD_KEY || record.origin == self.inner.node {
            return;
        }
        let decoded = postcard::from_bytes::<PerfRecord>(&record.value)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                Ok((
                    r.region,
                    PerfWindow::decode(&r.window).map_err(|e| e.to_string())?,
                ))
            });
        match decoded {
            Ok((region, window)) => {
                let mut remote = self.inner.remote.lock().unwrap_or_else(|p| p.into_inner());
                if remote.len() >= MAX_REMOTE_NODES && !remote.contains_key(&record.origin) {
                    // Drop the stalest to make room.
                    if let Some(oldest) = remote
                        .iter()
                        .min_by_key(|(_, (_, w))| w.end_ms)
                        .map(|(node, _)| node.clone())
                    {
                        remote.remove(&oldest);
                    }
                }
                remote.insert(record.origin.clone(), (region, window));
            }
            Err(error) => {
                tracing::warn!(origin = %record.origin, %error, "undecodable benchmark record");
            }
        }
    }

    fn lock_local(&self) -> std::sync::MutexGuard<'_, PerfRecorder> {
        self.inner.local.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::new(name).expect("node id")
    }

    fn region(name: &str) -> RegionId {
        RegionId::new(name).expect("region")
    }

    /// The record another node would publish after `jobs` successes.
    fn record_of(origin: &str, in_region: &str, jobs: u32, latency_ms: u32) -> mesh::Record {
        let now = unix_ms();
        let mut recorder = PerfRecorder::new(900_000);
        for _ in 0..jobs {
            let key = PerfKey {
                pipeline: Pipeline::TextToImage,
                model_id: "m".into(),
            };
            recorder.record(now, key, JobResult::Success { latency_ms });
        }
        let window = recorder
            .window(now)
            .encode(RECORD_BUDGET_BYTES)
            .expect("encodes");
        let value = postcard::to_stdvec(&PerfRecord {
            region: region(in_region),
            window,
        })
        .expect("encodes");
        mesh::Record {
            origin: node(origin),
            generation: 1,
            key: PERF_RECORD_KEY.into(),
            seq: 1,
            value: value.into(),
        }
    }

    #[test]
    fn windows_of_other_nodes_merge_per_region() {
        let benchmarks = Benchmarks::new(node("fra-1"), region("fra"), 900_000);
        let ok: Result<(), JobError> = Ok(());
        benchmarks.record(Pipeline::TextToImage, "m", &ok, Duration::from_millis(100));
        let rejected: Result<(), JobError> = Err(JobError::RejectedByRunner("bad".into()));
        benchmarks.record(Pipeline::TextToImage, "m", &rejected, Duration::ZERO);
        benchmarks.merge_record(&record_of("fra-2", "fra", 3, 100));
        benchmarks.merge_record(&record_of("lax-1", "lax", 2, 1_000));
        benchmarks.merge_record(&record_of("lax-2", "lax", 2, 1_000));
        // Our own echo is ignored (the local recorder is fresher).
        benchmarks.merge_record(&record_of("fra-1", "fra", 50, 5));
        // Garbage is logged, not merged, and does not panic.
        let mut garbage = record_of("sin-1", "sin", 1, 1);
        garbage.value = bytes::Bytes::from_static(&[1, 2, 3]);
        benchmarks.merge_record(&garbage);

        let regions = benchmarks.by_region(unix_ms());
        let requests = |r: &str| {
            regions[&region(r)]
                .table
                .pairs()
                .map(|(_, s)| s.requests())
                .sum::<u64>()
        };
        assert_eq!(
            requests("fra"),
            4,
            "1 local + 3 from fra-2; the rejection is not counted"
        );
        assert_eq!(requests("lax"), 4);
        assert!(!regions.contains_key(&region("sin")));
        let (_, lax) = regions[&region("lax")].table.pairs().next().expect("pair");
        assert!(
            lax.quantile_ms(950)
                .is_some_and(|p| (1_000..1_200).contains(&p))
        );
    }

    #[test]
    fn a_window_that_ended_long_ago_is_dropped() {
        let benchmarks = Benchmarks::new(node("fra-1"), region("fra"), 900_000);
        benchmarks.merge_record(&record_of("lax-1", "lax", 2, 10));
        let later = unix_ms() + 2 * 900_000;
        assert!(!benchmarks.by_region(later).contains_key(&region("lax")));
    }
}
