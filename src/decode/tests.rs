use super::*;
use crate::proto::{self, Exemplar, Histogram, Label, MetricMetadata, TimeSeries, WriteRequest};
use crate::tools::workload::{Rng, WorkloadSpec};
use prost::Message;

/// Labels and (value bits, timestamp) per series: comparable across decoders, NaN included.
type Owned = Vec<(Vec<(String, String)>, Vec<(u64, i64)>)>;

/// The owned view of a batch, comparable with a prost `WriteRequest`.
fn owned(batch: &SeriesBatch) -> Owned {
    batch
        .iter()
        .map(|s| {
            let labels = s
                .labels()
                .map(|(n, v)| {
                    (
                        String::from_utf8(n.to_vec()).unwrap(),
                        String::from_utf8(v.to_vec()).unwrap(),
                    )
                })
                .collect();
            let samples = s
                .samples()
                .iter()
                .map(|x| (x.value.to_bits(), x.timestamp))
                .collect();
            (labels, samples)
        })
        .collect()
}

fn reference(req: &WriteRequest) -> Owned {
    req.timeseries
        .iter()
        .map(|ts| {
            let mut labels: Vec<_> = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            labels.sort();
            let samples = ts
                .samples
                .iter()
                .map(|s| (s.value.to_bits(), s.timestamp))
                .collect();
            (labels, samples)
        })
        .collect()
}

fn random_request(rng: &mut Rng) -> WriteRequest {
    let mut timeseries = Vec::new();
    for _ in 0..rng.below(20) {
        let mut names: Vec<String> = (0..1 + rng.below(8))
            .map(|i| format!("l{i}_{}", rng.below(1000)))
            .collect();
        names.sort();
        names.dedup();
        let mut labels: Vec<Label> = names
            .iter()
            .map(|n| Label::new(n, &"ü\"x".repeat(rng.below(4) as usize)))
            .collect();
        if rng.chance(3) {
            labels.reverse(); // unsorted on the wire: the decoder must sort
        }
        let samples = (0..rng.below(5))
            .map(|_| proto::Sample {
                value: f64::from_bits(rng.next_u64()),
                timestamp: rng.next_u64() as i64,
            })
            .collect();
        timeseries.push(TimeSeries {
            labels,
            samples,
            ..Default::default()
        });
    }
    WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
}

#[test]
fn random_requests_decode_like_prost() {
    let mut rng = Rng::new(7);
    let mut batch = SeriesBatch::new();
    for _ in 0..500 {
        let req = random_request(&mut rng);
        let body = proto::encode_snappy(&req);
        batch.decode_snappy(&body, DecodeLimits::default()).unwrap();
        assert_eq!(owned(&batch), reference(&req));
    }
}

#[test]
fn realistic_workload_decodes_like_prost() {
    let req = WorkloadSpec::default().request(3);
    let mut batch = SeriesBatch::new();
    batch
        .decode_snappy(&proto::encode_snappy(&req), DecodeLimits::default())
        .unwrap();
    assert_eq!(batch.len(), 2000);
    assert_eq!(owned(&batch), reference(&req));
}

#[test]
fn stale_marker_nan_keeps_its_bits() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label::new("__name__", "up")],
            samples: vec![proto::Sample {
                value: stale,
                timestamp: 5,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let mut batch = SeriesBatch::new();
    batch.decode_protobuf(&req.encode_to_vec()).unwrap();
    assert_eq!(
        batch.series(0).samples()[0].value.to_bits(),
        0x7ff0_0000_0000_0002
    );
}

#[test]
fn exemplars_and_histograms_are_kept_raw_and_metadata_counted() {
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label::new("__name__", "h")],
            samples: vec![],
            exemplars: vec![Exemplar {
                labels: vec![Label::new("trace_id", "abc")],
                value: 1.0,
                timestamp: 2,
            }],
            histograms: vec![Histogram {
                count_int: 3,
                sum: 4.5,
                schema: 1,
                timestamp: 6,
            }],
        }],
        metadata: vec![MetricMetadata {
            r#type: 1,
            metric_family_name: "h".into(),
            help: "help".into(),
            unit: String::new(),
        }],
    };
    let mut batch = SeriesBatch::new();
    batch.decode_protobuf(&req.encode_to_vec()).unwrap();
    assert_eq!(batch.metadata_count(), 1);
    let s = batch.series(0);
    assert_eq!(s.histogram_count(), 1);
    // The raw extras re-assembled with the labels are the original series.
    let mut rebuilt = Vec::new();
    for e in s.extras() {
        rebuilt.extend_from_slice(e);
    }
    let ts = TimeSeries::decode(&rebuilt[..]).unwrap();
    assert_eq!(ts.exemplars, req.timeseries[0].exemplars);
    assert_eq!(ts.histograms, req.timeseries[0].histograms);
}

