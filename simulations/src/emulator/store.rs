//! The in-memory object store behind `GET /stream/<request-id>/<name>`:
//! results live for [`RESULT_TTL`] (go-livepeer's `aiWorkerResultsTimeout`)
//! and the store holds at most `capacity` objects, evicting the oldest.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// How long a result stays downloadable.
pub const RESULT_TTL: Duration = Duration::from_secs(10 * 60);

/// One stored result.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// `Content-Type` to serve it with.
    pub content_type: &'static str,
    /// The bytes.
    pub data: Bytes,
    expires_at: Instant,
}

/// A bounded, expiring map from path (`<request-id>/<name>`) to object.
#[derive(Debug)]
pub struct ResultStore {
    capacity: usize,
    objects: HashMap<String, StoredObject>,
    order: VecDeque<String>,
}

impl ResultStore {
    /// An empty store holding at most `capacity` objects (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            objects: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Stores an object at `path`, evicting expired and then the oldest objects.
    pub fn put(&mut self, now: Instant, path: String, content_type: &'static str, data: Bytes) {
        self.expire(now);
        while self.objects.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.objects.remove(&oldest);
                }
                None => break,
            }
        }
        let object = StoredObject {
            content_type,
            data,
            expires_at: now + RESULT_TTL,
        };
        if self.objects.insert(path.clone(), object).is_none() {
            self.order.push_back(path);
        }
    }

    /// The object at `path`, if present and not expired.
    pub fn get(&self, now: Instant, path: &str) -> Option<StoredObject> {
        self.objects
            .get(path)
            .filter(|object| object.expires_at > now)
            .cloned()
    }

    /// Number of objects held (expired ones included until the next `put`).
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Drops everything (a restart loses the memory store).
    pub fn clear(&mut self) {
        self.objects.clear();
        self.order.clear();
    }

    fn expire(&mut self, now: Instant) {
        // Objects are inserted in expiry order, so the expired ones are at the front.
        while let Some(oldest) = self.order.front() {
            match self.objects.get(oldest) {
                Some(object) if object.expires_at > now => break,
                _ => {
                    if let Some(path) = self.order.pop_front() {
                        self.objects.remove(&path);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_expiring() {
        let now = Instant::now();
        let mut store = ResultStore::new(2);
        store.put(now, "a".into(), "image/png", Bytes::from_static(b"1"));
        store.put(now, "b".into(), "image/png", Bytes::from_static(b"2"));
        store.put(now, "c".into(), "image/png", Bytes::from_static(b"3"));
        assert_eq!(store.len(), 2);
        assert!(store.get(now, "a").is_none(), "oldest evicted");
        assert!(store.get(now, "c").is_some());
        let later = now + RESULT_TTL + Duration::from_secs(1);
        assert!(store.get(later, "c").is_none(), "expired");
        store.put(later, "d".into(), "image/png", Bytes::from_static(b"4"));
        assert_eq!(store.len(), 1, "expired objects swept on put");
    }
}
