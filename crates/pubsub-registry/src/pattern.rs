//! [`Pattern`]: a routing-key pattern with AMQP topic semantics.

use std::fmt;

use pubsub_core::text::truncate_chars;
use wildmatch::WildMatch;

use crate::error::{Error, Result};

/// Longest pattern accepted: an AMQP binding key is a short string of at most 255 bytes.
const MAX_PATTERN_LEN: usize = 255;

/// A routing-key pattern, with the semantics of an AMQP topic exchange binding, so that a
/// pattern means the same thing in a queue binding and in dispatch.
///
/// | pattern | matches | does not match |
/// | --- | --- | --- |
/// | `order.created` | `order.created` | `order.createdx`, `ORDER.created` |
/// | `order.*` (`*` is exactly one word) | `order.created` | `order.created.v2`, `order` |
/// | `order.#` (`#` is zero or more words) | `order`, `order.created.v2` | `orders.created` |
/// | `*.created` | `user.created` | `order.paid` |
/// | `#.completed` | `task.run.completed` | `task.completed.late` |
/// | `#`, and a lone `*` (as in the original design) | every key | |
/// | `ord*.created` (a glob word, matched with `wildmatch`) | `order.created` | `ship.created` |
/// | `pay*` | `payment` | `paid` |
///
/// Words are split on `.` and compared case-sensitively. A glob word contains `*` (any run of
/// characters) or `?` (one character) among other characters, and matches within one word.
///
/// Invalid patterns are refused by [`Pattern::parse`]: the empty pattern, empty words
/// (`order..created`, `.created`), whitespace or control characters, `#` glued to other
/// characters (`order#`), and patterns longer than 255 bytes.
///
/// ```
/// use pubsub_registry::Pattern;
///
/// let pattern = Pattern::parse("order.*")?;
/// assert!(pattern.matches("order.created"));
/// assert!(!pattern.matches("order.created.v2"));
/// assert!(Pattern::parse("order..created").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Pattern {
    raw: String,
    words: Vec<Word>,
}

/// One word of a pattern.
#[derive(Clone)]
pub(crate) enum Word {
    /// Matches exactly this word.
    Literal(Box<str>),
    /// `*`: exactly one word.
    Star,
    /// `#`: zero or more words.
    Hash,
    /// A word with `*` or `?` among other characters, matched with `wildmatch`.
    Glob(Glob),
}

/// A glob word and its matcher.
#[derive(Clone)]
pub(crate) struct Glob {
    pub(crate) text: Box<str>,
    pub(crate) matcher: WildMatch,
}

impl Glob {
    /// The characters before the first wildcard; every matching word starts with them.
    pub(crate) fn literal_prefix(&self) -> &str {
        let end = self.text.find(['*', '?']).unwrap_or(self.text.len());
        &self.text[..end]
    }
}

/// A word of a broker binding key: what the broker itself understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BindingWord<'a> {
    Literal(&'a str),
    Star,
    Hash,
}

impl Pattern {
    /// Parses and validates a pattern.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPattern`] naming the pattern and what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Pattern> {
        let invalid = |reason: &'static str| Error::InvalidPattern {
            pattern: truncate_chars(pattern, 80),
            reason,
        };
        if pattern.is_empty() {
            return Err(invalid("a pattern must not be empty"));
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(invalid("a pattern must not be longer than 255 bytes"));
        }
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "a pattern must not contain whitespace or control characters",
            ));
        }
        // The original design's catch-all: a lone `*` matches every key.
        if pattern == "*" {
            return Ok(Pattern {
                raw: pattern.to_owned(),
                words: vec![Word::Hash],
            });
        }
        let mut words = Vec::new();
        for word in pattern.split('.') {
            words.push(match word {
                "" => {
                    return Err(invalid(
                        "empty word: a pattern must not start or end with '.' nor contain '..'",
                    ))
                }
                "*" => Word::Star,
                "#" => Word::Hash,
                w if w.contains('#') => {
                    return Err(invalid("'#' must be a whole word, as in 'order.#'"))
                }
                w if w.contains(['*', '?']) => Word::Glob(Glob {
                    text: w.into(),
                    matcher: WildMatch::new(w),
                }),
                w => Word::Literal(w.into()),
            });
        }
        Ok(Pattern {
            raw: pattern.to_owned(),
            words,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether `routing_key` matches the pattern.
    ///
    /// This walks the pattern directly; a [`HandlerRegistry`](crate::HandlerRegistry) matches
    /// all its patterns at once through a word trie instead.
    pub fn matches(&self, routing_key: &str) -> bool {
        let key: Vec<&str> = routing_key.split('.').collect();
        matches_words(&self.words, &key)
    }

    /// The broker binding key that delivers at least every key this pattern matches: each glob
    /// word becomes `*` (the broker knows no globs) and a lone `*` becomes `#`.
    pub fn binding_key(&self) -> String {
        let mut out = String::with_capacity(self.raw.len());
        for (i, word) in self.binding_words().iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(match word {
                BindingWord::Literal(w) => w,
                BindingWord::Star => "*",
                BindingWord::Hash => "#",
            });
        }
        out
    }

    pub(crate) fn words(&self) -> &[Word] {
        &self.words
    }

    fn binding_words(&self) -> Vec<BindingWord<'_>> {
        self.words
            .iter()
            .map(|w| match w {
                Word::Literal(l) => BindingWord::Literal(l),
                Word::Star | Word::Glob(_) => BindingWord::Star,
                Word::Hash => BindingWord::Hash,
            })
            .collect()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.raw).finish()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Pattern {}

