//! Runtime API keys, replicated as a state-based CRDT.
//!
//! The book maps a key's SHA-256 hash to a [`KeyRecord`]: tenant, tier, a
//! revoked flag and the HLC of the last write. Two states merge per hash:
//!
//! - `revoked` is an OR: once any node revokes a hash it stays revoked on
//!   every node forever, whatever else happens concurrently or later (a
//!   revoked key cannot be brought back; create a new key instead);
//! - tenant and tier are a last-writer-wins register ordered by the HLC
//!   (node tag inside it breaks ties), so concurrent edits converge.
//!
//! Both are joins of semilattices, so the merge is commutative, associative
//! and idempotent and every node converges to the same book. The book is
//! split into [`KEY_SHARDS`] shards by the hash's first nibble, each
//! published as its own mesh record, so no record outgrows the mesh's
//! limit; revoked entries are tombstones and count towards
//! [`MAX_RUNTIME_KEYS`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::hlc::{DEFAULT_MAX_DRIFT_MS, Hlc, HlcClock, HlcError};
use crate::id::NodeId;

/// A key's SHA-256.
pub type KeyHash = [u8; 32];

/// Most runtime entries (live keys and tombstones): admin-created, so a few
/// hundred is plenty; bounds memory and the records (~150 bytes each).
pub const MAX_RUNTIME_KEYS: usize = 512;
/// Shards of the book, one mesh record each.
pub const KEY_SHARDS: u8 = 16;
/// Longest tier name.
pub const MAX_TIER_LEN: usize = 32;
/// Largest encoded shard (the mesh's record limit).
pub const MAX_SHARD_BYTES: usize = crate::view::MAX_RECORD_BYTES;
/// Format byte in front of an encoded shard.
pub const KEYS_FORMAT_VERSION: u8 = 1;

/// One runtime key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The tenant.
    pub tenant: String,
    /// The tier.
    pub tier: String,
    /// Revoked: refused everywhere, forever.
    pub revoked: bool,
    /// HLC of the last write of tenant/tier (or of the revocation).
    pub written: Hlc,
}

impl KeyRecord {
    fn merge(&mut self, other: &Self) {
        if other.written > self.written {
            self.tenant.clone_from(&other.tenant);
            self.tier.clone_from(&other.tier);
            self.written = other.written;
        }
        self.revoked |= other.revoked;
    }
}

/// A key operation or a peer's shard that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The hash was revoked; it can never be used again.
    #[error("this key was revoked; revoked keys cannot be re-added")]
    Revoked,
    /// The book holds [`MAX_RUNTIME_KEYS`] entries.
    #[error("the runtime key book is full ({MAX_RUNTIME_KEYS} entries)")]
    Full,
    /// Tenant or tier name empty, too long or with odd characters.
    #[error("invalid {field}: {reason}")]
    InvalidName {
        /// `tenant` or `tier`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Encoding or decoding failed, or the shard is too large.
    #[error("key shard codec: {0}")]
    Codec(String),
    /// The peer's clock is too far ahead.
    #[error(transparent)]
    Clock(#[from] HlcError),
}

/// Checks a tenant or tier name: 1–`max` bytes of `[A-Za-z0-9._@:-]`.
pub fn validate_name(field: &'static str, value: &str, max: usize) -> Result<(), KeyError> {
    let invalid = |reason: String| KeyError::InvalidName { field, reason };
    if value.is_empty() || value.len() > max {
        return Err(invalid(format!("must be 1–{max} bytes")));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b':'))
    {
        return Err(invalid(
            "may only contain letters, digits and . _ - @ :".into(),
        ));
    }
    Ok(())
}

/// The shard of a hash.
pub fn shard_of(hash: &KeyHash) -> u8 {
    hash[0] >> 4
}

/// The runtime key book of one node.
#[derive(Debug, Clone)]
pub struct KeyBook {
    clock: HlcClock,
    entries: BTreeMap<KeyHash, KeyRecord>,
    dirty: BTreeSet<u8>,
}

