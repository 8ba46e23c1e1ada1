//! A target's durable spool: append-only segment files per lane, read back in order by the
//! lane's sender, kept until the target has taken the data.
//!
//! With a spool, everything a target is given goes through it (disk first, not spill-on-full):
//! a request's chunk for a lane is one *record* (cut between series into more where it would
//! overfill the batch being written: [`Spool::append_series`]), written at once to the lane's
//! current segment (into the page cache; a `kill -9` of the relay loses nothing written), and
//! the sender reads records back from the file, a batch's worth at a time. `fsync` is
//! batched: a background task syncs every `fsync_interval`, or at once when an
//! `ack: spooled` request waits for it (group commit).
//!
//! On disk, per target directory:
//!
//! ```text
//! LOCK                      held (flock) while a relay uses the directory
//! lane-N/<offset>.seg       records; the file name is the lane offset of its first byte
//! lane-N/acked              u64 LE offset of the first byte not yet finished + CRC-32
//! ```
//!
//! A record is `len: u32 LE | samples: u32 LE | crc32(len, samples, payload): u32 LE | payload`.
//! The payload is the target's encoded series (remote-write `timeseries` fields, JSON lines or
//! framed Kafka records), so a batch is the concatenation of record payloads.
//!
//! At start the lanes are scanned from their `acked` offset: every record's CRC is checked, a
//! torn tail (a crash mid-write) is cut off, and what is left is replayed. A batch that was in
//! flight at a crash is sent again: delivery is at least once (Prometheus drops the duplicate
//! samples; Kafka consumers see the message twice).
//!
//! File reads and writes happen on the runtime threads under the lane's lock (they go to the page
//! cache: a few microseconds per record); only `fsync` runs on the blocking pool.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

mod config;

pub use config::{OnFull, OverflowConfig, RawOverflow, RawSpool, SpoolConfig};

use super::queue::Batch;
use prometheus_client::metrics::counter::Counter;

/// Bytes before each record's payload.
pub const HEADER: usize = 12;
/// A batch read back stops growing past this many payload bytes.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Spare batch buffers kept per lane.
const SPARES: usize = 2;

/// Counters the spool bumps itself (they belong to the target's metrics).
#[derive(Clone, Default)]
pub struct SpoolCounters {
    /// Samples dropped by `on_full: drop_oldest`.
    pub dropped_full: Counter,
    /// Samples in records that failed their CRC when read back (disk corruption).
    pub dropped_corrupt: Counter,
}

/// What a spool held when it was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub records: u64,
    pub samples: u64,
    pub bytes: u64,
    /// Bytes cut off as a torn or corrupt tail.
    pub cut_bytes: u64,
}

struct Segment {
    /// Lane offset of the first byte.
    start: u64,
    /// Lane offset just past the last whole record.
    end: u64,
    file: Arc<File>,
    path: PathBuf,
    /// Samples in this segment's records not yet handed to the sender.
    unread_samples: u64,
}

struct LaneState {
    segments: VecDeque<Segment>,
    write_off: u64,
    /// The next record the sender reads.
    read_off: u64,
    /// Everything before this offset is finished (delivered, refused or dropped).
    acked_off: u64,
    unread_samples: u64,
    /// Samples written since the write offset was last a batch's start (see
    /// [`Spool::append_series`]); up to one `max_samples` batch.
    group_samples: u64,
    /// When the oldest unread record arrived; `None` when nothing waits or the wait is over.
    since: Option<Instant>,
    in_flight: bool,
    /// Segment files written since the last sync (the current one at most once).
    unsynced: Vec<Arc<File>>,
    last_unsynced: bool,
    ack_dirty: bool,
    dir_dirty: bool,
    spare: Vec<Vec<u8>>,
}

struct Lane {
    dir: PathBuf,
    ack_file: Arc<File>,
    state: Mutex<LaneState>,
    notify: Notify,
    /// Lane offset up to which everything written is on disk.
    synced: watch::Sender<u64>,
}