impl std::str::FromStr for Pattern {
    type Err = Error;

    fn from_str(s: &str) -> Result<Pattern> {
        Pattern::parse(s)
    }
}

fn matches_words(pattern: &[Word], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((Word::Hash, rest)) => (0..=key.len()).any(|skip| matches_words(rest, &key[skip..])),
        Some((word, rest)) => match key.split_first() {
            None => false,
            Some((first, key_rest)) => {
                let ok = match word {
                    Word::Literal(l) => **l == **first,
                    Word::Star => true,
                    Word::Glob(g) => g.matcher.matches(first),
                    Word::Hash => unreachable!("handled above"),
                };
                ok && matches_words(rest, key_rest)
            }
        },
    }
}

/// The broker binding keys that cover every pattern: each pattern's [`Pattern::binding_key`],
/// without duplicates and without keys that another key already covers (everything is covered
/// by `#`). Order follows the patterns' order.
pub fn binding_keys<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for pattern in patterns {
        let key = pattern.binding_key();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let parsed: Vec<Vec<BindingWord<'_>>> = keys.iter().map(|k| split_binding(k)).collect();
    let covered = |i: usize| {
        parsed
            .iter()
            .enumerate()
            .any(|(j, p)| j != i && covers(p, &parsed[i]))
    };
    (0..keys.len())
        .filter(|&i| !covered(i))
        .map(|i| keys[i].clone())
        .collect()
}

fn split_binding(key: &str) -> Vec<BindingWord<'_>> {
    key.split('.')
        .map(|w| match w {
            "*" => BindingWord::Star,
            "#" => BindingWord::Hash,
            w => BindingWord::Literal(w),
        })
        .collect()
}

