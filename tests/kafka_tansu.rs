//! promrelay → a real Kafka-compatible broker (Tansu), read back by an independent client
//! (Python kafka-python + cramjam's raw snappy, as the product documents' Java consumer does
//! with `Snappy.uncompress`): the exact set of samples, labels, values and timestamps arrives
//! in the seed's JSON format. And a real Prometheus as the sender, through the relay to Tansu.

mod common;

use common::*;
use promrelay::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use std::collections::{BTreeMap, BTreeSet};

type Row = (BTreeMap<String, String>, String, String);

fn row(sample: &serde_json::Value) -> Row {
    let mut labels: BTreeMap<String, String> = sample
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .unwrap_or_else(|| panic!("{k} is not a string: {v}"))
                    .to_owned(),
            )
        })
        .collect();
    let value = labels.remove("value").unwrap();
    let ts = labels.remove("timestamp").unwrap();
    (labels, value, ts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_consumer_logic_reads_exactly_the_filtered_samples_from_tansu() {
    let tansu = Tansu::start().await;
    tansu.create_topic("metrics", 3);
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: lake
    filter: ["__name__=~kafka_.*", "drop!=yes"]
    labels: {{deliver_test_key1: ssss}}
    targets:
      - name: tansu
        type: kafka
        brokers: {}
        topic: metrics
        external_labels: {{source_cluster: cluster-01}}
        queue: {{batch_send_deadline: 100ms}}
"#,
        tansu.brokers()
    ))
    .await;
    let t0 = now_ms();
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let cases: &[(f64, &str, &str)] = &[
        (675.0, "675.0", "675.0"),
        (0.25, "0.25", "0.25"),
        (1e-7, "1e-7", "1e-07"),
        (1e300, "1e300", "1e+300"),
        (-3.5, "-3.5", "-3.5"),
        (f64::NAN, "NaN", "nan"),
        (stale, "NaN", "nan"),
        (f64::INFINITY, "Infinity", "inf"),
        (f64::NEG_INFINITY, "-Infinity", "-inf"),
    ];
    let nasty = [
        "plain",
        "quote\"d",
        "back\\slash",
        "new\nline",
        "ünïcødé 中文 🙂",
        "tab\tand\u{1}ctl",
    ];
    let mut timeseries = Vec::new();
    let mut want = BTreeSet::new();
    let mut want_float = BTreeMap::new();
    for (i, (v, text, py)) in cases.iter().enumerate() {
        let val = nasty[i % nasty.len()];
        let ts = t0 + i as i64;
        timeseries.push(TimeSeries {
            labels: vec![
                Label::new("__name__", "kafka_value"),
                Label::new("case", &i.to_string()),
                Label::new("text", val),
            ],
            samples: vec![Sample {
                value: *v,
                timestamp: ts,
            }],
            ..Default::default()
        });
        let labels: BTreeMap<String, String> = [
            ("__name__", "kafka_value"),
            ("case", &i.to_string()),
            ("text", val),
            ("deliver_test_key1", "ssss"),
            ("source_cluster", "cluster-01"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        want.insert((labels, text.to_string(), ts.to_string()));
        want_float.insert(i.to_string(), py.to_string());
    }
    // Filtered out: wrong name, and the drop label.
    timeseries.push(TimeSeries {
        labels: vec![Label::new("__name__", "other")],
        samples: vec![Sample {
            value: 1.0,
            timestamp: t0,
        }],
        ..Default::default()
    });
    timeseries.push(TimeSeries {
        labels: vec![
            Label::new("__name__", "kafka_value"),
            Label::new("drop", "yes"),
        ],
        samples: vec![Sample {
            value: 1.0,
            timestamp: t0,
        }],
        ..Default::default()
    });
    let r = remote_write(
        &relay.write_url(),
        proto::encode_snappy(&WriteRequest {
            timeseries,
            metadata: vec![],
        }),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());

    let lines = tansu.read_with_python("metrics", cases.len());
    let got: BTreeSet<Row> = lines.iter().map(|l| row(&l["sample"])).collect();
    assert_eq!(got, want);
    for l in &lines {
        let case = l["sample"]["case"].as_str().unwrap();
        assert_eq!(
            l["float"].as_str().unwrap(),
            want_float[case],
            "Python float() of case {case}"
        );
        assert!(l["key"].as_str().unwrap().starts_with("series-group-"));
    }
    // Key by series: a series' samples all land in one partition (one sample each here, so
    // check the key → partition mapping is a function).
    let mut by_key: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for l in &lines {
        by_key
            .entry(l["key"].as_str().unwrap().to_owned())
            .or_default()
            .insert(l["partition"].as_i64().unwrap());
    }
    assert!(by_key.values().all(|p| p.len() == 1), "{by_key:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_to_kafka_through_the_relay() {
    let tansu = Tansu::start().await;
    tansu.create_topic("prom", 1);
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: prom-to-kafka
    filter: ["__name__=up", "job=self"]
    targets:
      - name: tansu
        type: kafka
        brokers: {}
        topic: prom
        queue: {{batch_send_deadline: 100ms}}
"#,
        tansu.brokers()
    ))
    .await;
    let _sender = Prometheus::self_scraping_sender(&relay.write_url()).await;
    let lines = tansu.read_with_python("prom", 2);
    for l in &lines {
        let (labels, value, ts) = row(&l["sample"]);
        assert_eq!(labels["__name__"], "up");
        assert_eq!(labels["job"], "self");
        assert_eq!(value, "1.0");
        let ts: i64 = ts.parse().unwrap();
        assert!(
            (ts - now_ms()).abs() < 600_000,
            "timestamp {ts} is ms since the epoch"
        );
    }
}

