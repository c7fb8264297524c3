//! Replicated records: each node publishes its own small records
//! `(key → bytes)`; every node receives everyone's.
//!
//! Two paths carry a record, and the store keeps the highest
//! `(generation, seq)` per `(origin, key)`, so their order doesn't matter:
//! - **push**: a changed record goes at once on a uni stream to every
//!   reachable peer ([`Frame::Push`]); the origin is the sender's certificate
//!   identity, so a node can only ever write its own records;
//! - **gossip**: the record is also a chitchat key `r:<key>` on the
//!   publisher's node state (base64 of a versioned postcard envelope), which
//!   chitchat's anti-entropy delivers to nodes that missed the push.
//!
//! The content of records is opaque here (`mesh-core` defines it).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64;
use bytes::Bytes;
use mesh_core::NodeId;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Chitchat key prefix of records.
pub(crate) const RECORD_KEY_PREFIX: &str = "r:";

/// Largest record value: 16 KiB. Base64 makes it ~22 KB in chitchat, well
/// under the ~60 KB at which one value would block a node's later updates
/// (chitchat cuts deltas at the first value that doesn't fit a message).
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// Longest record key.
pub const MAX_RECORD_KEY_LEN: usize = 128;

/// Record events buffered per subscriber. A subscriber that falls this far
/// behind gets `Lagged` and should re-read [`crate::MeshHandle::records`].
pub(crate) const RECORD_EVENT_BUFFER: usize = 4096;

/// Records a node may hold per origin in the local store. Bounded so one
/// misbehaving member cannot grow our memory without limit.
const MAX_RECORDS_PER_ORIGIN: usize = 4096;

/// A record as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The node that wrote it.
    pub origin: NodeId,
    /// The origin's generation when it wrote it.
    pub generation: u64,
    /// Its key (unique per origin).
    pub key: String,
    /// Sequence number within the generation; higher wins.
    pub seq: u64,
    /// Opaque value.
    pub value: Bytes,
}

/// A record that cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Key empty, too long, or with characters outside `[A-Za-z0-9._:/-]`.
    #[error("invalid record key {0:?}")]
    InvalidKey(String),
    /// Value over [`MAX_RECORD_BYTES`].
    #[error("record of {len} bytes exceeds {MAX_RECORD_BYTES} bytes")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// The mesh is shut down.
    #[error("mesh is shut down")]
    ShutDown,
}

/// Versioned envelope stored (base64) as the chitchat value.
#[derive(Debug, Serialize, Deserialize)]
enum Envelope {
    V1 {
        generation: u64,
        seq: u64,
        value: Vec<u8>,
    },
}

pub(crate) fn validate_key(key: &str) -> Result<(), RecordError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_RECORD_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(RecordError::InvalidKey(key.to_owned()))
    }
}

pub(crate) fn encode_value(generation: u64, seq: u64, value: &[u8]) -> String {
    let envelope = Envelope::V1 {
        generation,
        seq,
        value: value.to_vec(),
    };
    // Serializing a plain struct into a Vec cannot fail.
    BASE64.encode(postcard::to_stdvec(&envelope).unwrap_or_default())
}

/// Decodes a chitchat record value; `None` for anything malformed.
pub(crate) fn decode_value(origin: NodeId, key: &str, text: &str) -> Option<Record> {
    let bytes = BASE64.decode(text).ok()?;
    let Envelope::V1 {
        generation,
        seq,
        value,
    } = postcard::from_bytes(&bytes).ok()?;
    if value.len() > MAX_RECORD_BYTES || validate_key(key).is_err() {
        return None;
    }
    Some(Record {
        origin,
        generation,
        key: key.to_owned(),
        seq,
        value: Bytes::from(value),
    })
}

/// Highest `(generation, seq)` per `(origin, key)`, plus the event fan-out.
#[derive(Debug)]
pub(crate) struct RecordStore {
    records: HashMap<NodeId, HashMap<String, Record>>,
    events: broadcast::Sender<Record>,
}

impl RecordStore {
    pub(crate) fn new() -> Self {
        Self {
            records: HashMap::new(),
            events: broadcast::channel(RECORD_EVENT_BUFFER).0,
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Record> {
        self.events.subscribe()
    }

    /// Keeps `record` if it is newer than what we hold; returns whether it was.
    pub(crate) fn accept(&mut self, record: Record) -> bool {
        let per_origin = self.records.entry(record.origin.clone()).or_default();
        match per_origin.get(&record.key) {
            Some(held) if (held.generation, held.seq) >= (record.generation, record.seq) => {
                return false;
            }
            None if per_origin.len() >= MAX_RECORDS_PER_ORIGIN => return false,
            _ => {}
        }
        per_origin.insert(record.key.clone(), record.clone());
        // No subscriber is fine.
        let _ = self.events.send(record);
        true
    }

    pub(crate) fn all(&self) -> Vec<Record> {
        self.records
            .values()
            .flat_map(|per_origin| per_origin.values().cloned())
            .collect()
    }

    /// Forgets records of origins that chitchat no longer knows at all.
    pub(crate) fn retain_origins(&mut self, keep: impl Fn(&NodeId) -> bool) {
        self.records.retain(|origin, _| keep(origin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(generation: u64, seq: u64, value: &'static [u8]) -> Record {
        Record {
            origin: NodeId::new("a").unwrap(),
            generation,
            key: "k".into(),
            seq,
            value: Bytes::from_static(value),
        }
    }

    #[test]
    fn store_keeps_highest_generation_then_seq() {
        let mut store = RecordStore::new();
        let mut events = store.subscribe();
        assert!(store.accept(record(1, 5, b"a")));
        assert!(!store.accept(record(1, 4, b"old")));
        assert!(!store.accept(record(1, 5, b"same")));
        assert!(store.accept(record(2, 1, b"restart")));
        assert!(!store.accept(record(1, 9, b"zombie")));
        assert_eq!(store.all(), vec![record(2, 1, b"restart")]);
        assert_eq!(events.try_recv().unwrap().value, Bytes::from_static(b"a"));
        assert_eq!(events.try_recv().unwrap().generation, 2);
        assert!(events.try_recv().is_err());
    }

    #[test]
    fn values_round_trip_and_garbage_is_rejected() {
        let origin = NodeId::new("a").unwrap();
        let text = encode_value(3, 4, b"hello");
        let back = decode_value(origin.clone(), "obs/1", &text).unwrap();
        assert_eq!((back.generation, back.seq), (3, 4));
        assert_eq!(back.value, Bytes::from_static(b"hello"));
        assert!(decode_value(origin.clone(), "obs", "%%%").is_none());
        assert!(decode_value(origin, "obs", &BASE64.encode([7u8, 1, 2])).is_none());
        assert!(validate_key("obs/orch-1:latency").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a b").is_err());
    }
}
