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
//! A failed push (transport error, timeout, 5xx, or a 4xx that may pass
//! later: 401, 403, 404, 408, 429, …) is retried with exponential backoff
//! ([`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`]) at most
//! `max_attempts` times; then the sink waits one interval and starts over
//! from the same cursor. Records stay in the log meanwhile, so a sink
//! outage or a wrong token delays delivery and loses nothing.
//!
//! A batch the sink refuses for good (400, 413 or 422: it will refuse the
//! same bytes again) is split in halves until the refused record is alone.
//! That record is skipped: its seq, the status and the sink's reason are
//! appended to `sink.rejected` in the log directory, counted in
//! `gatemesh_usage_sink_rejected_records_total` and logged as an error; the
//! record itself stays in the usage log (`GET /admin/usage`). Once
//! `sink.rejected` holds [`MAX_REJECTED_FILE_BYTES`] the sink stops
//! skipping and retries instead.
//!
//! A sink that refuses everything is misconfigured, not fed bad records:
//! after [`MAX_SKIPS_WITHOUT_DELIVERY`] records skipped with nothing
//! acknowledged in between, the sink holds the next refused record and
//! retries it every interval until the sink takes something
//! (`gatemesh_usage_sink_holding` is 1 meanwhile). So a sink answering 400
//! to everything costs at most that many skipped records per start.
//!
//! A 413 also lowers the batch size for the batches after it (the sink's
//! body limit does not change between two batches); it is doubled again
//! after [`REGROW_AFTER_PUSHES`] pushes in a row at the lower size.
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
/// File listing the records the sink refused for good (one line each).
pub const REJECTED_FILE: &str = "sink.rejected";
/// Size at which `sink.rejected` stops growing: ~100 bytes a line, so
/// about 10,000 skipped records before the sink holds instead.
pub const MAX_REJECTED_FILE_BYTES: u64 = 1 << 20;
/// Records skipped with nothing acknowledged in between after which the
/// sink holds instead of skipping: isolated bad records pass between good
/// ones; a run this long means the sink refuses everything.
pub const MAX_SKIPS_WITHOUT_DELIVERY: u32 = 10;
/// Pushes in a row at a batch size lowered by a 413 before it is doubled
/// again: a sink whose limit was raised gets full batches back, at the cost
/// of one more 413 per this many pushes if it was not.
pub const REGROW_AFTER_PUSHES: u32 = 64;
/// Most bytes of a refusal's body read and kept as its reason: enough for
/// an error message, and a line of `sink.rejected` stays short whatever the
/// sink sends.
const MAX_REASON_BYTES: usize = 200;

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

/// Appends one refused record's line to `sink.rejected`, durably; refuses
/// when the file is full.
pub fn write_rejected(dir: &Path, seq: u64, status: u16, reason: &str) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(REJECTED_FILE);
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    if size >= MAX_REJECTED_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "{} holds {size} bytes (at most {MAX_REJECTED_FILE_BYTES})",
            path.display()
        )));
    }
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    writeln!(file, "seq={seq} status={status} reason={reason:?}")?;
    file.sync_all()
}

/// The sink's answer when it will refuse the same bytes again (400, 413,
/// 422).
#[derive(Debug)]
struct Refusal {
    /// The HTTP status.
    status: u16,
    /// The start of the sink's answer.
    reason: String,
}

/// How one push failed.
#[derive(Debug)]
enum PushError {
    /// May pass later (transport, timeout, 5xx, 401/403/404/408/429, …).
    Retry(String),
    /// Will not pass.
    Refused(Refusal),
}

/// The size of the next batch and whether a refused record may be skipped:
/// a state machine over the sink's answers, without I/O.
#[derive(Debug)]
struct Batching {
    /// Largest batch not known to be too large: the configured size, lowered
    /// by a 413, doubled back after [`REGROW_AFTER_PUSHES`] pushes at it.
    ceiling: usize,
    /// The configured size.
    full: usize,
    /// The next batch's size: halved while looking for a refused record.
    next: usize,
    /// Pushes in a row at a lowered ceiling.
    pushes_at_ceiling: u32,
    /// Records skipped since the sink last acknowledged a batch.
    skipped_without_delivery: u32,
}

