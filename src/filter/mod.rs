//! Label filters: the seed's "Data Filtering" syntax plus the PromQL operators, compiled once.
//!
//! A filter is a list of conditions, one per line, **all ANDed**. A condition is
//! `label OP value` with
//!
//! | OP   | meaning                                                   |
//! |------|-----------------------------------------------------------|
//! | `=`  | fully anchored regex match (the seed's syntax, PromQL `=~`)|
//! | `=~` | the same                                                  |
//! | `!~` | the anchored regex does not match                         |
//! | `==` | exact literal equality                                    |
//! | `!=` | not equal to the literal                                  |
//!
//! A value may be wrapped in double quotes (`job="api"`); inside quotes `\"` and `\\` escape.
//! A label the series lacks matches as the empty string, as in Prometheus. Blank lines and
//! lines starting with `#` are ignored.
//!
//! Conditions are reordered at compile time so that `__name__` and cheap strategies run first;
//! with AND semantics the order cannot change the answer, only the cost.

mod predicate;

pub use predicate::{Dfa, Predicate, Walk};

use crate::batch::SeriesView;

/// The comparison a condition makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `==` (and `=` on a value PromQL would compare literally: never, see module docs).
    Equal,
    NotEqual,
    /// `=` and `=~`.
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "==",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    fn negated(self) -> bool {
        matches!(self, MatchOp::NotEqual | MatchOp::NotRegex)
    }
}

/// One compiled condition.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: Box<[u8]>,
    op: MatchOp,
    pattern: String,
    predicate: Predicate,
}

/// Why a condition was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at the start of {0:?}")]
    BadLabelName(String),
    #[error("expected one of = =~ == != !~ after the label name in {0:?}")]
    MissingOperator(String),
    #[error("unterminated or badly escaped quoted value in {0:?}")]
    BadQuotes(String),
    #[error("bad regex {pattern:?}: {reason}")]
    BadRegex { pattern: String, reason: String },
}

impl Matcher {
    /// Compile `name OP value`.
    ///
    /// # Errors
    /// [`FilterError::BadRegex`] when a regex does not compile.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, FilterError> {
        let predicate = match op {
            MatchOp::Equal | MatchOp::NotEqual => Predicate::literal(value),
            MatchOp::Regex | MatchOp::NotRegex => {
                Predicate::regex(value).map_err(|reason| FilterError::BadRegex {
                    pattern: value.to_owned(),
                    reason,
                })?
            }
        };
        Ok(Matcher {
            name: name.as_bytes().into(),
            op,
            pattern: value.to_owned(),
            predicate,
        })
    }

    /// Parse one condition line.
    ///
    /// # Errors
    /// A [`FilterError`] naming what is wrong with the line.
    pub fn parse(line: &str) -> Result<Matcher, FilterError> {
        let line = line.trim();
        let name_len = line
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(line.len(), |(i, _)| i);
        if name_len == 0 {
            return Err(FilterError::BadLabelName(line.to_owned()));
        }
        let (name, rest) = line.split_at(name_len);
        let rest = rest.trim_start();
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Regex, v)
        } else if let Some(v) = rest.strip_prefix("==") {
            (MatchOp::Equal, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Regex, v)
        } else {
            return Err(FilterError::MissingOperator(line.to_owned()));
        };
        let value = unquote(value.trim()).ok_or_else(|| FilterError::BadQuotes(line.to_owned()))?;
        Matcher::new(name, op, &value)
    }

    pub fn name(&self) -> &[u8] {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The strategy the compiler chose (see [`Predicate::strategy`]).
    pub fn strategy(&self) -> &'static str {
        self.predicate.strategy()
    }

    /// How an index can find the values this condition accepts: `None` when it is negated
    /// or accepts anything (`.*`), when it is a substring test (`.*lit.*`), or when its regex
    /// needs the meta engine (a DFA could not be built for it alone: a Unicode word
    /// boundary, or one past the size limit).
    pub fn index_key(&self) -> Option<IndexKey<'_>> {
        if self.op.negated() {
            return None;
        }
        if let Some(values) = self.predicate.literals() {
            return Some(IndexKey::Values(values));
        }
        match self.predicate {
            Predicate::Prefix(_)
            | Predicate::Suffix(_)
            | Predicate::NonEmpty
            | Predicate::Dfa(..) => Some(IndexKey::Pattern(&self.pattern)),
            // `.*lit.*`: an automaton running several must remember which it has seen, 2^n
            // states for n of them. memchr's finder on every series costs less.
            Predicate::Contains(_) | Predicate::Any | Predicate::Meta(_) => None,
            // Handed out as values above.
            Predicate::Literal(_) | Predicate::Set(_) => None,
        }
    }

    /// Does the label value (`b""` when the series lacks the label) satisfy the condition?
    #[inline]
    pub fn matches_value(&self, value: &[u8]) -> bool {
        self.predicate.is_match(value) != self.op.negated()
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}{:?}",
            String::from_utf8_lossy(&self.name),
            self.op.as_str(),
            self.pattern
        )
    }
}

