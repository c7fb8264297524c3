//! API keys. Keys are held only as SHA-256 hashes, so a memory dump or a
//! debug print does not leak them. Two layers: the configured keys (the
//! base set, swapped on a config reload) and the runtime [`KeyBook`]
//! (admin API, replicated cluster-wide by [`crate::tenancy`]), which wins:
//! a runtime entry re-assigns a configured key, and a revoked hash is
//! refused whatever the configuration says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use api::admin::AdminError;
use api::admin::keys::{CreatedKey, KeyAdmin, KeyRow, NewKey};
use base64::Engine as _;
use mesh_core::NodeId;
use mesh_core::tenancy::{KeyBook, KeyError, KeyHash};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::config::{KeyEntry, MIN_KEY_LEN};

/// Length of a short key id (hex digits of the hash) the admin API accepts.
pub const SHORT_ID_LEN: usize = 16;
/// Longest key accepted through the admin API.
const MAX_KEY_LEN: usize = 256;

/// Maps key hashes to tenants: configured keys plus the runtime book.
#[derive(Debug)]
pub struct KeyStore {
    base: RwLock<Arc<HashMap<KeyHash, (String, String)>>>,
    runtime: Mutex<KeyBook>,
    /// Woken when the runtime book changed locally (publish it).
    pub(crate) changed: Notify,
}

impl KeyStore {
    /// Hashes the configured keys; an empty runtime book for `node`.
    pub fn new(node: &NodeId, entries: &[KeyEntry]) -> Self {
        Self {
            base: RwLock::new(Arc::new(hash_entries(entries))),
            runtime: Mutex::new(KeyBook::new(node)),
            changed: Notify::new(),
        }
    }

    /// Replaces the configured keys (config reload).
    pub fn apply_config(&self, entries: &[KeyEntry]) {
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(hash_entries(entries));
    }

    /// Runs `f` on the runtime book (replication).
    pub(crate) fn with_book<R>(&self, f: impl FnOnce(&mut KeyBook) -> R) -> R {
        f(&mut self.runtime.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn base(&self) -> Arc<HashMap<KeyHash, (String, String)>> {
        self.base.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn find(&self, id: &str) -> Result<KeyHash, AdminError> {
        let id = id.to_ascii_lowercase();
        if id.len() != 64 && id.len() != SHORT_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(AdminError::InvalidKey(format!(
                "a key id is the key's SHA-256 in hex (64 digits) or its first {SHORT_ID_LEN}"
            )));
        }
        let base = self.base();
        let mut matches: Vec<KeyHash> = self
            .with_book(|book| book.entries().map(|(h, _)| *h).collect::<Vec<_>>())
            .into_iter()
            .chain(base.keys().copied())
            .filter(|h| hex(h).starts_with(&id))
            .collect();
        matches.sort();
        matches.dedup();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(AdminError::KeyNotFound(id)),
            _ => Err(AdminError::KeyConflict(format!(
                "key id {id} is ambiguous; give all 64 hex digits"
            ))),
        }
    }

    fn row(&self, hash: &KeyHash) -> Option<KeyRow> {
        if let Some(record) = self.with_book(|book| book.get(hash).cloned()) {
            return Some(KeyRow {
                id: hex(hash),
                tenant: record.tenant,
                tier: record.tier,
                source: "runtime",
                revoked: record.revoked,
            });
        }
        self.base().get(hash).map(|(tenant, tier)| KeyRow {
            id: hex(hash),
            tenant: tenant.clone(),
            tier: tier.clone(),
            source: "config",
            revoked: false,
        })
    }
}

impl api::Authenticator for KeyStore {
    fn authenticate(&self, bearer_key: &str) -> Option<api::Caller> {
        let hash = hash(bearer_key);
        let runtime = self.with_book(|book| book.get(&hash).cloned());
        if let Some(record) = runtime {
            return (!record.revoked).then_some(api::Caller {
                tenant: record.tenant,
                tier: record.tier,
            });
        }
        self.base
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .map(|(tenant, tier)| api::Caller {
                tenant: tenant.clone(),
                tier: tier.clone(),
            })
    }
}

impl KeyAdmin for KeyStore {
    fn list(&self) -> Vec<KeyRow> {
        let mut rows: Vec<KeyRow> = self.with_book(|book| {
            book.entries()
                .map(|(hash, record)| KeyRow {
                    id: hex(hash),
                    tenant: record.tenant.clone(),
                    tier: record.tier.clone(),
                    source: "runtime",
                    revoked: record.revoked,
                })
                .collect()
        });
        let runtime: std::collections::HashSet<String> =
            rows.iter().map(|r| r.id.clone()).collect();
        for (hash, (tenant, tier)) in self.base().iter() {
            let id = hex(hash);
            if !runtime.contains(&id) {
                rows.push(KeyRow {
                    id,
                    tenant: tenant.clone(),
                    tier: tier.clone(),
                    source: "config",
                    revoked: false,
                });
            }
        }
        rows.sort_by(|a, b| (&a.tenant, &a.id).cmp(&(&b.tenant, &b.id)));
        rows
    }

