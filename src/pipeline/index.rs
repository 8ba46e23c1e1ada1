//! The task index: which tasks of a source a series can match, by the values of a few labels.

use super::TaskRuntime;
use crate::batch::SeriesView;
use crate::filter::{Dfa, IndexKey, Walk};
use regex_automata::MatchKind;
use regex_automata::dfa::{Automaton, StartKind, dense};
use std::collections::HashMap;

/// From this many tasks on a source, series meet only the tasks their labels can match.
pub(super) const INDEX_FROM: usize = 4;

/// How much building a source's automata may take. Patterns left over run their tasks'
/// filters on every series, as without an index (and a warning names their label).
#[derive(Clone, Copy)]
struct Limits {
    /// One combined DFA. A label's patterns that do not fit in one are split in halves, each
    /// its own DFA, down to single patterns. (Patterns like `.*a.*b` make the automaton
    /// remember which of them it has seen so far: 2^n states for n of them.)
    dfa_bytes: usize,
    /// All of the source's DFAs together.
    bytes: usize,
    /// Per label, the builds that may fail (each runs until its automaton passes the limit)
    /// and the time spent building, so that patterns no automaton can hold (`.*a.*b` by
    /// the hundred) cost a reload a fraction of a second, not many: 1,000 of them took 26 s
    /// to split and build before these bounds, 0.29 s with them (a build started inside the
    /// time runs to its end: 50 of them took 0.55 s). Per label, so that one label's set
    /// cannot leave another's untried. The time bound makes which patterns go unindexed
    /// depend on the machine; what a task keeps never does.
    failures: usize,
    time: std::time::Duration,
}

const LIMITS: Limits = Limits {
    dfa_bytes: 4 << 20,
    bytes: 32 << 20,
    failures: 8,
    time: std::time::Duration::from_millis(250),
};

/// What is left for building the automata of one label.
struct Budget<'a> {
    /// Shared by the source's labels.
    bytes: &'a mut usize,
    failures: usize,
    /// No build starts after it.
    until: std::time::Instant,
}

/// The tasks of a source, each filed under one of its conditions ([`Filter::index_key`]):
/// a series meets the tasks whose filed condition its labels satisfy, and those filed under
/// none. Built once per pipeline; a lookup or two per series replaces a filter run per task.
///
/// Per indexed label (usually `__name__` alone):
/// - conditions that list literal values (`__name__=a|b`, `job==api`) are one hash map from
///   value to tasks;
/// - the other positive regexes (`__name__=~node_.*`, `job=~api-[0-9]+`) are one dense DFA
///   built from all of them, which reports every pattern a value matches in one pass.
///
/// The map hashes with foldhash, not std's SipHash: a value is hashed once per series (SipHash
/// was 8 % of a 10-task pipeline's time). Its seed is random per process, and the keys are
/// the configured values only, so a sender can neither grow the map nor aim at its collisions.
///
/// [`Filter::index_key`]: crate::filter::Filter::index_key
pub(super) struct TaskIndex {
    /// `__name__` first when indexed: it is the first label of every series.
    labels: Vec<LabelIndex>,
    /// Tasks with no condition the index can look up.
    always: Vec<u32>,
    /// Per task, the place of the condition it is filed under (`usize::MAX`: none): a
    /// candidate found through it satisfies it, and its filter need not test it again.
    known: Vec<usize>,
}

struct LabelIndex {
    label: Box<[u8]>,
    values: HashMap<Box<[u8]>, Vec<u32>, foldhash::fast::RandomState>,
    /// One DFA in the common case; several when one would pass [`Limits::dfa_bytes`].
    patterns: Vec<Patterns>,
}

/// Pattern conditions filed under one label, as one automaton.
struct Patterns {
    /// Anchored at both ends, [`MatchKind::All`]: every pattern that matches the whole value.
    dfa: Dfa,
    /// The task of each pattern, by pattern id.
    tasks: Vec<u32>,
}

/// A thread's reusable state for [`TaskIndex::candidates`], sized by [`IndexScratch::fit`].
#[derive(Default)]
pub(super) struct IndexScratch {
    candidates: Vec<u32>,
}

