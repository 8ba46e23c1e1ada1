//! The command line: `check-config`, refusing a bad config at start, the bundled config running
//! as it is, and a SIGTERM that drains queues before exiting.

mod common;

use common::*;
use promrelay::proto;
use promrelay::tools::workload::WorkloadSpec;
use std::process::Command;
use std::time::Duration;

fn promrelay(args: &[&str]) -> std::process::Output {
    Command::new(relay_bin()).args(args).output().unwrap()
}

#[test]
fn check_config_accepts_the_bundled_config_and_names_the_bad_field() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = promrelay(&["check-config", &format!("{root}/promrelay.yaml")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (1 sources, 1 tasks, 1 targets)"));

    let dir = TempDir::new("cli");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "tasks:\n  - name: a\n    filter: |\n      job=ok\n      regionId=cn-(\n    targets: [{name: f, type: file, path: x}]\n").unwrap();
    for args in [
        vec!["check-config", bad.to_str().unwrap()],
        vec!["run", "--config", bad.to_str().unwrap()],
    ] {
        let out = promrelay(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("tasks[0].filter line 2: bad regex \"cn-(\""),
            "{args:?}: {err}"
        );
    }
    let out = promrelay(&["check-config", "/nonexistent/promrelay.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_config_runs_and_sigterm_drains_the_queue_first() {
    // The bundled config, on a free port and in a temp dir (its file target path is relative).
    let root = env!("CARGO_MANIFEST_DIR");
    let bundled = std::fs::read_to_string(format!("{root}/promrelay.yaml")).unwrap();
    let body = bundled
        .lines()
        .skip_while(|l| !l.starts_with("tasks:"))
        .collect::<Vec<_>>()
        .join("\n")
        // A deadline far away: only the shutdown drain can write the file.
        .replace(
            "path: ./delivered.jsonl",
            "path: ./delivered.jsonl\n        queue: {batch_send_deadline: 1h}",
        );
    let mut relay = Relay::start(&body).await;
    let req = WorkloadSpec {
        series: 50,
        ..Default::default()
    }
    .request(0);
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let file = relay.dir.path().join("delivered.jsonl");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "",
        "nothing is written before the deadline"
    );

    let status = relay
        .proc
        .terminate(Duration::from_secs(30))
        .expect("promrelay did not exit after SIGTERM");
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 50);
    for (line, ts) in lines.iter().zip(&req.timeseries) {
        assert_eq!(line["__name__"], ts.labels[0].value);
        assert_eq!(line["delivered_by"], "promrelay");
        assert_eq!(line["timestamp"], ts.samples[0].timestamp.to_string());
    }
    assert!(relay.proc.log_text().contains("shutting down"));
}

#[test]
fn help_for_every_command_lists_each_flag_with_a_description() {
    for (command, flags) in [
        ("run", &["--config", "--log.level", "--log.format"][..]),
        ("check-config", &[][..]),
        (
            "bench",
            &["--url", "--pid", "--connections", "--duration"][..],
        ),
        ("blackhole", &["--listen"][..]),
        (
            "kafka-tail",
            &["--brokers", "--topic", "--from-beginning"][..],
        ),
    ] {
        let out = promrelay(&["help", command]);
        assert!(out.status.success(), "promrelay help {command}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("Usage: promrelay {command}")),
            "{text}"
        );
        for flag in flags {
            let lines: Vec<&str> = text.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.trim_start().starts_with(flag) || l.contains(&format!(", {flag}")))
                .unwrap_or_else(|| panic!("promrelay help {command}: no {flag}\n{text}"));
            // The description follows the flag on its line, or (long help) on the next one.
            let after = lines[at].split_once(flag).map_or("", |(_, a)| a);
            let described = after.split_whitespace().count() >= 2
                || lines
                    .get(at + 1)
                    .is_some_and(|next| next.split_whitespace().count() >= 2);
            assert!(
                described,
                "promrelay help {command}: {flag} has no description\n{text}"
            );
        }
    }
    let out = promrelay(&["help", "run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[possible values: debug, info, warn, error]"),
        "{text}"
    );
    assert!(
        text.contains("- logfmt:") && text.contains("- json:"),
        "{text}"
    );
}
