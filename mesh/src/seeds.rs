//! DNS seed discovery: SRV `_gossip._udp.<name>` (targets resolved through
//! the additional section or A/AAAA), falling back to A/AAAA of the name
//! itself. Resolved addresses are handed to chitchat with
//! `ChitchatHandle::gossip(addr)`, so nodes can start in any order.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use tracing::debug;

/// A seed name could not be resolved, or the resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// Building the resolver failed (e.g. unreadable resolv.conf).
    #[error("DNS resolver: {0}")]
    Resolver(String),
}

/// Resolves DNS seed names to mesh addresses.
#[derive(Clone)]
pub struct SeedResolver {
    resolver: TokioResolver,
}

impl std::fmt::Debug for SeedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedResolver").finish_non_exhaustive()
    }
}

impl SeedResolver {
    /// The system resolver (`/etc/resolv.conf`).
    pub fn system() -> Result<Self, SeedError> {
        let resolver = Resolver::builder_tokio()
            .map_err(|e| SeedError::Resolver(e.to_string()))?
            .with_options(no_cache())
            .build()
            .map_err(|e| SeedError::Resolver(e.to_string()))?;
        Ok(Self { resolver })
    }

    /// A resolver that asks one nameserver (UDP) at `addr`.
    pub fn with_nameserver(addr: SocketAddr) -> Result<Self, SeedError> {
        let mut server = NameServerConfig::udp(addr.ip());
        for connection in &mut server.connections {
            connection.port = addr.port();
        }
        let resolver = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![server]),
            TokioRuntimeProvider::default(),
        )
        .with_options(no_cache())
        .build()
        .map_err(|e| SeedError::Resolver(e.to_string()))?;
        Ok(Self { resolver })
    }

    /// Resolves one seed name (`name` or `name:port`). Failures resolve to
    /// nothing (logged): a seed that is not in DNS yet is normal at start-up.
    pub async fn resolve(&self, seed: &str, default_port: u16) -> Vec<SocketAddr> {
        let (host, port) = split_port(seed, default_port);
        let srv_name = format!("_gossip._udp.{}", fqdn(host));
        let mut addrs = Vec::new();
        match self.resolver.srv_lookup(srv_name.as_str()).await {
            Ok(lookup) => {
                for record in lookup.answers() {
                    let RData::SRV(srv) = &record.data else {
                        continue;
                    };
                    let from_additionals: Vec<IpAddr> = lookup
                        .additionals()
                        .iter()
                        .filter(|extra| extra.name == srv.target)
                        .filter_map(|extra| match &extra.data {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                            _ => None,
                        })
                        .collect();
                    let ips = if from_additionals.is_empty() {
                        self.lookup_ips(&srv.target.to_string()).await
                    } else {
                        from_additionals
                    };
                    addrs.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, srv.port)));
                }
            }
            Err(error) => debug!(seed = %seed, %error, "no SRV record"),
        }
        if addrs.is_empty() {
            let ips = self.lookup_ips(&fqdn(host)).await;
            addrs.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, port)));
        }
        addrs.sort();
        addrs.dedup();
        addrs
    }

    async fn lookup_ips(&self, host: &str) -> Vec<IpAddr> {
        match self.resolver.lookup_ip(host).await {
            Ok(lookup) => lookup.iter().collect(),
            Err(error) => {
                debug!(host = %host, %error, "no A/AAAA record");
                Vec::new()
            }
        }
    }
}

/// Caching would hide a new pod for the record's TTL; seeds are looked up
/// rarely, so every lookup asks the server.
fn no_cache() -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts
}

fn split_port(seed: &str, default_port: u16) -> (&str, u16) {
    match seed.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, port),
            Err(_) => (seed, default_port),
        },
        _ => (seed, default_port),
    }
}

fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    }
}

/// An address that never makes sense as a seed.
pub(crate) fn is_unusable(addr: &SocketAddr) -> bool {
    addr.ip().is_unspecified() || addr.ip() == IpAddr::V4(Ipv4Addr::BROADCAST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_names_split_host_and_port() {
        assert_eq!(split_port("gw.svc", 7946), ("gw.svc", 7946));
        assert_eq!(split_port("gw.svc:9000", 7946), ("gw.svc", 9000));
        assert_eq!(split_port("gw.svc:x", 7946), ("gw.svc:x", 7946));
        assert_eq!(fqdn("a.b"), "a.b.");
        assert_eq!(fqdn("a.b."), "a.b.");
    }
}
