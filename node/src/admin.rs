//! The node's implementation of the admin API's port: membership from the
//! mesh, the merged view, and the cluster-wide blocklist.

use std::sync::Arc;

use api::admin::{AdminError, ClusterAdmin, ClusterReport, MemberRow, MemberState};
use mesh_core::{OrchestratorId, ViewSnapshot};

use crate::cluster::Cluster;

/// Serves `/admin/*` from the node's [`Cluster`].
#[derive(Debug, Clone)]
pub struct NodeAdmin {
    cluster: Cluster,
}

impl NodeAdmin {
    /// An admin port over `cluster`.
    pub fn new(cluster: Cluster) -> Arc<Self> {
        Arc::new(Self { cluster })
    }
}

impl ClusterAdmin for NodeAdmin {
    fn cluster(&self) -> ClusterReport {
        let now = tokio::time::Instant::now();
        let mut members: Vec<MemberRow> = self
            .cluster
            .members()
            .into_iter()
            .map(|member| MemberRow {
                node: member.node,
                region: member.region,
                state: match member.state {
                    mesh::MemberState::Alive => MemberState::Alive,
                    mesh::MemberState::Suspect => MemberState::Suspect,
                    mesh::MemberState::Dead => MemberState::Dead,
                    mesh::MemberState::Left => MemberState::Left,
                },
                last_heard_ms_ago: member
                    .last_heard
                    .map(|at| now.saturating_duration_since(at).as_millis() as u64),
                generation: member.generation,
                version: member.version,
                api_url: member.api_url,
                admin_url: member.admin_url,
                load: member.load,
                routing_config: member.routing_config,
                is_self: member.is_self,
            })
            .collect();
        if members.is_empty() {
            // Standalone: the node itself is the whole cluster.
            members.push(MemberRow {
                node: self.cluster.node().clone(),
                region: Some(self.cluster.region().clone()),
                state: MemberState::Alive,
                last_heard_ms_ago: Some(0),
                generation: 0,
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                api_url: None,
                admin_url: None,
                load: None,
                routing_config: Some(self.cluster.routing_config()),
                is_self: true,
            });
        }
        ClusterReport {
            node: self.cluster.node().clone(),
            region: self.cluster.region().clone(),
            members,
        }
    }

    fn view(&self) -> ViewSnapshot {
        self.cluster.snapshot()
    }

    fn block(&self, orchestrator: OrchestratorId) -> Result<(), AdminError> {
        self.cluster
            .block(orchestrator)
            .map_err(|_| AdminError::BlocklistFull)
    }

    fn unblock(&self, orchestrator: &OrchestratorId) -> Result<(), AdminError> {
        self.cluster.unblock(orchestrator);
        Ok(())
    }
}
