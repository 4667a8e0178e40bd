//! Audiences: the customers a campaign may reach, from a CSV or YAML file.
//!
//! CSV: a header row naming `email` and optionally `name`, `language`, `timezone`,
//! `services`; every other column is a template variable. YAML: a list of maps with the
//! same keys. A row is checked whole (address, header injection through CR/LF, language,
//! time zone, service ids, variables); a bad row is reported with its line and left out,
//! never dropped silently. Rows with the same address are merged into one recipient
//! subscribed to the union of their services.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::config::locate::{Locations, Path as YamlPath};
use crate::config::{Audience, valid_language};

/// One customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Line of the file it came from (the first, when merged).
    pub line: usize,
    pub email: String,
    pub name: String,
    pub language: String,
    pub timezone: String,
    /// Service ids the customer follows; empty means all.
    pub services: Vec<String>,
    pub vars: BTreeMap<String, String>,
}

impl Recipient {
    pub fn follows(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == service)
    }

    /// This row as a campaign's recipient.
    pub fn into_row(self) -> crate::store::NewRecipient {
        crate::store::NewRecipient {
            email: self.email,
            name: self.name,
            language: self.language,
            timezone: self.timezone,
            vars: self.vars,
        }
    }
}

/// A problem with one row (or the header), at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIssue {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// An audience file read and checked.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub recipients: Vec<Recipient>,
    /// Rows left out, with why.
    pub errors: Vec<RowIssue>,
    /// Rows kept with a remark (duplicates merged).
    pub warnings: Vec<RowIssue>,
}

/// The audience a campaign names when only subscribers (from the status page) follow
/// its service; no configured audience may take this name.
pub const SUBSCRIBERS: &str = "subscribers";

const KNOWN: [&str; 5] = ["email", "name", "language", "timezone", "services"];

/// Template variables tocsin sets itself: no column may take their names.
const RESERVED: [&str; 1] = ["also_affected"];

fn reserved(n: &str) -> String {
    format!(
        "column `{n}` is tocsin's own (the other services of an outage a customer uses): rename the column"
    )
}

/// Reads the audience file whole, with rows of the same address merged. `services` are
/// the config's service ids, which the `services` column must name. Fails only when the
/// file cannot be read at all. For small files and previews: a campaign reads its
/// audience a batch at a time through [`Rows`].
pub fn load(audience: &Audience, services: &[String]) -> Result<Loaded, String> {
    Ok(merge(Rows::open(audience, services, None)?))
}

/// The file an audience is read from.
pub fn file_of(audience: &Audience) -> &Path {
    match audience {
        Audience::Csv(p) | Audience::Yaml(p) => p,
    }
}

/// One row as read: a recipient with what had to be mended in it, or why it is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Row(Recipient, Vec<String>),
    Bad(RowIssue),
}

/// Where reading an audience stopped: the next row to read, and which file it was (its
/// size and modification time), so that a campaign expanded in batches goes on after a
/// crash where it stopped, and starts over if the file was replaced meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub byte: u64,
    pub line: u64,
    pub record: u64,
    pub file: String,
}

/// An audience read one row at a time: what a campaign of a million recipients is
/// expanded from without holding the file or its rows in memory. CSV is streamed from
/// the file; a YAML audience is parsed whole (it is meant for small lists) and then
/// handed out the same way.
pub struct Rows {
    inner: Inner,
    file: String,
}

enum Inner {
    Csv(Box<CsvRows<std::fs::File>>),
    List {
        items: std::vec::IntoIter<Item>,
        taken: u64,
    },
}

