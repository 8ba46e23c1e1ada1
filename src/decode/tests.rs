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
fn exemplars_and_histograms_are_kept_raw_and_metadata_read() {
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
    let m = batch.metadata()[0];
    let text = |span: crate::batch::Span| &batch.bytes()[span.range()];
    assert_eq!(
        (m.kind, text(m.family), text(m.help), text(m.unit)),
        (1, &b"h"[..], &b"help"[..], &b""[..])
    );
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
    // A snappy length bomb: header declares 4 GiB, body is 5 bytes. Junk is malformed, not
    // large: 400, even though the claim is also over max_decoded_bytes.
    let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let err = SeriesBatch::new()
        .decode_snappy(&bomb, DecodeLimits::default())
        .unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
    assert!(
        err.to_string().contains("more than a 5-byte body can hold"),
        "{err}"
    );
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

/// The series hash picks a series' send lane, so one series must hash the same whichever path
/// the decoder took: canonical and sorted (the one-pass path), unsorted, with a value of 200
/// bytes (a 2-byte length), a label message with its fields swapped, or a 2.0 body.
#[test]
fn hash_is_the_same_on_every_decode_path() {
    let long = "x".repeat(200);
    let sorted = vec![
        Label::new("__name__", "up"),
        Label::new("job", "node"),
        Label::new("zz", &long),
    ];
    let mut unsorted = sorted.clone();
    unsorted.reverse();
    let hash_of = |labels: Vec<Label>, protocol: Protocol| {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels,
                samples: vec![proto::Sample::default()],
                ..Default::default()
            }],
            metadata: vec![],
        };
        let body = match protocol {
            Protocol::V1 => req.encode_to_vec(),
            Protocol::V2 => crate::proto::v2::from_v1(&req).encode_to_vec(),
        };
        let mut b = SeriesBatch::new();
        b.decode_protobuf_as(&body, protocol).unwrap();
        (b.series(0).hash(), b.series(0).splice().is_some())
    };
    let short: Vec<Label> = sorted[..2].to_vec();
    let (h_short, spliced) = hash_of(short.clone(), Protocol::V1);
    assert!(spliced, "canonical and sorted: the one-pass path");
    let mut reversed = short.clone();
    reversed.reverse();
    assert_eq!(hash_of(reversed, Protocol::V1), (h_short, false));
    assert_eq!(hash_of(short.clone(), Protocol::V2), (h_short, false));
    // Value before name inside the label message: not canonical, same label.
    let mut body = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: short,
            samples: vec![proto::Sample::default()],
            ..Default::default()
        }],
        metadata: vec![],
    }
    .encode_to_vec();
    // `0x0a 0x08 "__name__" 0x12 0x02 "up"` -> `0x12 0x02 "up" 0x0a 0x08 "__name__"`.
    let at = body.windows(4).position(|w| w == b"\x12\x02up").unwrap();
    let name_at = at - 10;
    assert_eq!(&body[name_at..name_at + 2], b"\x0a\x08");
    let swapped: Vec<u8> = [&body[at..at + 4], &body[name_at..at]].concat();
    body.splice(name_at..at + 4, swapped);
    let mut b = SeriesBatch::new();
    b.decode_protobuf(&body).unwrap();
    assert_eq!(b.series(0).label(b"__name__"), Some(&b"up"[..]));
    assert_eq!(
        (b.series(0).hash(), b.series(0).splice().is_some()),
        (h_short, false)
    );

    let (h_long, spliced) = hash_of(sorted.clone(), Protocol::V1);
    assert!(!spliced, "a 2-byte length is not the canonical shape");
    assert_eq!(hash_of(unsorted, Protocol::V1).0, h_long);
    assert_eq!(hash_of(sorted, Protocol::V2).0, h_long);
    assert_ne!(h_long, h_short);
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

// ---- Remote-write 2.0 -------------------------------------------------------------------

mod v2 {
    use super::*;
    use crate::proto::v2::{self as p2, Request};