/// Whether every routing key matched by binding `q` is matched by binding `p`.
fn covers(p: &[BindingWord<'_>], q: &[BindingWord<'_>]) -> bool {
    match (p.split_first(), q.split_first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        // `#` in p absorbs zero words of q, or one more word of q (whatever it is).
        (Some((BindingWord::Hash, p_rest)), _) => {
            covers(p_rest, q) || q.split_first().is_some_and(|(_, q_rest)| covers(p, q_rest))
        }
        // p needs at least one more word; q may match keys with none left.
        (Some(_), None) => false,
        // q's `#` matches any number of words; a fixed word of p cannot cover that.
        (Some(_), Some((BindingWord::Hash, _))) => false,
        (Some((BindingWord::Star, p_rest)), Some((_, q_rest))) => covers(p_rest, q_rest),
        (Some((BindingWord::Literal(a), p_rest)), Some((BindingWord::Literal(b), q_rest))) => {
            a == b && covers(p_rest, q_rest)
        }
        (Some((BindingWord::Literal(_), _)), Some((BindingWord::Star, _))) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The required cases of the registry's pattern semantics.
    const CASES: &[(&str, &str, bool)] = &[
        ("order.created", "order.created", true),
        ("order.*", "order.created", true),
        ("order.*", "order.created.v2", false),
        ("order.#", "order.created.v2", true),
        ("order.#", "order", true),
        ("*.created", "user.created", true),
        ("*.created", "order.paid", false),
        ("#", "order.created", true),
        ("#", "a", true),
        ("#", "a.b.c.d", true),
        ("*", "order.created", true),
        ("*", "order", true),
        ("#.completed", "task.run.completed", true),
        ("#.completed", "completed", true),
        ("#.completed", "task.completed.late", false),
        ("ord*.created", "order.created", true),
        ("ord*.created", "ship.created", false),
        ("pay*", "payment", true),
        ("pay*", "paid", false),
        ("pa?d", "paid", true),
        ("order.created", "order.createdx", false),
        ("ORDER.created", "order.created", false),
        ("order.*", "order", false),
        ("order.#.v2", "order.v2", true),
        ("order.#.v2", "order.created.v2", true),
        ("order.#.v2", "order.created.v3", false),
        ("#.#", "a.b", true),
        ("*.*", "a", false),
        ("a.*.#", "a.b", true),
        ("a.*.#", "a", false),
    ];

    #[test]
    fn pattern_semantics_table() {
        for &(pattern, key, expected) in CASES {
            let p = Pattern::parse(pattern).unwrap();
            assert_eq!(p.matches(key), expected, "{pattern} ~ {key}");
        }
    }

    #[test]
    fn invalid_patterns_are_refused() {
        for bad in [
            "",
            "order..created",
            ".created",
            "order.",
            "order created",
            "order.\tx",
            "a#",
            "order.#x",
            "#x.y",
            "a.b\n",
        ] {
            let err = Pattern::parse(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidPattern { .. }));
        }
        assert!(Pattern::parse(&"a".repeat(256)).is_err());
        assert!(Pattern::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn binding_key_replaces_globs_and_the_lone_star() {
        let check = |pattern: &str, key: &str| {
            assert_eq!(
                Pattern::parse(pattern).unwrap().binding_key(),
                key,
                "{pattern}"
            )
        };
        check("order.created", "order.created");
        check("ord*.created", "*.created");
        check("order.pa?d", "order.*");
        check("*", "#");
        check("*.created", "*.created");
        check("#.completed", "#.completed");
    }

    fn keys(patterns: &[&str]) -> Vec<String> {
        let parsed: Vec<Pattern> = patterns
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect();
        binding_keys(&parsed)
    }

    #[test]
    fn binding_keys_drop_duplicates_and_covered_keys() {
        assert_eq!(keys(&["order.created", "order.created"]), ["order.created"]);
        assert_eq!(keys(&["order.created", "order.*"]), ["order.*"]);
        assert_eq!(
            keys(&["order.*", "ord*.paid", "user.registered"]),
            ["order.*", "*.paid", "user.registered"]
        );
        assert_eq!(keys(&["order.created", "#", "user.*"]), ["#"]);
        assert_eq!(keys(&["order.created", "*"]), ["#"]);
        assert_eq!(keys(&["order.#", "order.created.v2", "order"]), ["order.#"]);
        assert_eq!(keys(&["*.created", "order.*"]), ["*.created", "order.*"]);
        assert_eq!(
            keys(&["#.created", "a.b.created", "created"]),
            ["#.created"]
        );
        assert_eq!(keys(&["a.*", "a.#"]), ["a.#"]);
        assert_eq!(keys(&["a.#", "a.*.#"]), ["a.#"]);
        assert!(keys(&[]).is_empty());
    }

    #[test]
    fn covers_agrees_with_matching_on_samples() {
        // Brute force: p covers q only if every sample key matched by q is matched by p.
        let bindings = [
            "#", "a.#", "a.*", "*.b", "a.b", "*.*", "#.b", "a.*.#", "*", "a",
        ];
        let samples = [
            "a", "b", "a.b", "a.c", "c.b", "a.b.c", "a.c.b", "x.y.z.b", "a.b.b",
        ];
        for p in bindings {
            for q in bindings {
                let (pp, qq) = (split_binding(p), split_binding(q));
                if covers(&pp, &qq) {
                    for key in samples {
                        let k: Vec<&str> = key.split('.').collect();
                        if binding_matches(&qq, &k) {
                            assert!(binding_matches(&pp, &k), "{p} covers {q} but not {key}");
                        }
                    }
                }
            }
        }
    }

    fn binding_matches(p: &[BindingWord<'_>], key: &[&str]) -> bool {
        match p.split_first() {
            None => key.is_empty(),
            Some((BindingWord::Hash, rest)) => {
                (0..=key.len()).any(|skip| binding_matches(rest, &key[skip..]))
            }
            Some((w, rest)) => key.split_first().is_some_and(|(first, key_rest)| {
                (matches!(w, BindingWord::Star) || *w == BindingWord::Literal(first))
                    && binding_matches(rest, key_rest)
            }),
        }
    }
}
