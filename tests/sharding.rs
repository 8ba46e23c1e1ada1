//! One remote_write target sharded over three real Prometheus receivers (`urls`): with
//! `replicas: 1` every series is in exactly one receiver, with `replicas: 2` in exactly two, the
//! union is what was sent, and a receiver down for 20 s loses nothing while the others keep
//! receiving their share.

mod common;

use common::*;
use promrelay::proto;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

type Ids = BTreeSet<String>;

/// The `id`s of `metric` a receiver holds (with any points in the last 10 minutes), and how
/// many points each has.
async fn held(r: &Prometheus, metric: &str) -> BTreeMap<String, usize> {
    r.raw_series(metric, "10m", now_ms())
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(labels, points)| (labels["id"].clone(), points.len()))
        .collect()
}

/// A per-receiver metric of the `once` task's sharded target.
fn receiver(metric: &str, r: &Prometheus) -> String {
    format!(
        "promrelay_target_receiver_{metric}{{task=\"once\",target=\"spread\",receiver=\"{}\"}}",
        r.write_url()
    )
}

/// Wait until every one of `n` series of `metric` is held by exactly `copies` receivers, with
/// `points` points each; returns each receiver's ids.
async fn wait_spread(
    receivers: &[&Prometheus],
    metric: &str,
    n: usize,
    copies: usize,
    points: usize,
) -> Vec<Ids> {
    eventually(Duration::from_secs(60), metric, || async {
        let mut per = Vec::new();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for r in receivers {
            let h = held(r, metric).await;
            if let Some((id, p)) = h.iter().find(|&(_, &p)| p != points) {
                return Err(format!("series {id} has {p} points, not {points}"));
            }
            for id in h.keys() {
                *count.entry(id.clone()).or_default() += 1;
            }
            per.push(h.into_keys().collect::<Ids>());
        }
        if count.len() != n {
            return Err(format!("{} of {n} series arrived", count.len()));
        }
        if let Some((id, c)) = count.iter().find(|&(_, &c)| c != copies) {
            return Err(format!("series {id} is in {c} receivers, not {copies}"));
        }
        Ok(per)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_are_sharded_once_or_twice_and_a_receiver_down_loses_nothing() {
    let r0 = Prometheus::receiver().await;
    let r1 = Prometheus::receiver().await;
    let mut r2 = Prometheus::receiver().await;
    let urls = format!(
        "[\"{}\", \"{}\", \"{}\"]",
        r0.write_url(),
        r1.write_url(),
        r2.write_url()
    );
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: once
    filter: "__name__=shard_once"
    targets:
      - name: spread
        type: remote_write
        urls: {urls}
        queue: {{shards: 2, batch_send_deadline: 100ms, min_backoff: 50ms, max_backoff: 1s}}
  - name: twice
    filter: "__name__=shard_twice"
    targets:
      - name: spread
        type: remote_write
        urls: {urls}
        replicas: 2
        shard_by: [id]
        queue: {{shards: 2, batch_send_deadline: 100ms}}
"#
    ))
    .await;
    let base = now_ms() - 60_000;
    for metric in ["shard_once", "shard_twice"] {
        let r = remote_write(
            &relay.write_url(),
            proto::encode_snappy(&series_request(metric, 300, base, 1.0)),
        )
        .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let all = [&r0, &r1, &r2];
    let once = wait_spread(&all, "shard_once", 300, 1, 1).await;
    for ids in &once {
        // 300 series over 3 receivers by rendezvous hashing: each gets a real share.
        assert!(
            ids.len() > 50,
            "an uneven spread: {:?}",
            once.iter().map(Ids::len).collect::<Vec<_>>()
        );
    }
    wait_spread(&all, "shard_twice", 300, 2, 1).await;

    // r2 down for 20 s: a second round of samples; r0 and r1 get theirs meanwhile, r2's share
    // waits in its own lanes and arrives when it is back.
    let r2_up = receiver("up", &r2);
    let r2_url = r2.write_url();
    let r2_retries = receiver("retries_total", &r2);
    let second = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let r = remote_write(
            &relay.write_url(),
            proto::encode_snappy(&series_request("shard_once", 300, base + 1000, 2.0)),
        )
        .await;
        assert_eq!(
            r.status,
            204,
            "taken while a receiver is down: {}",
            r.text()
        );
        for (r, ids) in [(&r0, &once[0]), (&r1, &once[1])] {
            eventually(
                Duration::from_secs(15),
                "the healthy receivers' share",
                || async {
                    let h = held(r, "shard_once").await;
                    if ids.iter().all(|id| h.get(id) == Some(&2)) && h.len() == ids.len() {
                        Ok(())
                    } else {
                        Err(format!("{h:?}"))
                    }
                },
            )
            .await;
        }
        // Each receiver's own metrics: the stopped one down and retrying, the others up.
        relay
            .wait_metric(&r2_up, "the stopped receiver down", |v| v == 0.0)
            .await;
        assert!(relay.metric(&r2_retries).await > Some(0.0));
        // And in the task API's status: the stopped receiver alone not healthy, with its error.
        let status = get(&format!("{}/api/v1/tasks/once", relay.base()))
            .await
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
        let receivers = &status["status"]["targets"][0]["receivers"];
        let states: Vec<(&str, &str)> = receivers
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["url"].as_str().unwrap(), r["state"].as_str().unwrap()))
            .collect();
        assert_eq!(states.len(), 3, "{receivers}");
        for (url, state) in states {
            assert_eq!(state == "healthy", url != r2_url, "{receivers}");
        }
        for r in [&r0, &r1] {
            assert_eq!(relay.metric(&receiver("up", r)).await, Some(1.0));
            assert!(relay.metric(&receiver("delivered_samples_total", r)).await > Some(0.0));
        }
    };
    tokio::join!(r2.restart_after(Duration::from_secs(20)), second);
    let after = wait_spread(&[&r0, &r1, &r2], "shard_once", 300, 1, 2).await;
    assert_eq!(after, once, "every series stays with its receiver");
    relay
        .wait_metric(&receiver("up", &r2), "the restarted receiver up", |v| {
            v == 1.0
        })
        .await;
    // Its share of both rounds, counted as its own.
    let delivered = relay
        .metric(&receiver("delivered_samples_total", &r2))
        .await;
    assert_eq!(delivered, Some(2.0 * once[2].len() as f64));
    assert_eq!(
        relay
            .metric("promrelay_target_dropped_samples_total{task=\"once\",target=\"spread\",reason=\"refused\"}")
            .await,
        Some(0.0)
    );
}
