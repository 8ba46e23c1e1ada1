//! prost definitions of the remote-write 1.0 messages (`prometheus.WriteRequest`).
//!
//! These are the *slow truth*: the hot path never builds them (see [`crate::decode`] and
//! [`crate::encode`]), but tests and benchmarks use them to produce request bodies and to check
//! the hand-written decoder and encoder against an independent implementation.
//! Native histograms are reduced to the fields the tests need; unknown fields round-trip as
//! raw bytes through the relay, so nothing here limits what is relayed.

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// A native histogram, reduced to the fields tests use (count, sum, schema, timestamp).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(uint64, tag = "1")]
    pub count_int: u64,
    #[prost(double, tag = "3")]
    pub sum: f64,
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

impl Label {
    pub fn new(name: &str, value: &str) -> Self {
        Label {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// Encode a request the way Prometheus sends it: protobuf, then raw (block) snappy.
pub fn encode_snappy(req: &WriteRequest) -> Vec<u8> {
    use prost::Message;
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compression of an in-memory buffer cannot fail")
}

/// prost definitions of the remote-write 2.0 messages (`io.prometheus.write.v2.Request`, spec
/// 2.0-rc.4), written by hand from `prompb/io/prometheus/write/v2/types.proto`. Like the 1.0
/// types above they are the reference in tests, never the hot path.
pub mod v2 {
    /// The `Content-Type` of a 2.0 request.
    pub const CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

    /// Fields 1–3 are reserved (the 1.0 message's numbers).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// Field 6 is reserved (an older sender's `created_timestamp`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<Histogram>,
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
        #[prost(int64, tag = "3")]
        pub start_timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        #[prost(uint32, tag = "2")]
        pub length: u32,
    }

    /// A native histogram: fields 1–16 as in 1.0 (`count` and `zero_count` are oneofs of an
    /// integer and a float there; the integer forms are what tests use), plus `start_timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, tag = "1")]
        pub count_int: u64,
        #[prost(double, tag = "3")]
        pub sum: f64,
        #[prost(sint32, tag = "4")]
        pub schema: i32,
        #[prost(double, tag = "5")]
        pub zero_threshold: f64,
        #[prost(uint64, tag = "6")]
        pub zero_count_int: u64,
        #[prost(message, repeated, tag = "8")]
        pub negative_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "9")]
        pub negative_deltas: Vec<i64>,
        #[prost(message, repeated, tag = "11")]
        pub positive_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "12")]
        pub positive_deltas: Vec<i64>,
        #[prost(int32, tag = "14")]
        pub reset_hint: i32,
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
        #[prost(int64, tag = "17")]
        pub start_timestamp: i64,
    }

    /// The 2.0 form of a 1.0 request's series and float samples (one symbol table, each
    /// string once, `""` first), for tests and benchmarks that need the same data both ways.
    pub fn from_v1(req: &super::WriteRequest) -> Request {
        let mut symbols = vec![String::new()];
        let mut index = std::collections::HashMap::from([(String::new(), 0u32)]);
        let mut sym = |s: &str| {
            *index.entry(s.to_owned()).or_insert_with(|| {
                symbols.push(s.to_owned());
                symbols.len() as u32 - 1
            })
        };
        let timeseries = req
            .timeseries
            .iter()
            .map(|ts| TimeSeries {
                labels_refs: ts
                    .labels
                    .iter()
                    .flat_map(|l| [sym(&l.name), sym(&l.value)])
                    .collect(),
                samples: ts
                    .samples
                    .iter()
                    .map(|s| Sample {
                        value: s.value,
                        timestamp: s.timestamp,
                        start_timestamp: 0,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        Request {
            symbols,
            timeseries,
        }
    }

    /// Encode a 2.0 request as a sender does: protobuf, then raw (block) snappy.
    pub fn encode_snappy(req: &Request) -> Vec<u8> {
        use prost::Message;
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy compression of an in-memory buffer cannot fail")
    }
}