/// `n` series of one sample each, named `metric`, with label `round`.
fn round(metric: &str, round: usize, n: usize, ts: i64) -> (WriteRequest, BTreeSet<Row>) {
    let mut want = BTreeSet::new();
    let timeseries = (0..n)
        .map(|i| {
            let labels: BTreeMap<String, String> = [
                ("__name__", metric.to_owned()),
                ("round", round.to_string()),
                ("series", i.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            want.insert((labels.clone(), format!("{i}.0"), ts.to_string()));
            TimeSeries {
                labels: labels.iter().map(|(k, v)| Label::new(k, v)).collect(),
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: ts,
                }],
                ..Default::default()
            }
        })
        .collect();
    (
        WriteRequest {
            timeseries,
            metadata: vec![],
        },
        want,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_restarted_mid_stream_loses_nothing_the_relay_still_held() {
    let mut tansu = Tansu::start().await;
    tansu.create_topic("restart", 1);
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: stream
    targets:
      - name: tansu
        type: kafka
        brokers: {}
        topic: restart
        queue: {{batch_send_deadline: 100ms, min_backoff: 100ms, max_backoff: 1s}}
        options: {{message.timeout.ms: "5000", reconnect.backoff.max.ms: "500"}}
"#,
        tansu.brokers()
    ))
    .await;
    let ts = now_ms();
    let delivered = "promrelay_target_delivered_samples_total{task=\"stream\",target=\"tansu\"}";
    let (before, _) = round("restart_test", 0, 20, ts);
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&before)).await;
    assert_eq!(r.status, 204);
    relay
        .wait_metric(delivered, "the first round delivered", |v| v == 20.0)
        .await;

    // The broker dies (with its in-memory log: the first round is gone with it, the relay's
    // part was done). What the relay takes now must survive the outage.
    tansu.kill();
    let mut want = BTreeSet::new();
    for n in 1..=5 {
        let (req, w) = round("restart_test", n, 20, ts + n as i64);
        let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        assert_eq!(r.status, 204, "{}", r.text());
        want.extend(w);
    }
    // Longer than message.timeout.ms: librdkafka gives up on its own, promrelay retries.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    tansu.start_again();
    tansu.create_topic("restart", 1);
    for n in 6..=8 {
        let (req, w) = round("restart_test", n, 20, ts + n as i64);
        let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        assert_eq!(r.status, 204, "{}", r.text());
        want.extend(w);
    }
    relay
        .wait_metric(delivered, "every round delivered after the restart", |v| {
            v >= 20.0 + want.len() as f64
        })
        .await;
    let lines = tansu.read_with_python("restart", want.len());
    let got: BTreeSet<Row> = lines.iter().map(|l| row(&l["sample"])).collect();
    assert_eq!(got, want);
    assert_eq!(
        relay
            .metric("promrelay_target_dropped_samples_total{task=\"stream\",target=\"tansu\",reason=\"refused\"}")
            .await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_kafka_target_survives_kill_9_of_the_relay_while_the_broker_is_down() {
    let mut tansu = Tansu::start().await;
    tansu.create_topic("spooled", 2);
    let mut relay = Relay::start(&format!(
        r#"
tasks:
  - name: stream
    targets:
      - name: tansu
        type: kafka
        brokers: {}
        topic: spooled
        queue: {{shards: 2, batch_send_deadline: 100ms, min_backoff: 100ms, max_backoff: 1s}}
        options: {{message.timeout.ms: "3000", reconnect.backoff.max.ms: "500"}}
        spool: {{dir: "{{dir}}/spool"}}
"#,
        tansu.brokers()
    ))
    .await;
    let ts = now_ms();
    tansu.kill();
    let mut want = BTreeSet::new();
    for n in 0..6 {
        let (req, w) = round("spooled_test", n, 30, ts + n as i64);
        let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        assert_eq!(r.status, 204, "{}", r.text());
        want.extend(w);
    }
    // Answered 204 under `ack: spooled` (the default with a spool): on disk. Kill the relay.
    relay.kill9_and_restart().await;
    tansu.start_again();
    tansu.create_topic("spooled", 2);
    let lines = tansu.read_with_python("spooled", want.len());
    let got: BTreeSet<Row> = lines.iter().map(|l| row(&l["sample"])).collect();
    assert_eq!(got, want);
}
