//! The Kafka source's parsing, pinned by tables: what each message becomes in the batch, and
//! why each bad one is refused.

use super::parse::{self, JsonScratch, reason};
use crate::batch::SeriesBatch;
use crate::decode::DecodeLimits;
use crate::proto::{self, Label, Sample, TimeSeries, WriteRequest};

type Row = (Vec<(String, String)>, u64, i64);

fn rows(batch: &SeriesBatch) -> Vec<Row> {
    batch
        .iter()
        .flat_map(|s| {
            let labels: Vec<(String, String)> = s
                .labels()
                .map(|(n, v)| {
                    (
                        String::from_utf8(n.to_vec()).unwrap(),
                        String::from_utf8(v.to_vec()).unwrap(),
                    )
                })
                .collect();
            s.samples()
                .iter()
                .map(move |x| (labels.clone(), x.value.to_bits(), x.timestamp))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn json(msg: &[u8]) -> Result<Vec<Row>, &'static str> {
    let mut batch = SeriesBatch::new();
    let mut scratch = JsonScratch::default();
    parse::json_into(&mut batch, msg, DecodeLimits::default(), &mut scratch)
        .map(|()| rows(&batch))
        .map_err(|e| e.reason)
}

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn reads_the_seeds_values_and_timestamps() {
    for (value, want) in [
        (r#""675.0""#, 675.0),
        (r#""1e-3""#, 1e-3),
        (r#""+Inf""#, f64::INFINITY),
        (r#""-Inf""#, f64::NEG_INFINITY),
        (r#""Infinity""#, f64::INFINITY),
        (r#""-Infinity""#, f64::NEG_INFINITY),
        (r#""-3.5""#, -3.5),
        ("12", 12.0),
        ("0.25", 0.25),
        ("-7", -7.0),
    ] {
        for ts in [r#""1698732988354""#, "1698732988354", "1698732988354.0"] {
            let msg = format!(r#"[{{"__name__":"m","job":"j","value":{value},"timestamp":{ts}}}]"#);
            assert_eq!(
                json(msg.as_bytes()),
                Ok(vec![(
                    l(&[("__name__", "m"), ("job", "j")]),
                    want.to_bits(),
                    1698732988354
                )]),
                "{msg}"
            );
        }
    }
    let nan = json(br#"[{"__name__":"m","value":"NaN","timestamp":"1"}]"#).unwrap();
    assert!(f64::from_bits(nan[0].1).is_nan());
}

#[test]
fn sorts_and_unescapes_labels_and_reads_compressed_or_not() {
    let text = br#" [ {"zone":"a\"b","__name__":"m","value":"1","timestamp":"5","id":"\u00fc\n"},
                     {"timestamp":6,"value":2,"__name__":"n"} ] "#;
    let want = vec![
        (
            l(&[("__name__", "m"), ("id", "\u{fc}\n"), ("zone", "a\"b")]),
            1f64.to_bits(),
            5,
        ),
        (l(&[("__name__", "n")]), 2f64.to_bits(), 6),
    ];
    assert_eq!(json(text), Ok(want.clone()));
    assert_eq!(json(&snappy(text)), Ok(want));
    assert_eq!(json(b"[]"), Ok(vec![]));
    assert_eq!(json(&snappy(b"[]")), Ok(vec![]));
}

#[test]
fn hashes_a_series_the_same_as_remote_write_ingest() {
    let mut from_json = SeriesBatch::new();
    parse::json_into(
        &mut from_json,
        br#"[{"job":"j","__name__":"m","value":"1","timestamp":"1"}]"#,
        DecodeLimits::default(),
        &mut JsonScratch::default(),
    )
    .unwrap();
    let mut from_rw = SeriesBatch::new();
    let body = proto::encode_snappy(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label::new("__name__", "m"), Label::new("job", "j")],
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    });
    from_rw
        .decode_snappy(&body, DecodeLimits::default())
        .unwrap();
    assert_eq!(from_json.series(0).hash(), from_rw.series(0).hash());
}

#[test]
fn refuses_each_kind_of_bad_message_with_its_reason() {
    let good = r#"{"__name__":"m","value":"1","timestamp":"1"}"#;
    for (msg, why) in [
        (b"\xff\xff\xff\xff\x0f garbage".to_vec(), reason::SNAPPY),
        (b"not json at all".to_vec(), reason::SNAPPY),
        (snappy(b"{\"a\":1}"), reason::JSON),
        (b"[{\"__name__\":\"m\",".to_vec(), reason::JSON),
        (snappy(b"[1,2]"), reason::JSON),
        (format!("[{good}] x").into_bytes(), reason::JSON),
        (
            br#"[{"job":"j","value":"1","timestamp":"1"}]"#.to_vec(),
            reason::NO_NAME,
        ),
        (
            br#"[{"value":"1","timestamp":"1"}]"#.to_vec(),
            reason::NO_NAME,
        ),
        (
            br#"[{"__name__":"m","value":"abc","timestamp":"1"}]"#.to_vec(),
            reason::BAD_VALUE,
        ),
        (
            br#"[{"__name__":"m","value":"","timestamp":"1"}]"#.to_vec(),
            reason::BAD_VALUE,
        ),
        (
            br#"[{"__name__":"m","value":true,"timestamp":"1"}]"#.to_vec(),
            reason::BAD_VALUE,
        ),
        (
            br#"[{"__name__":"m","timestamp":"1"}]"#.to_vec(),
            reason::BAD_VALUE,
        ),
        (
            br#"[{"__name__":"m","value":"1","timestamp":"soon"}]"#.to_vec(),
            reason::BAD_TIMESTAMP,
        ),
        (
            br#"[{"__name__":"m","value":"1","timestamp":1.5}]"#.to_vec(),
            reason::BAD_TIMESTAMP,
        ),
        (
            br#"[{"__name__":"m","value":"1"}]"#.to_vec(),
            reason::BAD_TIMESTAMP,
        ),
        (
            br#"[{"__name__":"m","job":3,"value":"1","timestamp":"1"}]"#.to_vec(),
            reason::BAD_LABELS,
        ),
        (
            br#"[{"__name__":"m","job":{"a":"b"},"value":"1","timestamp":"1"}]"#.to_vec(),
            reason::BAD_LABELS,
        ),
        (
            br#"[{"__name__":"m","":"x","value":"1","timestamp":"1"}]"#.to_vec(),
            reason::BAD_LABELS,
        ),
        (
            br#"[{"__name__":"m","a":"x","a":"y","value":"1","timestamp":"1"}]"#.to_vec(),
            reason::BAD_LABELS,
        ),
    ] {
        assert_eq!(json(&msg), Err(why), "{}", String::from_utf8_lossy(&msg));
    }
    // A refusal leaves the batch reusable: the next message reads cleanly.
    let mut batch = SeriesBatch::new();
    let mut scratch = JsonScratch::default();
    let bad = br#"[{"__name__":"m","a":"x","value":"zz","timestamp":"1"}]"#;
    assert!(parse::json_into(&mut batch, bad, DecodeLimits::default(), &mut scratch).is_err());
    let ok = format!("[{good}]");
    parse::json_into(
        &mut batch,
        ok.as_bytes(),
        DecodeLimits::default(),
        &mut scratch,
    )
    .unwrap();
    assert_eq!(
        rows(&batch),
        vec![(l(&[("__name__", "m")]), 1f64.to_bits(), 1)]
    );
}

#[test]
fn applies_the_servers_input_limits() {
    let limits = DecodeLimits {
        max_label_value_bytes: 4,
        ..DecodeLimits::default()
    };
    let mut batch = SeriesBatch::new();
    let e = parse::json_into(
        &mut batch,
        br#"[{"__name__":"too_long","value":"1","timestamp":"1"}]"#,
        limits,
        &mut JsonScratch::default(),
    )
    .unwrap_err();
    assert_eq!(e.reason, reason::BAD_LABELS);
    assert!(e.detail.contains("max_label_value_bytes"), "{}", e.detail);
    let small = DecodeLimits {
        max_decoded_bytes: 16,
        ..DecodeLimits::default()
    };
    let msg = snappy(br#"[{"__name__":"m","value":"1","timestamp":"1"}]"#);
    let e = parse::json_into(&mut batch, &msg, small, &mut JsonScratch::default()).unwrap_err();
    assert_eq!(e.reason, reason::TOO_LARGE);
}

#[test]
fn reads_remote_write_messages_compressed_or_not() {
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label::new("__name__", "m"), Label::new("a", "b")],
            samples: vec![Sample {
                value: 2.5,
                timestamp: 7,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let want = vec![(l(&[("__name__", "m"), ("a", "b")]), 2.5f64.to_bits(), 7)];
    let mut batch = SeriesBatch::new();
    for msg in [
        proto::encode_snappy(&req),
        prost::Message::encode_to_vec(&req),
    ] {
        parse::remote_write_into(&mut batch, &msg, DecodeLimits::default()).unwrap();
        assert_eq!(rows(&batch), want);
    }
    let e = parse::remote_write_into(&mut batch, b"\x0a\x05junk!", DecodeLimits::default())
        .unwrap_err();
    assert_eq!(e.reason, reason::REMOTE_WRITE);
}
