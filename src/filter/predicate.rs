//! Compiled value predicates: the strategy for each pattern is chosen once, at config load.
//!
//! Like regex-automata's meta engine, the cheapest strategy that gives the same answer wins:
//! an exact literal compares bytes, an alternation of literals is a set lookup, `lit.*` /
//! `.*lit` / `.*lit.*` use `starts_with` / `ends_with` / memchr's substring finder, `.*` and `.+`
//! need no look at the bytes. Everything else runs a dense DFA (no per-search cache, so it is
//! shared freely between threads), or the meta regex when the DFA would be too large or the
//! pattern needs an assertion a DFA cannot do. The table tests pin that every strategy answers
//! exactly as the full regex would.

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::{primitives::StateID, start};
use regex_automata::{Anchored, meta};

/// A predicate over one label value.
#[derive(Debug, Clone)]
pub enum Predicate {
    Literal(Box<[u8]>),
    /// Sorted, de-duplicated alternatives.
    Set(Box<[Box<[u8]>]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    Contains(Box<memchr::memmem::Finder<'static>>),
    /// `.*`: every value.
    Any,
    /// `.+`: every non-empty value.
    NonEmpty,
    Dfa(Box<Dfa>, Box<meta::Regex>),
    Meta(Box<meta::Regex>),
}

/// A dense DFA for anchored patterns, walked by hand (see [`Dfa::walk`]): a filter
/// condition's, or the task index's for many conditions at once.
#[derive(Debug, Clone)]
pub struct Dfa {
    dfa: dense::DFA<Vec<u32>>,
    /// Anchored at the start of a value: always the same state.
    start: StateID,
}

/// Where a walk over a whole value ended.
pub enum Walk {
    /// No pattern can match.
    Dead,
    /// The DFA gave up (a quit byte): never, for one built without quit bytes.
    Quit,
    /// The state after the end of the value: a match state when a pattern matched the value
    /// whole (every pattern is anchored at both ends, so no match ends anywhere else).
    End(StateID),
}

impl Dfa {
    /// `None` if the DFA has no anchored start state (it was built without one).
    pub fn new(dfa: dense::DFA<Vec<u32>>) -> Option<Dfa> {
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .ok()?;
        Some(Dfa { dfa, start })
    }

    pub fn automaton(&self) -> &dense::DFA<Vec<u32>> {
        &self.dfa
    }

    /// Walk the DFA a byte at a time to the end of `value` (or to the dead state). A byte loop
    /// rather than regex-automata's searches, which set a search up (start state, prefilter,
    /// match bookkeeping) on every call: label values are short, and the walk made a DFA
    /// condition about a fifth faster (criterion `filter/dfa_dfa`).
    #[inline]
    pub fn walk(&self, value: &[u8]) -> Walk {
        let dfa = &self.dfa;
        let mut sid = self.start;
        for &b in value {
            sid = dfa.next_state(sid, b);
            if dfa.is_special_state(sid) {
                if dfa.is_dead_state(sid) {
                    return Walk::Dead;
                }
                if dfa.is_quit_state(sid) {
                    return Walk::Quit;
                }
            }
        }
        Walk::End(dfa.next_eoi_state(sid))
    }

    /// Does the whole value match? `None` if the walk quit.
    #[inline]
    fn is_match(&self, value: &[u8]) -> Option<bool> {
        match self.walk(value) {
            Walk::Dead => Some(false),
            Walk::Quit => None,
            Walk::End(sid) => Some(self.dfa.is_match_state(sid)),
        }
    }
}

/// Upper bound on one matcher's DFA; larger patterns use the meta regex (lazy DFA).
const DFA_SIZE_LIMIT: usize = 2 << 20;

impl Predicate {
    /// Every value this predicate accepts, when it is a literal or a set of literals.
    pub fn literals(&self) -> Option<Vec<&[u8]>> {
        match self {
            Predicate::Literal(v) => Some(vec![&v[..]]),
            Predicate::Set(vs) => Some(vs.iter().map(|v| &v[..]).collect()),
            _ => None,
        }
    }

    pub fn literal(value: &str) -> Predicate {
        Predicate::Literal(value.as_bytes().into())
    }

    /// Compile a fully anchored regex, as Prometheus does (`^(?s:pattern)$`).
    ///
    /// A syntax error is reported in the regex parser's own words with its position in the
    /// pattern as written (`unclosed group, at character 4: "("`), not in the anchored form
    /// that is compiled.
    ///
    /// # Errors
    /// The regex syntax error, as text, when the pattern does not compile.
    pub fn regex(pattern: &str) -> Result<Predicate, String> {
        if let Some(why) = syntax_error(pattern) {
            return Err(why);
        }
        let anchored = format!("^(?s:{pattern})$");
        let meta = meta::Regex::new(&anchored).map_err(|e| explain(&e))?;
        if let Some(fast) = fast_path(pattern) {
            return Ok(fast);
        }
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(DFA_SIZE_LIMIT))
                    .determinize_size_limit(Some(DFA_SIZE_LIMIT)),
            )
            .build(&anchored);
        let dfa = dfa.ok().and_then(Dfa::new);
        Ok(match dfa {
            Some(dfa) => Predicate::Dfa(Box::new(dfa), Box::new(meta)),
            None => Predicate::Meta(Box::new(meta)),
        })
    }