impl Batching {
    fn new(full: usize) -> Self {
        let full = full.max(1);
        Self {
            ceiling: full,
            full,
            next: full,
            pushes_at_ceiling: 0,
            skipped_without_delivery: 0,
        }
    }

    /// Most records in the next batch.
    fn limit(&self) -> usize {
        self.next
    }

    /// The sink acknowledged a batch of `records`.
    fn pushed(&mut self, records: usize) {
        self.skipped_without_delivery = 0;
        if self.ceiling < self.full && records >= self.ceiling {
            self.pushes_at_ceiling += 1;
            if self.pushes_at_ceiling >= REGROW_AFTER_PUSHES {
                self.ceiling = (self.ceiling * 2).min(self.full);
                self.pushes_at_ceiling = 0;
            }
        }
        self.next = self.ceiling;
    }

    /// The sink refused a batch of `records` (> 1) for good with `status`:
    /// the next batch is its first half. A 413 also says batches this big
    /// are too big.
    fn split(&mut self, status: u16, records: usize) {
        self.next = (records / 2).max(1);
        if status == 413 && self.next < self.ceiling {
            self.ceiling = self.next;
            self.pushes_at_ceiling = 0;
        }
    }

    /// Whether a record refused alone may be skipped now.
    fn may_skip(&self) -> bool {
        self.skipped_without_delivery < MAX_SKIPS_WITHOUT_DELIVERY
    }

    /// A record refused alone was skipped.
    fn skipped(&mut self) {
        self.skipped_without_delivery = self.skipped_without_delivery.saturating_add(1);
        self.next = self.ceiling;
    }
}