    /// What the relay must make of a 2.0 request, computed from prost's decoding: the labels
    /// resolved through the symbol table, or the validation error (a substring of ours).
    fn reference_v2(req: &Request) -> Result<(Owned, usize, usize), &'static str> {
        if req.symbols.first().is_some_and(|s| !s.is_empty()) {
            return Err("symbols[0] must be the empty string");
        }
        let sym = |r: u32| req.symbols.get(r as usize).ok_or("out of range");
        let mut out = Vec::new();
        let (mut histograms, mut exemplars) = (0, 0);
        for ts in &req.timeseries {
            let mut labels = Vec::new();
            for pair in ts.labels_refs.chunks(2) {
                let name = sym(pair[0])?;
                let Some(&v) = pair.get(1) else {
                    return Err("odd number of refs");
                };
                labels.push((name.clone(), sym(v)?.clone()));
            }
            for e in &ts.exemplars {
                for &r in &e.labels_refs {
                    sym(r)?;
                }
                if e.labels_refs.len() % 2 != 0 {
                    return Err("odd number of refs");
                }
                if e.timestamp == 0 {
                    return Err("an exemplar has no timestamp");
                }
            }
            if let Some(m) = &ts.metadata {
                sym(m.help_ref)?;
                sym(m.unit_ref)?;
            }
            if !ts.samples.is_empty() && !ts.histograms.is_empty() {
                return Err("has both samples and histograms");
            }
            if labels.is_empty() {
                return Err("no labels");
            }
            labels.sort();
            if labels.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err("duplicate label name");
            }
            if labels.iter().any(|l| l.0.is_empty()) {
                return Err("empty label name");
            }
            histograms += ts.histograms.len();
            exemplars += ts.exemplars.len();
            let samples = ts
                .samples
                .iter()
                .map(|s| (s.value.to_bits(), s.timestamp))
                .collect();
            out.push((labels, samples));
        }
        Ok((out, histograms, exemplars))
    }

    /// A random valid 2.0 request: a shared symbol table, series with samples or histograms,
    /// exemplars, metadata, `start_timestamp`s; then, one time in three, one defect.
    fn random_request_v2(rng: &mut Rng) -> Request {
        let mut symbols = vec![String::new()];
        for i in 0..rng.below(30) {
            symbols.push(format!("s{i}_{}", "ü\"x".repeat(rng.below(3) as usize)));
        }
        let mut timeseries = Vec::new();
        for _ in 0..rng.below(12) {
            let mut names: Vec<u32> = (0..1 + rng.below(6))
                .map(|_| 1 + rng.below(symbols.len() as u64 + 2) as u32)
                .collect();
            names.sort();
            names.dedup();
            let mut labels_refs = Vec::new();
            for n in names {
                let n = n.min(symbols.len() as u32 - 1).max(1);
                if symbols.len() < 2 || labels_refs.chunks(2).any(|p: &[u32]| p[0] == n) {
                    continue;
                }
                labels_refs.push(n);
                labels_refs.push(rng.below(symbols.len() as u64) as u32);
            }
            if labels_refs.is_empty() {
                symbols.push("__name__".into());
                labels_refs.push(symbols.len() as u32 - 1);
                labels_refs.push(0);
            }
            let histogram_series = rng.chance(3);
            let samples = if histogram_series {
                vec![]
            } else {
                (0..rng.below(4))
                    .map(|_| p2::Sample {
                        value: f64::from_bits(rng.next_u64()),
                        timestamp: rng.next_u64() as i64,
                        start_timestamp: if rng.chance(2) { 5 } else { 0 },
                    })
                    .collect()
            };
            let histograms = if histogram_series {
                (0..1 + rng.below(3))
                    .map(|i| p2::Histogram {
                        count_int: rng.below(100),
                        sum: 1.5,
                        schema: 3,
                        zero_threshold: 1e-128,
                        zero_count_int: 1,
                        positive_spans: vec![p2::BucketSpan {
                            offset: -2,
                            length: 2,
                        }],
                        positive_deltas: vec![3, -1],
                        timestamp: 1000 + i as i64,
                        start_timestamp: rng.below(2) as i64,
                        ..Default::default()
                    })
                    .collect()
            } else {
                vec![]
            };
            let exemplars = (0..rng.below(3))
                .map(|_| p2::Exemplar {
                    labels_refs: (0..2 * rng.below(3))
                        .map(|_| rng.below(symbols.len() as u64) as u32)
                        .collect(),
                    value: f64::from_bits(rng.next_u64()),
                    timestamp: 1 + rng.below(1 << 40) as i64,
                })
                .collect();
            let metadata = rng.chance(2).then(|| p2::Metadata {
                r#type: 2,
                help_ref: rng.below(symbols.len() as u64) as u32,
                unit_ref: 0,
            });
            timeseries.push(p2::TimeSeries {
                labels_refs,
                samples,
                histograms,
                exemplars,
                metadata,
            });
        }
        let mut req = Request {
            symbols,
            timeseries,
        };
        if rng.chance(3) {
            let n = req.symbols.len() as u32;
            let last = req.timeseries.len().saturating_sub(1);
            match (rng.below(6), req.timeseries.get_mut(last)) {
                (0, _) => req.symbols.insert(0, "x".into()),
                (1, Some(ts)) => ts.labels_refs.push(1),
                (2, Some(ts)) => *ts.labels_refs.last_mut().unwrap() = n + rng.below(3) as u32,
                (3, Some(ts)) => {
                    ts.samples.push(p2::Sample::default());
                    ts.histograms.push(p2::Histogram::default());
                }
                (4, Some(ts)) => ts.exemplars.push(p2::Exemplar {
                    labels_refs: vec![],
                    value: 1.0,
                    timestamp: 0,
                }),
                (_, Some(ts)) => {
                    ts.metadata = Some(p2::Metadata {
                        r#type: 1,
                        help_ref: n,
                        unit_ref: 0,
                    })
                }
                _ => {}
            }
        }
        req
    }

    /// The histograms and exemplars a batch series passes on, read back from its raw extras
    /// as 1.0 fields: histograms retagged to field 4, exemplars rewritten with `Label`s.
    #[derive(Clone, PartialEq, prost::Message)]
    struct ExtrasAsV1 {
        #[prost(message, repeated, tag = "3")]
        exemplars: Vec<Exemplar>,
        #[prost(message, repeated, tag = "4")]
        histograms: Vec<p2::Histogram>,
    }

    #[test]
    fn random_2_0_requests_decode_like_prost_and_errors_leave_the_batch_reusable() {
        let mut rng = Rng::new(13);
        let mut batch = SeriesBatch::new();
        let (mut ok, mut refused) = (0, 0);
        for i in 0..800 {
            let req = random_request_v2(&mut rng);
            let body = p2::encode_snappy(&req);
            let got = batch.decode_snappy_as(&body, DecodeLimits::default(), Protocol::V2);
            let want = reference_v2(&req);
            match (&got, &want) {
                (Ok(()), Ok((series, histograms, exemplars))) => {
                    ok += 1;
                    assert_eq!(&owned(&batch), series, "request {i}");
                    assert_eq!(batch.histogram_count(), *histograms, "request {i}");
                    assert_eq!(batch.exemplar_count(), *exemplars, "request {i}");
                    for (s, ts) in batch.iter().zip(&req.timeseries) {
                        let mut raw = Vec::new();
                        for e in s.extras() {
                            raw.extend_from_slice(e);
                        }
                        let back = ExtrasAsV1::decode(&raw[..]).unwrap();
                        assert_eq!(back.histograms, ts.histograms, "request {i}");
                        let exemplars: Vec<Exemplar> = ts
                            .exemplars
                            .iter()
                            .map(|e| Exemplar {
                                labels: e
                                    .labels_refs
                                    .chunks(2)
                                    .map(|p| {
                                        Label::new(
                                            &req.symbols[p[0] as usize],
                                            &req.symbols[p[1] as usize],
                                        )
                                    })
                                    .collect(),
                                value: e.value,
                                timestamp: e.timestamp,
                            })
                            .collect();
                        // Compared by value bits: NaN is a valid exemplar value.
                        let key = |es: &[Exemplar]| {
                            es.iter()
                                .map(|e| (e.labels.clone(), e.value.to_bits(), e.timestamp))
                                .collect::<Vec<_>>()
                        };
                        assert_eq!(key(&back.exemplars), key(&exemplars), "request {i}");
                        // Start timestamps: the non-zero ones, by sample index.
                        let starts: Vec<(usize, i64)> = ts
                            .samples
                            .iter()
                            .enumerate()
                            .filter(|(_, x)| x.start_timestamp != 0)
                            .map(|(j, x)| (j, x.start_timestamp))
                            .collect();
                        assert_eq!(s.start_timestamps().collect::<Vec<_>>(), starts);
                        let hist_starts = ts.histograms.iter().any(|h| h.start_timestamp != 0);
                        assert!(!hist_starts || s.may_have_histogram_start_timestamps());
                        // Metadata: type, help and unit through the symbols; the family a
                        // prefix of the name.
                        let text = |span: crate::batch::Span| {
                            std::str::from_utf8(&batch.bytes()[span.range()]).unwrap()
                        };
                        let name = s
                            .label(b"__name__")
                            .map(|n| std::str::from_utf8(n).unwrap());
                        let want = ts.metadata.as_ref().and_then(|m| {
                            let (help, unit) = (
                                req.symbols[m.help_ref as usize].as_str(),
                                req.symbols[m.unit_ref as usize].as_str(),
                            );
                            let says = m.r#type != 0 || !help.is_empty() || !unit.is_empty();
                            (says && name.is_some()).then_some((m.r#type as u32, help, unit))
                        });
                        let got = s.metadata().map(|m| {
                            assert!(name.unwrap().starts_with(text(m.family)), "request {i}");
                            (m.kind, text(m.help), text(m.unit))
                        });
                        assert_eq!(got, want, "request {i}");
                    }
                }
                (Err(e), Err(want)) => {
                    refused += 1;
                    assert!(e.to_string().contains(want), "request {i}: {e} vs {want}");
                    assert_eq!(e.status(), 400);
                    assert!(batch.is_empty(), "cleared after an error");
                }
                _ => panic!("request {i}: relay {got:?}, reference {want:?}: {req:?}"),
            }
        }
        assert!(ok > 300 && refused > 100, "{ok} taken, {refused} refused");
    }

    #[test]
    fn symbols_may_follow_the_series_and_unknown_or_reserved_fields_are_skipped() {
        let req = Request {
            symbols: vec!["".into(), "__name__".into(), "up".into()],
            timeseries: vec![p2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![p2::Sample {
                    value: 1.0,
                    timestamp: 7,
                    start_timestamp: 0,
                }],
                ..Default::default()
            }],
        };
        let raw = req.encode_to_vec();
        // Series first, then symbols; plus a 1.0-numbered field 1 (reserved) and a series
        // field 6 (an older sender's created_timestamp) that must be skipped.
        let split = raw.iter().position(|&b| b == 0x2a).unwrap();
        let (symbols, series) = raw.split_at(split);
        let mut series = series.to_vec();
        series[1] += 2;
        series.extend_from_slice(&[0x30, 0x05]);
        let body = [&series[..], symbols, &[0x0a, 0x00][..]].concat();
        let mut batch = SeriesBatch::new();
        batch.decode_protobuf_as(&body, Protocol::V2).unwrap();
        assert_eq!(
            owned(&batch),
            vec![(
                vec![("__name__".to_string(), "up".to_string())],
                vec![(1f64.to_bits(), 7)]
            )]
        );
    }

    #[test]
    fn a_1_0_body_labelled_2_0_is_refused_not_taken_as_empty() {
        let v1 = crate::tools::workload::WorkloadSpec {
            series: 3,
            ..Default::default()
        }
        .request(0)
        .encode_to_vec();
        let mut batch = SeriesBatch::new();
        let err = batch
            .decode_protobuf_as(&v1, Protocol::V2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("looks like a remote-write 1.0 body"), "{err}");
        // The same batch takes the body as 1.0.
        batch.decode_protobuf_as(&v1, Protocol::V1).unwrap();
        assert_eq!(batch.len(), 3);
    }

    #[test]
    fn unpacked_exemplar_refs_are_taken_as_prost_takes_them() {
        // labels_refs of an exemplar as one varint per field (legal protobuf for a packed
        // repeated field, and prost accepts it): refs 3, 4 ("trace_id", "abc").
        let mut exemplar = vec![0x08, 3, 0x08, 4, 0x11];
        exemplar.extend_from_slice(&2.5f64.to_le_bytes());
        exemplar.extend_from_slice(&[0x18, 9]);
        let req = Request {
            symbols: ["", "__name__", "up", "trace_id", "abc"]
                .map(String::from)
                .to_vec(),
            timeseries: vec![p2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![p2::Sample {
                    value: 1.0,
                    timestamp: 9,
                    start_timestamp: 0,
                }],
                ..Default::default()
            }],
        };
        let mut raw = req.encode_to_vec();
        // Append the exemplar field to the (last) series and fix its length prefix.
        let series_at = raw.iter().rposition(|&b| b == 0x2a).unwrap();
        let field = [&[0x22, exemplar.len() as u8][..], &exemplar[..]].concat();
        raw[series_at + 1] += field.len() as u8;
        raw.extend_from_slice(&field);
        let by_prost = Request::decode(&raw[..]).unwrap();
        assert_eq!(by_prost.timeseries[0].exemplars[0].labels_refs, vec![3, 4]);
        let mut batch = SeriesBatch::new();
        batch.decode_protobuf_as(&raw, Protocol::V2).unwrap();
        let mut extras = Vec::new();
        for e in batch.series(0).extras() {
            extras.extend_from_slice(e);
        }
        let back = ExtrasAsV1::decode(&extras[..]).unwrap();
        assert_eq!(
            back.exemplars,
            vec![Exemplar {
                labels: vec![Label::new("trace_id", "abc")],
                value: 2.5,
                timestamp: 9,
            }]
        );
    }

    #[test]
    fn malformed_2_0_bodies_never_panic_and_what_prost_refuses_is_refused() {
        let mut rng = Rng::new(1313);
        let mut batch = SeriesBatch::new();
        let mut checked = 0;
        for _ in 0..300 {
            let req = random_request_v2(&mut rng);
            let raw = req.encode_to_vec();
            if raw.is_empty() {
                continue;
            }
            for cut in [raw.len() / 3, raw.len() / 2, raw.len() - 1] {
                let _ = batch.decode_protobuf_as(&raw[..cut], Protocol::V2);
            }
            for _ in 0..20 {
                let mut bad = raw.clone();
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(bad.len() as u64) as usize;
                    bad[i] ^= 1 << rng.below(8);
                }
                let ours = batch.decode_protobuf_as(&bad, Protocol::V2);
                let _ = batch.decode_snappy_as(&bad, DecodeLimits::default(), Protocol::V2);
                if let Err(e) = Request::decode(&bad[..]) {
                    checked += 1;
                    assert!(ours.is_err(), "prost refuses ({e}), the relay took {bad:?}");
                }
            }
        }
        assert!(checked > 500, "{checked}");
        // Still reusable.
        let req = Request {
            symbols: vec!["".into(), "a".into()],
            timeseries: vec![p2::TimeSeries {
                labels_refs: vec![1, 1],
                ..Default::default()
            }],
        };
        batch
            .decode_protobuf_as(&req.encode_to_vec(), Protocol::V2)
            .unwrap();
        assert_eq!(batch.len(), 1);
    }
}

