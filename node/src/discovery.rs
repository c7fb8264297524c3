//! Discovery: which orchestrators exist (a static list and a webhook, as
//! go-livepeer's `-orchAddr` and `-orchWebhookUrl`), and what each of them
//! offers (a periodic `GetOrchestrator` without capabilities, whose reply
//! carries every model, price and GPU).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use livepeer::OrchestratorClient;
use mesh_core::OrchestratorId;
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::cluster::{Cluster, observed_error};
use crate::config::DiscoverySection;
use crate::registry::Registry;

/// Largest webhook body read; a list of thousands of orchestrators fits.
const MAX_WEBHOOK_BODY_BYTES: usize = 1024 * 1024;
/// Timeout of one webhook fetch (go-livepeer: 3 s).
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(3);
/// Most concurrent `GetOrchestrator` calls of one refresh round, so a long
/// list does not open hundreds of connections at once.
const MAX_CONCURRENT_INFO_FETCHES: usize = 32;

/// One entry of the webhook's JSON array.
#[derive(Debug, Deserialize)]
struct WebhookEntry {
    #[serde(default)]
    address: String,
    /// Trust score; kept for compatibility, unused by routing.
    #[serde(default)]
    #[allow(dead_code)]
    score: Option<f64>,
}

/// Parses a webhook body into orchestrator ids. Entries with an empty or
/// invalid address are skipped (and counted), as go-livepeer skips them.
pub fn parse_webhook_body(body: &[u8]) -> Result<(Vec<OrchestratorId>, usize), serde_json::Error> {
    let entries: Vec<WebhookEntry> = serde_json::from_slice(body)?;
    let mut skipped = 0;
    let ids = entries
        .into_iter()
        .filter_map(|entry| match OrchestratorId::parse(&entry.address) {
            Ok(id) => Some(id),
            Err(_) => {
                skipped += 1;
                None
            }
        })
        .collect();
    Ok((ids, skipped))
}

/// Runs discovery until `shutdown` fires. `refresh_now` triggers an early
/// info round (e.g. after an orchestrator restarted).
pub async fn run(
    config: DiscoverySection,
    registry: Registry,
    cluster: Cluster,
    client: OrchestratorClient,
    refresh_now: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let http = reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .build()
        .ok();
    let mut webhook_list: Vec<OrchestratorId> = Vec::new();
    let mut webhook_fetched_at: Option<Instant> = None;
    let info_every = Duration::from_millis(config.info_refresh_ms);
    let webhook_every = Duration::from_millis(config.webhook_refresh_ms);
    let rpc_timeout = Duration::from_millis(config.get_orchestrator_timeout_ms);
    loop {
        if let (Some(url), Some(http)) = (&config.webhook_url, &http) {
            let due = webhook_fetched_at.is_none_or(|at| at.elapsed() >= webhook_every);
            if due {
                webhook_fetched_at = Some(Instant::now());
                match fetch_webhook(http, url).await {
                    Ok(list) => webhook_list = list,
                    Err(error) => {
                        tracing::warn!(%error, url = %url, "webhook discovery failed; keeping the last good list")
                    }
                }
            }
        }
        let dropped = registry.set_members(
            config
                .orchestrators
                .iter()
                .cloned()
                .chain(webhook_list.iter().cloned()),
        );
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "orchestrator list longer than the registry bound; extra entries ignored"
            );
        }
        refresh_infos(&registry, &cluster, &client, rpc_timeout).await;
        tokio::select! {
            _ = tokio::time::sleep(info_every) => {}
            _ = refresh_now.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn fetch_webhook(
    http: &reqwest::Client,
    url: &url::Url,
) -> Result<Vec<OrchestratorId>, String> {
    let mut response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_WEBHOOK_BODY_BYTES {
            return Err(format!("body larger than {MAX_WEBHOOK_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let (ids, skipped) = parse_webhook_body(&body).map_err(|e| format!("malformed JSON: {e}"))?;
    if skipped > 0 {
        tracing::warn!(skipped, url = %url, "webhook entries with an invalid address were skipped");
    }
    Ok(ids)
}

/// How often orchestrators that some node ejected are probed. A successful
/// probe lifts an "unreachable" ejection, so traffic returns within about a
/// second of an orchestrator (or a whole region) coming back.
pub const EJECTED_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Probes every orchestrator that is ejected in the shared view,
/// once per [`EJECTED_PROBE_INTERVAL`], until `shutdown` fires.
pub async fn probe_ejected(
    cluster: Cluster,
    client: OrchestratorClient,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(EJECTED_PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let snapshot = cluster.snapshot();
        let now = crate::cluster::unix_ms();
        // Every ejected orchestrator in the view, listed here or not: each
        // node lifts its own ejection record, and the view takes the latest
        // ejection over all observers.
        let ejected: Vec<OrchestratorId> = snapshot
            .orchestrators()
            .iter()
            .filter(|o| o.ejected_until_ms > now && !o.blocked)
            .map(|o| o.id.clone())
            .collect();
        futures_util::stream::iter(ejected)
            .for_each_concurrent(MAX_CONCURRENT_INFO_FETCHES, |id| {
                let (cluster, client) = (&cluster, &client);
                async move {
                    let started = Instant::now();
                    if let Ok(session) = client.get_orchestrator(&id, None, timeout).await {
                        let rtt_ms = started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
                        tracing::info!(orchestrator = %id, rtt_ms, "ejected orchestrator answers again");
                        cluster.record_info(&id, session.info, rtt_ms);
                    }
                }
            })
            .await;
    }
}

/// One round of `GetOrchestrator` (no capabilities) against every member.
/// Each answer goes into the shared view with its round trip; a failure
/// counts against the orchestrator there, so a dead one is ejected on every
/// node as soon as one node's discovery sees it.
pub async fn refresh_infos(
    registry: &Registry,
    cluster: &Cluster,
    client: &OrchestratorClient,
    timeout: Duration,
) {
    futures_util::stream::iter(registry.members())
        .for_each_concurrent(MAX_CONCURRENT_INFO_FETCHES, |id| async move {
            let started = Instant::now();
            match client.get_orchestrator(&id, None, timeout).await {
                Ok(session) => {
                    let rtt_ms = started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
                    cluster.record_info(&id, session.info, rtt_ms);
                }
                Err(error) => {
                    tracing::debug!(orchestrator = %id, %error, "orchestrator info refresh failed");
                    cluster.record_unreachable(&id, observed_error(&error));
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_body_parses_and_skips_bad_entries() {
        let body = br#"[{"address":"https://127.0.0.1:9000","score":1},{"address":""},{"address":"ftp://x"},{"address":"127.0.0.2"}]"#;
        let (ids, skipped) = parse_webhook_body(body).unwrap();
        assert_eq!(
            ids.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
            ["https://127.0.0.1:9000", "https://127.0.0.2:8935"]
        );
        assert_eq!(skipped, 2);
        assert!(parse_webhook_body(b"{not json").is_err());
        assert!(parse_webhook_body(br#"{"address":"x"}"#).is_err());
    }
}