impl KeyBook {
    /// An empty book for node `local`.
    pub fn new(local: &NodeId) -> Self {
        Self {
            clock: HlcClock::new(local, DEFAULT_MAX_DRIFT_MS),
            entries: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// The entry of `hash`, if any.
    pub fn get(&self, hash: &KeyHash) -> Option<&KeyRecord> {
        self.entries.get(hash)
    }

    /// Every entry, by hash.
    pub fn entries(&self) -> impl Iterator<Item = (&KeyHash, &KeyRecord)> {
        self.entries.iter()
    }

    /// Adds (or re-assigns) a key. Refused for a revoked hash.
    pub fn add(
        &mut self,
        hash: KeyHash,
        tenant: &str,
        tier: &str,
        now_ms: u64,
    ) -> Result<(), KeyError> {
        validate_name("tenant", tenant, super::usage::MAX_TENANT_NAME_LEN)?;
        validate_name("tier", tier, MAX_TIER_LEN)?;
        match self.entries.get(&hash) {
            Some(existing) if existing.revoked => return Err(KeyError::Revoked),
            None if self.entries.len() >= MAX_RUNTIME_KEYS => return Err(KeyError::Full),
            _ => {}
        }
        let written = self.clock.tick(now_ms);
        self.entries.insert(
            hash,
            KeyRecord {
                tenant: tenant.to_owned(),
                tier: tier.to_owned(),
                revoked: false,
                written,
            },
        );
        self.dirty.insert(shard_of(&hash));
        Ok(())
    }

    /// Revokes a hash, known or not (`tenant`/`tier` say whose it was, for
    /// listings). Revoking twice is fine.
    pub fn revoke(
        &mut self,
        hash: KeyHash,
        tenant: &str,
        tier: &str,
        now_ms: u64,
    ) -> Result<(), KeyError> {
        if let Some(existing) = self.entries.get_mut(&hash) {
            if !existing.revoked {
                existing.revoked = true;
                existing.written = self.clock.tick(now_ms);
                self.dirty.insert(shard_of(&hash));
            }
            return Ok(());
        }
        if self.entries.len() >= MAX_RUNTIME_KEYS {
            return Err(KeyError::Full);
        }
        let written = self.clock.tick(now_ms);
        self.entries.insert(
            hash,
            KeyRecord {
                tenant: tenant.to_owned(),
                tier: tier.to_owned(),
                revoked: true,
                written,
            },
        );
        self.dirty.insert(shard_of(&hash));
        Ok(())
    }

    /// Shards changed since the last call (to publish).
    pub fn take_dirty(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// `[KEYS_FORMAT_VERSION] ++ postcard(entries of shard)`.
    pub fn encode_shard(&self, shard: u8) -> Result<Vec<u8>, KeyError> {
        let entries: Vec<(&KeyHash, &KeyRecord)> = self
            .entries
            .iter()
            .filter(|(hash, _)| shard_of(hash) == shard)
            .collect();
        let mut out = vec![KEYS_FORMAT_VERSION];
        let body = postcard::to_allocvec(&entries).map_err(|e| KeyError::Codec(e.to_string()))?;
        out.extend_from_slice(&body);
        if out.len() > MAX_SHARD_BYTES {
            return Err(KeyError::Codec(format!("shard of {} bytes", out.len())));
        }
        Ok(out)
    }

    /// Decodes a peer's shard (bounded; never panics).
    pub fn decode_shard(bytes: &[u8]) -> Result<Vec<(KeyHash, KeyRecord)>, KeyError> {
        if bytes.len() > MAX_SHARD_BYTES {
            return Err(KeyError::Codec(format!("shard of {} bytes", bytes.len())));
        }
        let (&format, body) = bytes
            .split_first()
            .ok_or_else(|| KeyError::Codec("empty".into()))?;
        if format != KEYS_FORMAT_VERSION {
            return Err(KeyError::Codec(format!("unknown format {format}")));
        }
        let (entries, rest): (Vec<(KeyHash, KeyRecord)>, _) =
            postcard::take_from_bytes(body).map_err(|e| KeyError::Codec(e.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyError::Codec(format!("{} trailing bytes", rest.len())));
        }
        Ok(entries)
    }

    /// Merges a peer's shard. Returns whether our state changed (then the
    /// shard is marked dirty, so we re-publish it: a revocation survives the
    /// node that made it). Entries with invalid names are skipped; new
    /// entries beyond [`MAX_RUNTIME_KEYS`] are dropped, except revocations
    /// of hashes we know.
    pub fn merge(
        &mut self,
        entries: Vec<(KeyHash, KeyRecord)>,
        now_ms: u64,
    ) -> Result<bool, KeyError> {
        let mut changed = false;
        for (hash, remote) in entries {
            if validate_name("tenant", &remote.tenant, super::usage::MAX_TENANT_NAME_LEN).is_err()
                || validate_name("tier", &remote.tier, MAX_TIER_LEN).is_err()
            {
                continue;
            }
            self.clock.observe(remote.written, now_ms)?;
            let room = self.entries.len() < MAX_RUNTIME_KEYS;
            match self.entries.get_mut(&hash) {
                Some(mine) => {
                    let before = mine.clone();
                    mine.merge(&remote);
                    if *mine != before {
                        changed = true;
                        self.dirty.insert(shard_of(&hash));
                    }
                }
                None if room => {
                    self.entries.insert(hash, remote);
                    changed = true;
                    self.dirty.insert(shard_of(&hash));
                }
                None => {}
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> KeyHash {
        [n; 32]
    }

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn sync(from: &KeyBook, to: &mut KeyBook, now: u64) {
        for shard in 0..KEY_SHARDS {
            let bytes = from.encode_shard(shard).unwrap();
            to.merge(KeyBook::decode_shard(&bytes).unwrap(), now)
                .unwrap();
        }
    }

    #[test]
    fn revocation_wins_over_a_concurrent_and_a_later_re_add() {
        let (mut a, mut b) = (KeyBook::new(&node("a")), KeyBook::new(&node("b")));
        a.add(hash(1), "acme", "default", 1_000).unwrap();
        sync(&a, &mut b, 1_001);
        // Concurrently: a revokes, b re-adds with another tier, later in time.
        a.revoke(hash(1), "acme", "default", 1_002).unwrap();
        b.add(hash(1), "acme", "gold", 1_010).unwrap();
        sync(&a, &mut b, 1_020);
        sync(&b, &mut a, 1_020);
        assert!(a.get(&hash(1)).unwrap().revoked);
        assert_eq!(a.get(&hash(1)), b.get(&hash(1)));
        assert_eq!(
            b.add(hash(1), "acme", "gold", 1_030),
            Err(KeyError::Revoked)
        );
    }

    #[test]
    fn merges_commute_and_are_idempotent() {
        let (mut a, mut b, mut c) = (
            KeyBook::new(&node("a")),
            KeyBook::new(&node("b")),
            KeyBook::new(&node("c")),
        );
        a.add(hash(1), "acme", "default", 10).unwrap();
        b.add(hash(1), "globex", "default", 20).unwrap();
        c.revoke(hash(0x20), "x", "default", 15).unwrap();
        b.add(hash(0x31), "initech", "free", 5).unwrap();
        let (mut ab, mut ba) = (a.clone(), b.clone());
        sync(&b, &mut ab, 30);
        sync(&c, &mut ab, 30);
        sync(&c, &mut ba, 30);
        sync(&a, &mut ba, 30);
        sync(&ba, &mut ab, 31);
        let dump = |k: &KeyBook| {
            k.entries()
                .map(|(h, r)| (*h, r.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(dump(&ab), dump(&ba));
        assert_eq!(ab.get(&hash(1)).unwrap().tenant, "globex");
        let before = dump(&ab);
        ab.take_dirty();
        sync(&ba, &mut ab, 32);
        assert_eq!(dump(&ab), before);
        assert!(
            ab.take_dirty().is_empty(),
            "a no-op merge must not republish"
        );
    }

    #[test]
    fn the_book_is_bounded_and_names_are_checked() {
        let mut book = KeyBook::new(&node("a"));
        for i in 0..MAX_RUNTIME_KEYS {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&(i as u64).to_be_bytes());
            h[0] = (i % 16) as u8 * 16;
            book.add(h, &"t".repeat(64), &"g".repeat(MAX_TIER_LEN), 1)
                .unwrap();
        }
        assert_eq!(
            book.add(hash(0xff), "acme", "default", 2),
            Err(KeyError::Full)
        );
        for shard in 0..KEY_SHARDS {
            book.encode_shard(shard)
                .expect("a full shard still fits a record");
        }
        assert!(matches!(
            KeyBook::new(&node("b")).add(hash(1), "has space", "default", 1),
            Err(KeyError::InvalidName { .. })
        ));
        assert!(KeyBook::decode_shard(&[]).is_err());
        assert!(KeyBook::decode_shard(&[1, 200, 200, 200]).is_err());
    }
}