/// Label fields in the canonical shape but with an empty name or value (prost never writes
/// those: it leaves an empty string out): the empty name is refused as on the general path,
/// the empty value decodes, is left out by the encoders, and makes the series not copyable.
#[test]
fn empty_names_and_values_in_the_canonical_shape_take_the_general_path() {
    // `__name__="up"`, then the label under test (in order: '_' < 'a').
    let series = |label: &[u8]| {
        let mut ts = vec![0x0a, 0x0e, 0x0a, 0x08];
        ts.extend_from_slice(b"__name__");
        ts.extend_from_slice(&[0x12, 0x02]);
        ts.extend_from_slice(b"up");
        ts.extend_from_slice(&[0x0a, label.len() as u8]);
        ts.extend_from_slice(label);
        let mut body = vec![0x0a, ts.len() as u8];
        body.extend_from_slice(&ts);
        body
    };
    let mut b = SeriesBatch::new();
    let err = b
        .decode_protobuf(&series(&[0x0a, 0x00, 0x12, 0x01, b'x']))
        .unwrap_err();
    assert!(err.to_string().contains("empty label name"), "{err}");
    b.decode_protobuf(&series(&[0x0a, 0x01, b'a', 0x12, 0x00]))
        .unwrap();
    assert_eq!(b.series(0).label(b"a"), Some(&b""[..]));
    assert_eq!(b.series(0).splice(), None);
    // The same series with a value: copyable (so the `None` above is the empty value's).
    b.decode_protobuf(&series(&[0x0a, 0x01, b'a', 0x12, 0x01, b'v']))
        .unwrap();
    assert!(b.series(0).splice().is_some());
}

