//! promrelay → a real Prometheus 2.42 receiver (`--web.enable-remote-write-receiver`, an
//! out-of-order window), checked through Prometheus' query API: exactly the filtered series
//! arrive, with task labels and external labels applied, with exact values and timestamps; a
//! second task on a named source is routed separately; the file target writes the same samples
//! as seed-format JSON lines.

mod common;

use common::*;
use promrelay::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn series(labels: &[(&str, &str)], points: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
        samples: points
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_exactly_the_filtered_labelled_series_to_prometheus() {
    let receiver = Prometheus::receiver().await;
    let config = format!(
        r#"
sources:
  - name: cluster-a
tasks:
  - name: ecs-to-central
    description: the seed's example filter
    filter: |
      __name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization
      regionId=cn-hangzhou
      id=i-2ze0mxp.*
    labels: |
      deliver_test_key1=ssss
      deliver_test_key2=yyyy
    targets:
      - name: central
        type: remote_write
        url: {url}
        external_labels: {{source_cluster: cluster-01}}
        queue: {{batch_send_deadline: 100ms, shards: 2}}
      - name: debug
        type: file
        path: "{{dir}}/delivered.jsonl"
        queue: {{batch_send_deadline: 100ms}}
  - name: cluster-a-load
    source: cluster-a
    filter: ["__name__=node_load1"]
    labels: {{route: cluster-a}}
    targets:
      - name: central
        type: remote_write
        url: {url}
        queue: {{batch_send_deadline: 100ms}}
  - name: switched-off
    enabled: false
    filter: ["__name__=.+"]
    labels: {{should_not: appear}}
    targets:
      - name: central
        type: remote_write
        url: {url}
"#,
        url = receiver.write_url()
    );
    let relay = Relay::start(&config).await;
    let t0 = now_ms() - 60_000;
    let p = |k: i64, v: f64| (t0 + k * 1000, v);

    // Unsorted labels on purpose for the first series: the relay must sort them.
    let default_req = WriteRequest {
        timeseries: vec![
            series(
                &[
                    ("regionId", "cn-hangzhou"),
                    ("id", "i-2ze0mxp001"),
                    ("__name__", "AliyunEcs_CPUUtilization"),
                ],
                &[p(0, 675.0), p(1, 0.25)],
            ),
            series(
                &[
                    ("__name__", "AliyunEcs_memory_usedutilization"),
                    ("id", "i-2ze0mxp002"),
                    ("regionId", "cn-hangzhou"),
                    ("source_cluster", "mine"),
                    ("deliver_test_key1", "old"),
                ],
                &[p(2, 1e-7)],
            ),
            // Filtered out: wrong region, wrong id, wrong name, missing id.
            series(
                &[
                    ("__name__", "AliyunEcs_CPUUtilization"),
                    ("id", "i-2ze0mxp001"),
                    ("regionId", "cn-beijing"),
                ],
                &[p(0, 1.0)],
            ),
            series(
                &[
                    ("__name__", "AliyunEcs_CPUUtilization"),
                    ("id", "i-other"),
                    ("regionId", "cn-hangzhou"),
                ],
                &[p(0, 2.0)],
            ),
            series(
                &[
                    ("__name__", "node_load1"),
                    ("id", "i-2ze0mxp001"),
                    ("regionId", "cn-hangzhou"),
                ],
                &[p(0, 3.0)],
            ),
            series(
                &[
                    ("__name__", "AliyunEcs_CPUUtilization"),
                    ("regionId", "cn-hangzhou"),
                ],
                &[p(0, 4.0)],
            ),
        ],
        metadata: vec![],
    };
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&default_req)).await;
    assert_eq!(r.status, 204, "{}", r.text());

    let cluster_req = WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "node_load1"), ("instance", "a:9100")],
                &[p(3, 1.5), p(4, 2.5)],
            ),
            series(
                &[
                    ("__name__", "AliyunEcs_CPUUtilization"),
                    ("id", "i-2ze0mxp009"),
                    ("regionId", "cn-hangzhou"),
                ],
                &[p(3, 9.0)],
            ),
        ],
        metadata: vec![],
    };
    let r = remote_write(
        &format!("{}/sources/cluster-a/api/v1/write", relay.base()),
        proto::encode_snappy(&cluster_req),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());

    let mut want = SeriesMap::new();
    want.insert(
        labels(&[
            ("__name__", "AliyunEcs_CPUUtilization"),
            ("deliver_test_key1", "ssss"),
            ("deliver_test_key2", "yyyy"),
            ("id", "i-2ze0mxp001"),
            ("regionId", "cn-hangzhou"),
            ("source_cluster", "cluster-01"),
        ]),
        vec![p(0, 675.0), p(1, 0.25)],
    );
    want.insert(
        labels(&[
            ("__name__", "AliyunEcs_memory_usedutilization"),
            ("deliver_test_key1", "ssss"),
            ("deliver_test_key2", "yyyy"),
            ("id", "i-2ze0mxp002"),
            ("regionId", "cn-hangzhou"),
            ("source_cluster", "mine"),
        ]),
        vec![p(2, 1e-7)],
    );
    want.insert(
        labels(&[
            ("__name__", "node_load1"),
            ("instance", "a:9100"),
            ("route", "cluster-a"),
        ]),
        vec![p(3, 1.5), p(4, 2.5)],
    );

    let got = receiver
        .wait_for_series(
            "{__name__=~\".+\"}",
            "10m",
            &want,
            "the receiver to hold exactly the filtered series",
        )
        .await;
    assert_eq!(got, want);

    // The file target wrote the same two ECS series as seed-format JSON lines.
    let path = relay.dir.path().join("delivered.jsonl");
    let lines: Vec<serde_json::Value> =
        eventually(Duration::from_secs(10), "the JSON lines file", || async {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() == 3 {
                Ok(lines)
            } else {
                Err(text)
            }
        })
        .await;
    assert_eq!(
        lines[0],
        serde_json::json!({"__name__": "AliyunEcs_CPUUtilization", "deliver_test_key1": "ssss", "deliver_test_key2": "yyyy",
            "id": "i-2ze0mxp001", "regionId": "cn-hangzhou", "value": "675.0", "timestamp": t0.to_string()})
    );
    assert_eq!(lines[1]["value"], "0.25");
    assert_eq!(lines[2]["value"], "1e-7");
    assert_eq!(lines[2]["source_cluster"], "mine");

    // Self-metrics count what happened.
    assert_eq!(
        relay
            .metric("promrelay_task_matched_samples_total{task=\"ecs-to-central\"}")
            .await,
        Some(3.0)
    );
    assert_eq!(
        relay
            .metric("promrelay_task_filtered_samples_total{task=\"ecs-to-central\"}")
            .await,
        Some(4.0)
    );
    assert_eq!(
        relay
            .metric("promrelay_task_matched_samples_total{task=\"cluster-a-load\"}")
            .await,
        Some(2.0)
    );
    let delivered = relay
        .metric(
            "promrelay_target_delivered_samples_total{task=\"ecs-to-central\",target=\"central\"}",
        )
        .await;
    assert_eq!(delivered, Some(3.0));
    assert_eq!(
        relay
            .metric("promrelay_requests_total{source=\"cluster-a\",code=\"204\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_starts_late_gets_everything_through_retries() {
    // The target's port has nothing listening yet: every send fails to connect and is retried.
    let port = free_port();
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: patient
    targets:
      - name: late
        type: remote_write
        url: http://127.0.0.1:{port}/api/v1/write
        queue: {{batch_send_deadline: 50ms, min_backoff: 50ms, max_backoff: 500ms}}
"#
    ))
    .await;
    let t0 = now_ms() - 30_000;
    let mut want = SeriesMap::new();
    for batch in 0..3i64 {
        let req = WriteRequest {
            timeseries: (0..5)
                .map(|i| {
                    series(
                        &[("__name__", "late_metric"), ("i", &i.to_string())],
                        &[(t0 + batch * 1000, (batch * 10 + i) as f64)],
                    )
                })
                .collect(),
            metadata: vec![],
        };
        let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        assert_eq!(r.status, 204, "{}", r.text());
        for i in 0..5i64 {
            want.entry(labels(&[
                ("__name__", "late_metric"),
                ("i", &i.to_string()),
            ]))
            .or_default()
            .push((t0 + batch * 1000, (batch * 10 + i) as f64));
        }
    }
    relay
        .wait_metric(
            "promrelay_target_retries_total{task=\"patient\",target=\"late\"}",
            "failed attempts while the receiver is down",
            |n| n >= 2.0,
        )
        .await;
    let receiver = Prometheus::receiver_on(port).await;
    let got = receiver
        .wait_for_series(
            "late_metric",
            "10m",
            &want,
            "every sample after the receiver came up",
        )
        .await;
    assert_eq!(got, want);
    assert_eq!(
        relay
            .metric("promrelay_target_delivered_samples_total{task=\"patient\",target=\"late\"}")
            .await,
        Some(15.0)
    );
}

