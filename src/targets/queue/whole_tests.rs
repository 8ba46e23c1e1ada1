//! Whole requests on a queue with several lanes (`whole.rs`): the barrier's order, the
//! senders' busy share that allows them, and the disk part of a lane that waits for one.

use super::*;
use crate::targets::spool::{OnFull, SpoolConfig, SpoolCounters};
use std::path::PathBuf;

fn chunk(series: &[(u8, u32)]) -> Chunk {
    let mut c = Chunk::default();
    for &(byte, n) in series {
        c.bytes.push(byte);
        c.end_series(n as usize);
    }
    c
}

/// The lane's next batch within a moment, or `None` while it is held.
async fn next_soon(q: &SinkQueue, lane: usize) -> Option<Batch> {
    tokio::time::timeout(Duration::from_millis(100), q.next_batch(lane))
        .await
        .ok()
        .flatten()
}

/// The lane's next batch, which must come.
async fn next(q: &SinkQueue, lane: usize) -> Batch {
    tokio::time::timeout(Duration::from_secs(10), q.next_batch(lane))
        .await
        .expect("a batch in time")
        .expect("not closed")
}

/// Admit a request (its room reserved, as the pipeline does) and queue it whole.
fn whole(q: &SinkQueue, mut chunks: Vec<Chunk>, body: &[u8]) -> Option<Span> {
    assert!(q.admit(&mut chunks));
    let span = q.append_whole(&chunks, body);
    if span.is_none() {
        q.unadmit(&chunks);
    }
    span
}

/// Admit a chunk for one lane and append it.
fn put(q: &SinkQueue, lane: usize, c: Chunk) {
    let mut chunks: Vec<Chunk> = (0..lane).map(|_| Chunk::default()).collect();
    chunks.push(c);
    assert!(q.admit(&mut chunks));
    q.append(lane, &chunks[lane]).unwrap();
}

/// A request's chunks for three lanes, as the pipeline spreads its series.
fn spread(samples: &[u32]) -> Vec<Chunk> {
    samples
        .iter()
        .enumerate()
        .map(|(lane, &n)| {
            if n == 0 {
                Chunk::default()
            } else {
                chunk(&[(lane as u8 + 10, n)])
            }
        })
        .collect()
}

#[tokio::test]
async fn a_whole_request_waits_for_what_the_other_lanes_held_and_holds_what_came_after() {
    let q = SinkQueue::new(3, 1000, 100, Duration::from_secs(3600), None);
    // Before: a series on lane 1, batching.
    put(&q, 1, chunk(&[(1, 2)]));
    let span = whole(&q, spread(&[2, 2, 1]), b"W").expect("goes whole");
    assert_eq!((span.start, span.end), (0, 5), "lane 0's positions");
    // After: series on lanes 1 and 2 (and 0, behind the whole request in its own lane).
    put(&q, 1, chunk(&[(2, 2)]));
    put(&q, 2, chunk(&[(3, 1)]));
    for lane in 0..3 {
        q.flush(lane);
    }

    // Lane 1 sends what it held before; lane 0 waits for it to finish.
    let before = next(&q, 1).await;
    assert_eq!(before.body, [1]);
    assert!(
        next_soon(&q, 0).await.is_none(),
        "the whole request waits for lane 1's earlier batch"
    );
    q.finish(1, before, true);
    let w = next(&q, 0).await;
    assert_eq!(
        (w.body.as_slice(), w.snappy, w.samples),
        (&b"W"[..], true, 5)
    );
    assert!(w.barrier > 0);

    // What came after waits for the whole request to finish.
    assert!(
        next_soon(&q, 1).await.is_none(),
        "lane 1 holds its later batch"
    );
    assert!(next_soon(&q, 2).await.is_none(), "lane 2 too");
    q.finish(0, w, true);
    assert_eq!(next(&q, 1).await.body, [2]);
    assert_eq!(next(&q, 2).await.body, [3]);
}

