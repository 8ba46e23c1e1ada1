//! The task index must answer exactly as running every task's filter on every series.

use super::*;
use crate::tools::workload::{METRIC_NAMES, WorkloadSpec};
use std::path::Path;

/// Tasks of every kind of filter the index treats differently: literal names and sets, name
/// patterns of each strategy (prefix, suffix, substring, DFA, non-empty), literal values and
/// patterns of other labels, values a missing label has (the empty one), a regex no DFA can
/// run, negations, no condition at all, and a name nothing carries.
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
    for f_ in [
        r#"["__name__=~.*_total"]"#,
        r#"["__name__=.*memory.*", "regionId=cn-.*"]"#,
        r#"["__name__=(node|container)_cpu_.+"]"#,
        r#"["__name__=container_.*", "namespace=default"]"#,
        r#"["__name__=.+"]"#,
        r#"["job=~node-.*"]"#,
        r#"["job=node-exporter|kubernetes-pods", "cpu=cpu-1.*"]"#,
        r#"["__name__=(?i)NODE_.*"]"#,
        r#"["__name__=(?i)NODE_.*", "namespace=~(?-u:\\b)kube.*"]"#,
        r#"["namespace=~(?-u:\\b)kube.*|(?-u:\\<)mon.*"]"#,
        r#"["__name__=node\\_(cpu|memory)_.*"]"#,
        r#"["__name__=\\<node.*"]"#,
        r#"["id=i-2ze0mxp0000[0-9a-f]+", "instance=~.*\\.[0-9]*1:9100"]"#,
        r#"["absent=|x", "__name__!~node_.*"]"#,
        r#"["absent=(x.*)?", "namespace!=default"]"#,
        r#"["absent=x.*"]"#,
        r#"["__name__=.*\\bcpu\\b.*"]"#,
        r#"["__name__=.*"]"#,
    ] {
        f.push(f_.to_owned());
    }
    f.push(format!("[\"__name__!={}\"]", METRIC_NAMES[1]));
    f.push("[\"namespace=kube-system|default\"]".into());
    f.push("[]".into());
    f.push("[\"__name__=nothing_has_this_name\"]".into());
    f
}

pub(super) fn config(filters: &[String]) -> Config {
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
    // Every task keeps something but three (`absent=x.*`, `\bcpu\b`, a name nothing has), so
    // no case passes by matching nothing on both paths.
    let empty = together.iter().filter(|&&(m, _)| m == 0).count();
    assert_eq!(empty, 3, "{together:?}");
}

/// Every series a target receives sits in the lane its own hash picks (the hash computed for
/// it alone), through the grouped, four-wide hashing: for one task and for two overlapping
/// ones (task by task: a series comes once per task that keeps it), and for many (the index),
/// with more matched pairs than a group holds.
#[tokio::test]
async fn delivered_series_sit_in_the_lanes_their_own_hashes_pick() {
    let spec = WorkloadSpec {
        series: 3 * GROUP_PAIRS + 7,
        ..Default::default()
    };
    let body = crate::proto::encode_snappy(&spec.request(0));
    // Each series' place in the request, by its labels.
    let key = |s: &crate::batch::SeriesView<'_>| -> Vec<Vec<u8>> {
        s.labels()
            .flat_map(|(n, v)| [n.to_vec(), v.to_vec()])
            .collect()
    };
    let mut request = SeriesBatch::new();
    request.decode_snappy(&body, Default::default()).unwrap();
    let place: HashMap<Vec<Vec<u8>>, usize> = request
        .iter()
        .enumerate()
        .map(|(i, s)| (key(&s), i))
        .collect();
    let task = |i: usize, names: &[&str], shards: usize| {
        let filter = if names.is_empty() {
            "[]".to_owned()
        } else {
            format!("[\"__name__={}\"]", names.join("|"))
        };
        format!(
            "  - name: t{i}\n    filter: {filter}\n    targets: [{{name: r, type: remote_write, url: \"http://127.0.0.1:9/w\", queue: {{capacity: 100000000, shards: {shards}}}}}]\n"
        )
    };
    let n = METRIC_NAMES.len();
    let cases: Vec<(Vec<String>, bool)> = vec![
        (vec![task(0, &[], 4)], false),
        (
            vec![
                task(0, &METRIC_NAMES[..2 * n / 3], 4),
                task(1, &METRIC_NAMES[n / 3..], 2),
            ],
            false,
        ),
        (
            (0..n)
                .map(|i| task(i, &[METRIC_NAMES[i], METRIC_NAMES[(i + 1) % n]], 3))
                .collect(),
            true,
        ),
    ];
    for (tasks, indexed) in cases {
        let metrics = Metrics::new();
        let p = Pipeline::new(
            Config::from_yaml(&format!("tasks:\n{}", tasks.concat()), Path::new(".")).unwrap(),
            &metrics,
        )
        .unwrap();
        assert_eq!(p.sources[0].index.is_some(), indexed);
        let stats = p.process(0, &body).unwrap();
        let mut delivered = 0;
        for t in p.targets() {
            for lane in 0..t.queue.lanes() {
                t.queue.flush(lane);
                // Every batch the lane holds (a short wait answers "no more").
                while let Ok(Some(batch)) = tokio::time::timeout(
                    std::time::Duration::from_millis(50),
                    t.queue.next_batch(lane),
                )
                .await
                {
                    let mut got = SeriesBatch::new();
                    got.decode_protobuf(&batch.body).unwrap();
                    let mut last = None;
                    for s in got.iter() {
                        assert_eq!(s.hash() % t.queue.lanes() as u64, lane as u64);
                        // In a lane, series keep the request's order.
                        let at = Some(place[&key(&s)]);
                        assert!(at > last, "{at:?} after {last:?}");
                        last = at;
                    }
                    delivered += got.sample_count();
                }
            }
        }
        let matched: u64 = (0..tasks.len())
            .map(|i| metrics.task(&format!("t{i}")).matched.get())
            .sum();
        assert_eq!(delivered as u64, matched, "{} tasks", tasks.len());
        // Several tasks keep some series twice.
        assert!(tasks.len() == 1 || matched > stats.samples as u64);
    }
}
