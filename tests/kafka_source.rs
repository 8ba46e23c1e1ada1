//! The Kafka source against a real Kafka-compatible broker (Tansu), with messages produced by
//! an independent client (Python kafka-python, tests/kafka_raw.py) and a real Prometheus as
//! the receiver: relays sharing a topic in one consumer group survive a `kill -9`; a relay
//! stopped while its target is down skips nothing; invalid messages are counted, skipped or
//! dead-lettered byte for byte, and never stop the good ones.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// One seed-format sample object: every label a string field, value and timestamp strings.
fn sample(msg: usize, s: usize, ts: i64) -> (serde_json::Value, BTreeMap<String, String>, f64) {
    let value = (msg * 100 + s) as f64 + 0.5;
    let labels: BTreeMap<String, String> = [
        ("__name__", "lake_value".to_owned()),
        ("msg", msg.to_string()),
        ("s", s.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut obj = serde_json::Map::new();
    for (k, v) in &labels {
        obj.insert(k.clone(), v.clone().into());
    }
    obj.insert("value".into(), format!("{value:?}").into());
    obj.insert("timestamp".into(), ts.to_string().into());
    (obj.into(), labels, value)
}

/// `per` samples of message `msg`, as the seed's consumer expects them: a JSON array,
/// raw-snappy compressed (or left uncompressed when `compressed` is false). Adds them to `want`.
fn seed_message(
    msg: usize,
    per: usize,
    t0: i64,
    compressed: bool,
    want: &mut SeriesMap,
) -> Vec<u8> {
    let mut arr = Vec::new();
    for s in 0..per {
        let ts = t0 + (msg * per + s) as i64;
        let (obj, labels, value) = sample(msg, s, ts);
        arr.push(obj);
        want.insert(labels, vec![(ts, value)]);
    }
    let text = serde_json::to_vec(&arr).unwrap();
    if compressed {
        snap::raw::Encoder::new().compress_vec(&text).unwrap()
    } else {
        text
    }
}

/// Messages `0..n` ([`seed_message`], `per` samples each) spread round-robin over `partitions`;
/// message `i` is compressed when `compressed(i)`.
fn seed_messages(
    n: usize,
    per: usize,
    partitions: usize,
    t0: i64,
    compressed: impl Fn(usize) -> bool,
    want: &mut SeriesMap,
) -> Vec<RawMessage> {
    (0..n)
        .map(|i| RawMessage {
            partition: Some((i % partitions) as i32),
            key: None,
            value: Some(seed_message(i, per, t0, compressed(i), want)),
        })
        .collect()
}

/// A relay reading `topic` as source `lake` into one `ack: delivered` task to `url`; `extra`
/// is more lines of the source's `kafka:` keys.
fn relay_config(brokers: &str, topic: &str, group: &str, extra: &str, url: &str) -> String {
    format!(
        r#"
  data_dir: "{{dir}}/data"
  shutdown_timeout: 2s
sources:
  - name: lake
    kafka:
      brokers: "{brokers}"
      topics: [{topic}]
      group_id: {group}
      commit_interval: 200ms
      options: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}
{extra}tasks:
  - name: to-prom
    source: lake
    ack: delivered
    targets:
      - name: prom
        type: remote_write
        url: {url}
        queue: {{batch_send_deadline: 100ms, min_backoff: 50ms, max_backoff: 500ms}}
"#
    )
}

/// `Relay::start` adds `server:\n  listen: …` before the text: the config's first lines
/// continue the `server:` section.
async fn relay(config: &str) -> Relay {
    Relay::start(config).await
}

const MESSAGES: &str = "promrelay_kafka_source_messages_total{source=\"lake\"}";
const ASSIGNED: &str =
    "promrelay_kafka_source_rebalances_total{source=\"lake\",event=\"assigned\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_in_one_group_deliver_every_sample_through_a_kill_9() {
    let tansu = Tansu::start().await;
    tansu.create_topic("lake", 4);
    let prom = Prometheus::receiver().await;
    let config = relay_config(&tansu.brokers(), "lake", "relays", "", &prom.write_url());
    // Relay A's receiver is down until A is killed: whatever A reads it holds undelivered
    // (`ack: delivered`), so the kill loses data unless A's offsets stayed behind it.
    let down = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    let mut a = relay(&config.replace(&prom.write_url(), &down)).await;
    let b = relay(&config).await;

    let t0 = now_ms() - 120_000;
    let (n, per) = (400, 10);
    let mut want = SeriesMap::new();
    // Every fifth message uncompressed: the source reads both.
    let messages = seed_messages(n, per, 4, t0, |i| i % 5 != 0, &mut want);
    // The group shares the topic: each relay owns some of its 4 partitions.
    for (r, what) in [
        (&a, "relay A owns partitions"),
        (&b, "relay B owns partitions"),
    ] {
        r.wait_metric(ASSIGNED, what, |v| v > 0.0).await;
    }
    tansu.produce_with_python("lake", &messages[..n / 2]);
    // Mid-stream: relay A has read part of the first half.
    a.wait_metric(MESSAGES, "relay A reads", |v| v > 0.0).await;
    let _ = a.proc.child.kill(); // SIGKILL: no shutdown, no commit
    let _ = a.proc.child.wait();
    tansu.produce_with_python("lake", &messages[n / 2..]);
    // Relay B takes A's partitions once the group notices A is gone, and reads them from the
    // offsets A committed. Then A comes back (now with a receiver that is up) and rejoins.
    b.wait_metric(MESSAGES, "relay B reads", |v| v > 0.0).await;
    let file = a.dir.path().join("promrelay.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace(&down, &prom.write_url())).unwrap();
    a.kill9_and_restart().await; // already dead: this starts it again
    let at = now_ms() + 60_000;
    prom.wait_for_series_at("lake_value", "10m", at, &want, "every sample in Prometheus")
        .await;
    // The restarted relay rejoined the group and owns partitions again.
    a.wait_metric(ASSIGNED, "restarted relay A owns partitions", |v| v > 0.0)
        .await;
    // Every partition is reported by the relay that owns it, with nothing left to read.
    eventually(
        Duration::from_secs(30),
        "lag 0 on all 4 partitions",
        || async {
            let mut zero = 0;
            for p in 0..4 {
                let series = format!(
                    "promrelay_kafka_source_lag{{source=\"lake\",topic=\"lake\",partition=\"{p}\"}}"
                );
                for r in [&a, &b] {
                    if r.metric(&series).await == Some(0.0) {
                        zero += 1;
                        break;
                    }
                }
            }
            if zero == 4 {
                Ok(())
            } else {
                Err(format!("{zero} of 4 at lag 0"))
            }
        },
    )
    .await;
    // The admin API's source status says the same: each partition owned by one relay, lag 0
    // (once the group has settled: the killed member leaves it after its session timeout).
    eventually(
        Duration::from_secs(30),
        "each partition in one relay's status, lag 0",
        || async {
            let mut owned = Vec::new();
            for r in [&a, &b] {
                let status = get(&format!("{}/api/v1/status", r.admin_base())).await?;
                let v: serde_json::Value =
                    serde_json::from_slice(&status.body).map_err(|e| e.to_string())?;
                let lake = v["sources"]
                    .as_array()
                    .and_then(|s| s.iter().find(|s| s["name"] == "lake"))
                    .ok_or("no source lake")?
                    .clone();
                for p in lake["kafka_partitions"].as_array().ok_or("no partitions")? {
                    if p["topic"] != "lake" || p["lag"] != 0 {
                        return Err(format!("{}: {}", r.admin_base(), lake["kafka_partitions"]));
                    }
                    owned.push(p["partition"].as_i64().unwrap_or(-1));
                }
            }
            owned.sort_unstable();
            if owned == [0, 1, 2, 3] {
                Ok(())
            } else {
                Err(format!("{owned:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_while_its_target_is_down_skips_nothing_after_restart() {
    let tansu = Tansu::start().await;
    tansu.create_topic("held", 2);
    let port = free_port(); // the receiver is down: nothing listens here yet
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let mut relay = relay(&relay_config(&tansu.brokers(), "held", "g", "", &url)).await;
    let t0 = now_ms() - 60_000;
    let (n, per) = (50, 4);
    let mut want = SeriesMap::new();
    let messages = seed_messages(n, per, 2, t0, |_| true, &mut want);
    tansu.produce_with_python("held", &messages);
    relay
        .wait_metric(MESSAGES, "the relay read every message", |v| v == n as f64)
        .await;
    // ack: delivered and nothing delivered: no offset may have been committed.
    assert_eq!(
        relay
            .metric("promrelay_kafka_source_commits_total{source=\"lake\"}")
            .await,
        Some(0.0)
    );
    relay.terminate_and_restart(Duration::from_secs(30)).await;
    let prom = Prometheus::receiver_on(port).await;
    let at = now_ms() + 60_000;
    prom.wait_for_series_at(
        "lake_value",
        "10m",
        at,
        &want,
        "every sample after the restart",
    )
    .await;
    // The restarted relay read them again: its offsets had not moved.
    relay
        .wait_metric(MESSAGES, "the restarted relay re-read them", |v| {
            v >= n as f64
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_are_counted_and_dead_lettered_byte_for_byte() {
    let tansu = Tansu::start().await;
    tansu.create_topic("mixed", 1);
    tansu.create_topic("rejects", 1);
    let prom = Prometheus::receiver().await;
    let config = relay_config(
        &tansu.brokers(),
        "mixed",
        "g",
        "      dead_letter_topic: rejects\n",
        &prom.write_url(),
    );
    let relay = relay(&config).await;
    let t0 = now_ms() - 60_000;
    let snappy = |b: &[u8]| snap::raw::Encoder::new().compress_vec(b).unwrap();
    let bad: Vec<(&str, RawMessage)> = vec![
        (
            "snappy",
            RawMessage {
                partition: Some(0),
                key: Some(b"k-snappy".to_vec()),
                value: Some(b"\xff\xff\xff\xff\x0fnot snappy and not JSON".to_vec()),
            },
        ),
        (
            "json",
            RawMessage {
                partition: Some(0),
                key: None,
                value: Some(snappy(br#"[{"__name__":"lake_value","value":"1""#)),
            },
        ),
        (
            "no_name",
            RawMessage {
                partition: Some(0),
                key: Some(b"k-no-name".to_vec()),
                value: Some(snappy(br#"[{"job":"x","value":"1","timestamp":"1"}]"#)),
            },
        ),
        (
            "bad_value",
            RawMessage {
                partition: Some(0),
                key: None,
                value: Some(snappy(
                    br#"[{"__name__":"lake_value","value":"many","timestamp":"1"}]"#,
                )),
            },
        ),
        (
            "bad_timestamp",
            RawMessage {
                partition: Some(0),
                key: None,
                value: Some(
                    br#"[{"__name__":"lake_value","value":"1","timestamp":"yesterday"}]"#.to_vec(),
                ),
            },
        ),
        (
            "bad_labels",
            RawMessage {
                partition: Some(0),
                key: None,
                value: Some(snappy(
                    br#"[{"__name__":"lake_value","job":7,"value":"1","timestamp":"1"}]"#,
                )),
            },
        ),
        (
            "empty",
            RawMessage {
                partition: Some(0),
                key: Some(b"tombstone".to_vec()),
                value: None,
            },
        ),
    ];
    // good, bad, good, bad, …, good
    let mut want = SeriesMap::new();
    let mut messages = Vec::new();
    for (i, (_, b)) in bad.iter().enumerate() {
        messages.push(RawMessage {
            partition: Some(0),
            key: None,
            value: Some(seed_message(i, 3, t0, i % 2 == 0, &mut want)),
        });
        messages.push(b.clone());
    }
    messages.push(RawMessage {
        partition: Some(0),
        key: None,
        value: Some(seed_message(bad.len(), 3, t0, true, &mut want)),
    });
    tansu.produce_with_python("mixed", &messages);

    let at = now_ms() + 60_000;
    prom.wait_for_series_at("lake_value", "10m", at, &want, "every good sample")
        .await;
    for (reason, _) in &bad {
        let series = format!(
            "promrelay_kafka_source_invalid_messages_total{{source=\"lake\",reason=\"{reason}\"}}"
        );
        relay
            .wait_metric(&series, &format!("{reason} counted once"), |v| v == 1.0)
            .await;
    }
    relay
        .wait_metric(
            "promrelay_kafka_source_dead_letter_messages_total{source=\"lake\"}",
            "every bad message dead-lettered",
            |v| v == bad.len() as f64,
        )
        .await;
    assert_eq!(
        relay.metric(MESSAGES).await,
        Some(messages.len() as f64),
        "each message read once"
    );
    let got = tansu.read_raw_with_python("rejects", bad.len());
    let want_rejects: Vec<RawMessage> = bad.into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        got, want_rejects,
        "the dead-letter topic, byte for byte, in order"
    );
    // Logged once per partition, with where it was.
    let log = relay.proc.log_text();
    assert_eq!(
        log.matches("kafka source: invalid message").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("partition=0") && log.contains("offset=1"),
        "{log}"
    );
    // A Kafka source takes no HTTP writes.
    let body = promrelay::proto::encode_snappy(&series_request("x", 1, now_ms(), 1.0));
    let r = remote_write(&format!("{}/sources/lake/api/v1/write", relay.base()), body).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("reads Kafka"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_target_queue_pauses_the_partitions_and_loses_nothing() {
    let tansu = Tansu::start().await;
    tansu.create_topic("slow", 2);
    let port = free_port(); // the receiver is down until the source has paused
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let config = relay_config(&tansu.brokers(), "slow", "g", "", &url)
        .replace(
            "queue: {batch_send_deadline: 100ms,",
            "overflow: {enabled: false}\n        queue: {capacity: 40, max_samples_per_send: 20, batch_send_deadline: 100ms,",
        );
    let relay = relay(&config).await;
    let t0 = now_ms() - 60_000;
    let (n, per) = (100, 4);
    let mut want = SeriesMap::new();
    let messages = seed_messages(n, per, 2, t0, |_| true, &mut want);
    tansu.produce_with_python("slow", &messages);
    relay
        .wait_metric(
            "promrelay_kafka_source_backpressure_pauses_total{source=\"lake\"}",
            "the source paused on the full queue",
            |v| v >= 1.0,
        )
        .await;
    let read = relay.metric(MESSAGES).await.unwrap_or(0.0);
    assert!(
        read < n as f64,
        "read {read} of {n} while the queue is full"
    );
    let prom = Prometheus::receiver_on(port).await;
    let at = now_ms() + 60_000;
    prom.wait_for_series_at(
        "lake_value",
        "10m",
        at,
        &want,
        "every sample after the pause",
    )
    .await;
    assert_eq!(
        relay.metric(MESSAGES).await,
        Some(n as f64),
        "each read once"
    );
    // It stayed in its group: no partition was taken away while it was paused.
    assert_eq!(
        relay
            .metric("promrelay_kafka_source_rebalances_total{source=\"lake\",event=\"revoked\"}")
            .await,
        None
    );
}