impl IndexScratch {
    /// Room for any lookup on a source of `tasks` tasks (each is a candidate at most once),
    /// so that no request allocates.
    pub(super) fn fit(&mut self, tasks: usize) {
        self.candidates
            .reserve(tasks.saturating_sub(self.candidates.len()));
    }
}

impl TaskIndex {
    pub(super) fn new(tasks: &[TaskRuntime]) -> TaskIndex {
        TaskIndex::with_limits(tasks, LIMITS)
    }

    fn with_limits(tasks: &[TaskRuntime], limits: Limits) -> TaskIndex {
        let mut labels: Vec<(LabelIndex, Vec<(String, u32)>)> = Vec::new();
        let mut always = Vec::new();
        let mut known = vec![usize::MAX; tasks.len()];
        for (i, t) in tasks.iter().enumerate() {
            let Some((at, label, key)) = t.filter.index_key() else {
                always.push(i as u32);
                continue;
            };
            known[i] = at;
            let at = match labels.iter().position(|(l, _)| *l.label == *label) {
                Some(at) => at,
                None => {
                    labels.push((
                        LabelIndex {
                            label: label.into(),
                            values: HashMap::default(),
                            patterns: Vec::new(),
                        },
                        Vec::new(),
                    ));
                    labels.len() - 1
                }
            };
            let (index, patterns) = &mut labels[at];
            match key {
                IndexKey::Values(values) => {
                    for v in values {
                        index.values.entry(v.into()).or_default().push(i as u32);
                    }
                }
                IndexKey::Pattern(p) => patterns.push((format!("^(?s:{p})$"), i as u32)),
            }
        }
        let mut bytes = limits.bytes;
        let mut labels = labels
            .into_iter()
            .map(|(mut index, patterns)| {
                let mut unindexed = Vec::new();
                let mut budget = Budget {
                    bytes: &mut bytes,
                    failures: limits.failures,
                    until: std::time::Instant::now() + limits.time,
                };
                Patterns::build_split(
                    &patterns,
                    limits.dfa_bytes,
                    &mut budget,
                    &mut index.patterns,
                    &mut unindexed,
                );
                if !unindexed.is_empty() {
                    tracing::warn!(
                        label = %String::from_utf8_lossy(&index.label),
                        tasks = unindexed.len(),
                        "the task index could not fit these tasks' regexes in its automata \
                         (each at most {} MiB, {} MiB for the source, {} failed tries and {} ms \
                         per label); their filters run on every series",
                        limits.dfa_bytes >> 20,
                        limits.bytes >> 20,
                        limits.failures,
                        limits.time.as_millis(),
                    );
                }
                for t in unindexed {
                    always.push(t);
                    known[t as usize] = usize::MAX;
                }
                index
            })
            .collect::<Vec<_>>();
        always.sort_unstable();
        labels.sort_by_key(|l| &*l.label != b"__name__");
        TaskIndex {
            labels,
            always,
            known,
        }
    }

    /// The place of the condition task `task` is filed under, for
    /// [`Filter::matches_except`](crate::filter::Filter::matches_except), when
    /// [`TaskIndex::candidates`] said its candidates are verified.
    #[inline]
    pub(super) fn known(&self, task: u32) -> usize {
        self.known[task as usize]
    }

    /// The tasks `series` can match, each once: those filed under no condition first, then
    /// those whose filed condition the series' labels satisfy (a missing label is the empty
    /// value, as in every filter). With `true` when every candidate is known to satisfy the
    /// condition it is filed under; `false` only if a DFA stopped early, which one built
    /// without quit bytes never does.
    #[inline]
    pub(super) fn candidates<'s>(
        &self,
        series: &SeriesView<'_>,
        scratch: &'s mut IndexScratch,
    ) -> (&'s [u32], bool) {
        let candidates = &mut scratch.candidates;
        candidates.clear();
        candidates.extend_from_slice(&self.always);
        let mut verified = true;
        for index in &self.labels {
            let value = series.label(&index.label).unwrap_or_default();
            if let Some(tasks) = index.values.get(value) {
                candidates.extend_from_slice(tasks);
            }
            for p in &index.patterns {
                verified &= p.matches(value, candidates);
            }
        }
        (candidates, verified)
    }
}

