use super::*;
use crate::batch::SeriesBatch;
use crate::proto::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;

/// (pattern, value, expected for an anchored regex match, expected strategy)
const REGEX_TABLE: &[(&str, &str, bool, &str)] = &[
    (
        "AliyunEcs_CPUUtilization",
        "AliyunEcs_CPUUtilization",
        true,
        "literal",
    ),
    (
        "AliyunEcs_CPUUtilization",
        "AliyunEcs_CPUUtilization_x",
        false,
        "literal",
    ),
    (
        "AliyunEcs_CPUUtilization",
        "xAliyunEcs_CPUUtilization",
        false,
        "literal",
    ),
    ("a\\.b", "a.b", true, "literal"),
    ("a\\.b", "axb", false, "literal"),
    ("", "", true, "literal"),
    ("", "x", false, "literal"),
    (
        "AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization",
        "AliyunEcs_memory_usedutilization",
        true,
        "set",
    ),
    (
        "AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization",
        "AliyunEcs_CPUUtilization",
        true,
        "set",
    ),
    (
        "AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization",
        "AliyunEcs_CPU",
        false,
        "set",
    ),
    ("a|", "", true, "set"),
    ("a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q|r|s", "s", true, "set"),
    ("a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q|r|s", "t", false, "set"),
    ("i-2ze0mxp.*", "i-2ze0mxp000001", true, "prefix"),
    ("i-2ze0mxp.*", "i-2ze0mxp", true, "prefix"),
    ("i-2ze0mxp.*", "x-i-2ze0mxp1", false, "prefix"),
    (".*_total", "http_requests_total", true, "suffix"),
    (".*_total", "http_requests_total_x", false, "suffix"),
    (".*ecs.*", "my-ecs-host", true, "contains"),
    (".*ecs.*", "ec", false, "contains"),
    (".*", "", true, "any"),
    (".*", "anything\nwith newline", true, "any"),
    (".+", "", false, "non-empty"),
    (".+", "x", true, "non-empty"),
    ("cn-(hangzhou|beijing)", "cn-beijing", true, "dfa"),
    ("cn-(hangzhou|beijing)", "cn-beijing2", false, "dfa"),
    ("cn-(hangzhou|beijing)", "xcn-beijing", false, "dfa"),
    ("[0-9]+", "12345", true, "dfa"),
    ("[0-9]+", "123a", false, "dfa"),
    ("(?i)error", "ERROR", true, "dfa"),
    ("a.c", "a\nc", true, "dfa"), // (?s): dot matches newline, as in Prometheus
    ("foo\\d", "foo1", true, "dfa"),
    ("a|b.*", "bxx", true, "dfa"),
    ("a|b.*", "axx", false, "dfa"),
    ("(a|b)?", "", true, "dfa"),
    ("(a|b)?", "ab", false, "dfa"),
    ("x[^y]z", "x\u{1F600}z", true, "dfa"),
    ("x[^y]z", "x\u{1F600}\u{1F600}z", false, "dfa"),
    ("caf[é]+", "caféé", true, "dfa"),
    ("caf[é]+", "cafe", false, "dfa"),
    // `\<` and `\>` are word boundaries, not the punctuation they escape.
    ("a\\<.*", "a<x", false, "meta"),
    ("x\\>", "x", true, "meta"),
    ("node\\_.*", "node_x", true, "prefix"),
    // Their ASCII forms, which a DFA runs.
    ("(?-u:\\<)node.*", "node_x", true, "dfa"),
    ("x(?-u:\\<)node.*", "xnode_x", false, "dfa"),
    ("\\bfoo\\b", "foo", true, "meta"), // Unicode word boundary: no dense DFA
];

#[test]
fn every_strategy_answers_like_the_anchored_regex() {
    for &(pattern, value, want, strategy) in REGEX_TABLE {
        let m = Matcher::new("l", MatchOp::Regex, pattern).unwrap();
        assert_eq!(m.strategy(), strategy, "strategy of {pattern:?}");
        assert_eq!(
            m.matches_value(value.as_bytes()),
            want,
            "{pattern:?} =~ {value:?}"
        );
        let truth = regex_automata::meta::Regex::new(&format!("^(?s:{pattern})$")).unwrap();
        assert_eq!(
            truth.is_match(value),
            want,
            "table row {pattern:?} {value:?} is wrong"
        );
        let neg = Matcher::new("l", MatchOp::NotRegex, pattern).unwrap();
        assert_eq!(
            neg.matches_value(value.as_bytes()),
            !want,
            "{pattern:?} !~ {value:?}"
        );
    }
}