/// A TCP proxy on loopback to `port` that, while `slow` is set, holds each read from its
/// client for `delay` before passing it on. A receiver that slows down and speeds up again
/// on cue is what a real Prometheus cannot be made to do: this is fault injection in front of
/// one.
async fn delay_proxy(port: u16, slow: Arc<AtomicBool>, delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let slow = slow.clone();
            tokio::spawn(async move {
                let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_upstream, mut to_upstream) = upstream.into_split();
                let back = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_upstream, &mut to_client).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = from_client.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if slow.load(Ordering::Relaxed) {
                        tokio::time::sleep(delay).await;
                    }
                    if to_upstream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = to_upstream.shutdown().await;
                let _ = back.await;
            });
        }
    });
    at
}

/// A forwarding target with the default four lanes sends unchanged requests whole (as their
/// sender compressed them) while its receiver keeps up, and spreads them over its lanes while
/// the receiver is slow; the lanes take turns around each whole request. The receiver is a
/// real Prometheus *without* an out-of-order window, so a sample that reached it after a newer
/// one of its series would be refused (and counted as dropped by the relay): every sample of
/// every series must arrive, in order, through several switches both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_and_spread_requests_keep_every_series_in_order_at_a_receiver_that_slows_down() {
    let phases = in_order_through_slow_phases("").await;
    let at_phase = &phases.passed_at_phase;
    assert!(
        at_phase[1] >= 1.0 && at_phase[3] > at_phase[2] && phases.passed < phases.requests,
        "whole while fast, spread while slow, whole again once fast again: {at_phase:?} at \
         the phases' starts, {} of {} in all",
        phases.passed,
        phases.requests
    );
}