/// Strip one pair of surrounding double quotes, resolving `\"` and `\\` inside.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                // Keep other escapes for the regex engine (`\.` stays `\.`).
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// What a positive condition accepts, in a form the task index can look up.
#[derive(Debug, PartialEq, Eq)]
pub enum IndexKey<'a> {
    /// Exactly these values (a literal, or an alternation of literals).
    Values(Vec<&'a [u8]>),
    /// The values this regex matches whole (anchored at both ends, as every condition is).
    Pattern(&'a str),
}

/// All conditions of one task, ANDed. An empty filter keeps everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    matchers: Vec<Matcher>,
}

impl Filter {
    /// Compile the conditions of a filter, one per item; blank and `#` lines are skipped.
    ///
    /// # Errors
    /// The index of the offending line (counting only the given items) and why.
    pub fn parse<'a>(
        lines: impl IntoIterator<Item = &'a str>,
    ) -> Result<Filter, (usize, FilterError)> {
        let mut matchers = Vec::new();
        for (i, line) in lines.into_iter().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            matchers.push(Matcher::parse(t).map_err(|e| (i, e))?);
        }
        Ok(Filter::from_matchers(matchers))
    }

    pub fn from_matchers(mut matchers: Vec<Matcher>) -> Filter {
        // `__name__` first (most selective in practice), then cheaper strategies.
        matchers.sort_by_key(|m| (&*m.name != b"__name__", m.predicate.cost()));
        Filter { matchers }
    }

    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    /// The one condition the task index files this filter under: a series whose value of
    /// that label fails it never matches, so the pipeline need not run the filter on it.
    /// Chosen by how cheaply and narrowly it can be looked up: literal values before a
    /// pattern (a hash lookup before a DFA run), `__name__` before other labels (it is first
    /// in every series, and most selective in practice). `None` when no condition can be
    /// looked up: the filter runs on every series.
    ///
    /// Also returns the condition's place, for [`Filter::matches_except`].
    pub fn index_key(&self) -> Option<(usize, &[u8], IndexKey<'_>)> {
        self.matchers
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((i, &*m.name, m.index_key()?)))
            .min_by_key(|(_, name, key)| {
                (matches!(key, IndexKey::Pattern(_)), *name != b"__name__")
            })
    }

    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }

    /// Does a metric family name pass this filter's `__name__` conditions? Metadata is not
    /// filtered by the other conditions (it names a family, not a series); a filter without a
    /// `__name__` condition keeps every family.
    pub fn keeps_family(&self, family: &[u8]) -> bool {
        self.matchers
            .iter()
            .filter(|m| &*m.name == b"__name__")
            .all(|m| m.matches_value(family))
    }

    /// Does the series satisfy every condition?
    #[inline]
    pub fn matches(&self, series: &SeriesView<'_>) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches_value(series.label(&m.name).unwrap_or(b"")))
    }

    /// Does the series satisfy every condition but the one at `known` (from
    /// [`Filter::index_key`]), which the caller has already found it satisfies?
    #[inline]
    pub fn matches_except(&self, series: &SeriesView<'_>, known: usize) -> bool {
        self.matchers
            .iter()
            .enumerate()
            .all(|(i, m)| i == known || m.matches_value(series.label(&m.name).unwrap_or(b"")))
    }
}

#[cfg(test)]
mod tests;
