//! Result media re-hosted by the gateway: images, video and audio that
//! orchestrators return as URLs are fetched and served from here, so clients
//! never need to reach an orchestrator. Bounded by count, total bytes and age.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::config::MediaSection;

/// An in-memory, bounded, expiring object store.
#[derive(Debug)]
pub struct MemoryMediaStore {
    limits: MediaSection,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: HashMap<String, Stored>,
    /// Insertion order, oldest first, for eviction.
    order: VecDeque<String>,
    total_bytes: usize,
}

#[derive(Debug)]
struct Stored {
    content_type: String,
    bytes: Bytes,
    expires_at: Instant,
}

impl MemoryMediaStore {
    /// An empty store with the given limits.
    pub fn new(limits: MediaSection) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Stores an object under a fresh unguessable id (128 random bits plus an
    /// extension from the content type) and returns the id. Evicts expired
    /// and then oldest objects to stay within the limits.
    pub fn insert(&self, content_type: String, bytes: Bytes) -> String {
        let id = format!(
            "{:032x}.{}",
            rand::random::<u128>(),
            extension_for(&content_type)
        );
        let now = Instant::now();
        let ttl = Duration::from_millis(self.limits.ttl_ms);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.total_bytes += bytes.len();
        inner.objects.insert(
            id.clone(),
            Stored {
                content_type,
                bytes,
                expires_at: now + ttl,
            },
        );
        inner.order.push_back(id.clone());
        while inner.objects.len() > self.limits.max_objects
            || inner.total_bytes > self.limits.max_total_bytes
        {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(evicted) = inner.objects.remove(&oldest) {
                inner.total_bytes -= evicted.bytes.len();
            }
        }
        while let Some(front) = inner.order.front() {
            let expired = inner
                .objects
                .get(front)
                .is_none_or(|stored| stored.expires_at <= now);
            if !expired {
                break;
            }
            let front = inner.order.pop_front().unwrap_or_default();
            if let Some(evicted) = inner.objects.remove(&front) {
                inner.total_bytes -= evicted.bytes.len();
            }
        }
        id
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .objects
            .len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl api::MediaStore for MemoryMediaStore {
    fn get(&self, id: &str) -> Option<api::MediaObject> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let stored = inner.objects.get(id)?;
        (stored.expires_at > Instant::now()).then(|| api::MediaObject {
            content_type: stored.content_type.clone(),
            bytes: stored.bytes.clone(),
        })
    }
}

fn extension_for(content_type: &str) -> &'static str {
    match content_type.split(';').next().unwrap_or("").trim() {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "video/mp4" => "mp4",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/mpeg" => "mp3",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::MediaStore;

    fn limits(max_objects: usize, max_total_bytes: usize) -> MediaSection {
        MediaSection {
            max_objects,
            max_total_bytes,
            ..MediaSection::default()
        }
    }

    #[tokio::test]
    async fn stores_and_serves_with_extension() {
        let store = MemoryMediaStore::new(limits(10, 1024));
        let id = store.insert("image/png".into(), Bytes::from_static(b"png"));
        assert!(id.ends_with(".png"));
        assert_eq!(store.get(&id).unwrap().bytes, Bytes::from_static(b"png"));
        assert!(store.get("nope").is_none());
    }

    #[tokio::test]
    async fn evicts_oldest_beyond_count_and_bytes() {
        let store = MemoryMediaStore::new(limits(2, 10));
        let a = store.insert("image/png".into(), Bytes::from_static(b"aaaa"));
        let b = store.insert("image/png".into(), Bytes::from_static(b"bbbb"));
        let c = store.insert("image/png".into(), Bytes::from_static(b"cccc"));
        assert!(store.get(&a).is_none());
        assert!(store.get(&b).is_some() && store.get(&c).is_some());
        let d = store.insert("image/png".into(), Bytes::from_static(b"dddddddddd"));
        assert_eq!(store.len(), 1);
        assert!(store.get(&d).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn objects_expire() {
        let store = MemoryMediaStore::new(MediaSection {
            ttl_ms: 1_000,
            ..MediaSection::default()
        });
        let id = store.insert("audio/wav".into(), Bytes::from_static(b"x"));
        assert!(store.get(&id).is_some());
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(store.get(&id).is_none());
    }
}
