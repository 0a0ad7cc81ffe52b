//! A word trie over all registered patterns, so that dispatch does not scan every pattern.
//!
//! Each node has children by exact word (a hash map), one child for `*`, one for `#`, and glob
//! children indexed by their literal prefix (`pay*` under `pay`). Matching a key walks the trie
//! word by word; its cost grows with the length of the key and the number of patterns that
//! actually match, not with the number of patterns registered.

use std::collections::HashMap;

use crate::pattern::{Glob, Word};

#[derive(Default)]
pub(crate) struct Node {
    exact: HashMap<Box<str>, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    globs: Vec<(Glob, Node)>,
    /// Glob children by their text: indices into `globs`.
    glob_index: HashMap<Box<str>, usize>,
    /// Glob children by literal prefix: indices into `globs`.
    glob_prefixes: HashMap<Box<str>, Vec<usize>>,
    /// Subscriptions (by registration index) whose pattern ends at this node.
    terminal: Vec<usize>,
}

impl Node {
    /// Adds the subscription `id` with the pattern `words`.
    pub(crate) fn insert(&mut self, words: &[Word], id: usize) {
        let Some((word, rest)) = words.split_first() else {
            self.terminal.push(id);
            return;
        };
        let child = match word {
            Word::Literal(w) => self.exact.entry(w.clone()).or_default(),
            Word::Star => self.star.get_or_insert_with(Box::default),
            Word::Hash => self.hash.get_or_insert_with(Box::default),
            Word::Glob(glob) => {
                let index = match self.glob_index.get(&glob.text) {
                    Some(&i) => i,
                    None => {
                        self.globs.push((glob.clone(), Node::default()));
                        let i = self.globs.len() - 1;
                        self.glob_index.insert(glob.text.clone(), i);
                        self.glob_prefixes
                            .entry(glob.literal_prefix().into())
                            .or_default()
                            .push(i);
                        i
                    }
                };
                &mut self.globs[index].1
            }
        };
        child.insert(rest, id);
    }

    /// Appends to `out` the ids of every subscription whose pattern matches `key`, possibly
    /// more than once; the caller sorts and deduplicates.
    ///
    /// `key` is the rest of the routing key; `None` means no words are left (which differs
    /// from `Some("")`, one empty word).
    pub(crate) fn collect(&self, key: Option<&str>, out: &mut Vec<usize>) {
        if let Some(hash) = &self.hash {
            // `#` takes zero words, then one more at a time.
            let mut rest = key;
            loop {
                hash.collect(rest, out);
                match rest {
                    None => break,
                    Some(r) => rest = r.split_once('.').map(|(_, tail)| tail),
                }
            }
        }
        let Some(key) = key else {
            out.extend_from_slice(&self.terminal);
            return;
        };
        let (word, rest) = match key.split_once('.') {
            Some((word, rest)) => (word, Some(rest)),
            None => (key, None),
        };
        if let Some(child) = self.exact.get(word) {
            child.collect(rest, out);
        }
        if let Some(star) = &self.star {
            star.collect(rest, out);
        }
        if !self.globs.is_empty() {
            self.collect_globs(word, rest, out);
        }
    }

    fn collect_globs(&self, word: &str, rest: Option<&str>, out: &mut Vec<usize>) {
        let prefix_ends = word
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(word.len()));
        for end in prefix_ends {
            if let Some(indices) = self.glob_prefixes.get(&word[..end]) {
                for &i in indices {
                    let (glob, child) = &self.globs[i];
                    if glob.matcher.matches(word) {
                        child.collect(rest, out);
                    }
                }
            }
        }
    }
}
