//! The durable usage log: JSON lines in size-rotated segment files, written
//! by one writer thread with group commit.
//!
//! ## Writing
//! [`UsageLog::append`] puts the record on a bounded queue
//! ([`UsageLogOptions::queue_capacity`]; full → [`LogError::QueueFull`] at
//! once, never an unbounded wait) and waits. The writer thread takes
//! everything queued (up to [`UsageLogOptions::max_batch_records`]), assigns
//! consecutive `seq` numbers, writes the batch with ONE `write` and ONE
//! `fsync`, then tells the observers and releases every waiter of the batch.
//! So `append` returns only after its record is on disk; concurrent appends
//! share an fsync.
//!
//! If a write or fsync fails, the batch's waiters get [`LogError::Io`], the
//! segment is cut back to its length before the batch, and the log goes on;
//! if even that fails, the log refuses every later append
//! ([`LogError::Failed`]) rather than write after garbage.
//!
//! ## Files
//! `usage-<first seq, 20 digits>.jsonl` in the configured directory. A batch
//! that would take the current segment past
//! [`UsageLogOptions::segment_max_bytes`] starts a new one (a batch is never
//! split; the directory is fsynced after a segment is created).
//!
//! ## Replay
//! [`UsageLog::open`] reads the newest segment. A last line without its
//! newline, or one that is not a record, is a torn write of a batch that was
//! never acknowledged (kill -9 or power loss during the write): it is cut
//! off and logged, and start-up continues. A bad line followed by good ones
//! is corruption, not a torn tail: start-up fails
//! ([`LogError::Corrupt`]) so an operator looks at it. `seq` continues after
//! the last good record.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use api::UsageFilter;
use api::metrics::usage::{AppendError, UsageMetrics};
use mesh_core::billing::UsageRecord;
use tokio::sync::{Notify, mpsc, oneshot};

/// A callback told of every durable record, on the writer thread, in `seq`
/// order, exactly once per record. It must be quick (a counter update).
pub type Observer = Arc<dyn Fn(&UsageRecord) + Send + Sync>;

/// Longest line replay or a query reads; a record is well under 4 KiB.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Sizes and bounds of the log.
#[derive(Debug, Clone)]
pub struct UsageLogOptions {
    /// The directory of the segment files (created if missing).
    pub dir: PathBuf,
    /// A batch that would grow the current segment past this starts a new
    /// segment.
    pub segment_max_bytes: u64,
    /// Appends waiting for the writer; more are refused with
    /// [`LogError::QueueFull`].
    pub queue_capacity: usize,
    /// Most records in one write + fsync.
    pub max_batch_records: usize,
}

/// Why the log cannot open, append or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The queue is at [`UsageLogOptions::queue_capacity`].
    #[error("the usage log queue is full ({0} records waiting)")]
    QueueFull(usize),
    /// Writing, syncing or reading failed.
    #[error("usage log I/O: {0}")]
    Io(String),
    /// A segment holds a bad line followed by good ones.
    #[error("usage log segment {file} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The segment.
        file: String,
        /// Where the bad line starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier failure left the log unwritable.
    #[error("the usage log failed earlier and takes no more records")]
    Failed,
    /// The writer thread has stopped.
    #[error("the usage log writer has stopped")]
    Stopped,
}

fn io(error: std::io::Error) -> LogError {
    LogError::Io(error.to_string())
}

struct Append {
    record: UsageRecord,
    done: oneshot::Sender<Result<UsageRecord, LogError>>,
}

/// State shared by the handle and the writer.
struct Shared {
    dir: PathBuf,
    /// Highest seq known to be on disk.
    durable_seq: AtomicU64,
    observers: RwLock<Vec<Observer>>,
    /// Woken after every durable batch (the sink waits on it).
    written: Notify,
    metrics: UsageMetrics,
}

/// Handle of the log; cheap to clone. The writer thread ends when every
/// handle is dropped.
#[derive(Clone)]
pub struct UsageLog {
    tx: mpsc::Sender<Append>,
    capacity: usize,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UsageLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageLog")
            .field("dir", &self.shared.dir)
            .field("durable_seq", &self.durable_seq())
            .finish_non_exhaustive()
    }
}

