//! Errors with their place in the file: every error of a config is gathered, at the
//! position of the value (or key) it is about, and reported at once in file order.

use std::fmt;

use super::locate::{Locations, Path, Pos, Seg};

/// One configuration error at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.col, self.message
        )
    }
}

/// Every error found in a file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors with positions while a file is checked.
pub(crate) struct Diag<'a> {
    file: String,
    pub(super) locs: &'a Locations,
    errors: Vec<ConfigError>,
    /// Accepted, with a remark `check` prints.
    warnings: Vec<ConfigError>,
    /// Sequence elements pruned by [`deserialize_all`], as (original parent, original
    /// index): paths built on the pruned tree are mapped back through them.
    pub(super) removed: Vec<(Path, usize)>,
}

impl<'a> Diag<'a> {
    pub(super) fn new(file: String, locs: &'a Locations) -> Self {
        Diag {
            file,
            locs,
            errors: Vec::new(),
            warnings: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// An error about the value at `path` (a path into the pruned tree).
    pub(crate) fn at(&mut self, path: &Path, message: impl Into<String>) {
        let pos = self.locs.value(&original_path(path, &self.removed));
        self.push(pos, message.into());
    }

    /// An error about the key that names `path` (a path into the pruned tree).
    pub(crate) fn at_key(&mut self, path: &Path, message: impl Into<String>) {
        let pos = self.locs.key(&original_path(path, &self.removed));
        self.push(pos, message.into());
    }

    /// A remark about the value at `path`: accepted, but `check` says it.
    pub(crate) fn warn_at(&mut self, path: &Path, message: impl Into<String>) {
        let pos = self.locs.value(&original_path(path, &self.removed));
        self.warnings.push(ConfigError {
            file: self.file.clone(),
            pos,
            message: message.into(),
        });
    }

    /// The remarks made, in file order.
    pub(super) fn take_warnings(&mut self) -> Vec<ConfigError> {
        let mut w = std::mem::take(&mut self.warnings);
        w.sort_by_key(|e| e.pos);
        w
    }

    pub(super) fn push(&mut self, pos: Pos, message: String) {
        let e = ConfigError {
            file: self.file.clone(),
            pos,
            message,
        };
        if !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub(super) fn finish(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| e.pos);
        ConfigErrors(self.errors)
    }
}

/// Maps a path in the pruned value back to the file's original indices.
pub(super) fn original_path(cur: &Path, removed: &[(Path, usize)]) -> Path {
    let mut out = Path::root();
    for seg in &cur.0 {
        match seg {
            Seg::Key(k) => out = out.key(k),
            Seg::Index(i) => {
                let mut gone: Vec<usize> = removed
                    .iter()
                    .filter(|(p, _)| *p == out)
                    .map(|(_, i)| *i)
                    .collect();
                gone.sort_unstable();
                let mut idx = *i;
                for g in gone {
                    if g <= idx {
                        idx += 1;
                    }
                }
                out = out.index(idx);
            }
        }
    }
    out
}

/// The closest candidate, if it is close enough to be what was meant.
pub(crate) fn nearest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < name.len().max(c.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}