#[tokio::test]
async fn a_lane_waiting_for_its_batch_deadline_sends_it_when_a_whole_request_comes() {
    // The lane's sender waits for the batching series' deadline (an hour); the whole request
    // seals the batch before its barrier, and must wake the sender: nothing after the barrier
    // would, and the whole request waits for that batch.
    let q = std::sync::Arc::new(SinkQueue::new(
        2,
        1000,
        100,
        Duration::from_secs(3600),
        None,
    ));
    put(&q, 1, chunk(&[(1, 1)]));
    let sender = tokio::spawn({
        let q = q.clone();
        async move { q.next_batch(1).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    whole(&q, spread(&[1, 1]), b"W").unwrap();
    let b = tokio::time::timeout(Duration::from_secs(10), sender)
        .await
        .expect("woken, not left to its deadline")
        .unwrap()
        .unwrap();
    assert_eq!(b.body, [1]);
    q.finish(1, b, true);
    assert_eq!(next(&q, 0).await.body, b"W");
}

#[tokio::test]
async fn whole_requests_queue_behind_each_other_and_a_dropped_one_still_releases() {
    let q = SinkQueue::new(2, 1000, 100, Duration::from_secs(3600), None);
    whole(&q, spread(&[1, 1]), b"A").unwrap();
    put(&q, 1, chunk(&[(1, 1)]));
    whole(&q, spread(&[1, 1]), b"B").unwrap();
    put(&q, 1, chunk(&[(2, 1)]));
    q.flush(1);
    let a = next(&q, 0).await;
    assert_eq!(a.body, b"A", "lane 1 held nothing before the first");
    assert!(next_soon(&q, 1).await.is_none());
    q.finish(0, a, false); // refused: finished all the same
    let one = next(&q, 1).await;
    assert_eq!(one.body, [1]);
    assert!(
        next_soon(&q, 0).await.is_none(),
        "the second waits for lane 1's batch between them"
    );
    q.finish(1, one, true);
    let b = next(&q, 0).await;
    assert_eq!(b.body, b"B");
    assert!(next_soon(&q, 1).await.is_none());
    q.finish(0, b, true);
    assert_eq!(next(&q, 1).await.body, [2]);
}

#[tokio::test]
async fn a_batching_series_past_its_deadline_still_waits_for_the_whole_request() {
    let q = SinkQueue::new(2, 1000, 100, Duration::from_millis(20), None);
    whole(&q, spread(&[1, 1]), b"W").unwrap();
    put(&q, 1, chunk(&[(7, 1)]));
    assert!(
        next_soon(&q, 1).await.is_none(),
        "sealed at its deadline, and held"
    );
    let w = next(&q, 0).await;
    q.finish(0, w, true);
    assert_eq!(next(&q, 1).await.body, [7]);
}

#[test]
fn requests_go_whole_while_the_senders_are_mostly_idle() {
    let one = SinkQueue::new(1, 1000, 100, Duration::from_secs(1), None);
    let q = SinkQueue::new(4, 1000, 100, Duration::from_secs(1), None);
    assert!(q.whole_allowed(), "at start");
    let t = Instant::now();
    let ms = Duration::from_millis;
    let (busy, idle, between) = (
        whole::BUSY_STOP + 0.01,
        whole::BUSY_START - 0.01,
        whole::BUSY_START + 0.01,
    );
    q.whole.decide_at(between, t);
    assert!(q.whole_allowed(), "not busy enough to stop");
    q.whole.decide_at(busy, t);
    assert!(!q.whole_allowed(), "busy");
    q.whole.decide_at(idle, t + ms(100));
    assert!(!q.whole_allowed(), "stopped for 200 ms at least");
    q.whole.decide_at(between, t + ms(300));
    assert!(!q.whole_allowed(), "not yet idle enough to go back");
    q.whole.decide_at(idle, t + ms(300));
    assert!(q.whole_allowed(), "idle again");
    // Stopped again within a second of resuming: for twice as long.
    q.whole.decide_at(busy, t + ms(400));
    q.whole.decide_at(idle, t + ms(700));
    assert!(!q.whole_allowed(), "stopped for 400 ms at least");
    q.whole.decide_at(idle, t + ms(800));
    assert!(q.whole_allowed());
    // After a longer run, the least again.
    q.whole.decide_at(busy, t + ms(2000));
    q.whole.decide_at(idle, t + ms(2200));
    assert!(q.whole_allowed(), "stopped for 200 ms");
    // Through `sending_for`: a window of just over a second, sent for a second of it.
    let start = Instant::now();
    q.sending_for(
        Duration::from_millis(1000),
        start + Duration::from_millis(1100),
    );
    assert!(!q.whole_allowed());
    // One lane has no barrier to pay for.
    one.sending_for(
        Duration::from_millis(1000),
        start + Duration::from_millis(1100),
    );
    assert!(one.whole_allowed());
    // A request that cannot go whole: one lane, metadata, room on disk.
    assert!(one.append_whole(&spread(&[1]), b"W").is_none());
    let mut meta = spread(&[1, 1, 1]);
    meta[0].metadata = true;
    assert!(q.append_whole(&meta, b"W").is_none());
    let mut disk = spread(&[1, 1, 1]);
    disk[2].disk = true;
    assert!(q.append_whole(&disk, b"W").is_none());
}

#[tokio::test]
async fn requests_stop_going_whole_once_enough_of_them_wait() {
    // Whatever the sends take, whole requests stop once `MAX_WAITING` are queued or in
    // flight.
    let q = SinkQueue::new(2, 1000, 100, Duration::from_secs(3600), None);
    // Sends of a microsecond: the count is what stops them.
    q.sending_for(Duration::from_micros(1), Instant::now());
    for _ in 0..whole::MAX_WAITING {
        assert!(whole(&q, spread(&[1, 1]), b"W").is_some());
    }
    assert!(q.whole_allowed());
    assert!(whole(&q, spread(&[1, 1]), b"W").is_none());
    assert!(!q.whole_allowed(), "and the next ones are spread too");
    let first = next(&q, 0).await;
    q.finish(0, first, true);
    assert!(
        whole(&q, spread(&[1, 1]), b"W").is_some(),
        "room again (the caller asks `whole_allowed` first)"
    );
}

#[tokio::test]
async fn requests_stop_going_whole_once_those_waiting_would_take_too_long_to_send() {
    // Sends of 20 ms (a distant target): three waiting would take 60 ms, past `MAX_BACKLOG`.
    let q = SinkQueue::new(2, 100_000, 100, Duration::from_secs(3600), None);
    let start = Instant::now();
    q.sending_for(Duration::from_millis(20), start);
    let per = Duration::from_millis(20);
    let fit = whole::MAX_BACKLOG.as_nanos().div_ceil(per.as_nanos()) as usize;
    for _ in 0..fit {
        assert!(whole(&q, spread(&[1, 1]), b"W").is_some());
    }
    assert!(whole(&q, spread(&[1, 1]), b"W").is_none());
    assert!(!q.whole_allowed());
}

#[tokio::test]
async fn requests_stop_going_whole_while_memory_is_past_half_full() {
    // At high rates, what waits behind whole requests fills memory before they add up to
    // much time to send.
    let q = SinkQueue::new(2, 10, 100, Duration::from_secs(3600), None);
    q.sending_for(Duration::from_micros(1), Instant::now());
    put(&q, 1, chunk(&[(1, 5)]));
    assert!(
        whole(&q, spread(&[1, 1]), b"W").is_some(),
        "half full: still whole"
    );
    put(&q, 1, chunk(&[(2, 1)]));
    assert!(whole(&q, spread(&[1]), b"X").is_none());
    assert!(!q.whole_allowed());
}

/// A directory removed when dropped.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn nothing_goes_whole_while_a_lane_spills_and_a_lane_s_disk_part_waits_for_one() {
    let dir = Dir(std::env::temp_dir().join(format!("promrelay-whole-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let cfg = SpoolConfig {
        dir: dir.0.clone(),
        max_bytes: 1 << 20,
        on_full: OnFull::Block,
        fsync_interval: Duration::from_secs(3600),
    };
    let overflow = Overflow::new(cfg, 2, SpoolCounters::default()).unwrap();
    let q = SinkQueue::new(2, 4, 100, Duration::from_secs(3600), None).with_overflow(overflow);

    // A whole request takes the memory; lane 1's next request spills (memory is full).
    let w = spread(&[2, 2, 0]);
    let mut admitted = w;
    assert!(q.admit(&mut admitted[..2]));
    q.append_whole(&admitted[..2], b"W").unwrap();
    let mut after = vec![Chunk::default(), chunk(&[(9, 1)])];
    assert!(q.admit(&mut after));
    assert!(after[1].disk, "memory is full: to disk");
    q.append(1, &after[1]).unwrap();
    assert!(q.spilling());
    assert!(
        next_soon(&q, 1).await.is_none(),
        "lane 1's disk part waits for the whole request before it"
    );
    let b = next(&q, 0).await;
    q.finish(0, b, true);
    let disk = next(&q, 1).await;
    assert!(disk.from_disk);
    assert_eq!(disk.body[disk.body.len() - 1], 9);

    // While lane 1 spills (its disk batch is still out), a request does not go whole, even
    // one with nothing for lane 1 and room in memory.
    let mut next_whole = spread(&[2, 0, 0]);
    assert!(q.admit(&mut next_whole[..2]));
    assert!(!next_whole[0].disk);
    assert!(q.append_whole(&next_whole[..2], b"X").is_none());
    q.finish(1, disk, true);
}

#[tokio::test]
async fn a_long_retry_wait_is_busy_time_but_not_a_send_s_length() {
    // A `Retry-After` of a minute counts as busy time, but does not stand for the length of
    // a send in the backlog bound afterwards (one waiting would then be past it).
    let q = SinkQueue::new(2, 100_000, 100, Duration::from_secs(3600), None);
    let start = Instant::now();
    q.sending_for(Duration::from_micros(100), start);
    q.retry_waited(Duration::from_secs(60), start);
    let fit = whole::MAX_WAITING - 1;
    for _ in 0..fit {
        assert!(
            whole(&q, spread(&[1, 1]), b"W").is_some(),
            "sends of 100 µs: up to MAX_WAITING fit in the backlog bound"
        );
    }
}
