//! Passing a request through: a remote-write 1.0 request that reaches a one-lane target
//! unchanged is queued as the bytes its sender compressed, not compressed again.
//!
//! Compressing what a target sends is the largest cost of a relay that forwards everything
//! (a third of its CPU, see docs/performance.md). When a request's every series reaches a
//! target as it came, the target's chunk *is* the decompressed request, and the request's own
//! snappy bytes are a valid body for it. The target must have one lane: with several, the
//! series of one request are spread over lanes by hash, and a whole request sent on one lane
//! could overtake a series' earlier samples waiting on another (the remote-write spec wants
//! each series' samples in order). Other targets, and requests that do not qualify, take the
//! usual path; the two meet in the lane in arrival order ([`SinkQueue::append_compressed`]).
//!
//! [`SinkQueue::append_compressed`]: crate::targets::queue::SinkQueue::append_compressed

use crate::targets::{Output, Target};

/// Whether `target` can queue a request as its sender compressed it: the target sends 1.0
/// bodies through one lane ([`Target::pass_through`]), took nothing but series, and its one
/// chunk is byte for byte the decompressed request (`decoded`: every series kept, in order,
/// unchanged). It must also fill a batch by itself, at least half of `max_samples_per_send` and
/// at most all of it; smaller requests are joined into batches as usual, larger ones cut.
///
/// The comparison costs a read of the chunk; compressing it again costs several times that
/// (see docs/performance.md, round 7).
pub(super) fn passes_through(target: &Target, out: &Output, decoded: &[u8]) -> bool {
    let [chunk] = &out.lanes[..] else {
        return false;
    };
    let max = target.queue_config.max_samples_per_send;
    target.pass_through
        && !chunk.metadata
        && chunk.samples <= max
        && 2 * chunk.samples >= max
        && chunk.bytes == decoded
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
    /// target refused it.
    #[tokio::test]
    async fn a_passed_request_is_waited_for_under_ack_delivered() {
        let (p, m) = pipeline(
            "    ack: delivered\n",
            "queue: {shards: 1, max_samples_per_send: 2000}",
        );
        let body = proto::encode_snappy(&request(2000));
        let t = &p.targets()[0];
        for delivered in [true, false] {
            let mut waits = Vec::new();
            p.process_acked(0, &body, crate::decode::Protocol::V1, &mut waits)
                .unwrap();
            assert_eq!(waits.len(), 1);
            let b = t.queue.next_batch(0).await.unwrap();
            assert!(b.snappy);
            assert_eq!((waits[0].span.start, waits[0].span.end), (b.start, b.end));
            t.queue.finish(0, b, delivered);
            assert_eq!(p.wait_acks(&waits).await.is_ok(), delivered);
        }
        assert_eq!(passed(&m), 2);
    }

    /// Each case changes one thing that makes the target's bytes differ from the request's,
    /// or the request not fit a batch by itself, or the lanes several: every sample still
    /// arrives, encoded and compressed as usual, and nothing is counted as passed through.
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
        let one = "queue: {shards: 1, max_samples_per_send: 2000}";
        let cases: [(&str, &str, &str, &WriteRequest); 8] = [
            ("several lanes", "", "queue: {shards: 2}", &whole),
            ("a task label", "    labels: {k: v}\n", one, &whole),
            (
                "an external label",
                "",
                "external_labels: {k: v}, queue: {shards: 1}",
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
                "protobuf_message: io.prometheus.write.v2.Request, queue: {shards: 1}",
                &whole,
            ),
            (
                "less than half a batch",
                "",
                "queue: {shards: 1, max_samples_per_send: 4002}",
                &whole,
            ),
            (
                "more than a batch",
                "",
                "queue: {shards: 1, max_samples_per_send: 1999}",
                &whole,
            ),
            ("metadata", "", one, &with_metadata),
        ];
        for (what, task, target, req) in cases {
            let (p, m) = pipeline(task, target);
            let stats = p.process(0, &proto::encode_snappy(req)).unwrap();
            let got = batches(&p).await;
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