    /// A short name of the strategy, for logs, docs and tests.
    pub fn strategy(&self) -> &'static str {
        match self {
            Predicate::Literal(_) => "literal",
            Predicate::Set(_) => "set",
            Predicate::Prefix(_) => "prefix",
            Predicate::Suffix(_) => "suffix",
            Predicate::Contains(_) => "contains",
            Predicate::Any => "any",
            Predicate::NonEmpty => "non-empty",
            Predicate::Dfa(..) => "dfa",
            Predicate::Meta(_) => "meta",
        }
    }

    /// A rough rank of the per-value cost, used to evaluate cheap conditions first.
    pub fn cost(&self) -> u8 {
        match self {
            Predicate::Any | Predicate::NonEmpty => 0,
            Predicate::Literal(_) => 1,
            Predicate::Prefix(_) | Predicate::Suffix(_) => 2,
            Predicate::Set(_) => 3,
            Predicate::Contains(_) => 4,
            Predicate::Dfa(..) => 5,
            Predicate::Meta(_) => 6,
        }
    }

    #[inline]
    pub fn is_match(&self, value: &[u8]) -> bool {
        match self {
            Predicate::Literal(lit) => value == &**lit,
            Predicate::Set(set) => {
                if set.len() <= 16 {
                    set.iter().any(|s| value == &**s)
                } else {
                    set.binary_search_by(|s| (**s).cmp(value)).is_ok()
                }
            }
            Predicate::Prefix(p) => value.starts_with(p),
            Predicate::Suffix(s) => value.ends_with(s),
            Predicate::Contains(f) => f.find(value).is_some(),
            Predicate::Any => true,
            Predicate::NonEmpty => !value.is_empty(),
            // A dense DFA built without quit bytes cannot stop early; stay correct anyway.
            Predicate::Dfa(dfa, meta) => {
                dfa.is_match(value).unwrap_or_else(|| meta.is_match(value))
            }
            Predicate::Meta(meta) => meta.is_match(value),
        }
    }
}

/// Recognise the patterns that need no automaton. Returns `None` for anything else.
fn fast_path(pattern: &str) -> Option<Predicate> {
    match pattern {
        ".*" => return Some(Predicate::Any),
        ".+" => return Some(Predicate::NonEmpty),
        _ => {}
    }
    if let Some(rest) = pattern.strip_prefix(".*") {
        if let Some(mid) = rest.strip_suffix(".*") {
            let lit = plain_literal(mid)?;
            return Some(if lit.is_empty() {
                Predicate::Any
            } else {
                Predicate::Contains(Box::new(
                    memchr::memmem::Finder::new(lit.as_bytes()).into_owned(),
                ))
            });
        }
        return plain_literal(rest).map(|lit| Predicate::Suffix(lit.into_bytes().into()));
    }
    if let Some(head) = pattern.strip_suffix(".*") {
        return plain_literal(head).map(|lit| Predicate::Prefix(lit.into_bytes().into()));
    }
    let mut alternatives = Vec::new();
    for alt in pattern.split('|') {
        alternatives.push(plain_literal(alt)?.into_bytes().into_boxed_slice());
    }
    if alternatives.len() == 1 {
        return alternatives.pop().map(Predicate::Literal);
    }
    alternatives.sort();
    alternatives.dedup();
    Some(Predicate::Set(alternatives.into_boxed_slice()))
}

/// The text a pattern matches when it is a plain literal: no metacharacter except escaped ASCII
/// punctuation (`\.` means a dot). `None` when the pattern is anything more.
fn plain_literal(pattern: &str) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next()?;
                // \d, \w, \b, \n …: a class or an assertion; so are \< and \> (the start
                // and end of a word), though `<` and `>` are punctuation.
                if !next.is_ascii_punctuation() || matches!(next, '<' | '>') {
                    return None;
                }
                out.push(next);
            }
            '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => {
                return None;
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// The regex parser's explanation of why `pattern` is not a regex, with its position (see
/// [`Predicate::regex`]); `None` when it parses.
fn syntax_error(pattern: &str) -> Option<String> {
    let err = regex_syntax::ParserBuilder::new()
        .dot_matches_new_line(true)
        .build()
        .parse(pattern)
        .err()?;
    let (kind, span) = match &err {
        regex_syntax::Error::Parse(e) => (e.kind().to_string(), *e.span()),
        regex_syntax::Error::Translate(e) => (e.kind().to_string(), *e.span()),
        _ => return Some(err.to_string()),
    };
    let start = span.start.offset.min(pattern.len());
    let end = span.end.offset.clamp(start, pattern.len());
    let at = pattern.get(..start).map_or(0, |p| p.chars().count()) + 1;
    // An empty span points between characters: show the one it points at.
    let end = if end == start {
        pattern
            .get(start..)
            .and_then(|rest| rest.chars().next())
            .map_or(start, |c| start + c.len_utf8())
    } else {
        end
    };
    Some(match pattern.get(start..end) {
        Some(text) if !text.is_empty() => format!("{kind}, at character {at}: {text:?}"),
        _ => format!("{kind}, at character {at} (the end)"),
    })
}

/// A build error with its causes (the meta engine's own message is only the outermost one).
fn explain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
