//! Remote-write 2.0 `start_timestamp`s through the relay: carried to a 2.0 target (float
//! samples' and native histograms'), dropped toward a 1.0 target (which has no field for them:
//! cut from the histograms, not sent) and counted there.
//!
//! Both receivers are the tests' own ([`test_receiver`]) decoding with prost reference types:
//! no real 2.0 receiver can be installed here, and a 1.0 receiver would drop an unknown field
//! without a trace, so it could not show that none was sent.

mod common;

use common::*;
use promrelay::proto::v2::{Histogram, Request, Sample, TimeSeries};
use prost::Message;
use std::time::Duration;

/// A 1.0 request read with the 2.0 histogram type, which knows `start_timestamp` (field 17):
/// the layouts agree otherwise, so a 17 sent to a 1.0 target would show here.
#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest1 {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries1>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeries1 {
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    histograms: Vec<Histogram>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_timestamps_reach_2_0_targets_and_are_counted_toward_1_0_targets() {
    let (v1_url, v1_seen, _a) = test_receiver(204).await;
    let (v2_url, v2_seen, _b) = test_receiver(204).await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: t
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
    let t = now_ms() - 10_000;
    let symbols: Vec<String> = ["", "__name__", "c_total", "h_seconds", "job", "x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let samples = vec![
        Sample {
            value: 1.0,
            timestamp: t,
            start_timestamp: t - 60_000,
        },
        Sample {
            value: 2.0,
            timestamp: t + 1,
            start_timestamp: 0,
        },
        Sample {
            value: 3.0,
            timestamp: t + 2,
            start_timestamp: t - 1,
        },
    ];
    let histogram = Histogram {
        count_int: 2,
        sum: 3.0,
        schema: 0,
        timestamp: t,
        start_timestamp: t - 30_000,
        ..Default::default()
    };
    let req = Request {
        symbols,
        timeseries: vec![
            TimeSeries {
                labels_refs: vec![1, 2, 4, 5],
                samples: samples.clone(),
                ..Default::default()
            },
            TimeSeries {
                labels_refs: vec![1, 3, 4, 5],
                histograms: vec![histogram.clone()],
                ..Default::default()
            },
        ],
    };
    let r = remote_write_v2(&relay.write_url(), &req).await;
    assert_eq!(r.status, 204, "{}", r.text());

    let unsnappy = |b: &[u8]| snap::raw::Decoder::new().decompress_vec(b).unwrap();
    // 2.0: every start timestamp as sent.
    let got = eventually(
        Duration::from_secs(30),
        "both series at the 2.0 target",
        || async {
            let mut s = Vec::new();
            let mut h = Vec::new();
            for r in v2_seen.lock().unwrap().iter() {
                let req = Request::decode(&unsnappy(&r.body)[..]).unwrap();
                for ts in req.timeseries {
                    s.extend(ts.samples);
                    h.extend(ts.histograms);
                }
            }
            if s.len() == 3 && h.len() == 1 {
                Ok((s, h))
            } else {
                Err(format!("{s:?} {h:?}"))
            }
        },
    )
    .await;
    assert_eq!(got.0, samples);
    assert_eq!(got.1, vec![histogram.clone()]);

    // 1.0: the same samples and histogram without any start timestamp.
    let got = eventually(
        Duration::from_secs(30),
        "both series at the 1.0 target",
        || async {
            let mut s = Vec::new();
            let mut h = Vec::new();
            for r in v1_seen.lock().unwrap().iter() {
                let req = WriteRequest1::decode(&unsnappy(&r.body)[..]).unwrap();
                for ts in req.timeseries {
                    s.extend(ts.samples);
                    h.extend(ts.histograms);
                }
            }
            if s.len() == 3 && h.len() == 1 {
                Ok((s, h))
            } else {
                Err(format!("{s:?} {h:?}"))
            }
        },
    )
    .await;
    let without = |s: &Sample| Sample {
        start_timestamp: 0,
        ..s.clone()
    };
    assert_eq!(got.0, samples.iter().map(without).collect::<Vec<_>>());
    assert_eq!(
        got.1,
        vec![Histogram {
            start_timestamp: 0,
            ..histogram
        }]
    );
    // Two float samples' and the histogram's.
    relay
        .wait_metric(
            "promrelay_target_start_timestamps_dropped_total{task=\"t\",target=\"v1\",reason=\"unsupported_by_format\"}",
            "start timestamps counted toward the 1.0 target",
            |v| v == 3.0,
        )
        .await;
    assert_eq!(
        relay
            .metric("promrelay_target_start_timestamps_dropped_total{task=\"t\",target=\"v2\",reason=\"unsupported_by_format\"}")
            .await,
        Some(0.0)
    );
}
