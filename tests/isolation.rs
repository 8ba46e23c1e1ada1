//! Isolation by default: a target whose receiver is down spills to its overflow on disk
//! instead of pushing back on the source, so the other tasks of that source keep delivering;
//! with real Prometheus receivers, the relay killed with SIGKILL while spilling, and the disk
//! budget used up.

mod common;

use common::*;
use promrelay::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use std::time::Duration;

/// `series` series named `metric` (label `id` = 0..), one sample each at `ts`; each series
/// padded with `pad` bytes in a label (to make requests large without many series).
fn request(metric: &str, series: usize, ts: i64, value: f64, pad: usize) -> WriteRequest {
    WriteRequest {
        timeseries: (0..series)
            .map(|i| {
                let mut labels = vec![
                    Label::new("__name__", metric),
                    Label::new("id", &i.to_string()),
                ];
                if pad > 0 {
                    labels.push(Label::new("pad", &"p".repeat(pad)));
                }
                TimeSeries {
                    labels,
                    samples: vec![Sample {
                        value: value + i as f64,
                        timestamp: ts,
                    }],
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    }
}

fn points(m: &SeriesMap) -> usize {
    m.values().map(Vec::len).sum()
}

/// Wait (bounded) until `metric` over the last 10 minutes at `receiver` holds exactly `want`;
/// on failure say how many points arrived, not all of them.
async fn wait_exact(receiver: &Prometheus, metric: &str, want: &SeriesMap, what: &str) {
    eventually(Duration::from_secs(90), what, || async {
        let got = receiver.raw_series(metric, "10m", now_ms()).await?;
        if &got == want {
            return Ok(());
        }
        let missing = want
            .iter()
            .find(|(k, v)| got.get(*k) != Some(*v))
            .map(|(k, _)| k.clone());
        Err(format!(
            "{} of {} points in {} of {} series; first series that differs: {missing:?}",
            points(&got),
            points(want),
            got.len(),
            want.len()
        ))
    })
    .await;
}

fn target_metric(name: &str, task: &str, target: &str) -> String {
    format!("{name}{{task=\"{task}\",target=\"{target}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_target_spills_to_disk_and_never_stalls_the_healthy_one() {
    // Default settings (queue capacity 100,000 samples, overflow on under the data dir); two
    // tasks on the default source; `b`'s receiver is down until the end.
    let healthy = Prometheus::receiver().await;
    let down_port = free_port();
    let config = format!(
        r#"
tasks:
  - name: a
    filter: "__name__=isolation_test"
    targets:
      - name: central
        type: remote_write
        url: {healthy}
  - name: b
    filter: "__name__=isolation_test"
    targets:
      - name: later
        type: remote_write
        url: http://127.0.0.1:{down_port}/api/v1/write
"#,
        healthy = healthy.write_url()
    );
    let relay = Relay::start(&config).await;
    // 150 requests of 1,000 series: 150,000 samples, half again what b's memory queue holds.
    let base = now_ms() - 200_000;
    let mut want = SeriesMap::new();
    for round in 0..150i64 {
        let req = request("isolation_test", 1000, base + round * 1000, round as f64, 0);
        let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        assert_eq!(r.status, 204, "request {round} was not taken: {}", r.text());
        expect_request(&mut want, &req);
    }
    // The healthy receiver has everything while the other is still down.
    wait_exact(
        &healthy,
        "isolation_test",
        &want,
        "the healthy receiver has every sample",
    )
    .await;
    let spilling = target_metric("promrelay_target_spilling", "b", "later");
    assert_eq!(relay.metric(&spilling).await, Some(1.0), "b spills");
    let on_disk = relay
        .metric(&target_metric("promrelay_target_spool_bytes", "b", "later"))
        .await
        .unwrap_or_default();
    assert!(on_disk > 0.0, "b holds data on disk");
    let age = relay
        .metric(&target_metric(
            "promrelay_target_oldest_pending_seconds",
            "b",
            "later",
        ))
        .await
        .unwrap_or_default();
    assert!(age > 0.0, "b's oldest pending data has an age: {age}");
    let overflow = relay.dir.path().join("data/overflow/b/later");
    assert!(overflow.is_dir(), "{} exists", overflow.display());

    // The other receiver comes up on its port: it gets every sample, in order.
    let later = Prometheus::receiver_on(down_port).await;
    wait_exact(
        &later,
        "isolation_test",
        &want,
        "the late receiver has every sample",
    )
    .await;
    relay
        .wait_metric(&spilling, "b stops spilling once drained", |v| v == 0.0)
        .await;
    relay
        .wait_metric(
            &target_metric("promrelay_target_spool_bytes", "b", "later"),
            "b's disk part is empty",
            |v| v == 0.0,
        )
        .await;
    for (task, target) in [("a", "central"), ("b", "later")] {
        let delivered = relay
            .metric(&target_metric(
                "promrelay_target_delivered_samples_total",
                task,
                target,
            ))
            .await;
        assert_eq!(
            delivered,
            Some(150_000.0),
            "{task}/{target} delivered each sample once"
        );
    }
    let refused = relay
        .metric("promrelay_requests_total{source=\"default\",code=\"503\"}")
        .await;
    assert_eq!(refused, None, "no request was pushed back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_spilling_loses_only_what_was_in_memory() {
    let port = free_port(); // the receiver starts only after the crash
    let config = format!(
        r#"
tasks:
  - name: t
    targets:
      - name: r
        type: remote_write
        url: http://127.0.0.1:{port}/api/v1/write
        queue: {{capacity: 2000, shards: 2, min_backoff: 50ms, max_backoff: 500ms}}
"#
    );
    let mut relay = Relay::start(&config).await;
    let base = now_ms() - 120_000;
    let mut spilled = SeriesMap::new();
    for round in 0..60i64 {
        let req = request("spill_kill_test", 100, base + round * 1000, round as f64, 0);
        let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        assert_eq!(r.status, 204, "{}", r.text());
        // The memory queue holds 2,000 samples: the first 20 requests stay in memory (the
        // receiver is down), every later one goes to the overflow on disk.
        if round >= 20 {
            expect_request(&mut spilled, &req);
        }
    }
    assert_eq!(
        relay
            .metric(&target_metric("promrelay_target_queue_samples", "t", "r"))
            .await,
        Some(6000.0)
    );
    relay.kill9_and_restart().await;
    assert!(
        relay
            .proc
            .log_text()
            .contains("delivering what an earlier run left on disk first"),
        "the restarted relay did not report its overflow"
    );
    let receiver = Prometheus::receiver_on(port).await;
    // docs/reliability.md: under `ack: queued` a crash loses what was in memory (here the
    // first 20 requests) and nothing on disk.
    wait_exact(
        &receiver,
        "spill_kill_test",
        &spilled,
        "every spilled sample, and none of the lost ones",
    )
    .await;
    relay
        .wait_metric(
            &target_metric("promrelay_target_queue_samples", "t", "r"),
            "the overflow emptied",
            |v| v == 0.0,
        )
        .await;
    assert_eq!(
        relay
            .metric(&target_metric(
                "promrelay_target_delivered_samples_total",
                "t",
                "r"
            ))
            .await,
        Some(4000.0),
        "each spilled sample sent once"
    );
}

/// A lane goes back to memory once its sender has read the last of its overflow, while that
/// batch is still in flight. If the relay is stopped while that batch fails (the receiver is
/// down), the lane must not give it up and leave for the next start: the memory behind it can
/// only be sent after it, and memory gets `shutdown_timeout` (30 s) to drain. A receiver back
/// within that timeout gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_behind_the_overflows_last_batch_still_drains_the_memory_after_it() {
    let port = free_port(); // the receiver starts only once the relay is stopping
    let config = format!(
        r#"
tasks:
  - name: t
    targets:
      - name: r
        type: remote_write
        url: http://127.0.0.1:{port}/api/v1/write
        queue: {{capacity: 100, shards: 1, max_samples_per_send: 100, min_backoff: 50ms, max_backoff: 200ms, batch_send_deadline: 50ms}}
"#
    );
    let mut relay = Relay::start(&config).await;
    let base = now_ms() - 120_000;
    let mut want = SeriesMap::new();
    let send = |url: String, round: i64| {
        let req = request(
            "drain_behind_disk",
            100,
            base + round * 1000,
            round as f64,
            0,
        );
        async move {
            let r = remote_write(&url, proto::encode_snappy(&req)).await;
            assert_eq!(r.status, 204, "{}", r.text());
            req
        }
    };
    // The first request fills the memory queue (lost at the kill), the second goes to disk.
    send(relay.write_url(), 0).await;
    expect_request(&mut want, &send(relay.write_url(), 1).await);
    relay.kill9_and_restart().await;
    // The restarted relay reads its overflow's one batch and fails to send it: the lane is back
    // in memory behind it.
    relay
        .wait_metric(
            &target_metric("promrelay_target_retries_total", "t", "r"),
            "the overflow's batch read and failing",
            |v| v >= 1.0,
        )
        .await;
    expect_request(&mut want, &send(relay.write_url(), 2).await);
    assert_eq!(
        relay
            .metric(&target_metric("promrelay_target_spool_bytes", "t", "r"))
            .await
            .map(|b| b < 200.0 * 100.0),
        Some(true),
        "the third request went to memory, not behind the second on disk"
    );
    let stopping = tokio::task::spawn_blocking(move || {
        let status = relay.proc.terminate(Duration::from_secs(60));
        (status, relay)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let receiver = Prometheus::receiver_on(port).await;
    let (status, relay) = stopping.await.unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "promrelay did not exit cleanly: {status:?}\n{}",
        relay.proc.log_text()
    );
    wait_exact(
        &receiver,
        "drain_behind_disk",
        &want,
        "the overflow's batch and the memory behind it",
    )
    .await;
    let log = relay.proc.log_text();
    assert!(
        log.contains("msg=drained task=t target=r delivered=200 dropped=0")
            && !log.contains("batch left on disk"),
        "both delivered at the stop, nothing left on disk or lost:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_disk_budget_blocks_or_drops_oldest_as_configured() {
    let port = free_port(); // down, then up
    let config = format!(
        r#"
tasks:
  - name: blocking
    filter: "__name__=budget_block"
    targets:
      - name: r
        type: remote_write
        url: http://127.0.0.1:{port}/api/v1/write
        queue: {{capacity: 400, min_backoff: 50ms, max_backoff: 500ms}}
        overflow: {{max_bytes: 1048576}}
  - name: dropping
    source: other
    targets:
      - name: r
        type: remote_write
        url: http://127.0.0.1:{port}/api/v1/write
        queue: {{capacity: 400, min_backoff: 50ms, max_backoff: 500ms}}
        overflow: {{max_bytes: 1048576, on_full: drop_oldest}}
sources:
  - name: other
"#
    );
    let relay = Relay::start(&config).await;
    let base = now_ms() - 120_000;
    // Requests of 200 series padded to about 80 KB: two fill the memory queue, about twelve
    // more the 1 MiB of disk.
    let mut taken = SeriesMap::new();
    let mut pushed_back = None;
    for round in 0..40i64 {
        let req = request("budget_block", 200, base + round * 1000, round as f64, 300);
        let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        if r.status == 204 {
            assert!(
                pushed_back.is_none(),
                "taken again after a push-back while still down"
            );
            expect_request(&mut taken, &req);
            continue;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.headers.contains_key("retry-after"));
        pushed_back.get_or_insert(round);
        // Pushed back only once the disk budget is used up.
        let on_disk = relay
            .metric(&target_metric(
                "promrelay_target_spool_bytes",
                "blocking",
                "r",
            ))
            .await
            .unwrap_or_default();
        assert!(
            on_disk > 900_000.0,
            "pushed back with only {on_disk} bytes on disk"
        );
    }
    let first = pushed_back.expect("a full disk budget pushes back");
    assert!(
        first >= 10,
        "pushed back after {first} requests: before the disk was full"
    );

    let other = format!("{}/sources/other/api/v1/write", relay.base());
    for round in 0..40i64 {
        let req = request("budget_drop", 200, base + round * 1000, round as f64, 300);
        let r = remote_write(&other, proto::encode_snappy(&req)).await;
        assert_eq!(r.status, 204, "drop_oldest never pushes back: {}", r.text());
    }
    let dropped = relay
        .metric("promrelay_target_dropped_samples_total{task=\"dropping\",target=\"r\",reason=\"spool_full\"}")
        .await
        .unwrap_or_default();
    assert!(dropped > 0.0, "drop_oldest counts what it drops");

    // Everything the blocking target took arrives once its receiver is up.
    let receiver = Prometheus::receiver_on(port).await;
    wait_exact(
        &receiver,
        "budget_block",
        &taken,
        "every sample taken by the blocking target",
    )
    .await;
}