impl Rows {
    /// Opens `audience` at its first row, or at `from` when that was taken from the same
    /// file (else from the start: see [`Rows::resumed`]).
    pub fn open(
        audience: &Audience,
        services: &[String],
        from: Option<&Cursor>,
    ) -> Result<Rows, String> {
        let path = file_of(audience);
        let cannot =
            |e: std::io::Error| format!("cannot read audience file {}: {e}", path.display());
        let file = std::fs::File::open(path).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        let stamp = format!(
            "{}:{}",
            meta.len(),
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let from = from.filter(|c| c.file == stamp);
        let inner = match audience {
            Audience::Csv(_) => {
                let reader = csv::ReaderBuilder::new()
                    .flexible(false)
                    .trim(csv::Trim::All)
                    .buffer_capacity(1 << 16)
                    .from_reader(file);
                let mut rows = CsvRows::new(reader, services);
                if let Some(c) = from {
                    let mut pos = csv::Position::new();
                    pos.set_byte(c.byte).set_line(c.line).set_record(c.record);
                    rows.reader.seek(pos).map_err(|e| {
                        format!("cannot read audience file {}: {e}", path.display())
                    })?;
                }
                Inner::Csv(Box::new(rows))
            }
            Audience::Yaml(_) => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut &file, &mut text).map_err(cannot)?;
                let skip = from.map_or(0, |c| c.record);
                let mut items = yaml_items(&text, services).into_iter();
                for _ in 0..skip {
                    items.next();
                }
                Inner::List { items, taken: skip }
            }
        };
        Ok(Rows { inner, file: stamp })
    }

    /// Where the next row starts.
    pub fn cursor(&self) -> Cursor {
        match &self.inner {
            Inner::Csv(rows) => {
                let p = rows.reader.position();
                Cursor {
                    byte: p.byte(),
                    line: p.line(),
                    record: p.record(),
                    file: self.file.clone(),
                }
            }
            Inner::List { taken, .. } => Cursor {
                record: *taken,
                file: self.file.clone(),
                ..Cursor::default()
            },
        }
    }
}

impl Iterator for Rows {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        match &mut self.inner {
            Inner::Csv(rows) => rows.next(),
            Inner::List { items, taken } => {
                let item = items.next()?;
                *taken += 1;
                Some(item)
            }
        }
    }
}

/// CSV rows checked one at a time.
struct CsvRows<R> {
    reader: csv::Reader<R>,
    /// The header's column names, lowercased.
    names: Vec<String>,
    services: Vec<String>,
    record: csv::StringRecord,
    /// Why the header cannot be used: said once, then nothing is read.
    refused: Option<RowIssue>,
    done: bool,
}

impl<R: std::io::Read> CsvRows<R> {
    fn new(mut reader: csv::Reader<R>, services: &[String]) -> CsvRows<R> {
        let (names, refused) = match reader.headers() {
            Ok(h) => {
                let names: Vec<String> = h.iter().map(|h| h.to_lowercase()).collect();
                let refused = header_issue(&names);
                (names, refused)
            }
            Err(e) => (
                Vec::new(),
                Some(RowIssue {
                    line: 1,
                    col: 1,
                    message: format!("cannot read the header row: {e}"),
                }),
            ),
        };
        CsvRows {
            reader,
            names,
            services: services.to_vec(),
            record: csv::StringRecord::new(),
            done: false,
            refused,
        }
    }
}

impl<R: std::io::Read> Iterator for CsvRows<R> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        if let Some(issue) = self.refused.take() {
            self.done = true;
            return Some(Item::Bad(issue));
        }
        match self.reader.read_record(&mut self.record) {
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line() as usize);
                let row = Row {
                    line,
                    fields: self
                        .names
                        .iter()
                        .map(String::as_str)
                        .zip(self.record.iter())
                        .collect(),
                };
                Some(checked(&row, &self.services))
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!(
                        "this row has {}, the header has {expected_len}: quote values that contain commas",
                        crate::text::count(*len, "field")
                    ),
                    csv::ErrorKind::Utf8 { .. } => "this row is not valid UTF-8".to_string(),
                    csv::ErrorKind::Io(_) => {
                        // The file cannot be read on: nothing after this point is known.
                        self.done = true;
                        format!("cannot read on: {e}")
                    }
                    _ => format!("unreadable row: {e}"),
                };
                Some(Item::Bad(RowIssue {
                    line,
                    col: 1,
                    message,
                }))
            }
        }
    }
}

/// Why a header row cannot be used, if it cannot.
fn header_issue(names: &[String]) -> Option<RowIssue> {
    if !names.iter().any(|n| n == "email") {
        return Some(RowIssue {
            line: 1,
            col: 1,
            message: format!(
                "the header row has no `email` column (found: {}); the first row must name the columns, e.g. email,name,language,timezone,services",
                names.join(", ")
            ),
        });
    }
    let mut col = 1;
    for n in names {
        if RESERVED.contains(&n.as_str()) {
            return Some(RowIssue {
                line: 1,
                col,
                message: reserved(n),
            });
        }
        if !KNOWN.contains(&n.as_str()) && !valid_var(n) {
            return Some(RowIssue {
                line: 1,
                col,
                message: format!(
                    "column `{n}` cannot be a template variable: use letters, digits and _ (e.g. `{}`)",
                    n.chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect::<String>()
                ),
            });
        }
        col += n.len() + 1;
    }
    None
}