#[test]
fn label_lookup_finds_every_name_and_nothing_else() {
    // Names sharing first bytes, prefixes of each other, longer than a word, before and after
    // `__name__`: each found with its value, and every near miss not found.
    let names = [
        "A",
        "Ab",
        "__name__",
        "__name__x",
        "_a",
        "i",
        "id",
        "idx",
        "instance",
        "instance_long_name_1",
        "instance_long_name_2",
        "z",
    ];
    let labels = names
        .iter()
        .map(|n| Label {
            name: (*n).into(),
            value: format!("v-{n}"),
        })
        .collect();
    let mut b = SeriesBatch::new();
    b.decode_protobuf(&one_series(labels)).unwrap();
    let s = b.series(0);
    for n in names {
        assert_eq!(
            s.label(n.as_bytes()),
            Some(format!("v-{n}").as_bytes()),
            "{n}"
        );
    }
    for missing in [
        "",
        "0",
        "B",
        "__name_",
        "__name__y",
        "__nam",
        "_",
        "ic",
        "ida",
        "instancf",
        "instance_long_name_",
        "instance_long_name_3",
        "zz",
    ] {
        assert_eq!(s.label(missing.as_bytes()), None, "{missing}");
    }
}

#[test]
fn a_varint_read_from_one_word_is_the_varint_read_byte_by_byte() {
    let mut rng = Rng::new(7);
    for bits in 0..64u32 {
        for _ in 0..50 {
            let v = if bits == 0 {
                0
            } else {
                (rng.next_u64() >> (64 - bits)) | (1 << (bits - 1))
            };
            let mut buf = Vec::new();
            crate::encode::varint::put_varint(&mut buf, v);
            let len = buf.len();
            // Whatever follows the varint must not change it.
            buf.extend_from_slice(&rng.next_u64().to_le_bytes());
            let got = varint_in_word(&buf, 0);
            if len <= 8 {
                assert_eq!(got, Some((v, len)), "{v:#x}");
            } else {
                assert_eq!(got, None, "{v:#x}: longer than a word");
            }
        }
    }
    assert_eq!(varint_in_word(&[0x01, 0x02], 0), None, "fewer than 8 bytes");
}