impl UsageLog {
    /// Opens (or creates) the log in `options.dir`, repairs a torn tail, and
    /// starts the writer thread.
    pub fn open(options: UsageLogOptions, metrics: UsageMetrics) -> Result<Self, LogError> {
        std::fs::create_dir_all(&options.dir).map_err(io)?;
        let segments = segments(&options.dir)?;
        let (next_seq, current) = match segments.last() {
            None => (1, None),
            Some((first_seq, path)) => {
                let last = repair_tail(path)?;
                let next = last.map_or(*first_seq, |s| s + 1).max(*first_seq);
                let size = std::fs::metadata(path).map_err(io)?.len();
                (next, Some((path.clone(), size)))
            }
        };
        let shared = Arc::new(Shared {
            dir: options.dir.clone(),
            durable_seq: AtomicU64::new(next_seq - 1),
            observers: RwLock::new(Vec::new()),
            written: Notify::new(),
            metrics,
        });
        let capacity = options.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let writer = Writer {
            options,
            shared: shared.clone(),
            next_seq,
            current: match current {
                Some((path, size)) => Some(Segment {
                    file: OpenOptions::new().append(true).open(&path).map_err(io)?,
                    size,
                }),
                None => None,
            },
            failed: false,
        };
        std::thread::Builder::new()
            .name("usage-log".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        tracing::info!(dir = %shared.dir.display(), next_seq, "usage log open");
        Ok(Self {
            tx,
            capacity,
            shared,
        })
    }

    /// Appends `record` (its `seq` is assigned here) and resolves once it is
    /// durable, with the record as written.
    pub async fn append(&self, record: UsageRecord) -> Result<UsageRecord, LogError> {
        let (done, wait) = oneshot::channel();
        let refused = match self.tx.try_send(Append { record, done }) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(_)) => {
                Some((LogError::QueueFull(self.capacity), AppendError::QueueFull))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Some((LogError::Stopped, AppendError::Stopped))
            }
        };
        if let Some((error, reason)) = refused {
            self.shared.metrics.record_append_error(reason);
            return Err(error);
        }
        wait.await.unwrap_or(Err(LogError::Stopped))
    }

    /// Registers a callback told of every record made durable from now on
    /// (e.g. the tenant spend counter).
    pub fn observe(&self, observer: Observer) {
        self.shared
            .observers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(observer);
    }

    /// The highest `seq` on disk (0 when empty).
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable_seq.load(Ordering::Acquire)
    }

    /// Resolves after the next durable batch (or at once if one lands
    /// between the check and the wait; callers re-check their condition).
    pub async fn written(&self) {
        self.shared.written.notified().await;
    }

    /// The segment directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Durable records matching `filter`, oldest first, at most
    /// `filter.limit` (unbounded when `None`). Blocking file reads: call
    /// from a blocking context.
    pub fn read(&self, filter: &UsageFilter) -> Result<Vec<UsageRecord>, LogError> {
        read_records(&self.shared.dir, filter, self.durable_seq())
    }
}

/// Reads durable records (seq ≤ `durable_seq`) from the segments in `dir`.
pub fn read_records(
    dir: &Path,
    filter: &UsageFilter,
    durable_seq: u64,
) -> Result<Vec<UsageRecord>, LogError> {
    let limit = filter.limit.unwrap_or(usize::MAX);
    let after = filter.after_seq.unwrap_or(0);
    let segments = segments(dir)?;
    let mut out = Vec::new();
    for (index, (_, path)) in segments.iter().enumerate() {
        // Every record of this segment is below the next one's first seq.
        if let Some((next_first, _)) = segments.get(index + 1)
            && *next_first <= after.saturating_add(1)
        {
            continue;
        }
        let file = File::open(path).map_err(io)?;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(io)?;
            if line.len() > MAX_LINE_BYTES {
                continue;
            }
            // A line being written now may be incomplete: skip, don't fail.
            let Ok(record) = serde_json::from_slice::<UsageRecord>(&line) else {
                continue;
            };
            if record.seq > durable_seq {
                return Ok(out);
            }
            if record.seq <= after || !matches(filter, &record) {
                continue;
            }
            if out.len() >= limit {
                return Ok(out);
            }
            out.push(record);
        }
    }
    Ok(out)
}