struct Row<'a> {
    line: usize,
    fields: Vec<(&'a str, &'a str)>,
}

fn checked(row: &Row, services: &[String]) -> Item {
    match check_row(row, services) {
        Ok((r, mended)) => Item::Row(r, mended),
        Err(message) => Item::Bad(RowIssue {
            line: row.line,
            col: 1,
            message,
        }),
    }
}

/// Reads a CSV audience from text, merged (as [`load`] does with a file).
pub fn from_csv(text: &str, services: &[String]) -> Loaded {
    let reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    merge(CsvRows::new(reader, services))
}

/// Reads a YAML audience from text, merged.
pub fn from_yaml(text: &str, services: &[String]) -> Loaded {
    merge(yaml_items(text, services))
}

fn yaml_items(text: &str, services: &[String]) -> Vec<Item> {
    let bad = |line, col, message: String| Item::Bad(RowIssue { line, col, message });
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            return vec![bad(line, col, format!("not valid YAML: {e}"))];
        }
    };
    let locs = Locations::parse(text);
    let Some(list) = value.as_sequence() else {
        return vec![bad(1, 1, "an audience YAML file is a list of recipients: `- { email: ana@example.com, name: Ana }`".into())];
    };
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let p = YamlPath::root().index(i);
        let pos = locs.value(&p);
        let Some(map) = item.as_mapping() else {
            out.push(bad(
                pos.line,
                pos.col,
                "a recipient is a map with at least `email`".into(),
            ));
            continue;
        };
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut problems = Vec::new();
        for (k, v) in map {
            let key = k.as_str().unwrap_or_default().to_lowercase();
            let kpos = locs.value(&p.key(&key));
            let text = match v {
                serde_yaml::Value::String(s) => s.clone(),
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Null => String::new(),
                serde_yaml::Value::Sequence(items) if key == "services" => items
                    .iter()
                    .filter_map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => {
                    problems.push(bad(kpos.line, kpos.col, format!("`{key}` must be text")));
                    continue;
                }
            };
            if RESERVED.contains(&key.as_str()) {
                problems.push(bad(kpos.line, kpos.col, reserved(&key)));
            } else if !KNOWN.contains(&key.as_str()) && !valid_var(&key) {
                problems.push(bad(
                    kpos.line,
                    kpos.col,
                    format!("`{key}` cannot be a template variable: use letters, digits and _"),
                ));
            }
            fields.push((key, text));
        }
        if problems.is_empty() {
            let row = Row {
                line: pos.line,
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            };
            out.push(checked(&row, services));
        } else {
            out.extend(problems);
        }
    }
    out
}

/// A row's recipient, with what was said of it put with the file's errors or remarks.
fn take(item: Item, errors: &mut Vec<RowIssue>, warnings: &mut Vec<RowIssue>) -> Option<Recipient> {
    match item {
        Item::Bad(issue) => {
            errors.push(issue);
            None
        }
        Item::Row(r, mended) => {
            warnings.extend(mended.into_iter().map(|message| RowIssue {
                line: r.line,
                col: 1,
                message,
            }));
            Some(r)
        }
    }
}

/// Rows merged by address, as a whole audience: a customer listed twice is one
/// recipient (the first row's details) following the union of the rows' services.
fn merge(items: impl IntoIterator<Item = Item>) -> Loaded {
    let mut out = Loaded::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in items {
        let Some(r) = take(item, &mut out.errors, &mut out.warnings) else {
            continue;
        };
        let key = crate::store::address_key(&r.email);
        if let Some(&i) = seen.get(&key) {
            let first = &mut out.recipients[i];
            out.warnings.push(RowIssue {
                line: r.line,
                col: 1,
                message: format!(
                    "{} is also on line {}: merged into one recipient",
                    r.email, first.line
                ),
            });
            if first.services.is_empty() || r.services.is_empty() {
                first.services.clear();
            } else {
                for s in r.services {
                    if !first.services.contains(&s) {
                        first.services.push(s);
                    }
                }
            }
        } else {
            seen.insert(key, out.recipients.len());
            out.recipients.push(r);
        }
    }
    out.errors.sort_by_key(|e| (e.line, e.col));
    out
}

/// What `tocsin check` and the start of `tocsin run` learn of an audience, read as a
/// stream: a million rows are surveyed in a few tens of megabytes (a 16-byte digest per
/// address), not held whole.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// Rows left out, with why.
    pub errors: Vec<RowIssue>,
    /// Rows kept with a remark (mended, or merged with an earlier row).
    pub warnings: Vec<RowIssue>,
    /// Recipients (rows merged) by language: the first line that has it, and how many.
    pub languages: BTreeMap<String, (usize, usize)>,
    /// Recipients following each of the `services` given, in their order.
    pub followers: Vec<u64>,
}

