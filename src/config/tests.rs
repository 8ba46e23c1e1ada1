use super::*;
use crate::config::secrets::base64;
use crate::targets::TargetKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("promrelay-config-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The example from the issue that introduced the config file, verbatim apart from the paths.
const ISSUE_EXAMPLE: &str = r#"
server:
  listen: "127.0.0.1:9201"
  max_body_bytes: 33554432          # compressed request body limit
sources:                            # "default" always exists at /api/v1/write
  - name: cluster-a                 # ingests at /sources/cluster-a/api/v1/write
tasks:
  - name: ecs-to-central
    description: deliver ECS metrics
    enabled: true                   # default true
    source: default                 # default "default"
    filter: |                       # one condition per line, all ANDed; a YAML list works too
      __name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization
      regionId=cn-hangzhou
      namespace!~kube-system|monitoring
    labels: |                       # k=v per line, or a YAML map; overwrite existing labels
      deliver_test_key1=ssss
    targets:
      - name: central
        type: remote_write
        url: http://127.0.0.1:9090/api/v1/write
        external_labels: {source_cluster: cluster-01}   # only where the series lacks the label
        basic_auth: {username: u, password_file: pw}  # or password:
      - name: debug
        type: file                  # JSON lines, one flat sample object per line; path "-" = stdout
        path: ./delivered.jsonl
"#;

#[test]
fn the_documented_example_loads() {
    let dir = tempdir();
    std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
    let cfg = Config::from_yaml(ISSUE_EXAMPLE, &dir).unwrap();
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:9201");
    assert_eq!(cfg.server.max_body_bytes, 33554432);
    assert_eq!(cfg.sources, ["default", "cluster-a"]);
    let t = &cfg.tasks[0];
    assert_eq!(
        (t.name.as_str(), t.enabled, t.source.as_str()),
        ("ecs-to-central", true, "default")
    );
    assert_eq!(t.filter.matchers().len(), 3);
    assert_eq!(t.labels.len(), 1);
    let TargetKind::RemoteWrite(rw) = &t.targets[0].kind else {
        panic!()
    };
    match &rw.auth {
        Auth::Basic { username, password } => {
            assert_eq!((username.as_str(), password.as_str()), ("u", "s3cret"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rw.timeout, Duration::from_secs(30));
    assert_eq!(t.targets[0].queue.capacity, 100_000);
    let TargetKind::File(f) = &t.targets[1].kind else {
        panic!()
    };
    assert_eq!(
        f.path.as_deref(),
        Some(dir.join("./delivered.jsonl").as_path())
    );
    assert_eq!(t.targets[1].queue.shards, 1);
    assert_eq!(
        (f.max_file_bytes, f.max_files),
        (100 << 20, 5),
        "a file target is bounded by default"
    );
    assert!(
        !format!("{:?}", rw.auth).contains("s3cret"),
        "secrets never reach debug output"
    );
}

#[test]
fn the_bundled_default_config_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = Config::load(&root.join("promrelay.yaml")).unwrap();
    assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:9201");
    assert!(matches!(cfg.tasks[0].targets[0].kind, TargetKind::File(_)));
}

#[test]
fn list_filters_and_map_labels_work() {
    let yaml = r#"
tasks:
  - name: t
    filter: ["__name__=up", "job!=x"]
    labels: {b: "2", a: "1"}
    targets: [{name: f, type: file, path: "-"}]
"#;
    let cfg = Config::from_yaml(yaml, Path::new(".")).unwrap();
    assert_eq!(cfg.tasks[0].filter.matchers().len(), 2);
    let labels: Vec<_> = cfg.tasks[0]
        .labels
        .iter()
        .map(|(n, _)| n.to_vec())
        .collect();
    assert_eq!(labels, [b"a".to_vec(), b"b".to_vec()]);
    let TargetKind::File(f) = &cfg.tasks[0].targets[0].kind else {
        panic!()
    };
    assert!(f.path.is_none());
}

#[test]
fn connection_limits_have_defaults_an_operator_would_accept() {
    let cfg = Config::from_yaml("", Path::new(".")).unwrap();
    let s = &cfg.server;
    assert_eq!(s.header_read_timeout, Duration::from_secs(10));
    assert_eq!(s.body_read_timeout, Duration::from_secs(60));
    assert_eq!(s.idle_timeout, Duration::from_secs(120));
    assert_eq!(s.http2_keepalive_interval, Some(Duration::from_secs(30)));
    assert_eq!(s.http2_keepalive_timeout, Duration::from_secs(20));
    assert_eq!(s.http2_max_concurrent_streams, 100);
    assert_eq!(s.max_connections, 512);
    assert_eq!(s.inflight_body_wait, Duration::from_secs(5));
    assert!(s.max_inflight_body_bytes >= s.max_body_bytes);
    assert!(s.max_inflight_body_bytes <= 16 * s.max_body_bytes);
    let off = Config::from_yaml("server: {http2_keepalive_interval: 0s}", Path::new(".")).unwrap();
    assert_eq!(off.server.http2_keepalive_interval, None);
}

#[test]
fn the_inflight_body_budget_defaults_to_a_share_of_memory_within_one_to_sixteen_bodies() {
    use crate::config::server::default_inflight_body_bytes;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    for (max_body, memory, want) in [
        (32 * MIB, Some(64 * GIB), 512 * MIB), // capped at 16 bodies
        (32 * MIB, Some(4 * GIB), 256 * MIB),  // 1/16 of memory
        (32 * MIB, Some(256 * MIB), 32 * MIB), // at least one body
        (32 * MIB, None, 512 * MIB),           // memory unknown: 16 bodies
        (MIB, Some(GIB), 16 * MIB),
    ] {
        assert_eq!(
            default_inflight_body_bytes(max_body, memory),
            want,
            "{max_body} {memory:?}"
        );
    }
}

#[test]
fn errors_name_the_field() {
    let target = "targets: [{name: f, type: file, path: x}]";
    let cases: Vec<(String, &str)> = vec![
        ("server: {listen: nowhere}".into(), "server.listen: \"nowhere\" is not an IP:port"),
        ("server: {max_body_bytes: 0}".into(), "server.max_body_bytes: must be greater than 0"),
        ("server: {backpressure_status: 500}".into(), "server.backpressure_status: must be 429 or 503"),
        ("server: {retry_after: soon}".into(), "server.retry_after: \"soon\" is not a duration"),
        ("server: {max_labels_per_series: 0}".into(), "server.max_labels_per_series: must be greater than 0"),
        ("server: {colour: blue}".into(), "unknown field `colour`"),
        ("sources: [{name: default}, {name: default}]".into(), "sources[1].name: source \"default\" is defined twice"),
        ("sources: [{name: a, bearer_token: t, basic_auth: {username: u, password: p}}]".into(), "sources[0]: set either basic_auth or bearer_token"),
        ("sources: [{name: a, bearer_token_file: /nonexistent/t}]".into(), "sources[0].bearer_token_file: cannot read"),
        ("sources: [{name: 'a b'}]".into(), "sources[0].name"),
        (format!("tasks: [{{name: a, filter: 'job=(', {target}}}]"), "tasks[0].filter line 1: bad regex \"(\""),
        (format!("tasks: [{{name: a, filter: [ok=1, 'bad'], {target}}}]"), "tasks[0].filter[1]: expected one of"),
        (format!("tasks: [{{name: a, labels: 'x', {target}}}]"), "tasks[0].labels: expected key=value"),
        (format!("tasks: [{{name: a, source: nope, {target}}}]"), "tasks[0].source: unknown source \"nope\""),
        (format!("tasks: [{{name: a, {target}}}, {{name: a, {target}}}]"), "tasks[1].name: task \"a\" is defined twice"),
        ("tasks: [{name: a}]".into(), "tasks[0].targets: an enabled task needs at least one target"),
        ("tasks: [{name: a, targets: [{name: r, type: remote_write, url: 'ftp://x'}]}]".into(), "tasks[0].targets[0].url: \"ftp://x\" must start with http"),
        ("tasks: [{name: a, targets: [{name: r, type: remote_write, url: 'http://x', queue: {shards: 0}}]}]".into(), "tasks[0].targets[0].queue.shards: must be greater than 0"),
        ("tasks: [{name: a, targets: [{name: r, type: remote_write, url: 'http://x', queue: {min_backoff: 2s, max_backoff: 1s}}]}]".into(), "tasks[0].targets[0].queue.max_backoff"),
        ("tasks: [{name: a, targets: [{name: r, type: remote_write, url: 'http://x', basic_auth: {username: u}}]}]".into(), "tasks[0].targets[0].basic_auth.password: set"),
        ("tasks: [{name: a, targets: [{name: r, type: remote_write, url: 'http://x', bearer_token_file: /nonexistent/x}]}]".into(), "tasks[0].targets[0].bearer_token_file: cannot read"),
        ("tasks: [{name: a, targets: [{name: r, type: remote_write, url: 'http://x', bearer_token: a, access_key: {id: i, secret: s}}]}]".into(), "set at most one of"),
        ("tasks: [{name: a, targets: [{name: r, type: remote_write, url: 'http://x', tls: {}}]}]".into(), "tasks[0].targets[0].tls: is only used with an https"),
        ("tasks: [{name: a, targets: [{name: r, type: remote_write, url: 'http://x', external_labels: {'a-b': c}}]}]".into(), "tasks[0].targets[0].external_labels: label name \"a-b\""),
        ("tasks: [{name: a, targets: [{name: r, type: remote_write, url: 'http://x', colour: red}]}]".into(), "unknown field `colour`"),
        ("tasks: [{name: a, targets: [{name: r, type: carrier_pigeon}]}]".into(), "unknown variant `carrier_pigeon`"),
        ("tasks: [{name: a, targets: [{name: f, type: file, path: x}, {name: f, type: file, path: y}]}]".to_string(), "tasks[0].targets[1].name: target \"f\" is defined twice"),
        ("tasks: [{name: a, targets: [{name: f, type: file, path: x, histograms: bins}]}]".into(), "unknown variant `bins`, expected `drop` or `buckets`"),
        ("tasks: [{name: a, targets: [{name: k, type: kafka, brokers: 'h:9092', topic: t, format: remote_write, histograms: buckets}]}]".into(), "tasks[0].targets[0].histograms: `buckets` is for format: json"),
        ("server: {ack_timeout: 0s}".into(), "server.ack_timeout: must be greater than 0"),
        ("tasks: [{name: a, targets: [{name: f, type: file, path: '-', max_files: 2}]}]".into(), "tasks[0].targets[0].max_files: standard output (path: \"-\") is not rotated"),
        ("tasks: [{name: a, targets: [{name: f, type: file, path: x, max_file_bytes: 0}]}]".into(), "tasks[0].targets[0].max_file_bytes: must be greater than 0"),
        ("tasks: [{name: a, targets: [{name: f, type: file, path: x, max_file_bytes: 1GB}]}]".into(), "tasks[0].targets[0].max_file_bytes: invalid type: string \"1GB\", expected a whole number of bytes"),
        ("server: {header_read_timeout: 0s}".into(), "server.header_read_timeout: must be greater than 0"),
        ("server: {body_read_timeout: never}".into(), "server.body_read_timeout: \"never\" is not a duration"),
        ("server: {idle_timeout: 0s}".into(), "server.idle_timeout: must be greater than 0"),
        ("server: {http2_keepalive_timeout: 0s}".into(), "server.http2_keepalive_timeout: must be greater than 0"),
        ("server: {http2_max_concurrent_streams: 0}".into(), "server.http2_max_concurrent_streams: must be greater than 0"),
        ("server: {max_connections: 0}".into(), "server.max_connections: must be greater than 0"),
        ("server: {max_body_bytes: 1000, max_inflight_body_bytes: 999}".into(), "server.max_inflight_body_bytes: must be at least server.max_body_bytes (1000)"),
        ("server: {inflight_body_wait: soon}".into(), "server.inflight_body_wait: \"soon\" is not a duration"),
        ("server: {admin_listen: 'x'}".into(), "server.admin_listen: \"x\" is not an IP:port"),
        ("server: {listen: '127.0.0.1:9201', admin_listen: '127.0.0.1:9201'}".into(), "server.admin_listen: must differ"),
        ("server: {tls: {cert_file: /nonexistent/c, key_file: /nonexistent/k}}".into(), "server.tls.cert_file: /nonexistent/c is not a readable file"),
        ("sources: [{name: a, bearer_token_env: PROMRELAY_SURELY_UNSET_VARIABLE}]".into(), "sources[0].bearer_token_env: environment variable \"PROMRELAY_SURELY_UNSET_VARIABLE\" is not set"),
        ("sources: [{name: a, bearer_token: t, bearer_token_env: HOME}]".into(), "sources[0].bearer_token: set only one of"),
        (format!("tasks: [{{name: a, ack: spooled, {target}}}]"), "tasks[0].ack: `spooled` needs a spool"),
        (format!("tasks: [{{name: a, ack: sometimes, {target}}}]"), "unknown variant `sometimes`"),
        ("tasks: [{name: a, targets: [{name: f, type: file, path: x, spool: {dir: ''}}]}]".into(), "tasks[0].targets[0].spool.dir: must not be empty"),
        ("tasks: [{name: a, targets: [{name: f, type: file, path: x, spool: {dir: s, max_bytes: 1000}}]}]".into(), "tasks[0].targets[0].spool.max_bytes: must be at least"),
        ("tasks: [{name: a, targets: [{name: f, type: file, path: x, spool: {dir: s, on_full: panic}}]}]".into(), "unknown variant `panic`"),
        ("tasks: [{name: a, targets: [{name: f, type: file, path: x, spool: {dir: s}}, {name: g, type: file, path: y, spool: {dir: s}}]}]".into(), "tasks[0].targets[1].spool.dir: ./s is already the spool of tasks[0].targets[0]"),
    ];
    for (yaml, want) in cases {
        let err = Config::from_yaml(&yaml, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(want),
            "config {yaml}\n  error: {err}\n  wanted: {want}"
        );
    }
}

#[test]
fn secrets_come_from_the_environment_and_ack_defaults_follow_the_spool() {
    // HOME is set in any test environment; the test cannot set a variable of its own without
    // unsafe code, which this crate forbids.
    let home = std::env::var("HOME").expect("HOME");
    let cfg = Config::from_yaml(
        r#"
sources: [{name: fleet, basic_auth: {username: u, password_env: HOME}}]
tasks:
  - name: plain
    targets: [{name: f, type: file, path: x}]
  - name: durable
    targets: [{name: f, type: file, path: x, spool: {dir: s}}, {name: g, type: file, path: y}]
  - name: confirmed
    ack: delivered
    targets: [{name: f, type: file, path: x, spool: {dir: t, on_full: drop_oldest}}]
"#,
        Path::new("/base"),
    )
    .unwrap();
    match &cfg.source_auth[1] {
        Auth::Basic { password, .. } => assert_eq!(password, &home),
        other => panic!("{other:?}"),
    }
    let acks: Vec<Ack> = cfg.tasks.iter().map(|t| t.ack).collect();
    assert_eq!(acks, [Ack::Queued, Ack::Spooled, Ack::Delivered]);
    let spool = cfg.tasks[2].targets[0].spool.as_ref().unwrap();
    assert_eq!(spool.dir, Path::new("/base/t"));
    assert_eq!(spool.on_full, crate::targets::spool::OnFull::DropOldest);
    assert_eq!(spool.max_bytes, 1 << 30);
    assert!(format!("{:?}", cfg.source_auth[1]).contains("<secret>"));
}

#[test]
fn the_complete_example_in_the_configuration_docs_is_valid() {
    let doc = include_str!("../../docs/configuration.md");
    let section = doc
        .split("## A complete example")
        .nth(1)
        .expect("the section exists");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml block");
    let base = tempdir();
    std::fs::create_dir_all(base.join("secrets")).unwrap();
    for f in ["central.pw", "ca.pem", "cluster-a.token", "admin.token"] {
        std::fs::write(base.join("secrets").join(f), "x\n").unwrap();
    }
    let cfg = Config::from_yaml(yaml, &base).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(cfg.tasks[0].ack, Ack::Spooled);
    assert_eq!(
        cfg.tasks[0].targets[0].spool.as_ref().unwrap().dir,
        base.join("spool/central")
    );
    assert!(cfg.server.admin_listen.is_some());
    assert!(cfg.server.admin.tasks_dir.is_some());
    assert!(cfg.server.admin.auth.header_value().is_some());
}

#[test]
fn durations() {
    for (t, ms) in [
        ("500ms", 500),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h30m", 5_400_000),
        ("1m30s", 90_000),
    ] {
        assert_eq!(parse_duration(t).unwrap(), Duration::from_millis(ms), "{t}");
    }
    for bad in ["", "5", "s", "5x", "1.5s", "-1s"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn base64_matches_rfc4648_vectors() {
    for (i, o) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(i.as_bytes()), o);
    }
}

#[test]
fn sources_can_require_credentials_including_the_default_one() {
    let dir = tempdir();
    std::fs::write(dir.join("src.pw"), "pw1\n").unwrap();
    let yaml = r#"
sources:
  - name: default
    bearer_token: tok
  - name: fleet-a
    basic_auth: {username: fleet, password_file: src.pw}
  - name: open
"#;
    let cfg = Config::from_yaml(yaml, &dir).unwrap();
    assert_eq!(cfg.sources, ["default", "fleet-a", "open"]);
    let headers: Vec<Option<String>> = cfg.source_auth.iter().map(Auth::header_value).collect();
    assert_eq!(
        headers,
        [
            Some("Bearer tok".to_string()),
            Some(format!("Basic {}", base64(b"fleet:pw1"))),
            None
        ]
    );
}

/// A config of a few lines in each section, into which each case below puts one mistake.
const BASE: &str = "\
server:
  listen: \"127.0.0.1:9201\"
  retry_after: 1s
sources:
  - name: fleet
tasks:
  - name: a
    filter: |
      job=ok
      id=i-.*
    targets:
      - name: f
        type: file
        path: x
      - name: g
        type: file
        path: y
        spool: {dir: s, max_bytes: 10485760}
";

#[test]
fn broken_configs_name_the_exact_path_line_and_column_of_the_key() {
    // (replace, with, path named, line, column, message)
    let cases: &[(&str, &str, &str, usize, usize, &str)] = &[
        (
            "max_bytes: 10485760",
            "max_bytes: lots",
            "tasks[0].targets[1].spool.max_bytes",
            18,
            25,
            "invalid type: string \"lots\", expected a whole number of bytes",
        ),
        (
            "max_bytes: 10485760",
            "max_bytes: 1000",
            "tasks[0].targets[1].spool.max_bytes",
            18,
            25,
            "must be at least 1048576 (1 MiB)",
        ),
        (
            "path: y\n",
            "path: y\n        queue: {capacity: -5}\n",
            "tasks[0].targets[1].queue.capacity",
            18,
            17,
            "invalid type: integer `-5`, expected a whole number of samples",
        ),
        (
            "retry_after: 1s",
            "retry_after: {soon: yes}",
            "server.retry_after",
            3,
            3,
            "invalid type: map, expected a duration such as 30s",
        ),
        (
            "retry_after: 1s",
            "retry_after: soon",
            "server.retry_after",
            3,
            3,
            "\"soon\" is not a duration (examples: 500ms, 30s, 5m, 1h30m)",
        ),
        (
            "retry_after: 1s",
            "backpressure_status: lots",
            "server.backpressure_status",
            3,
            3,
            "invalid type: string \"lots\", expected an HTTP status code such as 503",
        ),
        (
            "listen: \"127.0.0.1:9201\"",
            "listen: nowhere",
            "server.listen",
            2,
            3,
            "\"nowhere\" is not an IP:port address",
        ),
        (
            "path: x",
            "path: x\n        colour: red",
            "tasks[0].targets[0].colour",
            15,
            9,
            "unknown field `colour`, expected one of",
        ),
        (
            "type: file\n        path: y",
            "type: carrier_pigeon\n        path: y",
            "tasks[0].targets[1].type",
            16,
            9,
            "unknown variant `carrier_pigeon`, expected one of `remote_write`, `file`, `kafka`",
        ),
        (
            "        type: file\n        path: x\n",
            "        path: x\n",
            "tasks[0].targets[0]",
            12,
            9,
            "missing field `type`",
        ),
        (
            "id=i-.*",
            "id=i-(",
            "tasks[0].filter line 2",
            10,
            7,
            "bad regex \"i-(\": unclosed group, at character 3: \"(\"",
        ),
        (
            "  - name: fleet",
            "  - name: 'fl eet'",
            "sources[0].name",
            5,
            5,
            "\"fl eet\" must be non-empty",
        ),
        (
            "  - name: g",
            "  - name: f",
            "tasks[0].targets[1].name",
            15,
            9,
            "target \"f\" is defined twice in this task",
        ),
        (
            "    targets:\n",
            "    enabled: maybe\n    targets:\n",
            "tasks[0].enabled",
            11,
            5,
            "invalid type: string \"maybe\", expected a boolean",
        ),
    ];
    for &(from, to, path, line, column, message) in cases {
        assert!(BASE.contains(from), "{from:?} is not in the base config");
        let yaml = BASE.replacen(from, to, 1);
        let err = Config::from_yaml(&yaml, Path::new("/base")).unwrap_err();
        let (field, got) = match &err {
            ConfigError::Yaml { field, message, .. }
            | ConfigError::Invalid { field, message, .. } => (field.as_str(), message.as_str()),
            other => panic!("{other}"),
        };
        assert_eq!(field, path, "{err}\n{yaml}");
        assert!(got.starts_with(message), "{err}\n  wanted: {message}");
        assert_eq!(
            err.location(),
            Some(Location { line, column }),
            "{err}\n{yaml}"
        );
        let shown = err.to_string();
        assert_eq!(
            shown,
            format!("{path}: {got} (line {line}, column {column})"),
            "the message names path, reason and place in one line"
        );
    }
    // Not YAML at all: no path, the parser's position.
    let err = Config::from_yaml("tasks: [\n", Path::new(".")).unwrap_err();
    assert!(err.location().is_some(), "{err}");
}
