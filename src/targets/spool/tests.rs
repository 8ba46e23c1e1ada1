use super::*;

/// A directory removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("promrelay-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn cfg(dir: &Dir, max_bytes: u64, on_full: OnFull) -> SpoolConfig {
    SpoolConfig {
        dir: dir.0.clone(),
        max_bytes,
        on_full,
        fsync_interval: Duration::from_secs(3600),
    }
}

fn open(c: &SpoolConfig, lanes: usize) -> (Spool, Recovered, SpoolCounters) {
    let counters = SpoolCounters::default();
    let (s, r) = Spool::open(c.clone(), lanes, counters.clone()).unwrap();
    (s, r, counters)
}

/// Append one record: a chunk of one series, never cut (already reserved).
fn append(s: &Spool, lane: usize, payload: &[u8], samples: u32) -> io::Result<(u64, u64)> {
    s.append_series(lane, payload, &[(payload.len() as u32, samples)], u64::MAX)
}

/// Reserve and append one record.
fn put(s: &Spool, lane: usize, payload: &[u8], samples: u32) -> (u64, u64) {
    assert!(s.try_reserve((payload.len() + HEADER) as u64, |_, _, _, _| {}));
    append(s, lane, payload, samples).unwrap()
}

async fn next(s: &Spool, lane: usize, max: usize) -> Batch {
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        s.next_batch(lane, max, Duration::ZERO, || false),
    )
    .await;
    let batch = got.expect("no batch").expect("closed");
    // The spool does not record which records are metadata: every batch read back says it
    // may hold some, so the remote_write sender looks.
    assert!(
        batch.metadata,
        "a batch from disk is marked as maybe holding metadata"
    );
    batch
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn records_come_back_in_order_and_finished_ones_are_not_replayed() {
    let d = Dir::new("order");
    let c = cfg(&d, 1 << 30, OnFull::Block);
    {
        let (s, r, _) = open(&c, 2);
        assert_eq!(r, Recovered::default());
        put(&s, 0, b"aa", 2);
        put(&s, 0, b"bbb", 3);
        put(&s, 1, b"c", 1);
        put(&s, 0, b"dddd", 4);
        // max 5 samples: "aa" + "bbb" fit, "dddd" waits for the next batch.
        let b = next(&s, 0, 5).await;
        assert_eq!((b.body.as_slice(), b.samples), (&b"aabbb"[..], 5));
        assert_eq!(s.held_samples(), 10);
        s.finish(0, b);
        assert_eq!(s.held_samples(), 5);
        s.sync(true).await;
    }
    // Reopened: lane 0 replays only "dddd", lane 1 its record.
    let (s, r, _) = open(&c, 2);
    assert_eq!((r.records, r.samples, r.cut_bytes), (2, 5, 0));
    assert_eq!(s.held_bytes(), (4 + HEADER + 1 + HEADER) as u64);
    let b = next(&s, 0, 100).await;
    assert_eq!(b.body, b"dddd");
    let b1 = next(&s, 1, 100).await;
    assert_eq!(b1.body, b"c");
    s.finish(0, b);
    s.finish(1, b1);
    assert_eq!((s.held_bytes(), s.held_samples()), (0, 0));
}

#[tokio::test]
async fn unsynced_records_survive_the_process_going_away() {
    // Written records are in the page cache at once: dropping the spool without sync or finish
    // (what kill -9 does to the process) keeps them.
    let d = Dir::new("nosync");
    let c = cfg(&d, 1 << 30, OnFull::Block);
    {
        let (s, _, _) = open(&c, 1);
        put(&s, 0, b"x1", 1);
        put(&s, 0, b"x2", 1);
        let b = next(&s, 0, 1).await; // in flight, never finished
        assert_eq!(b.body, b"x1");
    }
    let (s, r, _) = open(&c, 1);
    assert_eq!(
        r.records, 2,
        "the batch in flight at the crash is sent again"
    );
    assert_eq!(next(&s, 0, 100).await.body, b"x1x2");
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_the_whole_records_before_it_replayed() {
    let d = Dir::new("torn");
    let c = cfg(&d, 1 << 30, OnFull::Block);
    {
        let (s, _, _) = open(&c, 1);
        put(&s, 0, b"whole", 5);
        put(&s, 0, b"also whole", 10);
    }
    let seg = segments(&d.0.join("lane-0")).pop().unwrap();
    let good_len = fs::metadata(&seg).unwrap().len();
    // A crash mid-write: a header and half a payload.
    let mut tail = header(b"never finished", 14).to_vec();
    tail.extend_from_slice(b"never");
    let f = OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut &f, &tail).unwrap();
    drop(f);
    let (s, r, _) = open(&c, 1);
    assert_eq!((r.records, r.samples), (2, 15));
    assert_eq!(r.cut_bytes, tail.len() as u64);
    assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
    assert_eq!(next(&s, 0, 100).await.body, b"wholealso whole");
    // New records go after the cut, and read back whole.
    put(&s, 0, b"after", 1);
    assert_eq!(next(&s, 0, 100).await.body, b"after");
}