/// Surveys an audience: the same rows, errors and merges as [`load`], without keeping
/// the rows.
pub fn survey(audience: &Audience, services: &[String]) -> Result<Survey, String> {
    let mut out = Survey {
        followers: vec![0; services.len()],
        ..Survey::default()
    };
    // Per address: the first line it is on, and whether some row of it follows every
    // service. Per (address, service) named in a `services` column: once.
    let mut seen: HashMap<u128, (usize, bool)> = HashMap::new();
    let mut named: std::collections::HashSet<(u128, u32)> = Default::default();
    let index: HashMap<&str, u32> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    for item in Rows::open(audience, services, None)? {
        let Some(r) = take(item, &mut out.errors, &mut out.warnings) else {
            continue;
        };
        let key = digest(&crate::store::address_key(&r.email));
        match seen.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                out.warnings.push(RowIssue {
                    line: r.line,
                    col: 1,
                    message: format!(
                        "{} is also on line {}: merged into one recipient",
                        r.email,
                        e.get().0
                    ),
                });
                e.get_mut().1 |= r.services.is_empty();
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((r.line, r.services.is_empty()));
                let l = out.languages.entry(r.language).or_insert((r.line, 0));
                l.1 += 1;
            }
        }
        for s in &r.services {
            if let Some(&i) = index.get(s.as_str()) {
                named.insert((key, i));
            }
        }
    }
    let everything = seen.values().filter(|(_, all)| *all).count() as u64;
    for f in &mut out.followers {
        *f = everything;
    }
    for (key, i) in named {
        if !seen.get(&key).is_some_and(|(_, all)| *all) {
            out.followers[i as usize] += 1;
        }
    }
    out.errors.sort_by_key(|e| (e.line, e.col));
    Ok(out)
}

