//! Outages, crashes and garbage, with real peers: a Prometheus 2.42 receiver that is down,
//! stopped for a minute, or refusing; a real Prometheus sender; the relay killed with SIGKILL.
//! What was answered 2xx must arrive, exactly once in the receiver's TSDB, through kill -9 and
//! SIGTERM restarts; what is malformed must be answered 4xx without the relay's memory growing.

mod common;

use common::*;
use promrelay::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use std::collections::BTreeMap;
use std::time::Duration;

/// 200 series named `metric` at `ts`, each padded with a 300-byte label: about 80 KB encoded.
fn padded_request(metric: &str, ts: i64, value: f64) -> WriteRequest {
    let mut req = series_request(metric, 200, ts, value);
    for s in &mut req.timeseries {
        s.labels.push(Label::new("pad", &"p".repeat(300)));
    }
    req
}

/// Send one 25-series `spool_kill_test` request per round (a second apart from `base`), each
/// answered 204, and add them to `want`.
async fn send_taken(url: &str, rounds: std::ops::Range<i64>, base: i64, want: &mut SeriesMap) {
    for round in rounds {
        let req = series_request(
            "spool_kill_test",
            25,
            base + round * 1000,
            round as f64 * 100.0,
        );
        let r = remote_write(url, proto::encode_snappy(&req)).await;
        assert_eq!(r.status, 204, "{}", r.text());
        expect_request(want, &req);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_a_spool_while_the_target_is_down_loses_nothing_answered_2xx() {
    let port = free_port(); // the receiver starts only at the end
    let config = format!(
        r#"
tasks:
  - name: durable
    targets:
      - name: central
        type: remote_write
        url: http://127.0.0.1:{port}/api/v1/write
        queue: {{shards: 2, batch_send_deadline: 100ms, min_backoff: 50ms, max_backoff: 500ms}}
        spool: {{dir: "{{dir}}/spool"}}
"#
    );
    let mut relay = Relay::start(&config).await;
    let mut want = SeriesMap::new();
    let base = now_ms() - 120_000;
    // The default ack for a spooled task is `spooled`: 204 means synced to disk.
    send_taken(&relay.write_url(), 0..40, base, &mut want).await;
    relay
        .wait_metric(
            "promrelay_target_spool_bytes{task=\"durable\",target=\"central\"}",
            "data held in the spool",
            |v| v > 0.0,
        )
        .await;
    relay.kill9_and_restart().await;
    // Still down after the restart: more data joins the replayed backlog.
    send_taken(&relay.write_url(), 40..60, base, &mut want).await;
    assert!(
        relay
            .proc
            .log_text()
            .contains("replaying what an earlier run left"),
        "the restarted relay did not report a replay"
    );
    // A graceful restart with the target still down: SIGTERM does not wait out the outage
    // (the default shutdown_timeout is 30 s), nothing is counted lost, and the data stays.
    let log_before = relay.proc.log.clone();
    relay.terminate_and_restart(Duration::from_secs(20)).await;
    let stopped = std::fs::read_to_string(log_before).unwrap();
    assert!(!stopped.contains("not delivered"), "{stopped}");
    assert!(stopped.contains("stopped"), "{stopped}");
    let receiver = Prometheus::receiver_on(port).await;
    receiver
        .wait_for_series(
            "spool_kill_test",
            "5m",
            &want,
            "every sample answered 2xx, once",
        )
        .await;
    relay
        .wait_metric(
            "promrelay_target_spool_bytes{task=\"durable\",target=\"central\"}",
            "the spool emptied",
            |v| v == 0.0,
        )
        .await;
    assert_eq!(
        relay
            .metric("promrelay_target_dropped_samples_total{task=\"durable\",target=\"central\",reason=\"spool_full\"}")
            .await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_delivered_answers_only_once_prometheus_has_the_data() {
    let port = free_port();
    let config = format!(
        r#"  ack_timeout: 2s
tasks:
  - name: confirmed
    ack: delivered
    targets:
      - name: central
        type: remote_write
        url: http://127.0.0.1:{port}/api/v1/write
        # A long batching deadline: delivered requests must not wait for it.
        queue: {{batch_send_deadline: 30s, min_backoff: 50ms, max_backoff: 300ms}}
  - name: refused
    source: wrong-path
    ack: delivered
    targets:
      - name: nowhere
        type: remote_write
        url: http://127.0.0.1:{port}/no/such/path
        queue: {{batch_send_deadline: 30s}}
  - name: confirmed-spooled
    source: spooled
    ack: delivered
    targets:
      - name: central-spooled
        type: remote_write
        url: http://127.0.0.1:{port}/api/v1/write
        queue: {{batch_send_deadline: 30s}}
        spool: {{dir: "{{dir}}/spool"}}
sources:
  - name: wrong-path
  - name: spooled
"#
    );
    // The text continues the `server:` section Relay::start opens.
    let relay = Relay::start(&config).await;
    let ts = now_ms() - 60_000;

    // Receiver down: the data is taken, but not confirmed in time.
    let first = series_request("ack_test_early", 3, ts, 1.0);
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&first)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.text().contains("ack_timeout"), "{}", r.text());

    let receiver = Prometheus::receiver_on(port).await;
    // Post, expect 204, and query at once: no waiting, because 204 under `ack: delivered`
    // means Prometheus already has it.
    let delivered_on_204 = |url: String, req: WriteRequest, metric: &'static str| {
        let receiver = &receiver;
        async move {
            let r = remote_write(&url, proto::encode_snappy(&req)).await;
            assert_eq!(r.status, 204, "{}", r.text());
            let mut want = SeriesMap::new();
            expect_request(&mut want, &req);
            let got = receiver.raw_series(metric, "5m", now_ms()).await.unwrap();
            assert_eq!(got, want);
        }
    };
    delivered_on_204(
        relay.write_url(),
        series_request("ack_test", 4, ts + 1000, 10.0),
        "ack_test",
    )
    .await;
    // The early request was kept and delivered after all.
    let mut early = SeriesMap::new();
    expect_request(&mut early, &first);
    receiver
        .wait_for_series("ack_test_early", "5m", &early, "the early request")
        .await;

    // The same through a spool: delivered still means in Prometheus, without waiting for the
    // 30 s batching deadline.
    delivered_on_204(
        format!("{}/sources/spooled/api/v1/write", relay.base()),
        series_request("ack_spooled_test", 2, ts + 2000, 20.0),
        "ack_spooled_test",
    )
    .await;

    // A target that refuses for good (Prometheus answers 404): the sender hears 400.
    let url = format!("{}/sources/wrong-path/api/v1/write", relay.base());
    let r = remote_write(
        &url,
        proto::encode_snappy(&series_request("ack_refused", 1, ts, 0.0)),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("refused"), "{}", r.text());
    assert_eq!(
        relay
            .metric(
                "promrelay_ingest_refused_total{source=\"wrong-path\",reason=\"target_refused\"}"
            )
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_stopped_for_a_minute_under_a_real_prometheus_sender_gets_every_sample_once() {
    let mut receiver = Prometheus::receiver().await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: relay-all
    targets:
      - name: central
        type: remote_write
        url: {}
        # Small enough to fill during the outage, and memory only (no overflow): the sender is
        # then pushed back (503) and keeps the rest in its WAL. The overflow's answer to an
        # outage is tests/isolation.rs.
        queue: {{capacity: 3000, batch_send_deadline: 200ms, min_backoff: 100ms, max_backoff: 1s}}
        overflow: {{enabled: false}}
"#,
        receiver.write_url()
    ))
    .await;
    let sender = Prometheus::self_scraping_sender(&relay.write_url()).await;
    let selector =
        r#"{job="self",__name__=~"up|scrape_samples_scraped|prometheus_tsdb_head_series"}"#;
    eventually(Duration::from_secs(60), "first samples through", || async {
        let got = receiver.raw_series(selector, "1m", now_ms()).await?;
        if got.len() == 3 {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;

    let stopped_at = now_ms();
    receiver.restart_after(Duration::from_secs(60)).await;
    relay
        .wait_metric(
            "promrelay_requests_total{source=\"default\",code=\"503\"}",
            "the sender was pushed back during the outage",
            |v| v > 0.0,
        )
        .await;
    // Compare a window from before the stop to after the restart, at a fixed evaluation time.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let at = now_ms();
    let range = format!("{}s", (at - stopped_at) / 1000 + 20);
    let from_sender = sender.raw_series(selector, &range, at).await.unwrap();
    let points: usize = from_sender.values().map(Vec::len).sum();
    assert!(
        points >= 3 * 60,
        "the sender should have scraped through the outage: {points} points"
    );
    receiver
        .wait_for_series_at(
            selector,
            &range,
            at,
            &from_sender,
            "the outage backlog, exactly",
        )
        .await;
    let dropped = relay
        .metric("promrelay_target_dropped_samples_total{task=\"relay-all\",target=\"central\",reason=\"refused\"}")
        .await;
    assert_eq!(dropped, Some(0.0));
    let pushed_back = relay
        .metric("promrelay_requests_total{source=\"default\",code=\"503\"}")
        .await;
    eprintln!(
        "outage test: {points} points over {range} equal at sender and receiver; \
         {pushed_back:?} requests pushed back with 503"
    );
}

/// A valid body, for mutating.
fn valid_body() -> Vec<u8> {
    let mut req = series_request("mutation_base", 30, 1_700_000_000_000, 1.5);
    for (i, s) in req.timeseries.iter_mut().enumerate() {
        s.labels
            .push(Label::new("region", &format!("cn-{}", i % 3)));
    }
    proto::encode_snappy(&req)
}

/// The independent verdict: does this body decode as remote-write 1.0 (snappy, protobuf via
/// prost, every series with labels, names non-empty and unique; the relay sorts unsorted ones)?
fn decodes(body: &[u8]) -> bool {
    use prost::Message;
    let Ok(raw) = snap::raw::Decoder::new().decompress_vec(body) else {
        return false;
    };
    let Ok(req) = WriteRequest::decode(raw.as_slice()) else {
        return false;
    };
    req.timeseries.iter().all(|s| {
        let mut names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
        names.sort_unstable();
        !names.is_empty() && !names[0].is_empty() && names.windows(2).all(|w| w[0] != w[1])
    })
}

/// prost's error for a body, for failure messages.
fn verdict(body: &[u8]) -> String {
    use prost::Message;
    match snap::raw::Decoder::new().decompress_vec(body) {
        Err(e) => format!("snappy: {e}"),
        Ok(raw) => format!("{:?}", WriteRequest::decode(raw.as_slice()).err()),
    }
}

/// Deterministic xorshift, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

/// Ten thousand malformed bodies of every kind the issue names.
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>)> {
    use prost::Message;
    let valid = valid_body();
    let raw = snap::raw::Decoder::new().decompress_vec(&valid).unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut out = Vec::new();
    // Every truncation of the compressed body.
    for n in 0..valid.len() {
        out.push(("truncated", valid[..n].to_vec()));
    }
    // Protobuf truncated inside, compressed properly.
    for n in (1..raw.len()).step_by(7) {
        let b = snappy(&raw[..n]);
        if !decodes(&b) {
            out.push(("protobuf truncated", b));
        }
    }
    // Snappy headers declaring huge lengths (length bombs).
    for declared in [1u64 << 29, (1 << 32) - 1, 1 << 40, u64::MAX >> 1] {
        let mut b = Vec::new();
        let mut v = declared;
        while v >= 0x80 {
            b.push((v as u8) | 0x80);
            v >>= 7;
        }
        b.push(v as u8);
        b.extend_from_slice(&[0u8; 64]);
        out.push(("length bomb", b));
    }
    let series = |labels: Vec<Label>| {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels,
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        snappy(&req.encode_to_vec())
    };
    for i in 0..200 {
        let n = format!("m{i}");
        out.push((
            "duplicate label",
            series(vec![
                Label::new("__name__", &n),
                Label::new("a", "1"),
                Label::new("a", "2"),
            ]),
        ));
        out.push((
            "empty label name",
            series(vec![Label::new("", "x"), Label::new("__name__", &n)]),
        ));
        out.push(("no labels", series(vec![])));
        out.push((
            "huge label value",
            series(vec![
                Label::new("__name__", &n),
                Label::new("v", &"x".repeat(70_000 + i)),
            ]),
        ));
    }
    // Junk.
    while out.len() < 5000 {
        let len = 1 + rng.below(600);
        let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if !decodes(&b) {
            out.push(("junk", b));
        }
    }
    // Bit flips of the valid body (compressed or not), kept only when they no longer decode.
    while out.len() < 10_000 {
        let compressed = rng.below(2) == 0;
        let mut b = if compressed {
            valid.clone()
        } else {
            raw.clone()
        };
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len());
            b[at] ^= 1 << rng.below(8);
        }
        let b = if compressed { b } else { snappy(&b) };
        if !decodes(&b) {
            out.push(("bit flip", b));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_bodies_are_all_answered_4xx_and_memory_stays_bounded() {
    let relay = Relay::start(
        r#"
tasks:
  - name: all
    targets:
      - {name: out, type: file, path: "{dir}/out.jsonl"}
"#,
    )
    .await;
    let bodies = malformed_bodies();
    assert_eq!(bodies.len(), 10_000);
    let url = relay.write_url();
    let mut rss_after_warmup = 0;
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (i, (kind, body)) in bodies.iter().enumerate() {
        let r = remote_write(&url, body.clone()).await;
        let code = r.status.as_u16();
        assert!(
            (400..500).contains(&code),
            "body {i} ({kind}, {} bytes) was answered {code}: {}; prost says {:?}",
            body.len(),
            r.text(),
            verdict(body)
        );
        *by_status.entry(code).or_default() += 1;
        if i == 1000 {
            rss_after_warmup = relay.rss_bytes();
        }
    }
    let rss_end = relay.rss_bytes();
    assert!(
        rss_end < rss_after_warmup + (64 << 20) && rss_end < 512 << 20,
        "RSS grew from {rss_after_warmup} to {rss_end} bytes"
    );
    // Still healthy and still relaying.
    let good = remote_write(&url, valid_body()).await;
    assert_eq!(good.status, 204, "{}", good.text());
    let refused_total: f64 = {
        let text = get(&format!("{}/metrics", relay.base()))
            .await
            .unwrap()
            .text();
        text.lines()
            .filter(|l| l.starts_with("promrelay_ingest_refused_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        refused_total, 10_000.0,
        "every refusal counted: {by_status:?}"
    );
    eprintln!("answers: {by_status:?}, RSS {rss_after_warmup} -> {rss_end} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_target_with_a_spool_never_stalls_a_healthy_one() {
    let receiver = Prometheus::receiver().await;
    let down = free_port();
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: to-nowhere
    targets:
      - name: down
        type: remote_write
        url: http://127.0.0.1:{down}/api/v1/write
        queue: {{shards: 1, batch_send_deadline: 100ms, max_backoff: 1s}}
        # The smallest spool, and told to drop rather than push back.
        spool: {{dir: "{{dir}}/spool", max_bytes: 1048576, on_full: drop_oldest}}
  - name: to-central
    ack: queued
    targets:
      - name: central
        type: remote_write
        url: {url}
        queue: {{batch_send_deadline: 100ms}}
"#,
        url = receiver.write_url()
    ))
    .await;
    let mut want = SeriesMap::new();
    let base = now_ms() - 100_000;
    // ~80 KB per request encoded: 40 of them overflow the 1 MiB spool several times.
    for round in 0..40 {
        let req = padded_request("no_stall_test", base + round * 1000, round as f64);
        let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        assert_eq!(r.status, 204, "round {round}: {}", r.text());
        expect_request(&mut want, &req);
    }
    receiver
        .wait_for_series(
            "no_stall_test",
            "5m",
            &want,
            "everything at the healthy target",
        )
        .await;
    let dropped = relay
        .metric("promrelay_target_dropped_samples_total{task=\"to-nowhere\",target=\"down\",reason=\"spool_full\"}")
        .await
        .unwrap();
    assert!(
        dropped > 0.0,
        "the full spool dropped its oldest data, counted"
    );
    let held = relay
        .metric("promrelay_target_spool_bytes{task=\"to-nowhere\",target=\"down\"}")
        .await
        .unwrap();
    assert!(held > 0.0 && held <= 1_048_576.0 + 100_000.0, "held {held}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_write_that_fails_is_answered_503_and_counted() {
    // A full disk, without needing one: the lane's current segment is the kernel's /dev/full,
    // whose every write fails with ENOSPC. (A real device, not a mock; the spool opens it like
    // any segment file it finds at start.)
    let spool = TempDir::new("full-spool");
    let lane = spool.path().join("lane-0");
    std::fs::create_dir_all(&lane).unwrap();
    std::os::unix::fs::symlink("/dev/full", lane.join(format!("{:020}.seg", 0))).unwrap();
    let receiver = Prometheus::receiver().await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: on-full-disk
    targets:
      - name: doomed
        type: remote_write
        url: {url}
        queue: {{shards: 1, batch_send_deadline: 100ms}}
        spool: {{dir: "{dir}"}}
  - name: healthy
    targets:
      - name: central
        type: remote_write
        url: {url}
        queue: {{batch_send_deadline: 100ms}}
"#,
        url = receiver.write_url(),
        dir = spool.path().display()
    ))
    .await;
    let req = series_request("disk_full_test", 5, now_ms() - 10_000, 1.0);
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.text().contains("cannot be written"), "{}", r.text());
    let dropped = relay
        .metric("promrelay_target_dropped_samples_total{task=\"on-full-disk\",target=\"doomed\",reason=\"spool_error\"}")
        .await;
    assert_eq!(dropped, Some(5.0));
    assert_eq!(
        relay
            .metric("promrelay_target_spool_bytes{task=\"on-full-disk\",target=\"doomed\"}")
            .await,
        Some(0.0),
        "the failed write's reservation is given back"
    );
    assert!(relay.proc.log_text().contains("spool write failed"));
    // The other target got it (a retry by the sender may deliver it there twice, which
    // Prometheus absorbs).
    let mut want = SeriesMap::new();
    expect_request(&mut want, &req);
    receiver
        .wait_for_series("disk_full_test", "5m", &want, "the healthy target's copy")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_pushes_back_and_everything_it_took_arrives_later() {
    let port = free_port(); // the receiver starts only at the end
    let relay = Relay::start(&format!(
        r#"
  backpressure_status: 429
tasks:
  - name: bounded
    targets:
      - name: central
        type: remote_write
        url: http://127.0.0.1:{port}/api/v1/write
        queue: {{shards: 1, batch_send_deadline: 100ms, max_backoff: 500ms}}
        spool: {{dir: "{{dir}}/spool", max_bytes: 1048576}}
"#
    ))
    .await;
    let mut want = SeriesMap::new();
    let base = now_ms() - 100_000;
    let mut refused = 0;
    // ~80 KB per request: the 1 MiB spool is full after a dozen or so; send a bounded 40.
    for round in 0..40 {
        let req = padded_request("spool_full_test", base + round * 1000, round as f64);
        let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        match r.status.as_u16() {
            204 => expect_request(&mut want, &req),
            429 => {
                assert!(r.headers.contains_key("retry-after"));
                refused += 1;
            }
            other => panic!("round {round}: {other} {}", r.text()),
        }
    }
    assert!(refused > 0, "the spool never filled");
    assert!(!want.is_empty(), "nothing was taken");
    assert_eq!(
        relay
            .metric("promrelay_target_dropped_samples_total{task=\"bounded\",target=\"central\",reason=\"spool_full\"}")
            .await,
        Some(0.0),
        "on_full: block drops nothing"
    );
    let receiver = Prometheus::receiver_on(port).await;
    receiver
        .wait_for_series("spool_full_test", "5m", &want, "everything answered 204")
        .await;
}
