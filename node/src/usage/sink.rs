//! Pushes usage records to an HTTP sink: `POST <sink_url>` with a batch of
//! JSON lines (`Content-Type: application/x-ndjson`, one [`UsageRecord`] per
//! line, oldest first), optionally `Authorization: Bearer <sink_token>`.
//!
//! Delivery is **at least once**. The position of the last acknowledged
//! record (its `seq`) is kept in `sink.cursor` in the log directory,
//! replaced atomically (write, fsync, rename, fsync the directory) after
//! every 2xx answer; after a restart pushing resumes after it. A crash
//! between the sink's 2xx and the cursor write sends that batch again, so
//! sinks deduplicate on (`node`, `seq`), which is unique.
//!
//! A failed push (transport error, timeout, non-2xx) is retried with
//! exponential backoff ([`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`]) at
//! most `max_attempts` times; then the sink waits one interval and starts
//! over from the same cursor. Records stay in the log meanwhile, so a sink
//! outage delays delivery and loses nothing.
//!
//! [`UsageRecord`]: mesh_core::billing::UsageRecord

use std::path::{Path, PathBuf};
use std::time::Duration;

use api::UsageFilter;
use api::metrics::usage::UsageMetrics;
use tokio::sync::watch;

use super::log::{LogError, UsageLog};

/// Backoff after the first failed push of a batch.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest backoff between two pushes of a batch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// File name of the cursor in the log directory.
pub const CURSOR_FILE: &str = "sink.cursor";

/// Where and how to push.
#[derive(Clone)]
pub struct SinkOptions {
    /// The sink's URL.
    pub url: url::Url,
    /// Bearer token sent to the sink, if any.
    pub token: Option<String>,
    /// Most records per POST.
    pub batch_records: usize,
    /// Wait between rounds when idle or after a failed round.
    pub interval: Duration,
    /// Timeout of one POST.
    pub timeout: Duration,
    /// Tries of one batch per round.
    pub max_attempts: u32,
}

impl std::fmt::Debug for SinkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkOptions")
            .field("url", &self.url.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("batch_records", &self.batch_records)
            .finish_non_exhaustive()
    }
}

/// The last acknowledged seq (0 when nothing was pushed yet). An unreadable
/// cursor restarts from 0: pushing twice is allowed, losing is not.
pub fn read_cursor(dir: &Path) -> u64 {
    match std::fs::read_to_string(dir.join(CURSOR_FILE)) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(dir = %dir.display(), "usage sink cursor unreadable; pushing from the start");
            0
        }),
        Err(_) => 0,
    }
}