fn one_series(labels: Vec<Label>) -> Vec<u8> {
    WriteRequest {
        timeseries: vec![TimeSeries {
            labels,
            samples: vec![proto::Sample {
                value: 1.0,
                timestamp: 1,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    }
    .encode_to_vec()
}

#[test]
fn refuses_bad_label_sets() {
    let cases: &[(&str, Vec<Label>, &str)] = &[
        ("no labels", vec![], "no labels"),
        ("empty name", vec![Label::new("", "x")], "empty label name"),
        (
            "duplicate",
            vec![Label::new("a", "1"), Label::new("a", "2")],
            "duplicate label name \"a\"",
        ),
        (
            "duplicate unsorted",
            vec![
                Label::new("b", "1"),
                Label::new("a", "2"),
                Label::new("b", "3"),
            ],
            "duplicate label name \"b\"",
        ),
    ];
    let mut batch = SeriesBatch::new();
    for (case, labels, want) in cases {
        let err = batch
            .decode_protobuf(&one_series(labels.clone()))
            .unwrap_err();
        assert!(err.to_string().contains(want), "{case}: {err}");
        assert_eq!(err.status(), 400, "{case}");
        assert!(batch.is_empty(), "{case}: batch must be cleared on error");
    }
}

#[test]
fn refuses_invalid_utf8() {
    // A label message whose value is 0xff: hand-built because prost refuses to encode it.
    let label = [0x0a, 0x01, b'a', 0x12, 0x01, 0xff];
    let mut series = vec![0x0a, label.len() as u8];
    series.extend_from_slice(&label);
    let mut req = vec![0x0a, series.len() as u8];
    req.extend_from_slice(&series);
    let err = SeriesBatch::new().decode_protobuf(&req).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn a_known_field_with_the_wrong_wire_type_is_refused_not_skipped() {
    // Found by the 10,000-malformed-bodies test: a bit flip turned a series' label field (1,
    // length-delimited) into field 1 with a 64-bit wire type; skipping it as unknown would
    // have taken the body. prost refuses it, and so must we, at every level.
    let label = [0x0a, 0x01, b'a', 0x12, 0x01, b'b'];
    let good_series = [&[0x0a, label.len() as u8][..], &label[..]].concat();
    let wrap = |field_bytes: &[u8]| {
        let series = [&good_series[..], field_bytes].concat();
        [&[0x0a, series.len() as u8][..], &series[..]].concat()
    };
    let cases: &[(&str, Vec<u8>)] = &[
        ("series label as i64", wrap(&[0x09, 0, 0, 0, 0, 0, 0, 0, 0])),
        ("series samples as varint", wrap(&[0x10, 0x01])),
        (
            "request timeseries as varint",
            [&wrap(&[])[..], &[0x08, 0x01][..]].concat(),
        ),
        (
            "sample timestamp as i64",
            wrap(&[0x12, 0x09, 0x11, 0, 0, 0, 0, 0, 0, 0, 0]),
        ),
        ("label value as varint", {
            let label = [0x0a, 0x01, b'a', 0x10, 0x01];
            let series = [&[0x0a, label.len() as u8][..], &label[..]].concat();
            [&[0x0a, series.len() as u8][..], &series[..]].concat()
        }),
    ];
    let mut batch = SeriesBatch::new();
    assert!(
        batch.decode_protobuf(&wrap(&[])).is_ok(),
        "the base case is valid"
    );
    // An unknown field number of any wire type is still skipped.
    assert!(
        batch
            .decode_protobuf(&wrap(&[0x79, 0, 0, 0, 0, 0, 0, 0, 0]))
            .is_ok()
    );
    for (case, body) in cases {
        let err = batch.decode_protobuf(body).unwrap_err();
        assert!(err.to_string().contains("wrong wire type"), "{case}: {err}");
        assert!(
            WriteRequest::decode(&body[..]).is_err(),
            "{case}: prost accepts it"
        );
    }
}

#[test]
fn a_snappy_header_claiming_more_than_the_body_can_hold_is_refused_before_allocating() {
    // Found by the malformed-bodies test: 600 bytes of junk declaring 200 MiB made a shard
    // allocate (and keep) 200 MiB. 64/3 is snappy's densest expansion.
    let mut body = vec![0x80, 0x80, 0x80, 0x64]; // varint 200 MiB
    body.extend_from_slice(&[0u8; 600]);
    let mut batch = SeriesBatch::new();
    let err = batch
        .decode_snappy(&body, DecodeLimits::default())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("more than a 604-byte body can hold"),
        "{err}"
    );
    assert_eq!(err.status(), 400);
    assert!(
        batch.buf.capacity() < 1 << 20,
        "allocated {}",
        batch.buf.capacity()
    );
    // The densest real body is still taken: 1 MiB of zeros compresses ~21x.
    let raw = vec![0u8; 1 << 20];
    let dense = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    assert!(dense.len() * 20 < raw.len(), "{}", dense.len());
    let declared = snap::raw::decompress_len(&dense).unwrap();
    assert!(declared <= dense.len() * 64 / 3 + 64);
}

#[test]
fn snappy_header_over_limit_is_refused_before_decompressing() {
    let req = WorkloadSpec::default().request(0);
    let body = proto::encode_snappy(&req);
    let err = SeriesBatch::new()
        .decode_snappy(
            &body,
            DecodeLimits {
                max_decoded_bytes: 1000,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, DecodeError::TooLarge { limit: 1000, .. }),
        "{err}"
    );
    assert_eq!(err.status(), 413);
    // A snappy length bomb: header declares 4 GiB, body is 5 bytes.
    let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let err = SeriesBatch::new()
        .decode_snappy(&bomb, DecodeLimits::default())
        .unwrap_err();
    assert_eq!(err.status(), 413, "{err}");
}

#[test]
fn truncated_and_corrupted_bodies_error_and_the_batch_stays_reusable() {
    let req = WorkloadSpec {
        series: 50,
        ..Default::default()
    }
    .request(0);
    let raw = req.encode_to_vec();
    let mut batch = SeriesBatch::new();
    let mut rng = Rng::new(99);
    let mut errors = 0;
    for cut in 1..raw.len() {
        if batch.decode_protobuf(&raw[..cut]).is_err() {
            errors += 1;
        }
    }
    // Cutting at a series boundary leaves a valid shorter request; every other cut must fail.
    assert!(errors > raw.len() * 9 / 10, "{errors} of {}", raw.len());
    for _ in 0..2000 {
        let mut bad = raw.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(bad.len() as u64) as usize;
            bad[i] ^= 1 << rng.below(8);
        }
        let _ = batch.decode_protobuf(&bad); // must not panic
        let _ = batch.decode_snappy(&bad, DecodeLimits::default());
    }
    batch.decode_protobuf(&raw).unwrap();
    assert_eq!(owned(&batch), reference(&req));
    assert!(
        SeriesBatch::new()
            .decode_snappy(b"not snappy at all", DecodeLimits::default())
            .is_err()
    );
}

#[test]
fn hash_depends_on_labels_only_and_separates_boundaries() {
    let mut a = SeriesHasher::new();
    a.write(b"ab");
    a.write(b"c");
    let mut b = SeriesHasher::new();
    b.write(b"a");
    b.write(b"bc");
    assert_ne!(a.finish(), b.finish());
    let r1 = one_series(vec![Label::new("a", "1"), Label::new("b", "2")]);
    let r2 = one_series(vec![Label::new("b", "2"), Label::new("a", "1")]);
    let mut x = SeriesBatch::new();
    x.decode_protobuf(&r1).unwrap();
    let h1 = x.series(0).hash();
    x.decode_protobuf(&r2).unwrap();
    assert_eq!(h1, x.series(0).hash());
}

#[test]
fn input_limits_refuse_with_the_setting_named() {
    let limits = DecodeLimits {
        max_series_per_request: 2,
        max_labels_per_series: 3,
        max_label_name_bytes: 8,
        max_label_value_bytes: 10,
        ..Default::default()
    };
    let ok = || vec![Label::new("__name__", "up")];
    // (case, the series' label sets, the setting that refuses it)
    type Case = (&'static str, Vec<Vec<Label>>, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (
            "within every limit",
            vec![
                ok(),
                vec![
                    Label::new("a", "1234567890"),
                    Label::new("b", ""),
                    Label::new("abcdefgh", "x"),
                ],
            ],
            None,
        ),
        (
            "too many series",
            vec![ok(), ok(), ok()],
            Some("max_series_per_request"),
        ),
        (
            "too many labels",
            vec![vec![
                Label::new("a", "1"),
                Label::new("b", "2"),
                Label::new("c", "3"),
                Label::new("d", "4"),
            ]],
            Some("max_labels_per_series"),
        ),
        (
            "name too long",
            vec![vec![Label::new("abcdefghi", "x")]],
            Some("max_label_name_bytes"),
        ),
        (
            "value too long",
            vec![vec![Label::new("a", "12345678901")]],
            Some("max_label_value_bytes"),
        ),
    ];
    let mut batch = SeriesBatch::new();
    for (case, series, want) in cases {
        let req = WriteRequest {
            timeseries: series
                .into_iter()
                .map(|labels| TimeSeries {
                    labels,
                    ..Default::default()
                })
                .collect(),
            metadata: vec![],
        };
        let got = batch.decode_snappy(&proto::encode_snappy(&req), limits);
        match want {
            None => assert!(got.is_ok(), "{case}: {got:?}"),
            Some(setting) => {
                let err = got.unwrap_err();
                assert_eq!(
                    (err.status(), err.reason()),
                    (400, setting),
                    "{case}: {err}"
                );
                assert!(
                    err.to_string().contains(&format!("server.{setting}")),
                    "{case}: {err}"
                );
            }
        }
    }
}
