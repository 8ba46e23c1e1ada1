//! How a lane's batch of records (see [`super::encode`]) becomes Kafka messages: grouped by
//! (topic, key) in arrival order, packed up to `max_message_bytes` before compression, then
//! raw-snappy compressed (or not, with `compression: none`).

use super::{KafkaCompression, KafkaConfig, KafkaFormat, KafkaKey};
use std::collections::HashMap;

/// One message ready for the producer.
#[derive(Debug, Clone)]
pub struct KafkaMessage {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub samples: usize,
}

/// A record read back from a lane batch.
struct Record<'a> {
    topic: &'a [u8],
    key: &'a [u8],
    body: &'a [u8],
    samples: usize,
}

fn records(mut buf: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        fn take<'b>(buf: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
            if buf.len() < n {
                return None;
            }
            let (a, b) = buf.split_at(n);
            *buf = b;
            Some(a)
        }
        let tl = u16::from_le_bytes(take(&mut buf, 2)?.try_into().ok()?) as usize;
        let topic = take(&mut buf, tl)?;
        let kl = u16::from_le_bytes(take(&mut buf, 2)?.try_into().ok()?) as usize;
        let key = take(&mut buf, kl)?;
        let samples = u32::from_le_bytes(take(&mut buf, 4)?.try_into().ok()?) as usize;
        let bl = u32::from_le_bytes(take(&mut buf, 4)?.try_into().ok()?) as usize;
        let body = take(&mut buf, bl)?;
        Some(Record {
            topic,
            key,
            body,
            samples,
        })
    })
}

/// Turns lane batches into messages: see the module docs.
pub struct MessageBuilder {
    pub format: KafkaFormat,
    pub key: KafkaKey,
    pub fixed_topic: String,
    pub lane_key: Vec<u8>,
    pub max_message_bytes: usize,
    pub snappy: bool,
    encoder: snap::raw::Encoder,
    /// Snappy's output, kept between messages: `compress_vec` would zero a fresh buffer of the
    /// worst-case size per message (a page fault and a memset per 4 KiB, ~10 % of this path).
    compressed: Vec<u8>,
    /// Message buffers kept between batches (a few: enough for the usual one group per lane).
    spare: Vec<Vec<u8>>,
}

/// Buffers kept for reuse; more would only hold memory.
const SPARE_BUFFERS: usize = 4;

struct Open {
    topic: String,
    key: Option<Vec<u8>>,
    buf: Vec<u8>,
    samples: usize,
    records: usize,
}

