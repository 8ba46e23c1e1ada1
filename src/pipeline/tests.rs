//! The task index must answer exactly as running every task's filter on every series.

use super::*;
use crate::tools::workload::{METRIC_NAMES, WorkloadSpec};
use std::path::Path;

/// Tasks of every kind of filter the index treats differently: literal names, sets, regexes,
/// negations, no name condition at all, and a name nothing carries.
fn filters() -> Vec<String> {
    let mut f: Vec<String> = METRIC_NAMES
        .iter()
        .take(5)
        .map(|n| format!("[\"__name__={n}\"]"))
        .collect();
    f.push(format!(
        "[\"__name__={}|{}\", \"id=i-2ze0mxp.*\"]",
        METRIC_NAMES[0], METRIC_NAMES[6]
    ));
    f.push("[\"__name__=node_.*\"]".into());
    f.push(format!("[\"__name__!={}\"]", METRIC_NAMES[1]));
    f.push("[\"namespace=kube-system|default\"]".into());
    f.push("[]".into());
    f.push("[\"__name__=nothing_has_this_name\"]".into());
    f
}

fn config(filters: &[String]) -> Config {
    let tasks: String = filters
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!(
                "  - name: t{i}\n    filter: {f}\n    targets: [{{name: r, type: remote_write, url: \"http://127.0.0.1:9/w\", queue: {{capacity: 100000000}}}}]\n"
            )
        })
        .collect();
    Config::from_yaml(&format!("tasks:\n{tasks}"), Path::new(".")).unwrap()
}

/// Matched samples per task, and the encoded bytes per task's target, after `requests`.
fn run(
    p: &Pipeline,
    metrics: &Metrics,
    names: &[String],
    requests: &[Vec<u8>],
) -> Vec<(u64, usize)> {
    let mut bytes = vec![0usize; p.targets().len()];
    for body in requests {
        p.process(0, body).unwrap();
        for (i, t) in p.targets().iter().enumerate() {
            bytes[i] += t.queue.memory_held();
            t.queue.discard_all();
        }
    }
    names
        .iter()
        .zip(bytes)
        .map(|(n, b)| (metrics.task(n).matched.get(), b))
        .collect()
}

#[test]
fn the_task_index_matches_exactly_what_every_filter_would() {
    let filters = filters();
    let names: Vec<String> = (0..filters.len()).map(|i| format!("t{i}")).collect();
    let spec = WorkloadSpec {
        series: 400,
        ..Default::default()
    };
    let requests: Vec<Vec<u8>> = (0..5)
        .map(|n| crate::proto::encode_snappy(&spec.request(n)))
        .collect();

    let metrics = Metrics::new();
    let indexed = Pipeline::new(config(&filters), &metrics).unwrap();
    assert!(
        indexed.sources[0].index.is_some(),
        "{} tasks are indexed",
        filters.len()
    );
    let together = run(&indexed, &metrics, &names, &requests);

    // Each task alone: no index, the plain filter over every series.
    for (i, f) in filters.iter().enumerate() {
        let m = Metrics::new();
        let alone = Pipeline::new(config(std::slice::from_ref(f)), &m).unwrap();
        assert!(alone.sources[0].index.is_none());
        let got = run(&alone, &m, &["t0".to_owned()], &requests);
        assert_eq!(got[0], together[i], "task {i} ({f}): alone vs indexed");
    }
    assert!(together.iter().any(|&(m, _)| m > 0) && together.iter().any(|&(m, _)| m == 0));
}

/// Series are routed a window at a time while the body is decoded (`process_in`): a request
/// found invalid after several windows were delivered into the targets' scratch must still be
/// refused whole, with nothing queued or counted, and leave nothing behind for the next one;
/// and routing by windows must queue exactly what routing the whole decoded batch queues.
#[test]
fn a_body_found_invalid_after_routed_windows_is_refused_whole() {
    let filters = vec!["[]".to_owned(), "[\"__name__=node_.*\"]".to_owned()];
    let names = ["t0".to_owned(), "t1".to_owned()];
    let valid = WorkloadSpec::default().request(0);
    let mut invalid = valid.clone();
    // Valid series first (many windows of them), then one with an empty label name.
    invalid.timeseries.push(crate::proto::TimeSeries {
        labels: vec![crate::proto::Label::new("", "x")],
        ..Default::default()
    });
    let valid = crate::proto::encode_snappy(&valid);
    let invalid = crate::proto::encode_snappy(&invalid);

    let metrics = Metrics::new();
    let p = Pipeline::new(config(&filters), &metrics).unwrap();
    let err = p.process(0, &invalid).unwrap_err();
    assert!(matches!(err, IngestError::Decode(_)), "{err}");
    for t in p.targets() {
        assert_eq!(t.queue.memory_held(), 0, "nothing queued");
    }
    for n in &names {
        assert_eq!(metrics.task(n).matched.get(), 0, "nothing counted");
    }
    assert_eq!(metrics.source("default").series.get(), 0);
    let after_refusal = run(&p, &metrics, &names, std::slice::from_ref(&valid));

    // The same valid request on a fresh pipeline, routed whole (decoded before any routing).
    let m = Metrics::new();
    let whole = Pipeline::new(config(&filters), &m).unwrap();
    whole
        .process_with(0, Protocol::V1, &mut Vec::new(), |batch, limits| {
            batch.decode_snappy(&valid, limits)
        })
        .unwrap();
    let bytes: Vec<usize> = whole
        .targets()
        .iter()
        .map(|t| t.queue.memory_held())
        .collect();
    let routed_whole: Vec<(u64, usize)> = names
        .iter()
        .zip(bytes)
        .map(|(n, b)| (m.task(n).matched.get(), b))
        .collect();
    assert_eq!(after_refusal, routed_whole);
    assert_eq!(after_refusal[0].0, 2000);
}