/// What became of one batch.
enum BatchOutcome {
    /// Acknowledged.
    Pushed,
    /// Refused for good.
    Refused(Refusal),
    /// Every try failed for a reason that may pass.
    Failed,
    /// `stop` turned true.
    Stopped,
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
    let mut batching = Batching::new(options.batch_records);
    tracing::info!(url = %options.url, cursor, "usage sink started");
    loop {
        if *stop.borrow() {
            return;
        }
        let batch = match next_batch(&log, cursor, batching.limit()).await {
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
        let skip_to = match push_batch(&http, &options, &metrics, body, batch.len(), &mut stop)
            .await
        {
            BatchOutcome::Stopped => return,
            BatchOutcome::Pushed => {
                metrics.record_sink_push(true, batch.len());
                metrics.set_sink_holding(false);
                batching.pushed(batch.len());
                Some(last)
            }
            BatchOutcome::Refused(Refusal { status, reason }) if batch.len() > 1 => {
                tracing::warn!(status, %reason, records = batch.len(), "usage sink refused a batch; splitting it to find the record");
                batching.split(status, batch.len());
                None
            }
            BatchOutcome::Refused(refusal) if !batching.may_skip() => {
                metrics.set_sink_holding(true);
                tracing::error!(seq = last, status = refusal.status, reason = %refusal.reason, skipped = MAX_SKIPS_WITHOUT_DELIVERY, "usage sink refuses every record (this many skipped in a row, nothing acknowledged); holding this one until it takes it");
                if stopped_during(options.interval, &mut stop).await {
                    return;
                }
                None
            }
            BatchOutcome::Refused(refusal) => match list_rejected(&dir, last, &refusal).await {
                Ok(()) => {
                    metrics.record_sink_rejected();
                    tracing::error!(seq = last, status = refusal.status, reason = %refusal.reason, "usage sink refused a record for good; skipped it (still in the usage log, listed in sink.rejected)");
                    batching.skipped();
                    Some(last)
                }
                Err(error) => {
                    metrics.set_sink_holding(true);
                    tracing::error!(seq = last, status = refusal.status, reason = %refusal.reason, %error, "usage sink refused a record and it cannot be listed in sink.rejected; holding it");
                    if stopped_during(options.interval, &mut stop).await {
                        return;
                    }
                    None
                }
            },
            BatchOutcome::Failed => {
                if stopped_during(options.interval, &mut stop).await {
                    return;
                }
                None
            }
        };
        if let Some(seq) = skip_to {
            cursor = seq;
            let dir = dir.clone();
            let written = tokio::task::spawn_blocking(move || write_cursor(&dir, seq)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(
                    "usage sink: cursor not saved; the batch may be pushed again after a restart"
                );
            }
        }
    }
}

/// [`write_rejected`] off the async runtime.
async fn list_rejected(dir: &Path, seq: u64, refusal: &Refusal) -> Result<(), String> {
    let (dir, status, reason) = (dir.to_owned(), refusal.status, refusal.reason.clone());
    match tokio::task::spawn_blocking(move || write_rejected(&dir, seq, status, &reason)).await {
        Ok(written) => written.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// Sleeps `interval`; true when `stop` changed meanwhile.
async fn stopped_during(interval: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(interval) => false,
        _ = stop.changed() => true,
    }
}

/// Tries one batch up to `max_attempts` times with backoff; a refusal for
/// good ends the tries at once.
async fn push_batch(
    http: &reqwest::Client,
    options: &SinkOptions,
    metrics: &UsageMetrics,
    body: bytes::Bytes,
    records: usize,
    stop: &mut watch::Receiver<bool>,
) -> BatchOutcome {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=options.max_attempts.max(1) {
        match push(http, options, body.clone()).await {
            Ok(()) => return BatchOutcome::Pushed,
            Err(PushError::Refused(refusal)) => {
                metrics.record_sink_push(false, 0);
                return BatchOutcome::Refused(refusal);
            }
            Err(PushError::Retry(error)) => {
                metrics.record_sink_push(false, 0);
                tracing::warn!(%error, attempt, records, "usage sink push failed");
                if attempt < options.max_attempts {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return BatchOutcome::Stopped,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    BatchOutcome::Failed
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
) -> Result<(), PushError> {
    let mut request = http
        .post(options.url.clone())
        .header("content-type", "application/x-ndjson")
        .body(body);
    if let Some(token) = &options.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| PushError::Retry(e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    if matches!(status.as_u16(), 400 | 413 | 422) {
        // The reason is the start of the body: read no more than that.
        let mut response = response;
        let mut body = Vec::new();
        while body.len() < MAX_REASON_BYTES
            && let Ok(Some(chunk)) = response.chunk().await
        {
            body.extend_from_slice(&chunk);
        }
        body.truncate(MAX_REASON_BYTES);
        // Up to the first byte that is not UTF-8 (a character cut in two).
        let end = std::str::from_utf8(&body).map_or_else(|e| e.valid_up_to(), str::len);
        return Err(PushError::Refused(Refusal {
            status: status.as_u16(),
            reason: String::from_utf8_lossy(&body[..end]).trim().to_owned(),
        }));
    }
    Err(PushError::Retry(format!("sink answered {status}")))
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

    #[tokio::test]
    async fn pushes_at_least_once_across_failures_and_restarts() {
        let (dir, log, metrics) = log_with(5).await;
        // 503 twice, then every batch is kept.
        let (url, received) = judging_sink(|_, n| if n < 2 { 503 } else { 200 }).await;
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

    /// A sink answering each batch with `answer(seqs in it, request number)`
    /// and keeping the seqs of the batches it answers 200.
    async fn judging_sink(
        answer: impl Fn(&[u64], usize) -> u16 + Clone + Send + Sync + 'static,
    ) -> (url::Url, Arc<Mutex<(usize, Vec<u64>)>>) {
        let state = Arc::new(Mutex::new((0, Vec::new())));
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/usage",
            post(move |body: String| {
                let shared = shared.clone();
                let answer = answer.clone();
                async move {
                    let seqs: Vec<u64> = body
                        .lines()
                        .map(|line| serde_json::from_str::<UsageRecord>(line).unwrap().seq)
                        .collect();
                    let mut state = shared.lock().unwrap();
                    let status = answer(&seqs, state.0);
                    state.0 += 1;
                    if status == 200 {
                        state.1.extend(seqs);
                    }
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        "record 3 has a field\nwe do not take",
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/usage").parse().unwrap(), state)
    }

    /// A log in a fresh directory holding records 1..=`count`.
    async fn log_with(count: u64) -> (tempfile::TempDir, UsageLog, api::Metrics) {
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
        for i in 1..=count {
            log.append(record(i)).await.unwrap();
        }
        (dir, log, metrics)
    }

    fn options(url: url::Url) -> SinkOptions {
        SinkOptions {
            url,
            token: None,
            batch_records: 4,
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            max_attempts: 3,
        }
    }

    /// Starts the sink on `log` with [`options`]; send `true` to stop it.
    fn spawn_sink(
        log: &UsageLog,
        url: url::Url,
        metrics: &api::Metrics,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run(
            log.clone(),
            options(url),
            metrics.usage().clone(),
            stop,
        ));
        (stop_tx, task)
    }

    /// Runs the sink until the cursor reaches `seq` (bounded wait).
    async fn push_until(
        log: &UsageLog,
        dir: &Path,
        url: url::Url,
        metrics: &api::Metrics,
        seq: u64,
    ) {
        let (stop_tx, task) = spawn_sink(log, url, metrics);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while read_cursor(dir) < seq {
            assert!(
                tokio::time::Instant::now() < deadline,
                "cursor stuck at {}",
                read_cursor(dir)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop_tx.send(true);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_record_the_sink_refuses_for_good_is_found_listed_and_skipped() {
        let (dir, log, metrics) = log_with(6).await;
        // The sink refuses every batch holding record 3 with a 400.
        let (url, received) =
            judging_sink(|seqs, _| if seqs.contains(&3) { 400 } else { 200 }).await;
        push_until(&log, dir.path(), url, &metrics, 6).await;
        let mut got = received.lock().unwrap().1.clone();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 4, 5, 6], "every other record delivered");
        let listed = std::fs::read_to_string(dir.path().join(REJECTED_FILE)).unwrap();
        assert_eq!(listed.lines().count(), 1, "{listed}");
        assert!(
            listed.starts_with("seq=3 status=400 reason=\"record 3 has a field we do not take\""),
            "{listed}"
        );
        let text = metrics.encode();
        assert!(
            text.contains("gatemesh_usage_sink_rejected_records_total 1"),
            "{text}"
        );
        assert!(
            text.contains("gatemesh_usage_sink_records_total 5"),
            "{text}"
        );
        // The refused record is still in the log.
        let kept = log
            .read(&UsageFilter {
                after_seq: Some(2),
                limit: Some(1),
                ..UsageFilter::default()
            })
            .unwrap();
        assert_eq!(kept[0].seq, 3);
    }

    #[tokio::test]
    async fn a_wrong_token_holds_records_instead_of_skipping_them() {
        let (dir, log, metrics) = log_with(3).await;
        // 401 for the first five requests (two rounds), then accepted.
        let (url, received) = judging_sink(|_, n| if n < 5 { 401 } else { 200 }).await;
        push_until(&log, dir.path(), url, &metrics, 3).await;
        assert_eq!(received.lock().unwrap().1, vec![1, 2, 3]);
        assert!(!dir.path().join(REJECTED_FILE).exists());
        assert!(
            metrics
                .encode()
                .contains("gatemesh_usage_sink_rejected_records_total 0")
        );
    }

    #[tokio::test]
    async fn a_sink_that_refuses_everything_costs_a_bounded_number_of_skips() {
        let total = u64::from(MAX_SKIPS_WITHOUT_DELIVERY) + 5;
        let (dir, log, metrics) = log_with(total).await;
        let accepting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let switch = accepting.clone();
        let (url, received) = judging_sink(move |_, _| {
            if switch.load(std::sync::atomic::Ordering::SeqCst) {
                200
            } else {
                400
            }
        })
        .await;
        let (stop_tx, task) = spawn_sink(&log, url, &metrics);
        // It skips the first records one by one, then holds the next.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !metrics
            .encode()
            .contains("\ngatemesh_usage_sink_holding 1\n")
        {
            assert!(tokio::time::Instant::now() < deadline, "never held");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let skipped = u64::from(MAX_SKIPS_WITHOUT_DELIVERY);
        assert_eq!(read_cursor(dir.path()), skipped);
        let listed = std::fs::read_to_string(dir.path().join(REJECTED_FILE)).unwrap();
        assert_eq!(listed.lines().count() as u64, skipped, "{listed}");
        // Once the sink takes records again, the held ones go out.
        accepting.store(true, std::sync::atomic::Ordering::SeqCst);
        while read_cursor(dir.path()) < total {
            assert!(tokio::time::Instant::now() < deadline, "not delivered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop_tx.send(true);
        task.await.unwrap();
        assert_eq!(
            received.lock().unwrap().1,
            (skipped + 1..=total).collect::<Vec<_>>()
        );
        let text = metrics.encode();
        assert!(text.contains("\ngatemesh_usage_sink_holding 0\n"), "{text}");
        assert!(
            text.contains(&format!(
                "gatemesh_usage_sink_rejected_records_total {skipped}"
            )),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_413_lowers_the_batch_size_for_the_batches_after_it() {
        let (dir, log, metrics) = log_with(12).await;
        // Bodies of more than 2 records are too large.
        let (url, received) = judging_sink(|seqs, _| if seqs.len() > 2 { 413 } else { 200 }).await;
        push_until(&log, dir.path(), url, &metrics, 12).await;
        let (requests, delivered) = received.lock().unwrap().clone();
        assert_eq!(delivered, (1..=12).collect::<Vec<_>>());
        // 4 → 413, then 2 records a push: 1 + 6 requests. Without the
        // memory each later full batch would cost a 413 first: 11.
        assert_eq!(requests, 7);
        assert!(!dir.path().join(REJECTED_FILE).exists());
    }

    #[test]
    fn batching_halves_to_find_a_record_and_remembers_only_413s() {
        let mut batching = Batching::new(8);
        batching.split(400, 8);
        assert_eq!(batching.limit(), 4);
        batching.split(400, 4);
        batching.split(400, 2);
        assert_eq!(batching.limit(), 1);
        batching.skipped();
        assert_eq!(batching.limit(), 8, "a 400 says nothing about size");
        batching.split(413, 8);
        batching.pushed(4);
        assert_eq!(batching.limit(), 4, "a 413 does");
        for _ in 2..REGROW_AFTER_PUSHES {
            batching.pushed(4);
            assert_eq!(batching.limit(), 4);
        }
        batching.pushed(4);
        assert_eq!(batching.limit(), 8, "tried again after a while");
        // A short batch (the log's tail) does not count towards regrowing.
        batching.split(413, 8);
        for _ in 0..REGROW_AFTER_PUSHES {
            batching.pushed(1);
        }
        assert_eq!(batching.limit(), 4);
    }

    #[test]
    fn batching_stops_skipping_when_nothing_gets_through() {
        let mut batching = Batching::new(4);
        for _ in 0..MAX_SKIPS_WITHOUT_DELIVERY {
            assert!(batching.may_skip());
            batching.skipped();
        }
        assert!(!batching.may_skip());
        batching.pushed(1);
        assert!(
            batching.may_skip(),
            "a delivery shows the sink takes records"
        );
    }

    #[test]
    fn the_rejected_list_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(REJECTED_FILE),
            vec![b'x'; MAX_REJECTED_FILE_BYTES as usize],
        )
        .unwrap();
        let error = write_rejected(dir.path(), 9, 400, "no").unwrap_err();
        assert!(error.to_string().contains("at most"), "{error}");
        let fresh = tempfile::tempdir().unwrap();
        write_rejected(fresh.path(), 9, 422, "bad\u{7}field").unwrap();
        assert_eq!(
            std::fs::read_to_string(fresh.path().join(REJECTED_FILE)).unwrap(),
            "seq=9 status=422 reason=\"bad field\"\n"
        );
    }

    #[tokio::test]
    async fn a_refusal_reason_is_read_only_up_to_its_bound() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // "x" then 1 MiB of "é" (two bytes each): the bound falls inside an
        // "é"; the reason keeps the whole characters before it.
        let app = axum::Router::new().route(
            "/usage",
            post(|| async {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("x{}", "é".repeat(512 * 1024)),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url: url::Url = format!("http://{addr}/usage").parse().unwrap();
        let http = reqwest::Client::new();
        let Err(PushError::Refused(refusal)) =
            push(&http, &options(url), bytes::Bytes::from_static(b"{}\n")).await
        else {
            panic!("a 400 must be a refusal");
        };
        assert_eq!(refusal.status, 400);
        assert_eq!(
            refusal.reason,
            format!("x{}", "é".repeat((MAX_REASON_BYTES - 1) / 2))
        );
    }
}
