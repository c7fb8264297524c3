//! Logging: human-readable by default, JSON on request. `GATEMESH_LOG`
//! overrides the configured filter.
//!
//! Lines are formatted on the thread that logs and written to stderr by a
//! writer thread, so a request never waits on a `write(2)` (or on a slow
//! reader of the pipe). The queue between them is bounded; when it is full,
//! lines are dropped rather than requests slowed, and the count of dropped
//! lines is printed when the process exits.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines queued for the writer thread at most: 8 s of a node serving 1,000
/// jobs a second (one access-log line each) while stderr stalls. The queue's
/// slots are allocated up front (~40 bytes each, 330 KB); its lines take
/// ~300 bytes each only while queued.
pub const MAX_QUEUED_LOG_LINES: usize = 8_192;

/// The installed writer's count of dropped lines.
static DROPPED_LINES: OnceLock<ErrorCounter> = OnceLock::new();

/// Lines dropped since start because the queue was full (0 before
/// [`init`] or when another subscriber was installed first).
pub fn dropped_log_lines() -> u64 {
    DROPPED_LINES
        .get()
        .map_or(0, |dropped| dropped.dropped_lines() as u64)
}

/// Keeps the writer thread. Dropping it writes what is still queued and
/// reports lines dropped because the queue was full.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    /// `None` when another subscriber was installed first.
    worker: Option<WorkerGuard>,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("installed", &self.worker.is_some())
            .finish()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // Flush first, so the count below comes after every line written.
        if let Some(worker) = self.worker.take() {
            drop(worker);
            let count = dropped_log_lines();
            if count > 0 {
                eprintln!("gatemesh: {count} log lines dropped (the log queue was full)");
            }
        }
    }
}

/// Installs the global subscriber. Calling it twice is harmless (the second
/// call does nothing and returns an inert guard), so tests and the demo can
/// both call it. Colours only when stderr is a terminal.
pub fn init(format: LogFormat, filter: &str) -> LogGuard {
    let filter = std::env::var("GATEMESH_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (writer, worker) = NonBlockingBuilder::default()
        .buffered_lines_limit(MAX_QUEUED_LOG_LINES)
        .lossy(true)
        .thread_name("gatemesh-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    match installed {
        Ok(()) => {
            let _ = DROPPED_LINES.set(dropped);
            LogGuard {
                worker: Some(worker),
            }
        }
        Err(_) => LogGuard { worker: None },
    }
}