impl Patterns {
    /// Append the task of every pattern that matches `value` whole.
    ///
    /// The DFA is walked by hand ([`Dfa::walk`]), and the state after the end of the value
    /// lists the patterns that matched. Every pattern is
    /// anchored at both ends, so no match ends anywhere else, and that state names each
    /// matching pattern once. Not regex-automata's `which_overlapping_matches`: its
    /// `PatternSet` is cleared and scanned whole on every call, a cost in the number of
    /// patterns paid on every series (it made the index at 1,000 regex tasks 1.8 times
    /// slower), and each search call sets a search up again (see docs/performance.md).
    ///
    /// `false` if the walk stopped early (a quit state: never, for a DFA built without quit
    /// bytes); then every pattern's task is appended, unverified.
    #[inline]
    fn matches(&self, value: &[u8], candidates: &mut Vec<u32>) -> bool {
        match self.dfa.walk(value) {
            Walk::Dead => true,
            Walk::Quit => {
                candidates.extend_from_slice(&self.tasks);
                false
            }
            Walk::End(sid) => {
                let dfa = self.dfa.automaton();
                if dfa.is_match_state(sid) {
                    for i in 0..dfa.match_len(sid) {
                        candidates.push(self.tasks[dfa.match_pattern(sid, i).as_usize()]);
                    }
                }
                true
            }
        }
    }

    /// One automaton for `patterns` (anchored regexes, each with its task) if it fits in
    /// `limit` bytes and the `budget` left, which it then takes from; otherwise each half
    /// on its own, down to single patterns, whose tasks go to `unindexed` when even they do
    /// not fit (every pattern here is a prefix, suffix or `.+`, or one a DFA ran alone at
    /// config load, so only the size can refuse it). Once the budget's failed builds or
    /// time are spent, every pattern not yet built goes to `unindexed` without a try.
    fn build_split(
        patterns: &[(String, u32)],
        limit: usize,
        budget: &mut Budget,
        out: &mut Vec<Patterns>,
        unindexed: &mut Vec<u32>,
    ) {
        if patterns.is_empty() {
            return;
        }
        if budget.failures == 0 || *budget.bytes == 0 || std::time::Instant::now() >= budget.until {
            unindexed.extend(patterns.iter().map(|&(_, t)| t));
            return;
        }
        match Patterns::build(patterns, limit.min(*budget.bytes)) {
            Ok(p) => {
                *budget.bytes -= p.dfa.automaton().memory_usage().min(*budget.bytes);
                out.push(p);
            }
            Err(e) if patterns.len() == 1 => {
                budget.failures -= 1;
                tracing::debug!(pattern = %patterns[0].0, error = %e, "not indexed");
                unindexed.push(patterns[0].1);
            }
            Err(_) => {
                budget.failures -= 1;
                let (a, b) = patterns.split_at(patterns.len() / 2);
                Patterns::build_split(a, limit, budget, out, unindexed);
                Patterns::build_split(b, limit, budget, out, unindexed);
            }
        }
    }

