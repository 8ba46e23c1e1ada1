//! The memory queue: capacity, batching, deadlines, wake-ups, delivery waiters.

use super::*;

fn chunk(series: &[(u8, u32)]) -> Chunk {
    let mut c = Chunk::default();
    for &(byte, n) in series {
        c.bytes.push(byte);
        c.end_series(n as usize);
    }
    c
}

#[test]
fn reserve_respects_capacity_but_always_admits_into_an_empty_queue() {
    let q = SinkQueue::new(1, 10, 5, Duration::from_secs(1), None);
    assert!(
        q.try_reserve(25),
        "an empty queue takes an oversized request"
    );
    assert!(!q.try_reserve(1));
    q.release(25);
    assert!(q.try_reserve(6));
    assert!(q.try_reserve(4));
    assert!(!q.try_reserve(1));
    assert_eq!(q.held(), 10);
}

#[tokio::test]
async fn batches_are_cut_between_series_at_max_samples_per_send() {
    let q = SinkQueue::new(1, 100, 5, Duration::from_secs(3600), None);
    q.append(0, &chunk(&[(1, 2), (2, 2), (3, 2), (4, 3), (5, 1)]))
        .unwrap();
    let b = q.next_batch(0).await.unwrap();
    assert_eq!((b.body.as_slice(), b.samples), (&[1u8, 2][..], 4));
    let b = q.next_batch(0).await.unwrap();
    assert_eq!((b.body.as_slice(), b.samples), (&[3u8, 4][..], 5));
    // A series that would overflow the batching one seals it; a series larger than
    // max_samples_per_send is sent alone, never split.
    q.append(0, &chunk(&[(6, 9)])).unwrap();
    let b = q.next_batch(0).await.unwrap();
    assert_eq!((b.body.as_slice(), b.samples), (&[5u8][..], 1));
    let b = q.next_batch(0).await.unwrap();
    assert_eq!((b.body.as_slice(), b.samples), (&[6u8][..], 9));
}

#[tokio::test]
async fn only_batches_that_took_a_chunk_with_metadata_are_marked_as_holding_some() {
    // The remote_write sender walks a batch's top-level fields for metadata only when the
    // batch is marked: a batch of series alone must not be, one with metadata must be.
    let q = SinkQueue::new(1, 100, 4, Duration::from_secs(3600), None);
    q.append(0, &chunk(&[(1, 2), (2, 2)])).unwrap();
    let b = q.next_batch(0).await.unwrap();
    assert!(!b.metadata, "series only");
    let mut with = chunk(&[(3, 2), (4, 1)]);
    with.metadata = true;
    q.append(0, &with).unwrap();
    q.append(0, &chunk(&[(5, 1)])).unwrap();
    let b = q.next_batch(0).await.unwrap();
    assert_eq!((b.body.as_slice(), b.metadata), (&[3u8, 4, 5][..], true));
    // A marked chunk cut across two batches marks both (the encoder writes metadata after the
    // series, so it is in the tail).
    let mut cut = chunk(&[(7, 3), (8, 1), (9, 1)]);
    cut.metadata = true;
    q.append(0, &cut).unwrap();
    let b = q.next_batch(0).await.unwrap();
    assert_eq!((b.body.as_slice(), b.metadata), (&[7u8, 8][..], true));
    q.flush(0);
    let b = q.next_batch(0).await.unwrap();
    assert_eq!((b.body.as_slice(), b.metadata), (&[9u8][..], true));
    // The mark goes with the batch that took the chunk, not with the next one.
    q.append(0, &chunk(&[(6, 4)])).unwrap();
    let b = q.next_batch(0).await.unwrap();
    assert_eq!((b.body.as_slice(), b.metadata), (&[6u8][..], false));
}

#[tokio::test]
async fn a_partial_batch_goes_out_at_the_deadline_or_on_close() {
    let q = SinkQueue::new(1, 100, 50, Duration::from_millis(20), None);
    q.append(0, &chunk(&[(7, 1)])).unwrap();
    let b = q.next_batch(0).await.unwrap();
    assert_eq!(b.body, [7]);
    let q = SinkQueue::new(1, 100, 50, Duration::from_secs(3600), None);
    q.append(0, &chunk(&[(8, 1)])).unwrap();
    q.close();
    assert_eq!(q.next_batch(0).await.unwrap().body, [8]);
    assert!(q.next_batch(0).await.is_none());
}

#[tokio::test]
async fn an_idle_sender_wakes_for_a_partial_batch() {
    let q = std::sync::Arc::new(SinkQueue::new(1, 100, 50, Duration::from_millis(20), None));
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.next_batch(0).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await; // the sender is parked, lane empty
    q.append(0, &chunk(&[(9, 1)])).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter).await;
    assert_eq!(got.expect("sender never woke").unwrap().unwrap().body, [9]);
}

#[tokio::test]
async fn delivery_waiters_hear_of_delivery_and_of_refusal() {
    let q = std::sync::Arc::new(SinkQueue::new(1, 100, 3, Duration::from_secs(3600), None));
    assert!(q.try_reserve(5));
    let a = q.append(0, &chunk(&[(1, 2)])).unwrap();
    let b = q.append(0, &chunk(&[(2, 2), (3, 1)])).unwrap();
    assert_eq!(
        (a, b),
        (Span { start: 0, end: 2 }, Span { start: 2, end: 5 })
    );
    q.flush(0);
    // Batches: [1] (2 samples; 2 more would pass 3), then [2, 3].
    let first = q.next_batch(0).await.unwrap();
    let second = q.next_batch(0).await.unwrap();
    assert_eq!((first.start, first.end), (0, 2));
    assert_eq!((second.start, second.end), (2, 5));
    let waiter = |span| {
        let q = q.clone();
        tokio::spawn(async move { q.wait_delivered(0, span).await })
    };
    let (wait_a, wait_b) = (waiter(a), waiter(b));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!wait_a.is_finished() && !wait_b.is_finished());
    q.finish(0, first, true);
    assert!(wait_a.await.unwrap(), "a was delivered");
    assert!(!wait_b.is_finished(), "b is still in flight");
    q.finish(0, second, false);
    assert!(!wait_b.await.unwrap(), "b was refused");
    assert_eq!(q.held(), 0);
}

#[tokio::test]
async fn a_passed_through_request_is_a_batch_of_its_own_after_what_was_batching() {
    let q = SinkQueue::new(1, 100, 10, Duration::from_secs(3600), None);
    assert!(q.try_reserve(10));
    q.append(0, &chunk(&[(1, 2)])).unwrap();
    let span = q
        .append_compressed(0, &chunk(&[(2, 3), (3, 4)]), b"snappy")
        .unwrap();
    assert_eq!(span, (Span { start: 2, end: 9 }, true));
    q.append(0, &chunk(&[(4, 1)])).unwrap();
    let b = q.next_batch(0).await.unwrap();
    assert_eq!(
        (b.body.as_slice(), b.samples, b.snappy),
        (&[1u8][..], 2, false)
    );
    assert_eq!((b.start, b.end), (0, 2));
    q.finish(0, b, true);
    let b = q.next_batch(0).await.unwrap();
    assert_eq!(
        (b.body.as_slice(), b.samples, b.snappy),
        (&b"snappy"[..], 7, true)
    );
    assert_eq!((b.start, b.end, b.metadata), (2, 9, false));
    q.finish(0, b, true);
    q.flush(0);
    let b = q.next_batch(0).await.unwrap();
    assert_eq!((b.body.as_slice(), b.start, b.end), (&[4u8][..], 9, 10));
    q.finish(0, b, true);
    assert_eq!(q.held(), 0);
}