fn matches(filter: &UsageFilter, record: &UsageRecord) -> bool {
    filter.tenant.as_ref().is_none_or(|t| *t == record.tenant)
        && filter.pipeline.is_none_or(|p| p == record.pipeline)
        && filter.since.is_none_or(|s| record.unix_ms >= s)
        && filter.until.is_none_or(|u| record.unix_ms < u)
}

/// Segment files in `dir`, by first seq.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("usage-"))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort();
    Ok(out)
}

fn segment_name(first_seq: u64) -> String {
    format!("usage-{first_seq:020}.jsonl")
}

/// Cuts a torn last line off `path`; returns the last good record's seq.
fn repair_tail(path: &Path) -> Result<Option<u64>, LogError> {
    let bytes = std::fs::read(path).map_err(io)?;
    let mut offset = 0usize;
    let mut last_seq = None;
    let mut bad: Option<(usize, String)> = None;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let (line, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(end) => (&rest[..end], offset + end + 1),
            None => (rest, bytes.len()),
        };
        let complete = next <= bytes.len() && bytes.get(next - 1) == Some(&b'\n');
        let parsed = serde_json::from_slice::<UsageRecord>(line);
        match (&bad, complete, parsed) {
            (None, true, Ok(record)) => last_seq = Some(record.seq),
            (None, _, Ok(_)) => bad = Some((offset, "last line has no newline".into())),
            (None, _, Err(error)) => bad = Some((offset, error.to_string())),
            (Some((at, reason)), true, Ok(_)) => {
                return Err(LogError::Corrupt {
                    file: path.display().to_string(),
                    offset: *at as u64,
                    reason: reason.clone(),
                });
            }
            (Some(_), _, _) => {}
        }
        offset = next;
    }
    if let Some((at, reason)) = bad {
        tracing::warn!(
            file = %path.display(),
            offset = at,
            dropped_bytes = bytes.len() - at,
            %reason,
            "usage log: cutting off a torn last write (never acknowledged)"
        );
        let file = OpenOptions::new().write(true).open(path).map_err(io)?;
        file.set_len(at as u64).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    Ok(last_seq)
}

struct Segment {
    file: File,
    size: u64,
}

