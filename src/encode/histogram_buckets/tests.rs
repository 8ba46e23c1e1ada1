use super::*;
use crate::proto::v2::{BucketSpan, Histogram};
use prost::Message;

/// A float histogram, the fields the prost reference of `proto::v2` leaves out.
#[derive(Clone, PartialEq, prost::Message)]
struct FloatHistogram {
    #[prost(double, tag = "2")]
    count_float: f64,
    #[prost(double, tag = "3")]
    sum: f64,
    #[prost(sint32, tag = "4")]
    schema: i32,
    #[prost(double, tag = "5")]
    zero_threshold: f64,
    #[prost(double, tag = "7")]
    zero_count_float: f64,
    #[prost(message, repeated, tag = "8")]
    negative_spans: Vec<BucketSpan>,
    #[prost(double, repeated, tag = "10")]
    negative_counts: Vec<f64>,
    #[prost(message, repeated, tag = "11")]
    positive_spans: Vec<BucketSpan>,
    #[prost(double, repeated, tag = "13")]
    positive_counts: Vec<f64>,
    #[prost(int64, tag = "15")]
    timestamp: i64,
}

/// A complete 1.0 `histograms` field holding `msg`.
fn field(msg: &impl Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut f = vec![0x22];
    prost::encoding::encode_varint(body.len() as u64, &mut f);
    f.extend_from_slice(&body);
    f
}

fn span(offset: i32, length: u32) -> BucketSpan {
    BucketSpan { offset, length }
}

/// The objects written for `field` of a series `{__name__="lat", job="api"}`, as
/// (name, le, value, timestamp) rows.
fn rows(field: &[u8]) -> Vec<(String, Option<String>, String, String)> {
    let labels: [(&[u8], &[u8]); 2] = [(b"__name__", b"lat"), (b"job", b"api")];
    let mut out = Vec::new();
    let n = write_buckets(
        &mut out,
        &mut Scratch::default(),
        labels.iter().copied(),
        field,
        Joins {
            first: b"",
            between: b"",
            after: b"\n",
        },
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<_> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["job"], "api");
            let s = |k: &str| v[k].as_str().map(str::to_owned);
            (
                s("__name__").unwrap(),
                s("le"),
                s("value").unwrap(),
                s("timestamp").unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), n);
    rows
}

fn bucket(le: &str, v: &str) -> (String, Option<String>, String, String) {
    (
        "lat_bucket".into(),
        Some(le.into()),
        v.into(),
        "1000".into(),
    )
}

fn other(name: &str, v: &str) -> (String, Option<String>, String, String) {
    (name.into(), None, v.into(), "1000".into())
}

#[test]
fn an_integer_histogram_with_both_signs_and_a_zero_bucket() {
    // Schema 0 (bounds are powers of 2). Positive buckets 0, 1 (span 1), then 3 after a gap
    // of 1 (span 2); deltas 1, +1, -1 → counts 1, 2, 1. Negative bucket 0 ([-1, -0.5)) holds 3.
    let h = Histogram {
        count_int: 9,
        sum: 4.5,
        schema: 0,
        zero_threshold: 0.001,
        zero_count_int: 2,
        negative_spans: vec![span(0, 1)],
        negative_deltas: vec![3],
        positive_spans: vec![span(0, 2), span(1, 1)],
        positive_deltas: vec![1, 1, -1],
        timestamp: 1000,
        ..Default::default()
    };
    assert_eq!(
        rows(&field(&h)),
        vec![
            bucket("-0.5", "3.0"),
            bucket("0.001", "5.0"),
            bucket("1.0", "6.0"),
            bucket("2.0", "8.0"),
            bucket("8.0", "9.0"),
            bucket("+Inf", "9.0"),
            other("lat_sum", "4.5"),
            other("lat_count", "9.0"),
        ]
    );
}