/// The same with a memory queue too small for a slow phase: each slow phase spills to the
/// overflow on disk, and each lane goes back to memory once its sender has read the last of
/// its disk part, while that batch is still in flight and the load goes on. Every sample must
/// still arrive in order at a Prometheus without an out-of-order window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_spills_and_goes_back_to_memory_keeps_every_series_in_order() {
    let phases = in_order_through_slow_phases(", capacity: 1500").await;
    assert!(
        phases.log.contains("spilling to its overflow on disk"),
        "the slow phases spilled: {}",
        phases.log
    );
    assert_eq!(phases.spool_bytes, 0.0, "nothing left on disk");
}

struct Phases {
    requests: f64,
    /// Requests passed whole by the start of each phase, and in all.
    passed_at_phase: Vec<f64>,
    passed: f64,
    spool_bytes: f64,
    log: String,
}

/// 120 requests of 400 series (one sample each) through a target whose receiver, a real
/// Prometheus with no out-of-order window, is fast, slow (300 ms per read), fast and slow
/// again, 30 requests each; `queue` adds to the target's queue settings. Checks that every
/// sample arrived in order and none was refused.
async fn in_order_through_slow_phases(queue: &str) -> Phases {
    let receiver = Prometheus::start("global:\n  scrape_interval: 1h\n", true).await;
    let slow = Arc::new(AtomicBool::new(false));
    let proxy = delay_proxy(receiver.port, slow.clone(), Duration::from_millis(300)).await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: mirror
    targets:
      - name: central
        type: remote_write
        url: http://127.0.0.1:{proxy}/api/v1/write
        queue: {{max_samples_per_send: 400, batch_send_deadline: 100ms{queue}}}
"#
    ))
    .await;
    // 400 series, one sample each per request: every request fills a batch by itself.
    const SERIES: i64 = 400;
    const REQUESTS: i64 = 120;
    let t0 = now_ms() - 120_000;
    let metric =
        |name: &str| format!("promrelay_target_{name}{{task=\"mirror\",target=\"central\"}}");
    let passed = || async {
        relay
            .metric(&metric("passed_through_requests_total"))
            .await
            .unwrap_or(0.0)
    };
    let mut want = SeriesMap::new();
    // Requests passed whole when each phase began.
    let mut at_phase = Vec::new();
    for r in 0..REQUESTS {
        // Fast, slow, fast, slow: 30 requests (about 2 s) each.
        if r % 30 == 0 {
            at_phase.push(passed().await);
        }
        slow.store((r / 30) % 2 == 1, Ordering::Relaxed);
        let ts = t0 + r * 250;
        let req = WriteRequest {
            timeseries: (0..SERIES)
                .map(|i| {
                    series(
                        &[("__name__", "ordered_total"), ("s", &i.to_string())],
                        &[(ts, r as f64)],
                    )
                })
                .collect(),
            metadata: vec![],
        };
        let answer = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        assert_eq!(answer.status, 204, "{}", answer.text());
        for i in 0..SERIES {
            want.entry(labels(&[
                ("__name__", "ordered_total"),
                ("s", &i.to_string()),
            ]))
            .or_default()
            .push((ts, r as f64));
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    slow.store(false, Ordering::Relaxed);
    let got = receiver
        .wait_for_series(
            "ordered_total",
            "10m",
            &want,
            "every sample of every series, in order",
        )
        .await;
    assert_eq!(got, want);
    let refused = relay
        .metric("promrelay_target_dropped_samples_total{task=\"mirror\",target=\"central\",reason=\"refused\"}")
        .await
        .unwrap_or(0.0);
    assert_eq!(refused, 0.0, "nothing refused as out of order");
    Phases {
        requests: REQUESTS as f64,
        passed_at_phase: at_phase,
        passed: passed().await,
        spool_bytes: relay
            .wait_metric(&metric("spool_bytes"), "the overflow drained", |b| b == 0.0)
            .await,
        log: relay.proc.log_text(),
    }
}
