//! `[mesh]` configuration section. Every default lives here with its reason.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The mesh's default UDP port (the memberlist/Serf convention).
pub const DEFAULT_MESH_PORT: u16 = 7946;

/// Configuration of the mesh. Unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// UDP address of the QUIC endpoint. Default `0.0.0.0:7946`.
    pub listen_addr: SocketAddr,
    /// Address peers dial to reach this node. Default: `listen_addr`, which
    /// must then be a concrete IP (not `0.0.0.0`).
    pub advertise_addr: Option<SocketAddr>,
    /// Gossip is refused between different cluster ids. Default `gatemesh`.
    pub cluster_id: String,
    /// Static seeds, `ip:port` or `host:port` (re-resolved by chitchat every
    /// 60 s). Default none.
    pub seeds: Vec<String>,
    /// DNS seed names, `name` or `name:port`: SRV `_gossip._udp.<name>` first,
    /// then A/AAAA with the given port or [`DEFAULT_MESH_PORT`]. Default none.
    pub dns_seeds: Vec<String>,
    /// Nameserver for `dns_seeds` instead of `/etc/resolv.conf`. Default none.
    pub dns_nameserver: Option<SocketAddr>,
    /// Re-resolution period of `dns_seeds` once this node has peers; while it
    /// has none it retries every second. Default 30,000 ms: a new pod shows
    /// up in DNS within seconds and joins through gossip long before.
    pub dns_refresh_interval_ms: u64,
    /// Gossip (anti-entropy) round period. Default 10,000 ms. Gossip carries
    /// member keys (region, URLs, version, load, routing digest, departure)
    /// and is the backstop for record pushes; it does not drive failure
    /// detection (heartbeats do). One round costs ~2.7 KB per node in a
    /// 9-node cluster (a digest of every node to 3 peers and back), so this
    /// period sets half the idle traffic: ~0.28 KB/s at 10 s, 27 KB/s at
    /// 100 ms. Joins, returns and routing-digest changes do not wait for
    /// it: a heartbeat from an unknown incarnation, a member that becomes
    /// reachable, and a new digest each start an exchange at once.
    pub gossip_interval_ms: u64,
    /// Direct heartbeat period: every node sends a 12-byte heartbeat to
    /// every known peer this often (to dead peers every fourth time). The
    /// failure detector listens for nothing else. Default 300 ms: a 1 s
    /// pause leaves a gap of at most 1.3 s, under `dead_after_ms`, and
    /// 8 peers cost ~320 B/s of payload (~3 KB/s on the wire: each
    /// heartbeat is a QUIC packet and an acknowledgement).
    pub heartbeat_interval_ms: u64,
    /// Silence (no direct heartbeat) after which a peer is declared dead.
    /// Default 1,500 ms: a 1 s pause is survived and a crash is seen by
    /// everyone within 2 s. Must be at least 4 × `heartbeat_interval_ms`.
    /// (chitchat's own detector, on gossiped heartbeats, only declares a
    /// node dead after the longer of this and 6 gossip rounds.)
    pub dead_after_ms: u64,
    /// How long a dead node's state is kept: gossiped as dead for half of
    /// it, then removed. Default 120,000 ms (chitchat's default is 24 h,
    /// far too long for gateways that come and go).
    pub dead_node_grace_period_ms: u64,
    /// How long deleted keys (tombstones) are kept before GC; a peer further
    /// behind gets a full state reset. Default 120,000 ms.
    pub tombstone_grace_period_ms: u64,
    /// QUIC keep-alive. Default 1,000 ms: keeps NAT bindings and surfaces a
    /// dead connection early.
    pub keep_alive_interval_ms: u64,
    /// QUIC idle timeout: a silent connection is dropped and redialled.
    /// Default 10,000 ms: survives WAN hiccups, detects dead peers' links.
    pub idle_timeout_ms: u64,
    /// Public API URL published to peers. Default empty (unset).
    pub api_url: String,
    /// Admin URL published to peers. Default empty (unset).
    pub admin_url: String,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], DEFAULT_MESH_PORT)),
            advertise_addr: None,
            cluster_id: "gatemesh".to_owned(),
            seeds: Vec::new(),
            dns_seeds: Vec::new(),
            dns_nameserver: None,
            dns_refresh_interval_ms: 30_000,
            gossip_interval_ms: 10_000,
            heartbeat_interval_ms: 300,
            dead_after_ms: 1_500,
            dead_node_grace_period_ms: 120_000,
            tombstone_grace_period_ms: 120_000,
            keep_alive_interval_ms: 1_000,
            idle_timeout_ms: 10_000,
            api_url: String::new(),
            admin_url: String::new(),
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field is out of range.
    #[error("mesh.{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl MeshConfig {
    /// Checks the cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.gossip_interval_ms == 0 {
            return invalid("gossip_interval_ms", "must be > 0");
        }
        if self.heartbeat_interval_ms == 0 {
            return invalid("heartbeat_interval_ms", "must be > 0");
        }
        if self.dead_after_ms < 4 * self.heartbeat_interval_ms {
            return invalid(
                "dead_after_ms",
                "must be at least 4 × heartbeat_interval_ms",
            );
        }
        if self.keep_alive_interval_ms == 0 || self.keep_alive_interval_ms >= self.idle_timeout_ms {
            return invalid(
                "keep_alive_interval_ms",
                "must be > 0 and shorter than idle_timeout_ms",
            );
        }
        if self.cluster_id.is_empty() {
            return invalid("cluster_id", "must not be empty");
        }
        if self.advertise_addr.is_none() && self.listen_addr.ip().is_unspecified() {
            return invalid(
                "advertise_addr",
                "required when listen_addr is an unspecified address",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_unknown_keys_fail() {
        let parsed: MeshConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, MeshConfig::default());
        assert!(serde_json::from_str::<MeshConfig>(r#"{"gossip_interval":1}"#).is_err());
        let mut config = MeshConfig::default();
        assert!(config.validate().is_err(), "0.0.0.0 without advertise_addr");
        config.listen_addr = "127.0.0.1:0".parse().unwrap();
        assert!(config.validate().is_ok());
        config.dead_after_ms = 1_100;
        assert!(config.validate().is_err(), "under 4 heartbeats");
        config.heartbeat_interval_ms = 0;
        assert!(config.validate().is_err());
    }
}