/// A 128-bit digest of an address key: two SipHash passes under different prefixes.
/// Collisions (which would merge two customers) are out of reach at any audience size
/// (about 10^-27 at a million addresses), and the two passes cost far less than a
/// cryptographic hash; the file is the company's own, not an attacker's.
pub fn digest(key: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// A row as a recipient, with what had to be mended on the way, or why it is left out.
///
/// One bad row must never keep a whole audience (or tocsin) from working: a row is left
/// out only when it has no usable address, or follows only services that do not exist
/// (following nothing would mean following everything). Everything else is mended and
/// said: control characters taken out of the name and other fields, an unusable
/// language or time zone replaced by the default, unknown services dropped.
fn check_row(row: &Row, services: &[String]) -> Result<(Recipient, Vec<String>), String> {
    let mut mended = Vec::new();
    let get = |k: &str, mended: &mut Vec<String>| -> String {
        let raw = row
            .fields
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| *v)
            .unwrap_or("");
        if raw.chars().any(|c| c.is_control()) && k != "email" {
            mended.push(format!(
                "`{k}` held a line break or control character: taken out"
            ));
            return clean(raw);
        }
        raw.to_string()
    };
    let email = get("email", &mut mended);
    if email.chars().any(|c| c.is_control()) {
        return Err(
            "`email` holds a line break or control character (a header injection attempt?): the row is left out"
                .into(),
        );
    }
    if email.is_empty() {
        return Err("no email address: the row is left out".into());
    }
    if email.parse::<lettre::Address>().is_err() {
        return Err(format!(
            "`{email}` is not an email address (expected e.g. ana@example.com): the row is left out"
        ));
    }
    let name = get("name", &mut mended);
    let language = match get("language", &mut mended).as_str() {
        "" => "en".to_string(),
        l if valid_language(&l.to_lowercase()) => l.to_lowercase(),
        l => {
            mended.push(format!(
                "language `{l}` is not a language code such as en, pl or sv: English is used"
            ));
            "en".to_string()
        }
    };
    let timezone = match get("timezone", &mut mended).as_str() {
        "" => "UTC".to_string(),
        t if t.parse::<chrono_tz::Tz>().is_ok() => t.to_string(),
        t => {
            mended.push(format!(
                "time zone `{t}` is unknown (use an IANA name such as Europe/Warsaw): UTC is used"
            ));
            "UTC".to_string()
        }
    };
    let listed: Vec<String> = get("services", &mut mended)
        .split(|c: char| c == ';' || c == '|' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let (subscribed, unknown): (Vec<String>, Vec<String>) = listed
        .into_iter()
        .partition(|s| services.iter().any(|k| k == s));
    if !unknown.is_empty() {
        let msg = format!(
            "service `{}` is not in the config (services: {})",
            unknown.join("`, `"),
            services.join(", ")
        );
        if subscribed.is_empty() {
            // Following nothing known must not become following everything.
            return Err(format!("{msg}: the row is left out"));
        }
        mended.push(format!("{msg}: ignored"));
    }
    let vars = row
        .fields
        .iter()
        .filter(|(n, _)| !KNOWN.contains(n))
        .map(|(n, v)| (n.to_string(), clean(v)))
        .collect();
    Ok((
        Recipient {
            line: row.line,
            email,
            name,
            language,
            timezone,
            services: subscribed,
            vars,
        },
        mended,
    ))
}

/// A field with its control characters (line breaks, tabs, escapes) replaced by spaces
/// and the spaces they leave collapsed.
fn clean(s: &str) -> String {
    s.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn valid_var(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_cannot_take_a_name_tocsin_sets_itself() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "email,also_affected\na@example.com,x\n").unwrap();
        let a = crate::config::Audience::Csv(p);
        let l = load(&a, &[]).unwrap();
        assert!(l.recipients.is_empty());
        assert_eq!(
            l.errors[0].message,
            "column `also_affected` is tocsin's own (the other services of an outage a customer uses): rename the column"
        );
    }

    fn ids() -> Vec<String> {
        vec!["shop".into(), "api".into()]
    }

    #[test]
    fn csv_rows_are_checked_merged_and_reported_by_line() {
        let text = "email,name,language,timezone,services,plan\n\
            ana@example.com,Ana,pl,Europe/Warsaw,shop,gold\n\
            bob@example.com,\"Bob, Jr.\",sv,Europe/Stockholm,,silver\n\
            not-an-address,X,en,UTC,,\n\
            eve@example.com,\"Eve\r\nBcc: all@example.com\",en,UTC,,\n\
            ANA@example.com,Ana again,pl,Europe/Warsaw,api,gold\n\
            carl@example.com,Carl,en,Mars/Olympus,,\n\
            dan@example.com,Dan,en,UTC,warehouse,\n\
            short@example.com,Short\n";
        let l = from_csv(text, &ids());
        let emails: Vec<&str> = l.recipients.iter().map(|r| r.email.as_str()).collect();
        // Left out: no usable address, only unknown services, a broken row. Mended and
        // mailed: a name with a line break (cleaned), an unknown time zone (UTC).
        assert_eq!(
            emails,
            [
                "ana@example.com",
                "bob@example.com",
                "eve@example.com",
                "carl@example.com"
            ]
        );
        assert_eq!(l.recipients[0].services, ["shop", "api"]);
        assert_eq!(l.recipients[0].vars["plan"], "gold");
        assert_eq!(l.recipients[1].name, "Bob, Jr.");
        assert!(l.recipients[1].follows("api"));
        assert_eq!(l.recipients[2].name, "Eve Bcc: all@example.com");
        assert_eq!(l.recipients[3].timezone, "UTC");
        let lines: Vec<usize> = l.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [4, 9, 10], "{:?}", l.errors);
        assert!(l.errors[0].message.ends_with("the row is left out"));
        assert!(l.errors[1].message.contains("service `warehouse`"));
        assert!(l.errors[2].message.contains("2 fields, the header has 6"));
        let warned: Vec<(usize, &str)> = l
            .warnings
            .iter()
            .map(|w| (w.line, w.message.as_str()))
            .collect();
        assert_eq!(
            warned,
            [
                (
                    5,
                    "`name` held a line break or control character: taken out"
                ),
                (
                    7,
                    "ANA@example.com is also on line 2: merged into one recipient"
                ),
                (
                    8,
                    "time zone `Mars/Olympus` is unknown (use an IANA name such as Europe/Warsaw): UTC is used"
                ),
            ]
        );
    }

    /// A row naming known and unknown services keeps the known ones; an unknown
    /// language falls back to English. Both said, neither drops the customer.
    #[test]
    fn unknown_services_and_languages_are_mended_not_dropped() {
        let l = from_csv(
            "email,language,services\nana@example.com,xx-!!,shop;warehouse\n",
            &ids(),
        );
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.recipients[0].services, ["shop"]);
        assert_eq!(l.recipients[0].language, "en");
        assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    }

    #[test]
    fn a_csv_without_an_email_column_is_refused_whole() {
        let l = from_csv("mail,name\na@example.com,A\n", &ids());
        assert!(l.recipients.is_empty());
        assert!(l.errors[0].message.contains("no `email` column"));
        let l = from_csv("email,first name\na@example.com,A\n", &ids());
        assert!(
            l.errors[0].message.contains("`first_name`"),
            "{:?}",
            l.errors
        );
    }

    /// The survey `check` and `run` make says what loading the whole file says, without
    /// keeping the rows: the same errors and merges, and each service's followers.
    #[test]
    fn a_survey_counts_what_loading_would_keep() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(
            &path,
            "email,language,services\n\
             ana@example.com,pl,shop\n\
             bob@example.com,sv,api\n\
             ANA@example.com,en,api\n\
             carl@example.com,xx,\n\
             bob@example.com,sv,\n\
             dan@example.com,,shop api\n\
             nope,en,\n",
        )
        .unwrap();
        let audience = Audience::Csv(path);
        let loaded = load(&audience, &ids()).unwrap();
        let survey = survey(&audience, &ids()).unwrap();
        assert_eq!(survey.errors, loaded.errors);
        assert_eq!(survey.warnings, loaded.warnings);
        for (i, s) in ids().iter().enumerate() {
            let followers = loaded.recipients.iter().filter(|r| r.follows(s)).count();
            assert_eq!(survey.followers[i], followers as u64, "{s}");
        }
        assert_eq!(survey.followers, [4, 4]);
        let langs: Vec<(&str, (usize, usize))> = survey
            .languages
            .iter()
            .map(|(l, n)| (l.as_str(), *n))
            .collect();
        assert_eq!(
            langs,
            [
                ("en", (7, 1)),
                ("pl", (2, 1)),
                ("sv", (3, 1)),
                ("xx", (5, 1))
            ]
        );
    }

    #[test]
    fn yaml_audiences_take_the_same_rows() {
        let text = "- { email: ana@example.com, name: Ana, language: pl, services: [shop] }\n\
                    - email: bob@example.com\n  timezone: Nowhere/City\n\
                    - just a string\n";
        let l = from_yaml(text, &ids());
        assert_eq!(l.recipients[0].services, ["shop"]);
        assert_eq!(l.recipients[0].timezone, "UTC");
        assert_eq!(l.recipients.len(), 2, "Nowhere/City is mended to UTC");
        assert_eq!(l.recipients[1].timezone, "UTC");
        let lines: Vec<usize> = l.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [4], "{:?}", l.errors);
    }
}