/// Replaces the cursor atomically and durably.
pub fn write_cursor(dir: &Path, seq: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = dir.join(format!("{CURSOR_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "{seq}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(CURSOR_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Pushes records until `stop` turns true.
pub async fn run(
    log: UsageLog,
    options: SinkOptions,
    metrics: UsageMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let http = match reqwest::Client::builder().timeout(options.timeout).build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "usage sink: cannot build an HTTP client; not pushing");
            return;
        }
    };
    let dir = log.dir().to_owned();
    let mut cursor = read_cursor(&dir);
    tracing::info!(url = %options.url, cursor, "usage sink started");
    loop {
        if *stop.borrow() {
            return;
        }
        let batch = match next_batch(&log, cursor, options.batch_records).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "usage sink: reading the log failed");
                Vec::new()
            }
        };
        let Some(last) = batch.last().map(|r| r.seq) else {
            tokio::select! {
                () = log.written() => {}
                () = tokio::time::sleep(options.interval) => {}
                _ = stop.changed() => return,
            }
            continue;
        };
        let body = api::billing::json_lines(&batch);
        let mut backoff = FIRST_BACKOFF;
        let mut pushed = false;
        for attempt in 1..=options.max_attempts.max(1) {
            match push(&http, &options, body.clone()).await {
                Ok(()) => {
                    metrics.record_sink_push(true, batch.len());
                    pushed = true;
                    break;
                }
                Err(error) => {
                    metrics.record_sink_push(false, 0);
                    tracing::warn!(%error, attempt, records = batch.len(), "usage sink push failed");
                    if attempt < options.max_attempts {
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            _ = stop.changed() => return,
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        if pushed {
            cursor = last;
            let dir = dir.clone();
            let written = tokio::task::spawn_blocking(move || write_cursor(&dir, last)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(
                    "usage sink: cursor not saved; the batch may be pushed again after a restart"
                );
            }
        } else {
            tokio::select! {
                () = tokio::time::sleep(options.interval) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

async fn next_batch(
    log: &UsageLog,
    after: u64,
    limit: usize,
) -> Result<Vec<mesh_core::billing::UsageRecord>, LogError> {
    let log = log.clone();
    let filter = UsageFilter {
        after_seq: Some(after),
        limit: Some(limit.max(1)),
        ..UsageFilter::default()
    };
    tokio::task::spawn_blocking(move || log.read(&filter))
        .await
        .map_err(|e| LogError::Io(e.to_string()))?
}

async fn push(
    http: &reqwest::Client,
    options: &SinkOptions,
    body: bytes::Bytes,
) -> Result<(), String> {
    let mut request = http
        .post(options.url.clone())
        .header("content-type", "application/x-ndjson")
        .body(body);
    if let Some(token) = &options.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("sink answered {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use axum::routing::post;
    use mesh_core::billing::UsageRecord;

    use crate::usage::log::UsageLogOptions;

    fn record(id: u64) -> UsageRecord {
        crate::usage::log::tests::record(id as usize)
    }

    /// A sink that fails its first `fail` requests, then keeps what it gets.
    async fn sink(fail: usize) -> (url::Url, Arc<Mutex<(usize, Vec<u64>)>>) {
        let state = Arc::new(Mutex::new((fail, Vec::new())));
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/usage",
            post(move |body: String| {
                let shared = shared.clone();
                async move {
                    let mut state = shared.lock().unwrap();
                    if state.0 > 0 {
                        state.0 -= 1;
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    for line in body.lines() {
                        let record: UsageRecord = serde_json::from_str(line).unwrap();
                        state.1.push(record.seq);
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/usage").parse().unwrap(), state)
    }

    #[tokio::test]
    async fn pushes_at_least_once_across_failures_and_restarts() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let metrics = api::Metrics::new();
        let log = UsageLog::open(
            UsageLogOptions {
                dir: dir.path().to_owned(),
                segment_max_bytes: 1 << 20,
                queue_capacity: 64,
                max_batch_records: 64,
            },
            metrics.usage().clone(),
        )
        .unwrap();
        for i in 1..=5 {
            log.append(record(i)).await.unwrap();
        }
        let (url, received) = sink(2).await;
        let options = SinkOptions {
            url,
            token: None,
            batch_records: 2,
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            max_attempts: 5,
        };
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run(
            log.clone(),
            options.clone(),
            metrics.usage().clone(),
            stop,
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while read_cursor(dir.path()) < 5 {
            assert!(tokio::time::Instant::now() < deadline, "not pushed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(received.lock().unwrap().1, vec![1, 2, 3, 4, 5]);
        let _ = stop_tx.send(true);
        task.await.unwrap();

        // After a "restart", only new records go out.
        log.append(record(6)).await.unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run(log.clone(), options, metrics.usage().clone(), stop));
        while read_cursor(dir.path()) < 6 {
            assert!(tokio::time::Instant::now() < deadline, "not pushed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(received.lock().unwrap().1, vec![1, 2, 3, 4, 5, 6]);
        let _ = stop_tx.send(true);
        task.await.unwrap();
        let text = metrics.encode();
        assert!(text.contains("gatemesh_usage_sink_batches_total{result=\"failed\"} 2"));
        assert!(text.contains("gatemesh_usage_sink_records_total 6"));
    }
}
