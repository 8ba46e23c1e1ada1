//! Passing a request through: a remote-write 1.0 request that reaches a target unchanged is
//! queued as the bytes its sender compressed, not compressed again.
//!
//! Compressing what a target sends is the largest cost of a relay that forwards everything
//! (a third of its CPU, see docs/performance.md). When a request's every series reaches a
//! target as it came, the target's chunks together *are* the decompressed request, and the
//! request's own snappy bytes are a valid body for it. With one lane, other requests take the
//! usual path and the two meet in the lane in arrival order
//! ([`SinkQueue::append_compressed`]). With several, the series of one request are spread over
//! lanes by hash, so a whole request sent on one lane could overtake a series' earlier
//! samples waiting on another (the remote-write spec wants each series' samples in order):
//! it goes as a barrier the lanes take turns around, and only while the target's senders are
//! mostly idle ([`SinkQueue::append_whole`]).
//!
//! [`SinkQueue::append_compressed`]: crate::targets::queue::SinkQueue::append_compressed
//! [`SinkQueue::append_whole`]: crate::targets::queue::SinkQueue::append_whole

use crate::batch::SeriesBatch;
use crate::targets::{Output, Target};

/// Whether `target` can queue the request (`batch`, decoded) as its sender compressed it: the
/// target sends 1.0 bodies ([`Target::pass_through`]), it may now ([`SinkQueue::whole_allowed`]),
/// it took nothing but series, and its chunks are together byte for byte the decompressed
/// request (every series kept, in order, unchanged). It must also fill a batch by itself, at
/// least half of `max_samples_per_send` and at most all of it; smaller requests are joined
/// into batches as usual, larger ones cut.
///
/// With one lane the chunk is compared with the request: a read, where compressing it again
/// costs several times that (see docs/performance.md, round 7). With several, every series
/// was written as a copy of its field ([`Output::copied`]) and the chunks add up to the
/// request's length, so nothing else is in it.
///
/// [`SinkQueue::whole_allowed`]: crate::targets::queue::SinkQueue::whole_allowed
pub(super) fn passes_through(target: &Target, out: &Output, batch: &SeriesBatch) -> bool {
    if !target.pass_through || out.lanes.iter().any(|c| c.metadata) {
        return false;
    }
    let max = target.queue_config.max_samples_per_send;
    let samples: usize = out.lanes.iter().map(|c| c.samples).sum();
    if samples > max || 2 * samples < max {
        return false;
    }
    let decoded = batch.bytes();
    match &out.lanes[..] {
        [chunk] => chunk.bytes == decoded,
        chunks => {
            target.queue.whole_allowed()
                && out.copied == batch.len()
                && chunks.iter().map(|c| c.bytes.len()).sum::<usize>() == decoded.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Pipeline;
    use crate::config::Config;
    use crate::proto::{self, MetricMetadata, WriteRequest};
    use crate::telemetry::Metrics;
    use crate::tools::workload::WorkloadSpec;
    use std::path::Path;
    use std::time::Duration;

    /// A pipeline with one task (its `extra` YAML keys) and one remote_write target (its
    /// `target` keys inside `{}`).
    fn pipeline(extra: &str, target: &str) -> (Pipeline, Metrics) {
        let yaml = format!(
            "tasks:\n  - name: t\n{extra}    targets: [{{name: r, type: remote_write, url: \"http://127.0.0.1:9/w\", {target}}}]\n"
        );
        let metrics = Metrics::new();
        let p = Pipeline::new(Config::from_yaml(&yaml, Path::new(".")).unwrap(), &metrics).unwrap();
        (p, metrics)
    }

    fn request(series: usize) -> WriteRequest {
        WorkloadSpec {
            series,
            ..Default::default()
        }
        .request(0)
    }

    /// Every batch the target's lanes hold: (body decompressed when it came compressed,
    /// samples, whether it was passed through).
    async fn batches(p: &Pipeline) -> Vec<(Vec<u8>, usize, bool)> {
        let t = &p.targets()[0];
        let mut out = Vec::new();
        for lane in 0..t.queue.lanes() {
            t.queue.flush(lane);
            while let Ok(Some(b)) =
                tokio::time::timeout(Duration::from_millis(50), t.queue.next_batch(lane)).await
            {
                let body = if b.snappy {
                    snap::raw::Decoder::new().decompress_vec(&b.body).unwrap()
                } else {
                    b.body.clone()
                };
                out.push((body, b.samples, b.snappy));
                t.queue.finish(lane, b, true);
            }
        }
        out
    }

    /// A queued (uncompressed) body, decoded.
    fn decoded(body: &[u8]) -> crate::batch::SeriesBatch {
        let mut b = crate::batch::SeriesBatch::new();
        b.decode_protobuf(body).unwrap();
        b
    }

    fn passed(m: &Metrics) -> u64 {
        m.target("t", "r").passed_through.get()
    }

    #[tokio::test]
    async fn a_request_a_one_lane_target_takes_unchanged_goes_as_its_sender_compressed_it() {
        let (p, m) = pipeline("", "queue: {shards: 1, max_samples_per_send: 2000}");
        let req = request(2000);
        let body = proto::encode_snappy(&req);
        p.process(0, &body).unwrap();
        let t = &p.targets()[0];
        t.queue.flush(0);
        let b = t.queue.next_batch(0).await.unwrap();
        assert!(b.snappy);
        assert_eq!(b.body, body, "the sender's own bytes");
        assert_eq!((b.samples, b.start, b.end), (2000, 0, 2000));
        t.queue.finish(0, b, true);
        assert_eq!(passed(&m), 1);
        assert_eq!(t.queue.held(), 0, "its room is given back");
    }

    /// `ack: delivered`: the answer waits for the passed batch's delivery, and hears when the
    /// target refused it; with one lane and with four (the request goes whole on lane 0).
    #[tokio::test]
    async fn a_passed_request_is_waited_for_under_ack_delivered() {
        for lanes in [1, 4] {
            let (p, m) = pipeline(
                "    ack: delivered\n",
                &format!("queue: {{shards: {lanes}, max_samples_per_send: 2000}}"),
            );
            let body = proto::encode_snappy(&request(2000));
            let t = &p.targets()[0];
            for delivered in [true, false] {
                let mut waits = Vec::new();
                p.process_acked(0, &body, crate::decode::Protocol::V1, &mut waits)
                    .unwrap();
                assert_eq!(waits.len(), 1, "{lanes} lanes");
                assert_eq!(waits[0].lane, 0);
                let b = t.queue.next_batch(0).await.unwrap();
                assert!(b.snappy);
                assert_eq!((waits[0].span.start, waits[0].span.end), (b.start, b.end));
                t.queue.finish(0, b, delivered);
                assert_eq!(p.wait_acks(&waits).await.is_ok(), delivered);
            }
            assert_eq!(passed(&m), 2);
        }
    }

    /// Each case changes one thing that makes the target's bytes differ from the request's,
    /// or the request not fit a batch by itself: with one lane and with four, every sample
    /// still arrives, encoded and compressed as usual, and nothing is counted as passed
    /// through.
    #[tokio::test]
    async fn anything_else_takes_the_usual_path() {
        let whole = request(2000);
        // A metadata entry takes a sample's room: 1,999 series and it fill the batch exactly,
        // so only the metadata keeps it from passing.
        let mut with_metadata = request(1999);
        with_metadata.metadata.push(MetricMetadata {
            r#type: 1,
            metric_family_name: "m".into(),
            help: "h".into(),
            unit: String::new(),
        });
        let one = "queue: {shards: LANES, max_samples_per_send: 2000}";
        let cases: [(&str, &str, &str, &WriteRequest); 7] = [
            ("a task label", "    labels: {k: v}\n", one, &whole),
            (
                "an external label",
                "",
                "external_labels: {k: v}, queue: {shards: LANES}",
                &whole,
            ),
            (
                "a filter",
                "    filter: [\"__name__=~node_.*\"]\n",
                one,
                &whole,
            ),
            (
                "a 2.0 target",
                "",
                "protobuf_message: io.prometheus.write.v2.Request, queue: {shards: LANES}",
                &whole,
            ),
            (
                "less than half a batch",
                "",
                "queue: {shards: LANES, max_samples_per_send: 4002}",
                &whole,
            ),
            (
                "more than a batch",
                "",
                "queue: {shards: LANES, max_samples_per_send: 1999}",
                &whole,
            ),
            ("metadata", "", one, &with_metadata),
        ];
        for lanes in ["1", "4"] {
            for (what, task, target, req) in cases {
                let (p, m) = pipeline(task, &target.replace("LANES", lanes));
                let stats = p.process(0, &proto::encode_snappy(req)).unwrap();
                let got = batches(&p).await;
                let what = format!("{what}, {lanes} lanes");
                assert!(got.iter().all(|b| !b.2), "{what}: nothing passed through");
                assert_eq!(passed(&m), 0, "{what}");
                let samples: usize = got.iter().map(|b| decoded(&b.0).sample_count()).sum();
                assert_eq!(
                    samples, stats.queued,
                    "{what}: every sample queued is in a batch"
                );
                assert!(stats.queued > 0, "{what}");
            }
        }
    }

    /// With several lanes, an unchanged request goes whole on lane 0, as its sender
    /// compressed it, and the other lanes get nothing of it; while the target's senders are
    /// busy (`whole_allowed`) it is spread over the lanes as usual.
    #[tokio::test]
    async fn a_request_a_target_of_several_lanes_takes_unchanged_goes_whole_on_lane_zero() {
        let (p, m) = pipeline("", "queue: {shards: 4, max_samples_per_send: 2000}");
        let body = proto::encode_snappy(&request(2000));
        p.process(0, &body).unwrap();
        let t = &p.targets()[0];
        let b = t.queue.next_batch(0).await.unwrap();
        assert!(b.snappy);
        assert_eq!(b.body, body, "the sender's own bytes");
        assert_eq!(b.samples, 2000);
        t.queue.finish(0, b, true);
        assert!(batches(&p).await.is_empty(), "nothing on the other lanes");
        assert_eq!(passed(&m), 1);
        assert_eq!(t.queue.held(), 0);
        // Busy senders: spread as usual, every series in one lane's batches.
        let start = std::time::Instant::now();
        t.queue
            .sending_for(Duration::from_millis(1900), start + Duration::from_secs(2));
        assert!(!t.queue.whole_allowed());
        p.process(0, &body).unwrap();
        let got = batches(&p).await;
        assert_eq!(got.len(), 4, "a batch per lane");
        assert!(got.iter().all(|b| !b.2));
        let samples: usize = got.iter().map(|b| decoded(&b.0).sample_count()).sum();
        assert_eq!(samples, 2000);
        assert_eq!(passed(&m), 1);
    }

    /// What was batching in the lane goes first, as its own batch: a small request (joined
    /// into a batch as usual), then a whole one (passed through), then a small one again.
    #[tokio::test]
    async fn a_passed_request_keeps_its_place_in_the_lane() {
        let (p, m) = pipeline("", "queue: {shards: 1, max_samples_per_send: 2000}");
        let small = proto::encode_snappy(&request(10));
        let whole = request(2000);
        p.process(0, &small).unwrap();
        p.process(0, &proto::encode_snappy(&whole)).unwrap();
        p.process(0, &small).unwrap();
        let got = batches(&p).await;
        assert_eq!(passed(&m), 1);
        let shape: Vec<(usize, bool)> = got.iter().map(|b| (b.1, b.2)).collect();
        assert_eq!(shape, [(10, false), (2000, true), (10, false)]);
        assert_eq!(got[1].0, prost::Message::encode_to_vec(&whole));
        assert_eq!(decoded(&got[0].0).len(), 10);
        assert_eq!(decoded(&got[2].0).len(), 10);
    }
}
