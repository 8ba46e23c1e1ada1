//! Metadata through the relay: a real Prometheus 2.42 sender with `metadata_config` →
//! promrelay → remote-write targets, and metadata from 2.0 senders (per series) to 1.0
//! targets (metadata requests) and 2.0 targets (per series).
//!
//! The receiver is the test's own ([`test_receiver`]), decoding with the prost reference
//! types: Prometheus' own remote-write receiver does not store remote-written metadata (its
//! `/api/v1/metadata` only shows what it scraped), so it cannot be the judge here. The truth
//! for the sender's metadata is the sender itself: its `/api/v1/metadata` API.

mod common;

use common::*;
use promrelay::proto::{self, MetricMetadata, WriteRequest, v2};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The 1.0 requests a test receiver got, decoded.
fn requests_v1(received: &[Received]) -> Vec<WriteRequest> {
    received
        .iter()
        .map(|r| {
            assert_eq!(r.content_type, "application/x-protobuf");
            let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
            WriteRequest::decode(&raw[..]).unwrap()
        })
        .collect()
}

/// Every metadata entry received, after checking that each request carrying metadata
/// carries nothing else (Prometheus sends metadata in requests of their own).
fn metadata_v1(received: &[Received]) -> Vec<MetricMetadata> {
    let mut out = Vec::new();
    for req in requests_v1(received) {
        if !req.metadata.is_empty() {
            assert!(
                req.timeseries.is_empty(),
                "metadata and series in one request"
            );
            out.extend(req.metadata);
        }
    }
    out
}

