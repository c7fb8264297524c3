//! The gRPC half: `net.Orchestrator/GetOrchestrator` and `Ping`.

use std::sync::Arc;

use livepeer::proto;
use livepeer::proto::orchestrator_server::{Orchestrator, OrchestratorServer};
use tonic::{Request, Response, Status};

use super::http::PeerAddr;
use super::info::orchestrator_info;
use super::state::{Shared, bump};

/// The tonic service of one emulated orchestrator.
#[derive(Debug, Clone)]
pub(crate) struct GrpcOrchestrator {
    shared: Arc<Shared>,
}

impl GrpcOrchestrator {
    pub(crate) fn server(shared: Arc<Shared>) -> OrchestratorServer<Self> {
        OrchestratorServer::new(Self { shared })
    }

    async fn region_delay<T>(&self, request: &Request<T>) {
        if let Some(PeerAddr(addr)) = request.extensions().get::<PeerAddr>() {
            let delay = self.shared.region_delay(addr.ip());
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[tonic::async_trait]
impl Orchestrator for GrpcOrchestrator {
    async fn get_orchestrator(
        &self,
        request: Request<proto::OrchestratorRequest>,
    ) -> Result<Response<proto::OrchestratorInfo>, Status> {
        self.region_delay(&request).await;
        bump(&self.shared.counters.get_orchestrator_calls);
        Ok(Response::new(orchestrator_info(
            &self.shared,
            request.get_ref(),
        )))
    }

    async fn ping(
        &self,
        request: Request<proto::PingPong>,
    ) -> Result<Response<proto::PingPong>, Status> {
        self.region_delay(&request).await;
        Ok(Response::new(proto::PingPong {
            value: request.into_inner().value,
        }))
    }
}