#[tokio::test]
async fn a_record_corrupted_on_disk_is_dropped_with_the_rest_of_its_segment_and_counted() {
    let d = Dir::new("corrupt");
    let c = cfg(&d, 1 << 30, OnFull::Block);
    let (s, _, counters) = open(&c, 1);
    put(&s, 0, b"first", 1);
    put(&s, 0, b"second", 2);
    put(&s, 0, b"third", 3);
    let seg = segments(&d.0.join("lane-0")).pop().unwrap();
    // Flip one payload byte of "second" behind the spool's back.
    let at = (HEADER + 5 + HEADER) as u64;
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(b"S", at).unwrap();
    let b = next(&s, 0, 100).await;
    assert_eq!((b.body.as_slice(), b.samples), (&b"first"[..], 1));
    assert_eq!(counters.dropped_corrupt.get(), 5);
    s.finish(0, b);
    assert_eq!((s.held_bytes(), s.held_samples()), (0, 0));
}

#[tokio::test]
async fn a_full_spool_blocks_or_drops_its_oldest_segment() {
    let d = Dir::new("full");
    let mib = 1u64 << 20;
    let c = cfg(&d, mib, OnFull::Block);
    let big = vec![7u8; (mib / 4) as usize];
    let (s, _, _) = open(&c, 1);
    for _ in 0..3 {
        put(&s, 0, &big, 10);
    }
    assert!(
        !s.try_reserve((big.len() + HEADER) as u64, |_, _, _, _| {}),
        "block: a fourth quarter plus headers does not fit"
    );
    drop(s);

    // drop_oldest: segments are 1 MiB here (the minimum), so the oldest segment is all of it.
    let c = cfg(&d, mib, OnFull::DropOldest);
    let (s, r, counters) = open(&c, 1);
    assert_eq!(r.samples, 30);
    let dropped = std::sync::Mutex::new(Vec::new());
    assert!(s.try_reserve((big.len() + HEADER) as u64, |lane, a, b, _| {
        dropped.lock().unwrap().push((lane, a, b))
    }));
    append(&s, 0, &big, 10).unwrap();
    assert_eq!(counters.dropped_full.get(), 30);
    assert_eq!(dropped.into_inner().unwrap().len(), 1);
    let b = next(&s, 0, 100).await;
    assert_eq!(b.samples, 10, "only the new record is left");
    s.finish(0, b);
    assert_eq!((s.held_bytes(), s.held_samples()), (0, 0));
    drop(s);
    let (_, r, _) = open(&c, 1);
    assert_eq!(r.records, 0, "dropped and delivered data is not replayed");
}

#[tokio::test]
async fn segments_rotate_and_finished_ones_are_deleted() {
    let d = Dir::new("rotate");
    let c = cfg(&d, 8 << 20, OnFull::Block); // 1 MiB segments
    let (s, _, _) = open(&c, 1);
    let chunk = vec![1u8; 300 << 10];
    for _ in 0..8 {
        put(&s, 0, &chunk, 1);
    }
    let lane = d.0.join("lane-0");
    assert!(segments(&lane).len() >= 2, "{:?}", segments(&lane));
    for _ in 0..8 {
        let b = next(&s, 0, 1).await;
        assert_eq!(b.body.len(), chunk.len());
        s.finish(0, b);
    }
    assert_eq!(
        segments(&lane).len(),
        1,
        "only the segment being written is kept"
    );
}

#[tokio::test]
async fn a_spool_in_use_or_holding_other_lanes_is_refused() {
    let d = Dir::new("lock");
    let c = cfg(&d, 1 << 30, OnFull::Block);
    let (s, _, _) = open(&c, 2);
    let err = Spool::open(c.clone(), 2, SpoolCounters::default())
        .err()
        .expect("a second open must fail");
    assert!(err.to_string().contains("in use"), "{err}");
    put(&s, 1, b"lane one", 1);
    drop(s);
    let err = Spool::open(c.clone(), 1, SpoolCounters::default())
        .err()
        .expect("fewer lanes than the data needs must fail");
    assert!(err.to_string().contains("queue.shards"), "{err}");
}

#[tokio::test]
async fn waiters_for_a_sync_are_released_by_it() {
    let d = Dir::new("sync");
    let c = cfg(&d, 1 << 30, OnFull::Block);
    let (s, _, _) = open(&c, 1);
    let s = Arc::new(s);
    let (_, end) = put(&s, 0, b"durable", 1);
    let syncer = tokio::spawn({
        let s = s.clone();
        async move {
            s.run_sync(tokio::time::sleep(Duration::from_secs(5))).await;
        }
    });
    // fsync_interval is an hour: only the waiter's request makes the syncer run now.
    tokio::time::timeout(Duration::from_secs(4), s.wait_synced(0, end))
        .await
        .expect("the wait was not answered by a sync");
    syncer.abort();
}