/// See the module docs.
pub struct Spool {
    lanes: Box<[Lane]>,
    cfg: SpoolConfig,
    segment_bytes: u64,
    /// Bytes held: reserved by ingest, unread, and in flight.
    held: AtomicU64,
    held_samples: AtomicU64,
    sync_wanted: Notify,
    counters: SpoolCounters,
    /// Held (flock) while this spool owns the directory.
    lock_file: File,
}

fn crc(len: u32, samples: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&samples.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn header(payload: &[u8], samples: u32) -> [u8; HEADER] {
    let len = payload.len() as u32;
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4..8].copy_from_slice(&samples.to_le_bytes());
    h[8..12].copy_from_slice(&crc(len, samples, payload).to_le_bytes());
    h
}

fn parse_header(h: &[u8; HEADER]) -> (u32, u32, u32) {
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    (word(0), word(4), word(8))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn segment_name(start: u64) -> String {
    format!("{start:020}.seg")
}

fn read_acked(file: &File) -> Option<u64> {
    let mut b = [0u8; 12];
    file.read_exact_at(&mut b, 0).ok()?;
    let off = u64::from_le_bytes(b[0..8].try_into().ok()?);
    let sum = u32::from_le_bytes(b[8..12].try_into().ok()?);
    (crc32fast::hash(&b[0..8]) == sum).then_some(off)
}

fn write_acked(file: &File, off: u64) -> io::Result<()> {
    let mut b = [0u8; 12];
    b[0..8].copy_from_slice(&off.to_le_bytes());
    let sum = crc32fast::hash(&b[0..8]);
    b[8..12].copy_from_slice(&sum.to_le_bytes());
    file.write_all_at(&b, 0)
}

/// Walk the records of one segment from `from` (a lane offset inside it); returns the end of
/// the last whole, valid record, the records and samples seen.
fn scan(file: &File, start: u64, from: u64, file_len: u64) -> (u64, u64, u64) {
    let mut pos = from - start;
    let (mut records, mut samples) = (0, 0);
    let mut payload = Vec::new();
    loop {
        let mut h = [0u8; HEADER];
        if pos + HEADER as u64 > file_len || file.read_exact_at(&mut h, pos).is_err() {
            break;
        }
        let (len, n, sum) = parse_header(&h);
        let body_at = pos + HEADER as u64;
        if body_at + u64::from(len) > file_len {
            break;
        }
        payload.resize(len as usize, 0);
        if file.read_exact_at(&mut payload, body_at).is_err() || crc(len, n, &payload) != sum {
            break;
        }
        records += 1;
        samples += u64::from(n);
        pos = body_at + u64::from(len);
    }
    (start + pos, records, samples)
}

impl Lane {
    /// Open (or create) one lane directory and rebuild its state from the files.
    fn open(dir: PathBuf, recovered: &mut Recovered) -> io::Result<Lane> {
        fs::create_dir_all(&dir).map_err(|e| with_path(e, "cannot create", &dir))?;
        let ack_path = dir.join("acked");
        let ack_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&ack_path)
            .map_err(|e| with_path(e, "cannot open", &ack_path))?;
        let mut starts = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| with_path(e, "cannot list", &dir))? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(start) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                starts.push(start);
            }
        }
        starts.sort_unstable();
        let acked = read_acked(&ack_file)
            .unwrap_or(0)
            .max(starts.first().copied().unwrap_or(0));
        let mut segments = VecDeque::new();
        let mut unread = 0;
        for (i, &start) in starts.iter().enumerate() {
            let path = dir.join(segment_name(start));
            let next = starts.get(i + 1).copied();
            if next.is_some_and(|n| n <= acked) {
                // Wholly finished: a crash came between the ack and the delete.
                let _ = fs::remove_file(&path);
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| with_path(e, "cannot open", &path))?;
            let len = file.metadata()?.len();
            let from = acked.max(start);
            let (end, records, samples) = if from - start > len {
                (from, 0, 0)
            } else {
                scan(&file, start, from, len)
            };
            let cut = (start + len).saturating_sub(end);
            if cut > 0 {
                tracing::warn!(file = %path.display(), bytes = cut, "spool: cutting off a torn or corrupt tail");
                file.set_len(end - start)
                    .map_err(|e| with_path(e, "cannot truncate", &path))?;
                recovered.cut_bytes += cut;
            }
            recovered.records += records;
            recovered.samples += samples;
            recovered.bytes += end - from;
            unread += samples;
            segments.push_back(Segment {
                start,
                end,
                file: Arc::new(file),
                path,
                unread_samples: samples,
            });
        }
        let write_off = segments.back().map_or(acked, |s| s.end);
        let read_off = segments
            .front()
            .map_or(acked, |s| acked.max(s.start))
            .min(write_off);
        Ok(Lane {
            dir,
            ack_file: Arc::new(ack_file),
            state: Mutex::new(LaneState {
                segments,
                write_off,
                read_off,
                acked_off: read_off,
                unread_samples: unread,
                group_samples: 0,
                since: None,
                in_flight: false,
                unsynced: Vec::new(),
                last_unsynced: false,
                ack_dirty: false,
                dir_dirty: false,
                spare: Vec::new(),
            }),
            notify: Notify::new(),
            synced: watch::Sender::new(write_off),
        })
    }
}