#[test]
fn the_series_hash_is_the_one_earlier_releases_computed() {
    // A series' send lane (and a Kafka `key: series` group) must not move on an upgrade. The
    // value is what `eb7ac05`'s `hash_ascii` gave for this label set, recomputed outside the
    // crate from that function's definition (words fed to the FxHash-style mix, the last
    // padded and marked with the length, then the finishing avalanche).
    let mut b = SeriesBatch::new();
    let labels = vec![
        Label {
            name: "__name__".into(),
            value: "up".into(),
        },
        Label {
            name: "job".into(),
            value: "node".into(),
        },
    ];
    b.decode_protobuf(&one_series(labels)).unwrap();
    assert_eq!(b.series(0).hash(), 0x1326_9f9c_75d3_7f7e);
}

#[test]
fn a_timestamp_varint_must_end_where_its_sample_ends() {
    // The one-load timestamp reader sees past the sample's end; what it sees there must not
    // complete a varint the sample cut short, nor hide a byte left over after it.
    fn field(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![tag, body.len() as u8];
        f.extend_from_slice(body);
        f
    }
    let label = |n: &[u8], v: &[u8]| field(0x0a, &[field(0x0a, n), field(0x12, v)].concat());
    for tail in [&[0x80][..], &[0x01, 0x05][..]] {
        let mut sample = vec![0x09];
        sample.extend_from_slice(&1.0f64.to_le_bytes());
        sample.push(0x10);
        sample.extend_from_slice(tail);
        // A label after the sample: at least 8 more bytes for the word load to reach into.
        let series = [
            label(b"__name__", b"up"),
            field(0x12, &sample),
            label(b"zz", b"a-later-label"),
        ]
        .concat();
        let body = field(0x0a, &series);
        assert!(prost_decodes_not(&body), "prost refuses it too");
        let mut b = SeriesBatch::new();
        assert!(b.decode_protobuf(&body).is_err(), "tail {tail:02x?} taken");
    }
}