/// A compensation code pool read and checked.
#[derive(Debug, Clone, Default)]
pub struct Codes {
    /// Usable codes in file order, each once.
    pub codes: Vec<String>,
    /// Rows left out, with why.
    pub errors: Vec<RowIssue>,
}

/// Reads a compensation codes CSV: a header row naming a `code` column, then one code a
/// row. Empty codes, codes with spaces or control characters and repeated codes are
/// reported by line and left out. Fails only when the file cannot be read.
pub fn codes(path: &Path) -> Result<Codes, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read codes file {}: {e}", path.display()))?;
    let mut out = Codes::default();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let column = match reader.headers() {
        Ok(h) => h.iter().position(|n| n.eq_ignore_ascii_case("code")),
        Err(_) => None,
    };
    let Some(column) = column else {
        out.errors.push(RowIssue {
            line: 1,
            col: 1,
            message: "the header row has no `code` column; the first row must name the columns, e.g. code".into(),
        });
        return Ok(out);
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in reader.records() {
        let (line, record) = match record {
            Ok(r) => (r.position().map(|p| p.line() as usize).unwrap_or(0), r),
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                out.errors.push(RowIssue {
                    line,
                    col: 1,
                    message: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let code = record.get(column).unwrap_or("").to_string();
        let problem = if code.is_empty() {
            Some("empty code".to_string())
        } else if code.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some(format!("code {code:?} holds spaces or control characters"))
        } else if code.len() > 200 {
            Some("code longer than 200 characters".to_string())
        } else {
            seen.get(&code).map(|first| {
                format!("code `{code}` repeats line {first}: each code is given out once")
            })
        };
        match problem {
            Some(message) => out.errors.push(RowIssue {
                line,
                col: 1,
                message,
            }),
            None => {
                seen.insert(code.clone(), line);
                out.codes.push(code);
            }
        }
    }
    Ok(out)
}