#[test]
fn parses_every_operator() {
    let cases: &[(&str, &str, MatchOp, &str)] = &[
        ("__name__=up|down", "__name__", MatchOp::Regex, "up|down"),
        ("job=~api.*", "job", MatchOp::Regex, "api.*"),
        ("job==a.b", "job", MatchOp::Equal, "a.b"),
        ("job!=a.b", "job", MatchOp::NotEqual, "a.b"),
        ("job!~a.*", "job", MatchOp::NotRegex, "a.*"),
        ("  job = \"x y\"  ", "job", MatchOp::Regex, "x y"),
        (
            "job=\"say \\\"hi\\\" \\. ok\"",
            "job",
            MatchOp::Regex,
            "say \"hi\" \\. ok",
        ),
        ("_a1=", "_a1", MatchOp::Regex, ""),
    ];
    for &(line, name, op, pattern) in cases {
        let m = Matcher::parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(
            (m.name(), m.op(), m.pattern()),
            (name.as_bytes(), op, pattern),
            "{line}"
        );
    }
}

#[test]
fn literal_operators_do_not_interpret_regex() {
    let eq = Matcher::parse("job==a.b").unwrap();
    assert!(eq.matches_value(b"a.b"));
    assert!(!eq.matches_value(b"axb"));
    let ne = Matcher::parse("job!=a.b").unwrap();
    assert!(!ne.matches_value(b"a.b"));
    assert!(ne.matches_value(b"axb"));
}

#[test]
fn refuses_bad_conditions_with_reasons() {
    let cases: &[(&str, &str)] = &[
        ("=x", "expected a label name"),
        ("1abc=x", "expected a label name"),
        ("job", "expected one of"),
        ("job~x", "expected one of"),
        ("job=\"unterminated", "quoted value"),
        ("job=(", "bad regex \"(\""),
    ];
    for &(line, want) in cases {
        let err = Matcher::parse(line).unwrap_err();
        assert!(err.to_string().contains(want), "{line}: {err}");
    }
}

#[test]
fn a_bad_regex_says_why_and_where_in_the_regex_parsers_words() {
    for (line, want) in [
        (
            "id=foo(bar",
            "bad regex \"foo(bar\": unclosed group, at character 4: \"(\"",
        ),
        (
            "id=*x",
            "bad regex \"*x\": repetition operator missing expression, at character 1: \"*\"",
        ),
        (
            "id=a[z-a]",
            "bad regex \"a[z-a]\": invalid character class range, the start must be <= the end, at character 3: \"z-a\"",
        ),
        (
            "id!~x)",
            "bad regex \"x)\": unopened group, at character 2: \")\"",
        ),
    ] {
        assert_eq!(
            Matcher::parse(line).unwrap_err().to_string(),
            want,
            "{line}"
        );
    }
}

fn batch_of(series: &[&[(&str, &str)]]) -> SeriesBatch {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|labels| TimeSeries {
                labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    };
    let mut b = SeriesBatch::new();
    b.decode_protobuf(&req.encode_to_vec()).unwrap();
    b
}

#[test]
fn seed_example_filter_keeps_exactly_the_matching_series() {
    let filter = Filter::parse(
        "__name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization\nregionId=cn-hangzhou\nid=i-2ze0mxp.*\n"
            .lines(),
    )
    .unwrap();
    let batch = batch_of(&[
        &[
            ("__name__", "AliyunEcs_CPUUtilization"),
            ("regionId", "cn-hangzhou"),
            ("id", "i-2ze0mxp1"),
        ],
        &[
            ("__name__", "AliyunEcs_memory_usedutilization"),
            ("regionId", "cn-hangzhou"),
            ("id", "i-2ze0mxpZ"),
        ],
        &[
            ("__name__", "AliyunEcs_CPUUtilization"),
            ("regionId", "cn-beijing"),
            ("id", "i-2ze0mxp1"),
        ],
        &[
            ("__name__", "AliyunEcs_CPUUtilization"),
            ("regionId", "cn-hangzhou"),
            ("id", "i-other"),
        ],
        &[
            ("__name__", "AliyunEcs_CPUUtilization"),
            ("regionId", "cn-hangzhou"),
        ],
        &[
            ("__name__", "node_load1"),
            ("regionId", "cn-hangzhou"),
            ("id", "i-2ze0mxp1"),
        ],
    ]);
    let kept: Vec<bool> = batch.iter().map(|s| filter.matches(&s)).collect();
    assert_eq!(kept, [true, true, false, false, false, false]);
}

