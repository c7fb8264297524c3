//! API keys. Keys from the configuration are held only as SHA-256 hashes, so
//! a memory dump or a debug print does not leak them.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::KeyEntry;

/// Maps key hashes to tenants.
#[derive(Debug, Default)]
pub struct KeyStore {
    tenants_by_hash: HashMap<[u8; 32], (String, String)>,
}

impl KeyStore {
    /// Hashes the configured keys.
    pub fn new(entries: &[KeyEntry]) -> Self {
        Self {
            tenants_by_hash: entries
                .iter()
                .map(|e| (hash(&e.key), (e.tenant.clone(), e.tier.clone())))
                .collect(),
        }
    }
}

impl api::Authenticator for KeyStore {
    fn authenticate(&self, bearer_key: &str) -> Option<api::Caller> {
        self.tenants_by_hash
            .get(&hash(bearer_key))
            .map(|(tenant, tier)| api::Caller {
                tenant: tenant.clone(),
                tier: tier.clone(),
            })
    }
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::Authenticator;

    #[test]
    fn known_keys_map_to_tenants() {
        let store = KeyStore::new(&[KeyEntry {
            key: "k".repeat(20),
            tenant: "acme".into(),
            tier: "default".into(),
        }]);
        assert_eq!(store.authenticate(&"k".repeat(20)).unwrap().tenant, "acme");
        assert!(store.authenticate("other").is_none());
        assert!(!format!("{store:?}").contains("kkkk"));
    }
}