    fn build(patterns: &[(String, u32)], limit: usize) -> Result<Patterns, String> {
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(limit))
                    .determinize_size_limit(Some(limit)),
            )
            .build_many(&patterns.iter().map(|(p, _)| p).collect::<Vec<_>>())
            .map_err(|e| e.to_string())?;
        Ok(Patterns {
            dfa: Dfa::new(dfa).ok_or("no anchored start state")?,
            tasks: patterns.iter().map(|&(_, t)| t).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::SeriesBatch;
    use crate::proto::{Label, Sample, TimeSeries, WriteRequest};
    use crate::telemetry::Metrics;

    /// A pipeline of one task per filter (`["cond", …]`), named `t0`, `t1`, ….
    fn pipeline(filters: &[&str]) -> super::super::Pipeline {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        super::super::Pipeline::new(super::super::tests::config(&filters), &Metrics::new()).unwrap()
    }

    /// Each task is filed under the condition its filter names, and a series meets exactly
    /// the tasks whose filed condition it satisfies (`pipeline::tests` checks that what the
    /// index keeps is what every filter would keep; this checks that it prunes).
    #[test]
    fn tasks_are_filed_under_values_and_patterns_and_series_meet_only_theirs() {
        let filters = [
            r#"["__name__=up|node_load1"]"#,
            r#"["__name__=node_.*"]"#,
            r#"["job=api"]"#,
            r#"["__name__!=up"]"#,
            r#"["job=~api-[0-9]+"]"#,
            r#"["__name__=.*_total"]"#,
        ];
        let p = pipeline(&filters);
        let index = p.sources[0].index.as_ref().expect("6 tasks are indexed");
        assert_eq!(index.always, [3]);
        let filed: Vec<_> = index
            .labels
            .iter()
            .map(|l| {
                let mut values: Vec<_> = l
                    .values
                    .iter()
                    .map(|(v, t)| (v.to_vec(), t.clone()))
                    .collect();
                values.sort();
                (
                    l.label.to_vec(),
                    values,
                    l.patterns
                        .iter()
                        .map(|p| p.tasks.clone())
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            filed,
            [
                (
                    b"__name__".to_vec(),
                    vec![(b"node_load1".to_vec(), vec![0]), (b"up".to_vec(), vec![0])],
                    vec![vec![1, 5]],
                ),
                (
                    b"job".to_vec(),
                    vec![(b"api".to_vec(), vec![2])],
                    vec![vec![4]]
                ),
            ]
        );

        let mut scratch = IndexScratch::default();
        scratch.fit(filters.len());
        // A series' labels, and the candidates it should meet.
        type Case = (&'static [(&'static str, &'static str)], &'static [u32]);
        let cases: &[Case] = &[
            (&[("__name__", "up")], &[3, 0]),
            (&[("__name__", "node_load1"), ("job", "api")], &[3, 0, 1, 2]),
            (
                &[("__name__", "node_x_total"), ("job", "api-7")],
                &[3, 1, 5, 4],
            ),
            (&[("__name__", "http_total"), ("job", "api-x")], &[3, 5]),
            (&[("__name__", "other")], &[3]),
        ];
        for (labels, want) in cases {
            let request = WriteRequest {
                timeseries: vec![TimeSeries {
                    labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 1,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            };
            let mut batch = SeriesBatch::new();
            batch
                .decode_snappy(&crate::proto::encode_snappy(&request), Default::default())
                .unwrap();
            let (got, verified) = index.candidates(&batch.series(0), &mut scratch);
            assert_eq!(got, *want, "{labels:?}");
            assert!(verified);
        }
    }

    /// Twelve `.*kNx.*` patterns make one automaton remember which it has seen (2^12 states):
    /// too large for a small limit, so they are split into several, which together find
    /// exactly the patterns a value contains; with no budget left, none is indexed.
    #[test]
    fn patterns_too_large_for_one_automaton_are_split_and_past_the_budget_left_out() {
        let patterns: Vec<(String, u32)> = (0..12)
            .map(|i| (format!("^(?s:.*k{i}x.*)$"), 100 + i))
            .collect();
        let limit = 64 << 10;
        assert!(Patterns::build(&patterns, limit).is_err());
        assert!(Patterns::build(&patterns, 16 << 20).is_ok());

        let later = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        let mut bytes = usize::MAX;
        let mut budget = Budget {
            bytes: &mut bytes,
            failures: usize::MAX,
            until: later,
        };
        let (mut out, mut unindexed) = (Vec::new(), Vec::new());
        Patterns::build_split(&patterns, limit, &mut budget, &mut out, &mut unindexed);
        assert!(out.len() > 1, "{} automata", out.len());
        assert!(unindexed.is_empty());
        assert_eq!(out.iter().map(|p| p.tasks.len()).sum::<usize>(), 12);
        for (value, want) in [
            (&b"a k3x b k11x k3x"[..], &[103, 111][..]),
            (
                b"k0xk1xk2xk3xk4xk5xk6xk7xk8xk9xk10xk11x",
                &(100..112).collect::<Vec<_>>(),
            ),
            (b"k12x", &[]),
            (b"", &[]),
        ] {
            let mut got = Vec::new();
            for p in &out {
                assert!(p.matches(value, &mut got));
            }
            got.sort();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(value));
        }

        let now = std::time::Instant::now();
        for (mut bytes, failures, until) in [
            (0, usize::MAX, later),
            (usize::MAX, 0, later),
            (usize::MAX, usize::MAX, now),
        ] {
            let mut budget = Budget {
                bytes: &mut bytes,
                failures,
                until,
            };
            let (mut out, mut unindexed) = (Vec::new(), Vec::new());
            Patterns::build_split(&patterns, limit, &mut budget, &mut out, &mut unindexed);
            assert!(out.is_empty());
            unindexed.sort();
            assert_eq!(unindexed, (100..112).collect::<Vec<_>>());
        }
        // One failed build left: the whole set fails, and both halves go unindexed untried.
        let mut bytes = usize::MAX;
        let mut budget = Budget {
            bytes: &mut bytes,
            failures: 1,
            until: later,
        };
        let (mut out, mut unindexed) = (Vec::new(), Vec::new());
        Patterns::build_split(&patterns, limit, &mut budget, &mut out, &mut unindexed);
        assert!(out.is_empty() && unindexed.len() == 12);
    }

    /// Through the whole index: the byte budget holds the first label's automaton and not the
    /// second's, whose tasks then meet every series with their whole filter (none of their
    /// conditions is taken as proved); and one label spending its failed builds leaves the
    /// next label's to be tried.
    #[test]
    fn tasks_whose_patterns_do_not_fit_meet_every_series_and_run_their_whole_filter() {
        let filters = [
            r#"["__name__=node_.*"]"#,
            r#"["__name__=http_.*"]"#,
            r#"["job=~api-[0-9]+", "__name__!=x"]"#,
            r#"["job=~web-[0-9]+"]"#,
        ];
        let p = pipeline(&filters);
        let tasks = &p.sources[0].tasks;
        let whole = TaskIndex::with_limits(tasks, LIMITS);
        let one = whole.labels[0].patterns[0].dfa.automaton().memory_usage();

        // Room for `__name__`'s automaton only.
        let index = TaskIndex::with_limits(
            tasks,
            Limits {
                bytes: one + 1,
                ..LIMITS
            },
        );
        assert_eq!(index.labels[0].patterns.len(), 1);
        assert!(index.labels[1].patterns.is_empty());
        assert_eq!(index.always, [2, 3]);
        assert_eq!(index.known(0), 0);
        assert_eq!((index.known(2), index.known(3)), (usize::MAX, usize::MAX));

        // One failed build per label: `__name__`'s pair does not fit the limit, fails once
        // and is left out untried; `job`'s, smaller, is still tried and fits.
        let job = whole.labels[1].patterns[0].dfa.automaton().memory_usage();
        assert!(job < one, "{job} < {one}");
        let index = TaskIndex::with_limits(
            tasks,
            Limits {
                dfa_bytes: job + 1,
                failures: 1,
                ..LIMITS
            },
        );
        assert_eq!(index.always, [0, 1]);
        assert_eq!(index.labels[1].patterns.len(), 1);
        // With a limit below any automaton, each label fails once and is left out.
        let index = TaskIndex::with_limits(
            tasks,
            Limits {
                dfa_bytes: 16,
                failures: 1,
                ..LIMITS
            },
        );
        assert_eq!(index.always, [0, 1, 2, 3]);
        let index = TaskIndex::with_limits(
            tasks,
            Limits {
                failures: 1,
                ..LIMITS
            },
        );
        assert!(index.always.is_empty());
        assert_eq!(
            index.labels.iter().map(|l| l.patterns.len()).sum::<usize>(),
            2
        );
    }
}