#[tokio::test]
async fn closed_spool_lanes_stop_and_keep_their_data() {
    let d = Dir::new("close");
    let c = cfg(&d, 1 << 30, OnFull::Block);
    let (s, _, _) = open(&c, 1);
    put(&s, 0, b"kept", 1);
    assert!(
        s.next_batch(0, 100, Duration::ZERO, || true)
            .await
            .is_none()
    );
    drop(s);
    let (_, r, _) = open(&c, 1);
    assert_eq!(r.records, 1);
}

#[tokio::test]
async fn a_segment_cut_in_the_middle_leaves_a_gap_that_reading_and_accounting_step_over() {
    let d = Dir::new("gap");
    let c = cfg(&d, 8 << 20, OnFull::Block); // 1 MiB segments
    let record = vec![3u8; 300 << 10];
    {
        let (s, _, _) = open(&c, 1);
        for i in 0..5u8 {
            let mut r = record.clone();
            r[0] = i;
            put(&s, 0, &r, 1);
        }
    }
    let segs = segments(&d.0.join("lane-0"));
    assert_eq!(segs.len(), 2, "{segs:?}");
    // Corrupt the second record of the first segment: at the next start, that segment is cut
    // after its first record, and the second segment starts past a gap.
    let at = (HEADER + record.len() + HEADER + 10) as u64;
    let f = OpenOptions::new().write(true).open(&segs[0]).unwrap();
    f.write_all_at(b"X", at).unwrap();
    let (s, r, _) = open(&c, 1);
    assert_eq!((r.records, r.samples), (2, 2));
    assert_eq!(r.cut_bytes, 3 * (HEADER + record.len()) as u64);
    let b = next(&s, 0, 100).await;
    assert_eq!(b.samples, 2);
    assert_eq!((b.body[0], b.body[record.len()]), (0, 4));
    s.finish(0, b);
    assert_eq!((s.held_bytes(), s.held_samples()), (0, 0));
}

/// A chunk of `series` one-byte series (the byte is the series' number mod 256), each with
/// `per` samples: its payload and `(end, samples)` list.
fn chunk(first: usize, series: usize, per: u32) -> (Vec<u8>, Vec<(u32, u32)>) {
    let bytes: Vec<u8> = (first..first + series).map(|i| i as u8).collect();
    let ends = (1..=series).map(|e| (e as u32, per)).collect();
    (bytes, ends)
}

/// Reserve and append a chunk of series as the queue does, cut into batches of `max`.
fn put_series(s: &Spool, lane: usize, c: &(Vec<u8>, Vec<(u32, u32)>), max: u64) {
    assert!(s.try_reserve((c.0.len() + HEADER) as u64, |_, _, _, _| {}));
    s.append_series(lane, &c.0, &c.1, max).unwrap();
}

#[tokio::test]
async fn chunks_are_cut_between_series_so_a_backlog_reads_back_as_full_batches() {
    let d = Dir::new("tiles");
    let (s, _, _) = open(&cfg(&d, 1 << 30, OnFull::Block), 1);
    // Chunks of a little under and over a quarter of a batch (a request spread over four
    // lanes): whole records would fill only three quarters of most batches.
    let sizes = [499, 501, 502, 498, 503, 500, 497, 501, 499, 500, 502, 498];
    let mut expected = Vec::new();
    let mut first = 0;
    for &n in &sizes {
        let c = chunk(first, n, 1);
        expected.extend_from_slice(&c.0);
        put_series(&s, 0, &c, 2000);
        first += n;
    }
    let total: usize = sizes.iter().sum();
    let mut body = Vec::new();
    let mut got = Vec::new();
    while s.lane_pending(0) {
        let b = next(&s, 0, 2000).await;
        got.push(b.samples);
        body.extend_from_slice(&b.body);
        s.finish(0, b);
    }
    assert_eq!(got, [2000, 2000, 2000], "{total} samples in full batches");
    assert_eq!(body, expected, "every series once, in order");
    assert_eq!(
        (s.held_bytes(), s.held_samples()),
        (0, 0),
        "extra headers released"
    );

    // A reader that caught up mid-batch starts the next batch where it stopped; a series
    // larger than a batch goes alone.
    put_series(&s, 0, &chunk(0, 300, 1), 2000);
    let b = next(&s, 0, 2000).await;
    assert_eq!(b.samples, 300);
    s.finish(0, b);
    put_series(&s, 0, &chunk(0, 1900, 1), 2000);
    put_series(&s, 0, &chunk(0, 300, 1), 2000);
    put_series(&s, 0, &chunk(0, 1, 2500), 2000);
    put_series(&s, 0, &chunk(0, 10, 1), 2000);
    let mut got = Vec::new();
    while s.lane_pending(0) {
        let b = next(&s, 0, 2000).await;
        got.push(b.samples);
        s.finish(0, b);
    }
    assert_eq!(got, [2000, 200, 2500, 10]);
    assert_eq!((s.held_bytes(), s.held_samples()), (0, 0));
}
