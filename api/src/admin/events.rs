//! [`EventRing`]: a bounded in-memory [`EventLog`] that the node pushes
//! notable events into and the admin API reads.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::ports::{Event, EventLog};

/// Default number of events an [`EventRing`] keeps: a dashboard shows the
/// last few dozen, and 512 small structs cost well under a megabyte.
pub const DEFAULT_EVENT_CAPACITY: usize = 512;

/// A fixed-capacity ring of events: pushing into a full ring drops the
/// oldest event.
#[derive(Debug)]
pub struct EventRing {
    capacity: usize,
    events: Mutex<VecDeque<Event>>,
}

impl EventRing {
    /// A ring keeping the `capacity` most recent events (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            events: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// Appends an event, dropping the oldest one when full.
    pub fn push(&self, event: Event) {
        let mut events = self.lock();
        if events.len() >= self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// How many events the ring keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        // A panic while holding this lock cannot leave the deque invalid.
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for EventRing {
    fn default() -> Self {
        Self::new(DEFAULT_EVENT_CAPACITY)
    }
}

impl EventLog for EventRing {
    fn recent(&self) -> Vec<Event> {
        self.lock().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::EventKind;

    fn event(at_ms: u64) -> Event {
        Event {
            at_ms,
            kind: EventKind::Ejected,
            node: None,
            region: None,
            orchestrator: None,
            message: format!("event {at_ms}"),
        }
    }

    #[test]
    fn keeps_the_most_recent_events_in_order() {
        let ring = EventRing::new(3);
        for at in 0..5 {
            ring.push(event(at));
        }
        let kept: Vec<u64> = ring.recent().iter().map(|e| e.at_ms).collect();
        assert_eq!(kept, vec![2, 3, 4]);
        assert_eq!(EventRing::new(0).capacity(), 1);
    }
}
