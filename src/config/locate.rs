//! Source positions for config paths.
//!
//! serde_yaml's `Value` forgets where each node came from, and serde stops at the first
//! error. To report every error with `FILE:LINE:COL`, the file is also read once with
//! yaml-rust2's event parser (the only maintained YAML parser that exposes marks), and
//! each node's position is kept under its path. Nothing here interprets the config.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into the config tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path such as `services[0].probes[1].http.url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Seg>);

impl Path {
    pub fn root() -> Self {
        Path(Vec::new())
    }
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
    pub fn parent(&self) -> Self {
        let mut p = self.clone();
        p.0.pop();
        p
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) if first => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }
}

/// One step from a node to a child: an interned key or an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Step {
    Key(u32),
    Index(u32),
}

/// A node of the file: where its key (if a mapping's value) and its value start.
#[derive(Debug, Clone, Copy)]
struct Node {
    key: Option<Pos>,
    value: Pos,
}

/// Where each node's key and value start.
///
/// Kept as a tree of numbered nodes with interned keys rather than a map from each full
/// path: 100,000 probes make about a million nodes, and a path per node (a vector of
/// strings, hashed whole) cost hundreds of megabytes and most of `tocsin check`'s time.
#[derive(Debug)]
pub struct Locations {
    /// Node 0 is the document's root.
    nodes: Vec<Node>,
    children: HashMap<(u32, Step), u32>,
    names: HashMap<Box<str>, u32>,
    /// Keys given twice in one mapping: (path, second position, first position).
    duplicates: Vec<(Path, Pos, Pos)>,
}

impl Default for Locations {
    fn default() -> Self {
        Locations {
            nodes: vec![Node {
                key: None,
                value: Pos { line: 1, col: 1 },
            }],
            children: HashMap::new(),
            names: HashMap::new(),
            duplicates: Vec::new(),
        }
    }
}

impl Locations {
    /// Reads positions from `src`. A syntax error yields an empty index: serde_yaml reports
    /// syntax errors with their own position before anything looks positions up.
    pub fn parse(src: &str) -> Self {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(src);
        if parser.load(&mut b, false).is_err() {
            return Locations::default();
        }
        b.locs
    }

    /// The deepest node on `path` that exists, and whether it is the whole path.
    fn walk(&self, path: &Path) -> (u32, bool) {
        let mut node = 0u32;
        for seg in &path.0 {
            let step = match seg {
                Seg::Key(k) => match self.names.get(k.as_str()) {
                    Some(&n) => Step::Key(n),
                    None => return (node, false),
                },
                Seg::Index(i) => Step::Index(*i as u32),
            };
            match self.children.get(&(node, step)) {
                Some(&child) => node = child,
                None => return (node, false),
            }
        }
        (node, true)
    }

    /// The position of the value at `path`, or of the nearest ancestor that exists.
    pub fn value(&self, path: &Path) -> Pos {
        self.nodes[self.walk(path).0 as usize].value
    }

    /// Keys that appear twice in the same mapping, with both positions.
    pub fn duplicates(&self) -> &[(Path, Pos, Pos)] {
        &self.duplicates
    }

    /// The position of the key that names `path` (falls back to its value's position).
    pub fn key(&self, path: &Path) -> Pos {
        match self.walk(path) {
            (node, true) => {
                let n = self.nodes[node as usize];
                n.key.unwrap_or(n.value)
            }
            (node, false) => self.nodes[node as usize].value,
        }
    }

    fn intern(&mut self, k: &str) -> u32 {
        if let Some(&n) = self.names.get(k) {
            return n;
        }
        let n = self.names.len() as u32;
        self.names.insert(k.into(), n);
        n
    }

    /// The path of `node`, spelled out (only for messages: duplicates are rare).
    fn path_of(&self, parents: &[(u32, Step)], node: u32) -> Path {
        let mut steps = Vec::new();
        let mut n = node;
        while n != 0 {
            let (parent, step) = parents[n as usize];
            steps.push(step);
            n = parent;
        }
        let mut names: Vec<&str> = vec![""; self.names.len()];
        for (k, &i) in &self.names {
            names[i as usize] = k;
        }
        Path(
            steps
                .into_iter()
                .rev()
                .map(|s| match s {
                    Step::Key(k) => Seg::Key(names[k as usize].to_string()),
                    Step::Index(i) => Seg::Index(i as usize),
                })
                .collect(),
        )
    }
}