#[test]
fn a_float_histogram_without_zero_bucket_and_negative_indexes() {
    // Schema 1: bound of index i is 2^(i/2). Positive buckets -2, -1 → bounds 0.5 and
    // 2^-0.5; an empty zero bucket with threshold 0 is left out.
    let h = FloatHistogram {
        count_float: 3.5,
        sum: 1.25,
        schema: 1,
        positive_spans: vec![span(-2, 2)],
        positive_counts: vec![1.5, 2.0],
        timestamp: 1000,
        ..Default::default()
    };
    assert_eq!(
        rows(&field(&h)),
        vec![
            bucket("0.5", "1.5"),
            bucket(&format!("{}", 0.5f64.sqrt()), "3.5"),
            bucket("+Inf", "3.5"),
            other("lat_sum", "1.25"),
            other("lat_count", "3.5"),
        ]
    );
}

#[test]
fn float_negative_buckets_come_most_negative_first() {
    // Schema 0, negative buckets 1 ([-2, -1)) and 2 ([-4, -2)): ascending le is -2 then -1.
    let h = FloatHistogram {
        count_float: 5.0,
        sum: -9.0,
        schema: 0,
        zero_threshold: 0.5,
        negative_spans: vec![span(1, 2)],
        negative_counts: vec![1.0, 4.0],
        timestamp: 1000,
        ..Default::default()
    };
    assert_eq!(
        rows(&field(&h)),
        vec![
            bucket("-2.0", "4.0"),
            bucket("-1.0", "5.0"),
            bucket("0.5", "5.0"),
            bucket("+Inf", "5.0"),
            other("lat_sum", "-9.0"),
            other("lat_count", "5.0"),
        ]
    );
}

#[test]
fn bounds_follow_the_schema() {
    for (i, schema, bound) in [
        (0, 0, 1.0),
        (1, 0, 2.0),
        (-1, 0, 0.5),
        (1, -4, 65536.0),
        (-1, -4, 1.0 / 65536.0),
        (2, -1, 16.0),
        (256, 8, 2.0),
        (-256, 8, 0.5),
        (1, 8, (1.0f64 / 256.0).exp2()),
        (3, 2, 0.75f64.exp2()),
        (-3, 2, 0.25f64.exp2() / 2.0),
        (100, -4, f64::INFINITY),
    ] {
        assert_eq!(upper_bound(i, schema), bound, "index {i}, schema {schema}");
    }
}

#[test]
fn histograms_that_do_not_convert_are_refused() {
    let custom = Histogram {
        count_int: 1,
        schema: -53,
        ..Default::default()
    };
    let nine = Histogram {
        schema: 9,
        ..Default::default()
    };
    let short = Histogram {
        positive_spans: vec![span(0, 3)],
        positive_deltas: vec![1],
        ..Default::default()
    };
    for (h, why) in [
        (custom, "schema outside -4..8"),
        (nine, "schema outside -4..8"),
        (short, "fewer bucket counts than the spans list"),
    ] {
        let mut out = Vec::new();
        let labels: [(&[u8], &[u8]); 1] = [(b"__name__", b"x")];
        let joins = Joins {
            first: b"",
            between: b"",
            after: b"",
        };
        let got = write_buckets(
            &mut out,
            &mut Scratch::default(),
            labels.iter().copied(),
            &field(&h),
            joins,
        );
        assert_eq!(got, Err(why));
        assert!(out.is_empty(), "nothing written");
    }
}

#[test]
fn le_goes_in_label_order_and_joins_separate_objects() {
    let h = Histogram {
        count_int: 1,
        schema: 0,
        positive_spans: vec![span(0, 1)],
        positive_deltas: vec![1],
        timestamp: 7,
        ..Default::default()
    };
    let labels: [(&[u8], &[u8]); 3] = [(b"__name__", b"h"), (b"a", b"1"), (b"zone", b"z")];
    let mut out = b"[".to_vec();
    let n = write_buckets(
        &mut out,
        &mut Scratch::default(),
        labels.iter().copied(),
        &field(&h),
        Joins {
            first: b"",
            between: b",",
            after: b"",
        },
    )
    .unwrap();
    out.push(b']');
    assert_eq!(n, 4);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with(
        r#"[{"__name__":"h_bucket","a":"1","le":"1.0","zone":"z","value":"1.0","timestamp":"7"},"#
    ));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
}