struct Writer {
    options: UsageLogOptions,
    shared: Arc<Shared>,
    next_seq: u64,
    current: Option<Segment>,
    failed: bool,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Append>) {
        let max_batch = self.options.max_batch_records.max(1);
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(append) => batch.push(append),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
        tracing::debug!("usage log writer stopped");
    }

    fn commit(&mut self, batch: Vec<Append>) {
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        if self.failed {
            metrics.record_append_error(AppendError::Io);
            for append in batch {
                let _ = append.done.send(Err(LogError::Failed));
            }
            return;
        }
        let started = Instant::now();
        let mut buffer = Vec::with_capacity(batch.len() * 512);
        let mut records = Vec::with_capacity(batch.len());
        let mut waiters = Vec::with_capacity(batch.len());
        for (offset, append) in batch.into_iter().enumerate() {
            let mut record = append.record;
            record.seq = self.next_seq + offset as u64;
            match serde_json::to_writer(&mut buffer, &record) {
                Ok(()) => buffer.push(b'\n'),
                Err(error) => {
                    // Unreachable for plain data; never fatal.
                    let _ = append.done.send(Err(LogError::Io(error.to_string())));
                    continue;
                }
            }
            records.push(record);
            waiters.push(append.done);
        }
        // Serialization failures leave gaps-free numbering: renumber.
        if records.len() != waiters.len() || records.is_empty() {
            return;
        }
        let result = self.write_batch(&buffer, records[0].seq);
        match result {
            Ok(()) => {
                let count = records.len();
                self.next_seq += count as u64;
                shared
                    .durable_seq
                    .store(self.next_seq - 1, Ordering::Release);
                metrics.record_batch(count, buffer.len() as u64, started.elapsed().as_secs_f64());
                let observers = shared
                    .observers
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                for (record, done) in records.into_iter().zip(waiters) {
                    metrics.record_durable(
                        &record.tenant,
                        record.outcome.as_str(),
                        record.cost_nano_usd,
                    );
                    for observer in &observers {
                        observer(&record);
                    }
                    let _ = done.send(Ok(record));
                }
                shared.written.notify_waiters();
            }
            Err(error) => {
                tracing::error!(%error, "usage log write failed; the batch is refused");
                for _ in 0..waiters.len() {
                    metrics.record_append_error(AppendError::Io);
                }
                for done in waiters {
                    let _ = done.send(Err(error.clone()));
                }
            }
        }
    }

    /// One write and one fsync; on failure the segment is cut back.
    fn write_batch(&mut self, buffer: &[u8], first_seq: u64) -> Result<(), LogError> {
        let rotate = self.current.as_ref().is_none_or(|segment| {
            segment.size > 0 && segment.size + buffer.len() as u64 > self.options.segment_max_bytes
        });
        if rotate {
            let path = self.options.dir.join(segment_name(first_seq));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io)?;
            let size = file.metadata().map_err(io)?.len();
            sync_dir(&self.options.dir)?;
            self.current = Some(Segment { file, size });
        }
        let Some(segment) = self.current.as_mut() else {
            return Err(LogError::Stopped);
        };
        let before = segment.size;
        let written = segment
            .file
            .write_all(buffer)
            .and_then(|()| segment.file.sync_data());
        match written {
            Ok(()) => {
                segment.size += buffer.len() as u64;
                Ok(())
            }
            Err(error) => {
                let repaired = segment
                    .file
                    .set_len(before)
                    .and_then(|()| segment.file.sync_all());
                if let Err(repair) = repaired {
                    tracing::error!(%repair, "usage log cannot cut a failed write back; refusing appends");
                    self.failed = true;
                }
                Err(io(error))
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mesh_core::Pipeline;
    use mesh_core::billing::{UsageOutcome, Wei};

    /// A usage record for tests: tenant `even` or `odd` by `id`, costing
    /// `id` nano-USD, at `1_000 + id` ms.
    pub(crate) fn record(id: usize) -> UsageRecord {
        UsageRecord {
            seq: 0,
            request_id: format!("r{id}"),
            tenant: if id.is_multiple_of(2) { "even" } else { "odd" }.into(),
            tier: "default".into(),
            pipeline: Pipeline::Llm,
            model_id: "m".into(),
            unit: None,
            units: 0,
            price_per_unit_nano_usd: 0,
            cost_nano_usd: id as u64,
            orchestrator_units: 1,
            orchestrator_unit: "max_tokens".into(),
            orchestrator_price_wei_per_unit: None,
            orchestrator_paid_wei: Wei(0),
            region: None,
            node: "n".into(),
            orchestrator: None,
            latency_ms: 1,
            outcome: UsageOutcome::Ok,
            unix_ms: 1_000 + id as u64,
        }
    }

    fn options(dir: &Path) -> UsageLogOptions {
        UsageLogOptions {
            dir: dir.to_owned(),
            segment_max_bytes: 1 << 20,
            queue_capacity: 1024,
            max_batch_records: 256,
        }
    }

    fn metrics() -> UsageMetrics {
        api::Metrics::new().usage().clone()
    }

    fn all(log: &UsageLog) -> Vec<UsageRecord> {
        log.read(&UsageFilter::default()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_share_fsyncs_and_each_lands_once() {
        let dir = tempfile::tempdir().unwrap();
        let api_metrics = api::Metrics::new();
        let log = UsageLog::open(options(dir.path()), api_metrics.usage().clone()).unwrap();
        let observed = Arc::new(AtomicU64::new(0));
        let counter = observed.clone();
        log.observe(Arc::new(move |r: &UsageRecord| {
            counter.fetch_add(r.cost_nano_usd, Ordering::SeqCst);
        }));
        let tasks: Vec<_> = (0..400)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(record(i)).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            let written = task.await.unwrap().unwrap();
            // Durable when append returns.
            assert!(log.durable_seq() >= written.seq);
            seqs.push(written.seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=400).collect::<Vec<u64>>());
        let records = all(&log);
        assert_eq!(records.len(), 400);
        let expected: u64 = (0..400u64).sum();
        assert_eq!(observed.load(Ordering::SeqCst), expected);
        assert_eq!(
            records.iter().map(|r| r.cost_nano_usd).sum::<u64>(),
            expected
        );
        let text = api_metrics.encode();
        let batches = text
            .lines()
            .find(|l| l.starts_with("gatemesh_usage_fsync_batches_total"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap();
        assert!((1..=400).contains(&batches), "{batches} batches");
    }

    #[tokio::test]
    async fn segments_rotate_and_replay_continues_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.segment_max_bytes = 2_000;
        {
            let log = UsageLog::open(opts.clone(), metrics()).unwrap();
            for i in 0..30 {
                log.append(record(i)).await.unwrap();
            }
        }
        let files = segments(dir.path()).unwrap();
        assert!(files.len() > 3, "{} segments", files.len());
        for (_, path) in &files {
            let size = std::fs::metadata(path).unwrap().len();
            assert!(size <= 2_000, "{size}");
        }
        let log = UsageLog::open(opts, metrics()).unwrap();
        assert_eq!(log.durable_seq(), 30);
        let next = log.append(record(30)).await.unwrap();
        assert_eq!(next.seq, 31);
        let records = all(&log);
        assert_eq!(records.len(), 31);
        assert!(records.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        // Paging skips whole segments and filters apply.
        let page = log
            .read(&UsageFilter {
                after_seq: Some(20),
                tenant: Some("even".into()),
                limit: Some(3),
                ..UsageFilter::default()
            })
            .unwrap();
        let ids: Vec<u64> = page.iter().map(|r| r.seq).collect();
        assert_eq!(ids, [21, 23, 25]);
        let window = log
            .read(&UsageFilter {
                since: Some(1_005),
                until: Some(1_007),
                ..UsageFilter::default()
            })
            .unwrap();
        assert_eq!(window.len(), 2);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_corruption_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = UsageLog::open(options(dir.path()), metrics()).unwrap();
            for i in 0..3 {
                log.append(record(i)).await.unwrap();
            }
        }
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        let good = std::fs::read(&path).unwrap();
        // A torn write: half a line, no newline.
        let mut torn = good.clone();
        torn.extend_from_slice(br#"{"seq":4,"request_id":"r"#);
        std::fs::write(&path, &torn).unwrap();
        let log = UsageLog::open(options(dir.path()), metrics()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), good);
        assert_eq!(log.append(record(9)).await.unwrap().seq, 4);
        drop(log);

        // Garbage followed by a good line is corruption: refuse to start.
        let mut corrupt = std::fs::read(&path).unwrap();
        let lines: Vec<&[u8]> = good.split(|b| *b == b'\n').collect();
        corrupt.extend_from_slice(b"garbage\n");
        corrupt.extend_from_slice(lines[0]);
        corrupt.push(b'\n');
        std::fs::write(&path, &corrupt).unwrap();
        assert!(matches!(
            UsageLog::open(options(dir.path()), metrics()),
            Err(LogError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.queue_capacity = 1;
        opts.max_batch_records = 1;
        let log = UsageLog::open(opts, metrics()).unwrap();
        // An observer that holds the writer until the test lets it go.
        let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = std::sync::Mutex::new(gate);
        log.observe(Arc::new(move |_: &UsageRecord| {
            let _ = entered_tx.send(());
            let _ = gate.lock().unwrap().recv();
        }));
        let first = tokio::spawn({
            let log = log.clone();
            async move { log.append(record(1)).await }
        });
        entered.recv().await.unwrap(); // the writer holds record 1
        let second = tokio::spawn({
            let log = log.clone();
            async move { log.append(record(2)).await }
        });
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while log.tx.capacity() > 0 {
            assert!(Instant::now() < deadline, "record 2 never queued");
            tokio::task::yield_now().await;
        }
        assert_eq!(log.append(record(3)).await, Err(LogError::QueueFull(1)));
        release.send(()).unwrap();
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap().seq, 1);
        assert_eq!(second.await.unwrap().unwrap().seq, 2);
        assert_eq!(all(&log).len(), 2);
    }
}
