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

/// Where each node's key and value start.
#[derive(Debug, Default)]
pub struct Locations {
    keys: HashMap<Path, Pos>,
    values: HashMap<Path, Pos>,
    /// Keys given twice in one mapping: (path, second position, first position).
    duplicates: Vec<(Path, Pos, Pos)>,
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

    /// The position of the value at `path`, or of the nearest ancestor that exists.
    pub fn value(&self, path: &Path) -> Pos {
        let mut p = path.clone();
        loop {
            if let Some(pos) = self.values.get(&p) {
                return *pos;
            }
            if p.0.is_empty() {
                return Pos { line: 1, col: 1 };
            }
            p.0.pop();
        }
    }

    /// Keys that appear twice in the same mapping, with both positions.
    pub fn duplicates(&self) -> &[(Path, Pos, Pos)] {
        &self.duplicates
    }

    /// The position of the key that names `path` (falls back to its value's position).
    pub fn key(&self, path: &Path) -> Pos {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
}

enum Frame {
    Map {
        path: Path,
        pending_key: Option<(String, Pos)>,
    },
    Seq {
        path: Path,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    locs: Locations,
    /// Depth of nested collections used as mapping keys (complex keys are skipped).
    skip: usize,
}

impl Builder {
    /// Path of the node that starts now, consuming the parent's pending key or index.
    /// Returns None while inside a key position (the node is a key, not a value).
    fn next_value_path(&mut self, is_scalar_key_candidate: Option<(&str, Pos)>) -> Option<Path> {
        match self.stack.last_mut() {
            None => Some(Path::root()),
            Some(Frame::Seq { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, pending_key }) => match pending_key.take() {
                Some((k, kpos)) => {
                    let p = path.key(&k);
                    if let Some(first) = self.locs.keys.insert(p.clone(), kpos) {
                        self.locs.duplicates.push((p.clone(), kpos, first));
                    }
                    Some(p)
                }
                None => {
                    if let Some((k, pos)) = is_scalar_key_candidate {
                        *pending_key = Some((k.to_string(), pos));
                        // A block mapping's start mark lies after its first key; the
                        // mapping starts where that key does.
                        let map_path = path.clone();
                        if let Some(start) = self.locs.values.get_mut(&map_path) {
                            *start = (*start).min(pos);
                        }
                    }
                    None
                }
            },
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
                if let Some(p) = self.next_value_path(Some((&s, pos))) {
                    self.locs.values.insert(p, pos);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.next_value_path(None) {
                    self.locs.values.insert(p, pos);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                match self.next_value_path(None) {
                    Some(p) => {
                        self.locs.values.insert(p.clone(), pos);
                        self.stack.push(if is_map {
                            Frame::Map {
                                path: p,
                                pending_key: None,
                            }
                        } else {
                            Frame::Seq { path: p, next: 0 }
                        });
                    }
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