fn prost_decodes_not(body: &[u8]) -> bool {
    WriteRequest::decode(body).is_err()
}

#[test]
fn four_label_sets_hashed_together_hash_as_each_alone() {
    let mut rng = Rng::new(5);
    let bytes: Vec<u8> = (0..400).map(|_| rng.below(256) as u8).collect();
    for _ in 0..2000 {
        // Lengths from 0 to 299: the common words, each set's own rest, and the padded last.
        let sets: [&[u8]; 4] = std::array::from_fn(|_| {
            let a = rng.below(100) as usize;
            &bytes[a..a + rng.below(300) as usize]
        });
        assert_eq!(label_set_hash_x4(sets), sets.map(label_set_hash));
    }
}

#[test]
fn resolved_hashes_are_the_hashes_asked_for_one_by_one() {
    let req = WorkloadSpec {
        series: 103,
        ..Default::default()
    }
    .request(0);
    let body = proto::encode_snappy(&req);
    let mut batch = SeriesBatch::new();
    batch.decode_snappy(&body, DecodeLimits::default()).unwrap();
    // The workload's series take the one-pass path: their hashes are deferred.
    assert!(
        batch
            .series
            .iter()
            .all(|s| s.hash_region.start < s.hash_region.end)
    );
    let one_by_one: Vec<u64> = batch.iter().map(|s| s.hash()).collect();
    // Some, repeated and in an order of their own (as several tasks' pairs come), then all
    // (those already resolved are left alone).
    batch.resolve_hashes([7, 7, 3, 101, 50, 50, 50, 51, 52, 9]);
    assert_eq!(batch.series[50].hash, one_by_one[50]);
    assert!(batch.series[50].hash_region.start == batch.series[50].hash_region.end);
    assert!(batch.series[0].hash_region.start < batch.series[0].hash_region.end);
    batch.resolve_hashes(0..103);
    assert!(
        batch
            .series
            .iter()
            .all(|s| s.hash_region.start == s.hash_region.end)
    );
    let resolved: Vec<u64> = batch.iter().map(|s| s.hash()).collect();
    assert_eq!(resolved, one_by_one);

    // Any order, any repeats (several tasks' pairs, task by task), any count against the
    // four-wide groups: each series' own hash, never that of an emptied region.
    let mut rng = Rng::new(11);
    for _ in 0..300 {
        batch.decode_snappy(&body, DecodeLimits::default()).unwrap();
        let picks: Vec<u32> = (0..rng.below(200)).map(|_| rng.below(103) as u32).collect();
        batch.resolve_hashes(picks.iter().copied());
        for &i in &picks {
            let s = &batch.series[i as usize];
            assert!(s.hash_region.start == s.hash_region.end);
        }
        let resolved: Vec<u64> = batch.iter().map(|s| s.hash()).collect();
        assert_eq!(resolved, one_by_one, "{picks:?}");
    }

    // Series hashed at decode (labels unsorted: every third one here) among deferred ones:
    // left as they are, and the others' groups of four unaffected.
    let mut mixed = req.clone();
    for ts in mixed.timeseries.iter_mut().step_by(3) {
        ts.labels.reverse();
    }
    let body = proto::encode_snappy(&mixed);
    batch.decode_snappy(&body, DecodeLimits::default()).unwrap();
    let at_decode = |b: &SeriesBatch| {
        b.series
            .iter()
            .filter(|s| s.hash_region.start == s.hash_region.end)
            .count()
    };
    assert_eq!(at_decode(&batch), 35);
    // Sorted by the decoder: the same label sets, the same hashes.
    assert_eq!(
        batch.iter().map(|s| s.hash()).collect::<Vec<_>>(),
        one_by_one
    );
    batch.resolve_hashes((0..103).rev());
    assert_eq!(at_decode(&batch), 103);
    assert_eq!(
        batch.iter().map(|s| s.hash()).collect::<Vec<_>>(),
        one_by_one
    );
}
