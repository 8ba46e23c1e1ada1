//! Memory first, then disk: a queue with an overflow, driven the way the pipeline and a lane's
//! sender drive it.

use super::*;
use crate::targets::spool::{OnFull, SpoolConfig, SpoolCounters};
use arrivals::MAX_MARKS;
use std::path::PathBuf;

/// A directory removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p =
            std::env::temp_dir().join(format!("promrelay-overflow-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn queue(
    dir: &Dir,
    capacity: usize,
    max_bytes: u64,
    on_full: OnFull,
) -> (SinkQueue, SpoolCounters) {
    let counters = SpoolCounters::default();
    let cfg = SpoolConfig {
        dir: dir.0.clone(),
        max_bytes,
        on_full,
        fsync_interval: Duration::from_secs(3600),
    };
    let overflow = Overflow::new(cfg, 1, counters.clone()).unwrap();
    let q =
        SinkQueue::new(1, capacity, 100, Duration::from_secs(3600), None).with_overflow(overflow);
    (q, counters)
}

/// One lane's chunk: `len` bytes of `tag`, one series of `samples`.
fn request(tag: u8, len: usize, samples: usize) -> Vec<Chunk> {
    let mut c = Chunk::default();
    c.bytes.resize(len, tag);
    c.end_series(samples);
    vec![c]
}

/// Admit and append a request as the pipeline does; false when it was refused.
fn send(q: &SinkQueue, mut chunks: Vec<Chunk>) -> bool {
    if !q.admit(&mut chunks) {
        return false;
    }
    q.append(0, &chunks[0]).unwrap();
    true
}

/// The next batch of lane 0, not finished yet.
async fn take(q: &SinkQueue) -> Batch {
    tokio::time::timeout(Duration::from_secs(10), q.next_batch(0))
        .await
        .expect("a batch")
        .expect("not closed")
}

/// The next batch, delivered: its first bytes (one per record when records are 1 byte).
async fn deliver(q: &SinkQueue) -> (Vec<u8>, bool) {
    let b = take(q).await;
    let got = (b.body.clone(), b.from_disk);
    q.finish(0, b, true);
    got
}

#[tokio::test]
async fn a_full_memory_queue_spills_to_disk_and_the_lane_keeps_its_order() {
    let d = Dir::new("order");
    let (q, _) = queue(&d, 10, 1 << 20, OnFull::Block);
    assert!(send(&q, request(1, 1, 5)), "fits in memory");
    assert!(
        !q.spilling() && !d.0.exists(),
        "nothing on disk while memory has room"
    );
    assert!(
        send(&q, request(2, 1, 10)),
        "memory is full: taken onto disk"
    );
    assert!(q.spilling() && d.0.exists());
    assert!(
        send(&q, request(3, 1, 1)),
        "the lane spills: later data follows it to disk"
    );
    assert_eq!((q.memory_held(), q.disk_samples(), q.held()), (5, 11, 16));
    q.flush(0);
    assert_eq!(deliver(&q).await, (vec![1], false), "memory part first");
    assert_eq!(deliver(&q).await, (vec![2, 3], true), "then the disk part");
    // The sender finds the disk part drained and the lane goes back to memory.
    let waiting = {
        let q = std::sync::Arc::new(q);
        let sender = tokio::spawn({
            let q = q.clone();
            async move { deliver(&q).await }
        });
        tokio::time::timeout(Duration::from_secs(10), async {
            while q.spilling() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the lane stops spilling once drained");
        assert!(send(&q, request(4, 1, 1)));
        q.flush(0);
        (q, sender)
    };
    let (q, sender) = waiting;
    assert_eq!(sender.await.unwrap(), (vec![4], false), "back in memory");
    assert_eq!((q.held(), q.disk_bytes()), (0, 0));
}

#[tokio::test]
async fn a_full_overflow_blocks_or_drops_its_oldest() {
    let big = 600 << 10; // two of these do not fit in 1 MiB
    let d = Dir::new("block");
    let (q, counters) = queue(&d, 1, 1 << 20, OnFull::Block);
    assert!(send(&q, request(1, 10, 1)), "memory");
    assert!(send(&q, request(2, big, 1)), "disk");
    assert!(
        !send(&q, request(3, big, 1)),
        "disk budget used up: pushed back"
    );
    assert_eq!(
        (q.memory_held(), q.disk_samples()),
        (1, 1),
        "nothing kept of the refused one"
    );
    assert_eq!(counters.dropped_full.get(), 0);

    let d = Dir::new("drop");
    let (q, counters) = queue(&d, 1, 1 << 20, OnFull::DropOldest);
    assert!(send(&q, request(1, 10, 1)));
    assert!(send(&q, request(2, big, 7)));
    assert!(
        send(&q, request(3, big, 1)),
        "drop_oldest takes the new data"
    );
    assert_eq!(
        counters.dropped_full.get(),
        7,
        "the oldest disk data was dropped, counted"
    );
    q.flush(0);
    assert_eq!(deliver(&q).await.0, vec![1; 10]);
    let (body, from_disk) = deliver(&q).await;
    assert!(
        from_disk && body.iter().all(|&b| b == 3),
        "only the newest record is left"
    );
}

#[tokio::test]
async fn an_overflow_left_by_an_earlier_run_is_delivered_before_new_data() {
    let d = Dir::new("restart");
    {
        let (q, _) = queue(&d, 1, 1 << 20, OnFull::Block);
        assert!(send(&q, request(1, 1, 1)));
        assert!(send(&q, request(2, 1, 1)));
        assert!(send(&q, request(3, 1, 1)));
        // Dropped without delivering: a crash. The memory part (1) is lost; 2 and 3 are on disk.
    }
    let (q, _) = queue(&d, 100, 1 << 20, OnFull::Block);
    assert!(
        q.spilling(),
        "the replayed lane spills so new data queues behind it"
    );
    assert_eq!(q.disk_samples(), 2);
    assert!(send(&q, request(4, 1, 1)));
    assert_eq!(deliver(&q).await, (vec![2, 3, 4], true));
}

#[tokio::test]
async fn the_oldest_pending_age_covers_memory_and_disk_and_resets_when_empty() {
    let d = Dir::new("age");
    let (q, _) = queue(&d, 1, 1 << 20, OnFull::Block);
    assert_eq!(q.oldest_pending(), Duration::ZERO);
    assert!(send(&q, request(1, 1, 1)));
    assert!(send(&q, request(2, 1, 1)));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(q.oldest_pending() >= Duration::from_millis(30));
    q.flush(0);
    deliver(&q).await;
    assert!(
        q.oldest_pending() >= Duration::from_millis(30),
        "the disk part still waits"
    );
    deliver(&q).await;
    assert_eq!(q.oldest_pending(), Duration::ZERO);
}

#[test]
fn arrival_marks_stay_bounded_and_never_understate_the_oldest() {
    let t0 = Instant::now();
    let mut a = Arrivals::default();
    for i in 0..3 * MAX_MARKS as u64 {
        a.add(1, t0 + Duration::from_secs(i));
    }
    assert!(a.marks.len() <= MAX_MARKS);
    assert_eq!(
        a.marks.front().map(|m| m.1),
        Some(t0),
        "the oldest time is kept"
    );
    a.finish(MAX_MARKS);
    let front = a.marks.front().expect("still pending").1;
    assert!(
        front <= t0 + Duration::from_secs(MAX_MARKS as u64),
        "never later than the data"
    );
    a.finish(2 * MAX_MARKS);
    assert!(a.marks.is_empty());
}

/// A request passed through as its sender compressed it stays so only in memory: once memory
/// is full, and while the lane spills, it goes to disk as the usual uncompressed chunk, and
/// the lane keeps its order.
#[tokio::test]
async fn a_passed_through_request_goes_to_disk_uncompressed_when_memory_is_full() {
    let d = Dir::new("passed");
    let (q, _) = queue(&d, 10, 1 << 20, OnFull::Block);
    let pass = |tag: u8, samples: usize| {
        let mut chunks = request(tag, 1, samples);
        assert!(q.admit(&mut chunks));
        q.append_compressed(0, &chunks[0], &[b'z', tag]).unwrap().1
    };
    assert!(pass(1, 8), "compressed, in memory");
    assert!(!pass(2, 8), "memory is full: to disk");
    assert!(!pass(3, 1), "the lane spills: to disk too, after 2");
    assert!(q.spilling());
    let first = tokio::time::timeout(Duration::from_secs(10), q.next_batch(0))
        .await
        .unwrap()
        .unwrap();
    assert!(first.snappy && !first.from_disk);
    assert_eq!(first.body, [b'z', 1]);
    q.finish(0, first, true);
    let b = tokio::time::timeout(Duration::from_secs(10), q.next_batch(0))
        .await
        .unwrap()
        .unwrap();
    assert!(!b.snappy && b.from_disk);
    assert_eq!(b.body, [2, 3], "the chunks' own bytes, in order");
    q.finish(0, b, true);
}

/// A chunk of `n` series of one sample and one byte (`tag`) each.
fn series_request(tag: u8, n: usize) -> Vec<Chunk> {
    let mut c = Chunk::default();
    for _ in 0..n {
        c.bytes.push(tag);
        c.end_series(1);
    }
    vec![c]
}

/// Samples per batch until the lane is empty.
async fn batch_sizes(q: &SinkQueue) -> Vec<usize> {
    let mut got = Vec::new();
    while q.held() > 0 {
        let b = take(q).await;
        got.push(b.samples);
        q.finish(0, b, true);
    }
    got
}

#[tokio::test]
async fn a_spilled_backlog_is_sent_in_full_batches() {
    // Requests of 30 series, batches of 100: whole requests on disk would make batches of
    // 90, and a lane draining a backlog to a slow receiver would send a tenth less per send.
    let d = Dir::new("full-batches");
    let (q, _) = queue(&d, 10, 1 << 20, OnFull::Block);
    assert!(send(&q, series_request(1, 10)), "fits in memory");
    for tag in 2..12 {
        assert!(send(&q, series_request(tag, 30)));
    }
    assert!(q.spilling());
    assert_eq!(batch_sizes(&q).await, [10, 100, 100, 100]);
    assert_eq!(q.disk_bytes(), 0);

    // The same through a spool (disk first).
    let d = Dir::new("full-batches-spool");
    let cfg = SpoolConfig {
        dir: d.0.clone(),
        max_bytes: 1 << 20,
        on_full: OnFull::Block,
        fsync_interval: Duration::from_secs(3600),
    };
    let (spool, _) = Spool::open(cfg, 1, SpoolCounters::default()).unwrap();
    let q = SinkQueue::new(1, 10, 100, Duration::from_secs(3600), Some(spool));
    for tag in 0..10 {
        assert!(send(&q, series_request(tag, 30)));
    }
    assert_eq!(batch_sizes(&q).await, [100, 100, 100]);
}

#[tokio::test]
async fn a_lane_goes_back_to_memory_once_its_disk_part_is_read_not_once_it_is_delivered() {
    // Under a steady load a batch is always in flight: a lane that waited for its disk part to
    // be empty would spill for as long as the load lasts.
    let d = Dir::new("back");
    let (q, _) = queue(&d, 10, 1 << 20, OnFull::Block);
    assert!(send(&q, request(1, 1, 10)), "memory");
    assert!(send(&q, request(2, 1, 5)), "memory is full: disk");
    let a = take(&q).await;
    assert_eq!((a.body.as_slice(), a.from_disk), (&[1u8][..], false));
    q.finish(0, a, true);
    let b = take(&q).await;
    assert_eq!((b.body.as_slice(), b.from_disk), (&[2u8][..], true));
    // The last of the disk part is in flight: new data goes to memory, behind it.
    let on_disk = q.disk_bytes();
    assert!(send(&q, request(3, 1, 5)));
    assert_eq!(q.disk_bytes(), on_disk, "not written to disk");
    assert_eq!(q.memory_held(), 5);
    assert!(
        q.spilling(),
        "spilling until the disk part's batch is finished"
    );
    // Memory full again while it is in flight: what is in memory goes first, then disk.
    assert!(send(&q, request(4, 1, 10)));
    assert!(q.disk_bytes() > on_disk, "this one is on disk");
    q.finish(0, b, true);
    assert_eq!(
        deliver(&q).await,
        (vec![3], false),
        "memory, sealed before the disk write"
    );
    assert_eq!(deliver(&q).await, (vec![4], true), "then disk");
    assert!(!q.spilling(), "the disk part's last batch is finished");
    assert!(send(&q, request(5, 1, 1)));
    q.flush(0);
    assert_eq!(deliver(&q).await, (vec![5], false), "memory");
    assert_eq!((q.held(), q.disk_bytes()), (0, 0));
}

#[tokio::test]
async fn a_lane_with_more_on_disk_than_the_batch_in_flight_keeps_writing_to_disk() {
    let d = Dir::new("more");
    let (q, _) = queue(&d, 10, 1 << 20, OnFull::Block);
    assert!(send(&q, series_request(1, 10)), "memory");
    assert!(send(&q, series_request(2, 60)), "memory is full: disk");
    assert!(send(&q, series_request(3, 60)), "the lane spills: disk");
    assert_eq!(deliver(&q).await, (vec![1; 10], false));
    let first = take(&q).await;
    assert_eq!(
        (first.samples, first.from_disk),
        (100, true),
        "a full batch of the 120"
    );
    let on_disk = q.disk_bytes();
    assert!(send(&q, series_request(4, 5)));
    assert!(
        q.disk_bytes() > on_disk,
        "20 samples still unread on disk: the new ones go behind them"
    );
    q.finish(0, first, true);
    let (rest, from_disk) = deliver(&q).await;
    assert_eq!(
        (rest, from_disk),
        ([vec![3; 20], vec![4; 5]].concat(), true)
    );
    assert_eq!((q.held(), q.disk_bytes()), (0, 0));
}