    fn create(&self, request: NewKey) -> Result<CreatedKey, AdminError> {
        let generated = request.key.is_none();
        let key = request.key.unwrap_or_else(generate_key);
        if key.len() < MIN_KEY_LEN
            || key.len() > MAX_KEY_LEN
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(AdminError::InvalidKey(format!(
                "a key is {MIN_KEY_LEN}–{MAX_KEY_LEN} printable ASCII characters"
            )));
        }
        let tier = request.tier.unwrap_or_else(|| "default".to_owned());
        let hash = hash(&key);
        self.with_book(|book| book.add(hash, &request.tenant, &tier, crate::cluster::unix_ms()))
            .map_err(key_error)?;
        self.changed.notify_one();
        let row = self
            .row(&hash)
            .ok_or_else(|| AdminError::Internal("created key vanished".into()))?;
        Ok(CreatedKey {
            row,
            key: generated.then_some(key),
        })
    }

    fn revoke(&self, id: &str) -> Result<KeyRow, AdminError> {
        let hash = self.find(id)?;
        let (tenant, tier) = self
            .row(&hash)
            .map(|r| (r.tenant, r.tier))
            .unwrap_or_default();
        self.with_book(|book| book.revoke(hash, &tenant, &tier, crate::cluster::unix_ms()))
            .map_err(key_error)?;
        self.changed.notify_one();
        self.row(&hash)
            .ok_or_else(|| AdminError::Internal("revoked key vanished".into()))
    }
}

fn key_error(error: KeyError) -> AdminError {
    match error {
        KeyError::InvalidName { .. } => AdminError::InvalidKey(error.to_string()),
        KeyError::Revoked | KeyError::Full => AdminError::KeyConflict(error.to_string()),
        KeyError::Codec(_) | KeyError::Clock(_) => AdminError::Internal(error.to_string()),
    }
}

fn hash_entries(entries: &[KeyEntry]) -> HashMap<KeyHash, (String, String)> {
    entries
        .iter()
        .map(|e| (hash(&e.key), (e.tenant.clone(), e.tier.clone())))
        .collect()
}

/// A new random key: `gm_` + 32 random bytes, base64url.
fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "gm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 of a key.
pub fn hash(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::Authenticator;

    fn store() -> KeyStore {
        KeyStore::new(
            &NodeId::new("n").unwrap(),
            &[KeyEntry {
                key: "k".repeat(20),
                tenant: "acme".into(),
                tier: "default".into(),
            }],
        )
    }

    #[test]
    fn known_keys_map_to_tenants() {
        let store = store();
        assert_eq!(store.authenticate(&"k".repeat(20)).unwrap().tenant, "acme");
        assert!(store.authenticate("other").is_none());
        assert!(!format!("{store:?}").contains("kkkk"));
    }

    #[test]
    fn runtime_keys_layer_over_the_config_and_revocation_wins() {
        let store = store();
        let created = store
            .create(NewKey {
                tenant: "globex".into(),
                tier: Some("gold".into()),
                key: None,
            })
            .unwrap();
        let key = created.key.clone().expect("generated");
        assert_eq!(store.authenticate(&key).unwrap().tier, "gold");
        assert_eq!(store.list().len(), 2);
        assert!(store.list().iter().all(|r| !r.id.contains(&key)));
        // Revoke the configured key by its short id.
        let config_id = hex(&hash(&"k".repeat(20)));
        store.revoke(&config_id[..SHORT_ID_LEN]).unwrap();
        assert!(store.authenticate(&"k".repeat(20)).is_none());
        // A reload that still lists it does not bring it back.
        store.apply_config(&[KeyEntry {
            key: "k".repeat(20),
            tenant: "acme".into(),
            tier: "default".into(),
        }]);
        assert!(store.authenticate(&"k".repeat(20)).is_none());
        let again = store.create(NewKey {
            tenant: "acme".into(),
            tier: None,
            key: Some("k".repeat(20)),
        });
        assert!(matches!(again, Err(AdminError::KeyConflict(_))));
        assert!(matches!(store.revoke("zz"), Err(AdminError::InvalidKey(_))));
        assert!(matches!(
            store.revoke(&"0".repeat(64)),
            Err(AdminError::KeyNotFound(_))
        ));
    }
}