impl LaneState {
    /// Start a new segment at the write offset.
    fn rotate(&mut self, dir: &Path) -> io::Result<()> {
        let path = dir.join(segment_name(self.write_off));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| with_path(e, "cannot create", &path))?;
        self.segments.push_back(Segment {
            start: self.write_off,
            end: self.write_off,
            file: Arc::new(file),
            path,
            unread_samples: 0,
        });
        self.last_unsynced = false;
        self.dir_dirty = true;
        Ok(())
    }

    /// Mark everything before the read offset finished, persist that, delete finished segments.
    fn ack_to_read(&mut self, ack_file: &File) {
        self.acked_off = self.read_off;
        if let Err(e) = write_acked(ack_file, self.acked_off) {
            tracing::error!("spool: cannot record the delivered offset: {e}");
        }
        self.ack_dirty = true;
        while self.segments.len() > 1 && self.segments[0].end <= self.acked_off {
            if let Some(s) = self.segments.pop_front() {
                if let Err(e) = fs::remove_file(&s.path) {
                    tracing::warn!("spool: cannot delete {}: {e}", s.path.display());
                }
                self.dir_dirty = true;
            }
        }
    }
}

impl Spool {
    /// Open or create the spool directory for `lanes` lanes, replaying what it holds.
    ///
    /// # Errors
    /// The directory cannot be created or locked (another relay uses it), a file cannot be
    /// read, or the directory holds data for more lanes than `lanes`.
    pub fn open(
        cfg: SpoolConfig,
        lanes: usize,
        counters: SpoolCounters,
    ) -> io::Result<(Spool, Recovered)> {
        fs::create_dir_all(&cfg.dir).map_err(|e| with_path(e, "cannot create", &cfg.dir))?;
        let lock_path = cfg.dir.join("LOCK");
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| with_path(e, "cannot open", &lock_path))?;
        if lock_file.try_lock().is_err() {
            return Err(io::Error::other(format!(
                "spool directory {} is in use by another process",
                cfg.dir.display()
            )));
        }
        // Data left in lanes this config no longer has would never be sent: refuse to start.
        for entry in fs::read_dir(&cfg.dir)? {
            let name = entry?.file_name();
            let n = name
                .to_string_lossy()
                .strip_prefix("lane-")
                .and_then(|n| n.parse::<usize>().ok());
            if let Some(n) = n.filter(|&n| n >= lanes) {
                let holds = fs::read_dir(cfg.dir.join(name))?.any(|e| {
                    e.is_ok_and(|e| {
                        e.file_name().to_string_lossy().ends_with(".seg")
                            && e.metadata().is_ok_and(|m| m.len() > 0)
                    })
                });
                if holds {
                    return Err(io::Error::other(format!(
                        "spool directory {} holds data for lane {n}, but queue.shards is {lanes}; \
                         set queue.shards back to at least {} until it is delivered",
                        cfg.dir.display(),
                        n + 1
                    )));
                }
            }
        }
        let mut recovered = Recovered::default();
        let lanes: Box<[Lane]> = (0..lanes.max(1))
            .map(|i| Lane::open(cfg.dir.join(format!("lane-{i}")), &mut recovered))
            .collect::<io::Result<_>>()?;
        let spool = Spool {
            segment_bytes: cfg.segment_bytes(),
            lanes,
            cfg,
            held: AtomicU64::new(recovered.bytes),
            held_samples: AtomicU64::new(recovered.samples),
            sync_wanted: Notify::new(),
            counters,
            lock_file,
        };
        Ok((spool, recovered))
    }

    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// Give the directory up (a reload retired this target): another spool may open it now.
    /// Call only once nothing reads or writes through this one any more.
    pub fn unlock(&self) {
        let _ = self.lock_file.unlock();
    }

    /// Bytes held (reserved, unread, in flight).
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// Samples written and not yet finished.
    pub fn held_samples(&self) -> u64 {
        self.held_samples.load(Ordering::Acquire)
    }

    /// Reserve `bytes` (record headers included) for data about to be appended. When the spool
    /// is full: `block` refuses; `drop_oldest` drops old segments until the data fits. An empty
    /// spool always takes one request, however large.
    /// `dropped(lane, start, end, samples)` hears of every range dropped.
    pub fn try_reserve(&self, bytes: u64, dropped: impl Fn(usize, u64, u64, u64)) -> bool {
        loop {
            let cur = self.held.load(Ordering::Acquire);
            if cur == 0 || cur + bytes <= self.cfg.max_bytes {
                if self
                    .held
                    .compare_exchange_weak(cur, cur + bytes, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if self.cfg.on_full == OnFull::Block || !self.drop_oldest(&dropped) {
                return false;
            }
        }
    }

    pub fn release(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Count `bytes` as held without checking the budget: for a record that must follow its
    /// lane to disk after room was reserved for it in memory (a race the queue settles; the
    /// overshoot is at most one request's chunk per lane).
    pub fn force_reserve(&self, bytes: u64) {
        self.held.fetch_add(bytes, Ordering::AcqRel);
    }

    /// The next batch of a lane if it has unread records, without waiting for more (an
    /// overflow's backlog is due at once), and whether records are left unread after it.
    pub fn try_batch(&self, lane: usize, max_samples: usize) -> Option<(Batch, bool)> {
        let mut st = lock(&self.lanes[lane].state);
        if st.read_off >= st.write_off {
            return None;
        }
        let batch = self.read_batch(&mut st, max_samples as u64);
        Some((batch, st.read_off < st.write_off))
    }

    /// Whether a lane still holds anything: unread records or a batch in flight.
    pub fn lane_pending(&self, lane: usize) -> bool {
        let st = lock(&self.lanes[lane].state);
        st.read_off < st.write_off || st.in_flight
    }

    /// Drop the oldest unread segment of the lane with the most unread bytes. False when no
    /// lane has unread data (everything held is in flight or reserved).
    fn drop_oldest(&self, dropped: impl Fn(usize, u64, u64, u64)) -> bool {
        let Some((index, lane)) = self
            .lanes
            .iter()
            .map(|l| {
                let st = lock(&l.state);
                st.write_off - st.read_off
            })
            .enumerate()
            .filter(|&(_, unread)| unread > 0)
            .max_by_key(|&(_, unread)| unread)
            .map(|(i, _)| (i, &self.lanes[i]))
        else {
            return false;
        };
        let mut st = lock(&lane.state);
        if st.read_off >= st.write_off {
            return true; // read meanwhile: held has shrunk, try again
        }
        let read_off = st.read_off;
        let Some(i) = st.segments.iter().position(|s| s.end > read_off) else {
            return false;
        };
        if i + 1 == st.segments.len() {
            // Dropping the segment being written: later records go to a new one.
            if let Err(e) = st.rotate(&lane.dir) {
                tracing::error!("spool: {e}");
                return false;
            }
        }
        let seg = &mut st.segments[i];
        let from = read_off.max(seg.start);
        let (bytes, samples) = (seg.end - from, seg.unread_samples);
        seg.unread_samples = 0;
        let end = seg.end;
        st.read_off = end;
        st.unread_samples -= samples;
        if st.read_off >= st.write_off {
            st.since = None;
            st.group_samples = 0;
        }
        if !st.in_flight {
            let ack_file = lane.ack_file.clone();
            st.ack_to_read(&ack_file);
        }
        drop(st);
        dropped(index, from, end, samples);
        self.held.fetch_sub(bytes, Ordering::AcqRel);
        self.held_samples.fetch_sub(samples, Ordering::AcqRel);
        self.counters.dropped_full.inc_by(samples);
        tracing::warn!(
            dir = %self.cfg.dir.display(), samples, bytes,
            "spool full: dropped its oldest segment (on_full: drop_oldest)"
        );
        true
    }

    /// Append a chunk of series (already reserved; `series` is each one's end offset in
    /// `payload` and its samples) as records that tile the lane into batches of
    /// `max_samples`: the chunk is cut between series where the batch being written would
    /// overfill, so that a sender reading a backlog gets full batches. One record per chunk
    /// made a backlog's batches whole records that fit: chunks of about a quarter of a
    /// batch (a 2,000-series request over four lanes) filled three quarters of the batches
    /// that did not fit a fourth, and a lane draining its spill to a slow receiver sent
    /// that much less per round trip. The batches line up while the sender starts where a
    /// batch being written started: after a restart, a dropped segment or a corrupt record
    /// (the reader jumps), again once it has caught up with the writes. The extra records'
    /// headers are counted as held (the room reserved counted one per chunk: the budget may
    /// be passed by a header per cut). Returns the lane offsets the records occupy.
    ///
    /// # Errors
    /// The write failed (disk full, I/O error); nothing of the chunk is kept.
    pub fn append_series(
        &self,
        lane: usize,
        payload: &[u8],
        series: &[(u32, u32)],
        max_samples: u64,
    ) -> io::Result<(u64, u64)> {
        let l = &self.lanes[lane];
        let mut st = lock(&l.state);
        let rotate = st
            .segments
            .back()
            .is_none_or(|s| s.end - s.start >= self.segment_bytes);
        if rotate {
            st.rotate(&l.dir)?;
        }
        let start = st.write_off;
        let mut group = st.group_samples;
        let Some(seg) = st.segments.back_mut() else {
            return Err(io::Error::other("spool: no segment to write to"));
        };
        let first = seg.end - seg.start;
        let mut at = first;
        let (mut records, mut samples) = (0u64, 0u64);
        let mut write = |bytes: &[u8], n: u64| -> io::Result<()> {
            let h = header(bytes, n as u32);
            seg.file.write_all_at(&h, at)?;
            seg.file.write_all_at(bytes, at + HEADER as u64)?;
            at += (HEADER + bytes.len()) as u64;
            records += 1;
            samples += n;
            Ok(())
        };
        let (mut cut, mut pending, mut prev_end) = (0usize, 0u64, 0usize);
        let mut written = Ok(());
        for &(end, n) in series {
            let n = u64::from(n);
            if group > 0 && group.saturating_add(n) > max_samples {
                if prev_end > cut {
                    written = write(&payload[cut..prev_end], pending);
                    if written.is_err() {
                        break;
                    }
                    (cut, pending) = (prev_end, 0);
                }
                group = 0;
            }
            group = group.saturating_add(n);
            pending += n;
            prev_end = end as usize;
        }
        if written.is_ok() && (payload.len() > cut || cut == 0) {
            written = write(&payload[cut..], pending);
        }
        if let Err(e) = written {
            let _ = seg.file.set_len(first);
            return Err(with_path(e, "cannot write", &seg.path));
        }
        let len = at - first;
        seg.end += len;
        seg.unread_samples += samples;
        let file = seg.file.clone();
        if !st.last_unsynced {
            st.unsynced.push(file);
            st.last_unsynced = true;
        }
        st.write_off += len;
        if st.read_off + len == st.write_off {
            st.since = Some(Instant::now());
        }
        st.unread_samples += samples;
        st.group_samples = group;
        let end = st.write_off;
        // Counted before the lane's lock is let go: a sender may read and finish these
        // records at once. The room reserved counted one header per chunk.
        self.held
            .fetch_add((records - 1) * HEADER as u64, Ordering::AcqRel);
        self.held_samples.fetch_add(samples, Ordering::AcqRel);
        drop(st);
        l.notify.notify_one();
        Ok((start, end))
    }

    /// Make what a lane holds due now (a request waits for its delivery).
    pub fn flush(&self, lane: usize) {
        let l = &self.lanes[lane];
        lock(&l.state).since = None;
        l.notify.notify_one();
    }

    /// Wake every sender (the queue was closed).
    pub fn wake_all(&self) {
        for l in self.lanes.iter() {
            l.notify.notify_one();
        }
    }

    /// The next batch of a lane: records up to `max_samples` (a single larger record goes
    /// alone), once there are that many or the oldest has waited `deadline`. `None` once
    /// `closed()` is true: what is left stays in the spool for the next start.
    pub async fn next_batch(
        &self,
        lane: usize,
        max_samples: usize,
        deadline: Duration,
        closed: impl Fn() -> bool,
    ) -> Option<Batch> {
        let l = &self.lanes[lane];
        loop {
            let wait_until = {
                let mut st = lock(&l.state);
                if closed() {
                    return None;
                }
                if st.read_off < st.write_off {
                    let due_at = st.since.map(|t| t + deadline);
                    if st.unread_samples >= max_samples as u64
                        || due_at.is_none_or(|t| Instant::now() >= t)
                    {
                        return Some(self.read_batch(&mut st, max_samples as u64));
                    }
                    due_at
                } else {
                    None
                }
            };
            super::queue::wait_for_wake(&l.notify, wait_until).await;
        }
    }

    fn read_batch(&self, st: &mut LaneState, max_samples: u64) -> Batch {
        let mut body = st.spare.pop().unwrap_or_default();
        let start = st.read_off;
        let (mut samples, mut lost) = (0u64, 0u64);
        // Bytes of the records taken (offsets may jump a gap left by a cut segment).
        let (mut taken_bytes, mut lost_bytes) = (0u64, 0u64);
        while st.read_off < st.write_off && body.len() < MAX_BATCH_BYTES {
            let read_off = st.read_off;
            let Some(i) = st.segments.iter().position(|s| s.end > read_off) else {
                break;
            };
            let seg = &mut st.segments[i];
            let at = read_off.max(seg.start);
            let mut h = [0u8; HEADER];
            let ok = seg.file.read_exact_at(&mut h, at - seg.start).is_ok();
            let (len, n, sum) = parse_header(&h);
            let record_end = at + HEADER as u64 + u64::from(len);
            if ok && record_end <= seg.end {
                if samples > 0 && samples + u64::from(n) > max_samples {
                    break;
                }
                let was = body.len();
                body.resize(was + len as usize, 0);
                let good = seg
                    .file
                    .read_exact_at(&mut body[was..], at - seg.start + HEADER as u64)
                    .is_ok()
                    && crc(len, n, &body[was..]) == sum;
                if good {
                    samples += u64::from(n);
                    taken_bytes += HEADER as u64 + u64::from(len);
                    seg.unread_samples -= u64::from(n);
                    st.unread_samples -= u64::from(n);
                    st.read_off = record_end;
                    continue;
                }
                body.truncate(was);
            }
            // Unreadable or corrupt since it was written: give up the rest of this segment.
            tracing::error!(file = %seg.path.display(), offset = at - seg.start, "spool: corrupt record; dropping the rest of the segment");
            lost += seg.unread_samples;
            lost_bytes += seg.end - at;
            st.unread_samples -= seg.unread_samples;
            seg.unread_samples = 0;
            st.read_off = seg.end;
        }
        if st.read_off >= st.write_off {
            // The next record starts a batch (the sender reads up to the write offset).
            st.group_samples = 0;
        }
        if lost > 0 {
            self.counters.dropped_corrupt.inc_by(lost);
            self.held.fetch_sub(lost_bytes, Ordering::AcqRel);
            self.held_samples.fetch_sub(lost, Ordering::AcqRel);
        }
        st.since = None;
        st.in_flight = true;
        Batch {
            body,
            samples: samples as usize,
            start,
            end: st.read_off,
            bytes: taken_bytes as usize,
            from_disk: true,
            metadata: true,
            snappy: false,
            barrier: 0,
        }
    }

    /// A batch was delivered or dropped: release it and record the new finished offset.
    pub fn finish(&self, lane: usize, mut batch: Batch) {
        let l = &self.lanes[lane];
        self.held.fetch_sub(batch.bytes as u64, Ordering::AcqRel);
        self.held_samples
            .fetch_sub(batch.samples as u64, Ordering::AcqRel);
        let mut st = lock(&l.state);
        st.in_flight = false;
        st.ack_to_read(&l.ack_file);
        if st.spare.len() < SPARES && batch.body.capacity() <= MAX_BATCH_BYTES * 2 {
            batch.body.clear();
            st.spare.push(std::mem::take(&mut batch.body));
        }
    }

    /// Ask the sync task to sync now; `wait_synced` callers do this.
    pub fn want_sync(&self) {
        self.sync_wanted.notify_one();
    }

    /// Wait until the lane is on disk up to `end`.
    pub async fn wait_synced(&self, lane: usize, end: u64) {
        let mut rx = self.lanes[lane].synced.subscribe();
        if *rx.borrow() >= end {
            return;
        }
        self.want_sync();
        let _ = rx.wait_for(|&v| v >= end).await;
    }

    /// `fsync` what was written since the last call (segment data, and the directories when
    /// segments came or went), then publish the synced offsets. With `full`, the `acked` files
    /// too: they only bound how much is replayed after a crash, so a request waiting for its
    /// data does not wait for them. The files are synced in parallel (one lane's segment each,
    /// usually), so a wave of waiting requests costs about one fsync, not one per lane.
    pub async fn sync(&self, full: bool) {
        let mut files: Vec<Arc<File>> = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut offsets = Vec::with_capacity(self.lanes.len());
        for l in self.lanes.iter() {
            let mut st = lock(&l.state);
            files.append(&mut st.unsynced);
            st.last_unsynced = false;
            if full && std::mem::take(&mut st.ack_dirty) {
                files.push(l.ack_file.clone());
            }
            if std::mem::take(&mut st.dir_dirty) {
                dirs.push(l.dir.clone());
            }
            offsets.push(st.write_off);
        }
        let mut jobs: Vec<tokio::task::JoinHandle<io::Result<()>>> = files
            .into_iter()
            .map(|f| tokio::task::spawn_blocking(move || f.sync_data()))
            .collect();
        jobs.extend(
            dirs.into_iter()
                .map(|d| tokio::task::spawn_blocking(move || File::open(d)?.sync_all())),
        );
        let mut failed = None;
        for job in jobs {
            match job.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed = Some(e.to_string()),
                Err(e) => failed = Some(format!("fsync task failed: {e}")),
            }
        }
        if let Some(e) = failed {
            // Waiters stay unanswered and time out (503): nothing is acknowledged unsynced.
            tracing::error!(dir = %self.cfg.dir.display(), "spool: fsync failed: {e}");
            return;
        }
        for (l, off) in self.lanes.iter().zip(offsets) {
            l.synced.send_if_modified(|v| {
                let newer = off > *v;
                *v = (*v).max(off);
                newer
            });
        }
    }

    /// Sync every `fsync_interval` (fully), or at once when a request waits (data only), until
    /// `stop` resolves; then fully once more.
    pub async fn run_sync(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        // An interval, not a sleep per loop: requests' syncs must not keep postponing the
        // full one.
        let mut tick = tokio::time::interval(self.cfg.fsync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        loop {
            let full = tokio::select! {
                _ = tick.tick() => true,
                () = self.sync_wanted.notified() => false,
                () = &mut stop => break,
            };
            self.sync(full).await;
        }
        self.sync(true).await;
    }
}

#[cfg(test)]
mod tests;