impl MessageBuilder {
    pub fn new(cfg: &KafkaConfig, lane: usize) -> MessageBuilder {
        MessageBuilder {
            format: cfg.format,
            key: cfg.key,
            fixed_topic: cfg.fixed_topic().unwrap_or_default().to_owned(),
            lane_key: format!("series-group-{lane}").into_bytes(),
            max_message_bytes: cfg.max_message_bytes,
            snappy: cfg.compression == KafkaCompression::Snappy,
            encoder: snap::raw::Encoder::new(),
            compressed: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Split a lane batch into messages.
    pub fn build(&mut self, batch: &[u8]) -> Vec<KafkaMessage> {
        let mut out = Vec::new();
        let mut open: Vec<Open> = Vec::new();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut lookup: Vec<u8> = Vec::new();
        let mut last: Option<usize> = None;
        let json = self.format == KafkaFormat::Json;
        for rec in records(batch) {
            let samples = rec.samples;
            let topic = if rec.topic.is_empty() {
                self.fixed_topic.as_bytes()
            } else {
                rec.topic
            };
            let key: Option<&[u8]> = match self.key {
                KafkaKey::Series => Some(&self.lane_key),
                KafkaKey::Metric => Some(rec.key),
                KafkaKey::None => None,
            };
            // Group lookup without allocating: the previous record's group first (nearly always
            // the same), then the index by the concatenated topic and key in a reused buffer.
            let slot = match last
                .filter(|&i| open[i].topic.as_bytes() == topic && open[i].key.as_deref() == key)
            {
                Some(i) => i,
                None => {
                    lookup.clear();
                    lookup.extend_from_slice(topic);
                    lookup.push(0xff); // never in a topic name, so the split is unambiguous
                    lookup.extend_from_slice(key.unwrap_or_default());
                    match index.get(&lookup[..]) {
                        Some(&i) => i,
                        None => {
                            open.push(Open {
                                topic: String::from_utf8_lossy(topic).into_owned(),
                                key: key.map(<[u8]>::to_vec),
                                buf: self.spare.pop().unwrap_or_default(),
                                samples: 0,
                                records: 0,
                            });
                            index.insert(lookup.clone(), open.len() - 1);
                            open.len() - 1
                        }
                    }
                }
            };
            last = Some(slot);
            let o = &mut open[slot];
            let extra = rec.body.len() + usize::from(json) * 2;
            if o.records > 0 && o.buf.len() + extra > self.max_message_bytes {
                out.push(self.finish(o));
            }
            if json {
                o.buf.push(if o.records == 0 { b'[' } else { b',' });
            }
            o.buf.extend_from_slice(rec.body);
            o.samples += samples;
            o.records += 1;
        }
        for mut o in open {
            if o.records > 0 {
                out.push(self.finish(&mut o));
            }
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(o.buf);
            }
        }
        out
    }

    fn finish(&mut self, o: &mut Open) -> KafkaMessage {
        if self.format == KafkaFormat::Json {
            o.buf.push(b']');
        }
        let payload = if self.snappy {
            // The kept buffer grows (and is zeroed) once, to the worst case of a full message;
            // the payload is a copy of the compressed bytes only. A lone record over the cap
            // gets a buffer of its own, so the kept one stays bounded by the cap. Compression
            // fails only for inputs over ~4 GiB, which a message never is.
            let max = snap::raw::max_compress_len(o.buf.len());
            if max > snap::raw::max_compress_len(self.max_message_bytes) {
                self.encoder.compress_vec(&o.buf).unwrap_or_default()
            } else {
                if self.compressed.len() < max {
                    self.compressed.resize(max, 0);
                }
                let n = self
                    .encoder
                    .compress(&o.buf, &mut self.compressed)
                    .unwrap_or_default();
                self.compressed[..n].to_vec()
            }
        } else {
            o.buf.clone()
        };
        let m = KafkaMessage {
            topic: o.topic.clone(),
            key: o.key.clone(),
            payload,
            samples: o.samples,
        };
        o.buf.clear();
        o.samples = 0;
        o.records = 0;
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Sample;
    use crate::targets::kafka::{KafkaLayout, parse_topic};

    fn cfg(topic: &str, key: KafkaKey, format: KafkaFormat, max: usize) -> KafkaConfig {
        KafkaConfig {
            topic: parse_topic(topic).unwrap(),
            key,
            format,
            histograms: Default::default(),
            compression: KafkaCompression::Snappy,
            max_message_bytes: max,
            client: vec![],
        }
    }

    fn labels<'a>(
        pairs: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone {
        pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
    }

    fn unsnappy(m: &KafkaMessage) -> serde_json::Value {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&m.payload)
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    #[test]
    fn json_messages_are_snappy_arrays_split_by_size_and_grouped_by_topic() {
        let c = cfg(
            "metrics.{__name__}",
            KafkaKey::Series,
            KafkaFormat::Json,
            200,
        );
        let layout = KafkaLayout::new(&c);
        let mut buf = Vec::new();
        let s = |v: f64| Sample {
            value: v,
            timestamp: 1698732988354,
        };
        for (name, v) in [("up", 1.0), ("cpu/x", 2.0), ("up", 3.0), ("up", 4.0)] {
            let l = [("__name__", name), ("job", "a\"b")];
            layout.write_record(
                &mut buf,
                labels(&l),
                &[s(v), s(v + 0.5)],
                std::iter::empty(),
            );
        }
        let mut b = MessageBuilder::new(&c, 3);
        let msgs = b.build(&buf);
        let summary: Vec<(String, usize)> =
            msgs.iter().map(|m| (m.topic.clone(), m.samples)).collect();
        // Each record is ~150 bytes, so two never fit in 200: one message per record, the two
        // groups kept apart, each group in arrival order (full messages go first, then the
        // groups' last messages in the order the groups appeared).
        assert_eq!(
            summary,
            [
                ("metrics.up".to_string(), 2),
                ("metrics.up".into(), 2),
                ("metrics.up".into(), 2),
                ("metrics.cpu_x".into(), 2)
            ]
        );
        assert_eq!(unsnappy(&msgs[2])[0]["value"], "4.0");
        assert!(
            msgs.iter()
                .all(|m| m.key.as_deref() == Some(&b"series-group-3"[..]))
        );
        let first = unsnappy(&msgs[0]);
        assert_eq!(
            first,
            serde_json::json!([
                {"__name__": "up", "job": "a\"b", "value": "1.0", "timestamp": "1698732988354"},
                {"__name__": "up", "job": "a\"b", "value": "1.5", "timestamp": "1698732988354"}
            ])
        );
        assert_eq!(unsnappy(&msgs[1])[0]["value"], "3.0");

        // With a generous cap, the three `up` records share one message.
        let c = cfg(
            "metrics.{__name__}",
            KafkaKey::Series,
            KafkaFormat::Json,
            1_000_000,
        );
        let msgs = MessageBuilder::new(&c, 0).build(&buf);
        assert_eq!(msgs.len(), 2);
        assert_eq!(unsnappy(&msgs[0]).as_array().unwrap().len(), 6);
    }

    #[test]
    fn metric_keys_and_keyless_messages() {
        for (key, want) in [
            (
                KafkaKey::Metric,
                vec![Some(b"up".to_vec()), Some(b"load".to_vec())],
            ),
            (KafkaKey::None, vec![None]),
        ] {
            let c = cfg("metrics", key, KafkaFormat::Json, 1_000_000);
            let layout = KafkaLayout::new(&c);
            let mut buf = Vec::new();
            for name in ["up", "load", "up"] {
                let l = [("__name__", name)];
                layout.write_record(
                    &mut buf,
                    labels(&l),
                    &[Sample::default()],
                    std::iter::empty(),
                );
            }
            let msgs = MessageBuilder::new(&c, 0).build(&buf);
            let keys: Vec<Option<Vec<u8>>> = msgs.iter().map(|m| m.key.clone()).collect();
            assert_eq!(keys, want, "{key:?}");
            assert!(msgs.iter().all(|m| m.topic == "metrics"));
        }
        let c = cfg("m", KafkaKey::Metric, KafkaFormat::Json, 1);
        let layout = KafkaLayout::new(&c);
        assert_eq!(
            layout.lane(1, b"up", 8),
            layout.lane(2, b"up", 8),
            "metric lanes ignore the series hash"
        );
    }

    #[test]
    fn remote_write_messages_are_write_requests() {
        use prost::Message;
        let c = cfg("rw", KafkaKey::Series, KafkaFormat::RemoteWrite, 1_000_000);
        let layout = KafkaLayout::new(&c);
        let mut buf = Vec::new();
        for v in [1.0, 2.0] {
            let l = [("__name__", "up")];
            layout.write_record(
                &mut buf,
                labels(&l),
                &[Sample {
                    value: v,
                    timestamp: 7,
                }],
                std::iter::empty(),
            );
        }
        let msgs = MessageBuilder::new(&c, 0).build(&buf);
        assert_eq!(msgs.len(), 1);
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&msgs[0].payload)
            .unwrap();
        let req = crate::proto::WriteRequest::decode(&raw[..]).unwrap();
        assert_eq!(req.timeseries.len(), 2);
        assert_eq!(req.timeseries[1].samples[0].value, 2.0);
    }

    #[test]
    fn histogram_bucket_records_join_the_series_samples_in_one_json_array() {
        use crate::proto::v2::{BucketSpan, Histogram};
        use prost::Message;
        let c = cfg("m", KafkaKey::Series, KafkaFormat::Json, 1 << 20);
        let layout = KafkaLayout::new(&c);
        let h = Histogram {
            count_int: 2,
            sum: 1.0,
            schema: 0,
            positive_spans: vec![BucketSpan {
                offset: 0,
                length: 1,
            }],
            positive_deltas: vec![2],
            timestamp: 9,
            ..Default::default()
        }
        .encode_to_vec();
        let mut field = vec![0x22, h.len() as u8];
        field.extend_from_slice(&h);
        let l = [("__name__", "h"), ("job", "a")];
        let mut buf = Vec::new();
        layout.write_record(
            &mut buf,
            labels(&l),
            &[Sample {
                value: 5.0,
                timestamp: 9,
            }],
            std::iter::empty(),
        );
        let (written, failed) = layout.write_bucket_record(
            &mut buf,
            &mut Default::default(),
            labels(&l),
            [&field[..]].into_iter(),
        );
        assert_eq!((written, failed), (4, 0));
        let msgs = MessageBuilder::new(&c, 1).build(&buf);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].samples, 5);
        let got = unsnappy(&msgs[0]);
        let rows: Vec<(String, String, String)> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let s = |k: &str| o[k].as_str().unwrap_or("-").to_owned();
                (s("__name__"), s("le"), s("value"))
            })
            .collect();
        let r = |n: &str, le: &str, v: &str| (n.to_owned(), le.to_owned(), v.to_owned());
        assert_eq!(
            rows,
            [
                r("h", "-", "5.0"),
                r("h_bucket", "1.0", "2.0"),
                r("h_bucket", "+Inf", "2.0"),
                r("h_sum", "-", "1.0"),
                r("h_count", "-", "2.0"),
            ]
        );
    }
}