#[test]
fn missing_label_matches_as_empty_string() {
    let batch = batch_of(&[
        &[("__name__", "up")],
        &[("__name__", "up"), ("env", "prod")],
    ]);
    let cases: &[(&str, [bool; 2])] = &[
        ("env=", [true, false]),
        ("env!=prod", [true, false]),
        ("env=~.*", [true, true]),
        ("env=~.+", [false, true]),
        ("env!~.+", [true, false]),
        ("env==prod", [false, true]),
    ];
    for &(line, want) in cases {
        let f = Filter::parse([line]).unwrap();
        let got: Vec<bool> = batch.iter().map(|s| f.matches(&s)).collect();
        assert_eq!(got, want, "{line}");
    }
}

#[test]
fn empty_filter_keeps_everything_and_comments_are_skipped() {
    let f = Filter::parse("\n# nothing here\n   \n".lines()).unwrap();
    assert!(f.is_empty());
    let batch = batch_of(&[&[("a", "b")]]);
    assert!(f.matches(&batch.series(0)));
}

#[test]
fn name_condition_runs_first_and_errors_carry_the_line() {
    let f = Filter::parse(["job=~a.*b", "__name__=x"]).unwrap();
    assert_eq!(f.matchers()[0].name(), b"__name__");
    let (line, err) = Filter::parse(["job=a", "", "bad"]).unwrap_err();
    assert_eq!(line, 2);
    assert!(matches!(err, FilterError::MissingOperator(_)));
}

#[test]
fn the_index_key_is_the_narrowest_condition_a_lookup_can_find() {
    use super::IndexKey::{Pattern, Values};
    type Want = Option<(&'static str, IndexKey<'static>)>;
    let v = |vs: &[&'static str]| Values(vs.iter().map(|s| s.as_bytes()).collect());
    let cases: Vec<(&[&str], Want)> = vec![
        (&["__name__=up"], Some(("__name__", v(&["up"])))),
        (&["__name__==up"], Some(("__name__", v(&["up"])))),
        (
            &["__name__=a|b", "job=x"],
            Some(("__name__", v(&["a", "b"]))),
        ),
        (&["job=x", "__name__=~c"], Some(("__name__", v(&["c"])))),
        // Literal values before a pattern, even on another label.
        (&["__name__=node_.*", "job=x"], Some(("job", v(&["x"])))),
        // `__name__` before other labels, among patterns.
        (
            &["job=a.*", "__name__=node_.*"],
            Some(("__name__", Pattern("node_.*"))),
        ),
        (
            &["__name__=node_[a-z]+"],
            Some(("__name__", Pattern("node_[a-z]+"))),
        ),
        (&["job=.+"], Some(("job", Pattern(".+")))),
        // A substring test stays out of the automata (see `Matcher::index_key`).
        (&["job=.*api.*"], None),
        (&["job=.*api.*", "id=i-.*"], Some(("id", Pattern("i-.*")))),
        // Negations and `.*` accept nearly anything: nothing to look up.
        (&["__name__!=up"], None),
        (&["__name__!~a|b"], None),
        (&["job=.*"], None),
        (&[], None),
    ];
    for (lines, want) in cases {
        let f = Filter::parse(lines.iter().copied()).unwrap();
        let got = f.index_key().map(|(at, label, key)| {
            assert_eq!(f.matchers()[at].name(), label);
            let key = match key {
                Values(mut vs) => {
                    vs.sort();
                    Values(vs)
                }
                p => p,
            };
            (String::from_utf8_lossy(label).into_owned(), key)
        });
        let want = want.map(|(l, k)| (l.to_owned(), k));
        assert_eq!(got, want, "{lines:?}");
    }
}