/// The `type` strings of Prometheus' metadata API by `MetricType` number.
fn type_name(t: i32) -> &'static str {
    match t {
        1 => "counter",
        2 => "gauge",
        3 => "histogram",
        4 => "gaugehistogram",
        5 => "summary",
        6 => "info",
        7 => "stateset",
        _ => "unknown",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_senders_metadata_arrives_at_a_remote_write_target() {
    let (url, seen, _server) = test_receiver(204).await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: all
    targets:
      - name: rw
        type: remote_write
        url: {url}
        queue: {{batch_send_deadline: 100ms}}
"#
    ))
    .await;
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs: [{{targets: [\"127.0.0.1:{{port}}\"]}}]\nremote_write:\n  - url: {}\n    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}\n    metadata_config: {{send: true, send_interval: 1s}}\n",
        relay.write_url()
    );
    let sender = Prometheus::start(&config, false).await;
    let families = [
        "prometheus_build_info",
        "go_goroutines",
        "prometheus_http_requests_total",
    ];
    let got = eventually(
        Duration::from_secs(60),
        "the sender's metadata at the receiver",
        || async {
            let got = metadata_v1(&seen.lock().unwrap());
            let names: BTreeSet<&str> = got.iter().map(|m| m.metric_family_name.as_str()).collect();
            match families.iter().all(|f| names.contains(f)) {
                true => Ok(got),
                false => Err(format!("{} entries, families {names:?}", got.len())),
            }
        },
    )
    .await;
    // Each entry as the sender itself reports it.
    let api = get(&format!("{}/api/v1/metadata", sender.base()))
        .await
        .unwrap();
    let api: serde_json::Value = serde_json::from_str(&api.text()).unwrap();
    let mut checked = 0;
    for m in &got {
        let Some(known) = api["data"][&m.metric_family_name].as_array() else {
            continue; // a family the sender has stopped exposing since
        };
        let want: Vec<(String, String, String)> = known
            .iter()
            .map(|k| {
                let s = |f: &str| k[f].as_str().unwrap_or_default().to_owned();
                (s("type"), s("help"), s("unit"))
            })
            .collect();
        let have = (
            type_name(m.r#type).to_owned(),
            m.help.clone(),
            m.unit.clone(),
        );
        assert!(
            want.contains(&have),
            "{m:?} is not in the sender's {want:?}"
        );
        checked += 1;
    }
    assert!(checked >= families.len(), "only {checked} entries checked");
    let forwarded = "promrelay_target_metadata_forwarded_total{task=\"all\",target=\"rw\"}";
    relay
        .wait_metric(forwarded, "metadata forwarded", |v| v > 0.0)
        .await;
    relay
        .wait_metric(
            "promrelay_received_metadata_total{source=\"default\"}",
            "metadata received",
            |v| v > 0.0,
        )
        .await;
}

fn metadata(name: &str, kind: i32, help: &str, unit: &str) -> MetricMetadata {
    MetricMetadata {
        r#type: kind,
        metric_family_name: name.into(),
        help: help.into(),
        unit: unit.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_filtered_task_forwards_only_the_metadata_of_its_families() {
    let (filtered_url, filtered, _a) = test_receiver(204).await;
    let (all_url, all, _b) = test_receiver(204).await;
    let dir = TempDir::new("metadata-file");
    let file = dir.path().join("out.jsonl");
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: some
    filter:
      - __name__=alpha_total|gamma_seconds
      - job=never-matches-a-family
    targets:
      - name: rw
        type: remote_write
        url: {filtered_url}
        queue: {{batch_send_deadline: 100ms}}
  - name: all
    targets:
      - name: rw
        type: remote_write
        url: {all_url}
        queue: {{batch_send_deadline: 100ms}}
      - name: json
        type: file
        path: {}
"#,
        file.display()
    ))
    .await;
    let sent = vec![
        metadata("alpha_total", 1, "Alphas.", ""),
        metadata("beta", 2, "Betas.", "bytes"),
        metadata("gamma_seconds", 3, "Gammas.", "seconds"),
    ];
    let req = WriteRequest {
        timeseries: vec![],
        metadata: sent.clone(),
    };
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    // One request's entries travel in one batch: once any arrived, all of them have.
    let got = eventually(Duration::from_secs(30), "metadata at both", || async {
        let (f, a) = (
            metadata_v1(&filtered.lock().unwrap()),
            metadata_v1(&all.lock().unwrap()),
        );
        match (f.is_empty(), a.is_empty()) {
            (false, false) => Ok((f, a)),
            _ => Err(format!("{} and {} entries", f.len(), a.len())),
        }
    })
    .await;
    assert_eq!(got.0, vec![sent[0].clone(), sent[2].clone()]);
    assert_eq!(got.1, sent);
    relay
        .wait_metric(
            "promrelay_target_metadata_dropped_total{task=\"all\",target=\"json\",reason=\"unsupported_by_format\"}",
            "metadata counted as unsupported by the file target",
            |v| v == 3.0,
        )
        .await;
    relay
        .wait_metric(
            "promrelay_target_metadata_forwarded_total{task=\"some\",target=\"rw\"}",
            "metadata forwarded",
            |v| v == 2.0,
        )
        .await;
}

/// Labels of `names` as 2.0 refs, interning into `symbols`.
fn refs(symbols: &mut Vec<String>, labels: &[(&str, &str)]) -> Vec<u32> {
    let mut sym = |s: &str| match symbols.iter().position(|x| x == s) {
        Some(i) => i as u32,
        None => {
            symbols.push(s.to_owned());
            symbols.len() as u32 - 1
        }
    };
    labels.iter().flat_map(|(n, v)| [sym(n), sym(v)]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_from_a_2_0_sender_reaches_1_0_targets_as_requests_and_2_0_targets_per_series() {
    let (v1_url, v1_seen, _a) = test_receiver(204).await;
    let (v2_url, v2_seen, _b) = test_receiver(204).await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: both
    targets:
      - name: v1
        type: remote_write
        url: {v1_url}
        queue: {{batch_send_deadline: 100ms}}
      - name: v2
        type: remote_write
        url: {v2_url}
        protobuf_message: io.prometheus.write.v2.Request
        queue: {{batch_send_deadline: 100ms}}
"#
    ))
    .await;
    let t = now_ms() - 5_000;
    let mut symbols = vec![String::new()];
    let help = |s: &mut Vec<String>, h: &str| refs(s, &[(h, "")])[0];
    let hist_help = help(&mut symbols, "Request latency.");
    let seconds = help(&mut symbols, "seconds");
    let count_help = help(&mut symbols, "Requests.");
    let series = |symbols: &mut Vec<String>, name: &str, le: Option<&str>, m: v2::Metadata| {
        let mut labels = vec![("__name__", name), ("job", "api")];
        if let Some(le) = le {
            labels.push(("le", le));
        }
        v2::TimeSeries {
            labels_refs: refs(symbols, &labels),
            samples: vec![v2::Sample {
                value: 1.0,
                timestamp: t,
                start_timestamp: 0,
            }],
            metadata: Some(m),
            ..Default::default()
        }
    };
    let hist = v2::Metadata {
        r#type: 3,
        help_ref: hist_help,
        unit_ref: seconds,
    };
    let counter = v2::Metadata {
        r#type: 1,
        help_ref: count_help,
        unit_ref: 0,
    };
    let timeseries = vec![
        series(
            &mut symbols,
            "latency_seconds_bucket",
            Some("0.5"),
            hist.clone(),
        ),
        series(
            &mut symbols,
            "latency_seconds_bucket",
            Some("+Inf"),
            hist.clone(),
        ),
        series(&mut symbols, "latency_seconds_sum", None, hist.clone()),
        series(&mut symbols, "latency_seconds_count", None, hist.clone()),
        series(&mut symbols, "requests_total", None, counter.clone()),
    ];
    let req = v2::Request {
        symbols: symbols.clone(),
        timeseries: timeseries.clone(),
    };
    let r = remote_write_v2(&relay.write_url(), &req).await;
    assert_eq!(r.status, 204, "{}", r.text());

    // 1.0: one entry per family, in a request of its own, the suffixes of a classic
    // histogram's series removed.
    let got = eventually(
        Duration::from_secs(30),
        "metadata at the 1.0 target",
        || async {
            let m = metadata_v1(&v1_seen.lock().unwrap());
            if m.is_empty() {
                Err("none yet".to_string())
            } else {
                Ok(m)
            }
        },
    )
    .await;
    assert_eq!(
        got,
        vec![
            metadata("latency_seconds", 3, "Request latency.", "seconds"),
            metadata("requests_total", 1, "Requests.", ""),
        ]
    );

    // 2.0: each series with its own metadata, refs into the request's symbols.
    let per_series = eventually(
        Duration::from_secs(30),
        "series at the 2.0 target",
        || async {
            let mut out = BTreeMap::new();
            for r in v2_seen.lock().unwrap().iter() {
                assert_eq!(r.content_type, v2::CONTENT_TYPE);
                let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
                let req = v2::Request::decode(&raw[..]).unwrap();
                let s = |i: u32| req.symbols[i as usize].clone();
                for ts in &req.timeseries {
                    let labels: Vec<(String, String)> = ts
                        .labels_refs
                        .chunks(2)
                        .map(|p| (s(p[0]), s(p[1])))
                        .collect();
                    let m = ts
                        .metadata
                        .as_ref()
                        .map(|m| (m.r#type, s(m.help_ref), s(m.unit_ref)));
                    out.insert(labels, m);
                }
            }
            if out.len() == timeseries.len() {
                Ok(out)
            } else {
                Err(format!("{out:?}"))
            }
        },
    )
    .await;
    for ts in &timeseries {
        let labels: Vec<(String, String)> = ts
            .labels_refs
            .chunks(2)
            .map(|p| {
                (
                    symbols[p[0] as usize].clone(),
                    symbols[p[1] as usize].clone(),
                )
            })
            .collect();
        let m = ts.metadata.as_ref().unwrap();
        let want = (
            m.r#type,
            symbols[m.help_ref as usize].clone(),
            symbols[m.unit_ref as usize].clone(),
        );
        let mut sorted = labels.clone();
        sorted.sort();
        assert_eq!(per_series.get(&sorted), Some(&Some(want)), "{labels:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_that_came_alone_rides_with_its_familys_later_series_to_a_2_0_target() {
    let (url, seen, _server) = test_receiver(204).await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: t
    targets:
      - name: v2
        type: remote_write
        url: {url}
        protobuf_message: io.prometheus.write.v2.Request
        queue: {{batch_send_deadline: 100ms}}
"#
    ))
    .await;
    // As Prometheus sends it: metadata in a request of its own, series in others.
    let req = WriteRequest {
        timeseries: vec![],
        metadata: vec![
            metadata("temperature", 2, "Temperature.", "celsius"),
            metadata("latency_seconds", 3, "Latency.", "seconds"),
        ],
    };
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(
        seen.lock().unwrap().is_empty(),
        "metadata alone is not sent"
    );
    let series = |name: &str| proto::TimeSeries {
        labels: vec![
            proto::Label::new("__name__", name),
            proto::Label::new("job", "j"),
        ],
        samples: vec![proto::Sample {
            value: 1.0,
            timestamp: 1_700_000_000_000,
        }],
        ..Default::default()
    };
    let req = WriteRequest {
        timeseries: vec![
            series("temperature"),
            series("latency_seconds_bucket"),
            series("latency_seconds_sum"),
            series("unknown_family"),
        ],
        metadata: vec![],
    };
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let got = eventually(
        Duration::from_secs(30),
        "series at the 2.0 target",
        || async {
            let mut out = BTreeMap::new();
            for r in seen.lock().unwrap().iter() {
                let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
                let req = v2::Request::decode(&raw[..]).unwrap();
                let s = |i: u32| req.symbols[i as usize].clone();
                for ts in &req.timeseries {
                    let name = s(ts.labels_refs[1]);
                    let m = ts
                        .metadata
                        .as_ref()
                        .map(|m| (m.r#type, s(m.help_ref), s(m.unit_ref)));
                    out.insert(name, m);
                }
            }
            if out.len() == 4 {
                Ok(out)
            } else {
                Err(format!("{out:?}"))
            }
        },
    )
    .await;
    let m = |kind: i32, help: &str, unit: &str| Some((kind, help.to_owned(), unit.to_owned()));
    // MetricType numbers: 2 gauge, 3 histogram (the same in 1.0 and 2.0).
    assert_eq!(got["temperature"], m(2, "Temperature.", "celsius"));
    assert_eq!(got["latency_seconds_bucket"], m(3, "Latency.", "seconds"));
    assert_eq!(got["latency_seconds_sum"], m(3, "Latency.", "seconds"));
    assert_eq!(got["unknown_family"], None);
    let dropped = relay
        .metric("promrelay_target_metadata_dropped_total{task=\"t\",target=\"v2\",reason=\"without_series\"}")
        .await
        .unwrap_or(0.0);
    assert_eq!(dropped, 0.0, "kept for the family, not dropped");
}
