//! What the mesh's integration tests share: a throw-away cluster CA and
//! loopback addresses.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mesh::{NodeIdentity, certs};
use mesh_core::{NodeId, RegionId};

/// Upper bound for anything that should converge on loopback.
pub(crate) const CONVERGE: Duration = Duration::from_secs(5);

/// A cluster CA in a fresh temp dir, issuing node certificates on demand.
pub(crate) struct Ca {
    dir: tempfile::TempDir,
}

impl Ca {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        certs::init_ca(dir.path()).unwrap();
        Self { dir }
    }

    /// Issues (or re-issues) `node`'s certificate for `region` and loads it.
    pub(crate) fn identity(&self, node: &str, region: &str) -> NodeIdentity {
        let node = NodeId::new(node).unwrap();
        let region = RegionId::new(region).unwrap();
        let path: &Path = self.dir.path();
        certs::issue_node(path, path, &node, &region).unwrap();
        NodeIdentity::load_issued(path, &node, path).unwrap()
    }
}

/// Port 0 on 127.0.0.1: the OS picks a free port.
pub(crate) fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}