enum Frame {
    Map {
        node: u32,
        pending_key: Option<(String, Pos)>,
    },
    Seq {
        node: u32,
        next: u32,
    },
}

struct Builder {
    stack: Vec<Frame>,
    locs: Locations,
    /// Each node's parent and step (node 0, the root, has none of its own).
    parents: Vec<(u32, Step)>,
    /// Whether the root node has started.
    started: bool,
    /// Depth of nested collections used as mapping keys (complex keys are skipped).
    skip: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            stack: Vec::new(),
            locs: Locations::default(),
            parents: vec![(0, Step::Index(0))],
            started: false,
            skip: 0,
        }
    }
}

impl Builder {
    fn child(&mut self, parent: u32, step: Step, key: Option<Pos>, value: Pos) -> u32 {
        let n = self.locs.nodes.len() as u32;
        self.locs.nodes.push(Node { key, value });
        self.parents.push((parent, step));
        if let Some(first) = self.locs.children.insert((parent, step), n) {
            // A key given twice: the later one wins, as in serde_yaml's reading.
            let first_pos = self.locs.nodes[first as usize].key.unwrap_or(value);
            let path = self.locs.path_of(&self.parents, n);
            self.locs
                .duplicates
                .push((path, key.unwrap_or(value), first_pos));
        }
        n
    }

    /// The node that starts now at `pos`, consuming the parent's pending key or index.
    /// Returns None while inside a key position (the node is a key, not a value).
    fn next_value(
        &mut self,
        is_scalar_key_candidate: Option<(&str, Pos)>,
        pos: Pos,
    ) -> Option<u32> {
        match self.stack.last_mut() {
            None => {
                if self.started {
                    return None;
                }
                self.started = true;
                self.locs.nodes[0].value = pos;
                Some(0)
            }
            Some(Frame::Seq { node, next }) => {
                let (parent, i) = (*node, *next);
                *next += 1;
                Some(self.child(parent, Step::Index(i), None, pos))
            }
            Some(Frame::Map { node, pending_key }) => {
                let map = *node;
                match pending_key.take() {
                    Some((k, kpos)) => {
                        let step = Step::Key(self.locs.intern(&k));
                        Some(self.child(map, step, Some(kpos), pos))
                    }
                    None => {
                        if let Some((k, kpos)) = is_scalar_key_candidate {
                            *pending_key = Some((k.to_string(), kpos));
                            // A block mapping's start mark lies after its first key; the
                            // mapping starts where that key does.
                            let start = &mut self.locs.nodes[map as usize].value;
                            *start = (*start).min(kpos);
                        }
                        None
                    }
                }
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        if self.skip > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skip += 1,
                Event::MappingEnd | Event::SequenceEnd => self.skip -= 1,
                _ => {}
            }
            return;
        }
        match ev {
            Event::Scalar(s, ..) => {
                self.next_value(Some((&s, pos)), pos);
            }
            Event::Alias(_) => {
                self.next_value(None, pos);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                match self.next_value(None, pos) {
                    Some(node) => self.stack.push(if is_map {
                        Frame::Map {
                            node,
                            pending_key: None,
                        }
                    } else {
                        Frame::Seq { node, next: 0 }
                    }),
                    None => self.skip = 1,
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_values() {
        let src = "a: 1\nservices:\n  - id: shop\n    probes:\n      - name: x\n        http: { url: \"u\" }\n";
        let l = Locations::parse(src);
        let p = Path::root()
            .key("services")
            .index(0)
            .key("probes")
            .index(0)
            .key("http")
            .key("url");
        assert_eq!(l.value(&p), Pos { line: 6, col: 22 });
        assert_eq!(l.key(&p), Pos { line: 6, col: 17 });
        assert_eq!(l.key(&Path::root().key("a")), Pos { line: 1, col: 1 });
        assert_eq!(
            l.value(&Path::root().key("services").index(0)),
            Pos { line: 3, col: 5 }
        );
        assert_eq!(p.to_string(), "services[0].probes[0].http.url");
    }

    #[test]
    fn missing_path_falls_back_to_ancestor() {
        let l = Locations::parse("defaults:\n  interval: 5s\n");
        assert_eq!(
            l.value(&Path::root().key("defaults").key("nope")),
            Pos { line: 2, col: 3 }
        );
    }
}
