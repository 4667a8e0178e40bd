//! Updates staff write for customers, as status products call them: a state
//! (`investigating`, `identified`, `monitoring`, `resolved`) and free text, in the page's
//! language and optionally in others. The text is data, never a template: it is checked
//! here once, where it enters (API, CLI, signed link), and escaped wherever it is shown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The longest text, in characters: a few paragraphs, as a customer reads on a phone.
pub const MAX_TEXT: usize = 2000;

/// Where an incident stands, in staff's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateState {
    Investigating,
    Identified,
    Monitoring,
    /// Over: posting it resolves the incident.
    Resolved,
}

impl UpdateState {
    pub const ALL: [UpdateState; 4] = [
        UpdateState::Investigating,
        UpdateState::Identified,
        UpdateState::Monitoring,
        UpdateState::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Investigating => "investigating",
            UpdateState::Identified => "identified",
            UpdateState::Monitoring => "monitoring",
            UpdateState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Result<UpdateState, String> {
        UpdateState::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown update state `{s}`: use one of investigating, identified, monitoring, resolved"
                )
            })
    }
}

/// One update, as staff wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicUpdate {
    pub state: UpdateState,
    /// In the default language (the status page's).
    pub text: String,
    /// The same, in other languages, by language code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub texts: BTreeMap<String, String>,
    pub by: String,
}

impl PublicUpdate {
    /// Checks what staff typed: `text` in the default language, `texts` in the others
    /// (each one of `languages`). Line ends are made `\n`; leading and trailing blanks
    /// go. Refused: an empty or blank text, one over [`MAX_TEXT`] characters, control
    /// characters, an unknown language.
    pub fn new(
        state: UpdateState,
        text: &str,
        texts: BTreeMap<String, String>,
        by: &str,
        languages: &[&str],
    ) -> Result<PublicUpdate, String> {
        let text = clean(text, "the update's text")?;
        let mut checked = BTreeMap::new();
        for (lang, t) in texts {
            let lang = lang.trim().to_ascii_lowercase();
            if !languages.contains(&lang.as_str()) {
                return Err(format!(
                    "no templates exist for the language `{lang}` of a text: give texts in {}",
                    languages.join(", ")
                ));
            }
            checked.insert(lang.clone(), clean(&t, &format!("the `{lang}` text"))?);
        }
        let by = by.trim();
        if by.is_empty() || by.chars().count() > 100 || by.chars().any(char::is_control) {
            return Err(
                "`by` must name who writes the update, in one line of at most 100 characters"
                    .into(),
            );
        }
        Ok(PublicUpdate {
            state,
            text,
            texts: checked,
            by: by.to_string(),
        })
    }

    /// The text a reader of `lang` gets, and the language it is written in when it is not
    /// theirs (the default language's text, which the page or mail frames in theirs).
    pub fn text_for(&self, lang: &str, default: &str) -> (&str, Option<String>) {
        match self.texts.get(lang) {
            Some(t) => (t, None),
            None if lang == default => (&self.text, None),
            None => (&self.text, Some(default.to_string())),
        }
    }
}

fn clean(raw: &str, what: &str) -> Result<String, String> {
    let text = raw.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.trim();
    if text.is_empty() {
        return Err(format!(
            "{what} is empty: write what happened, what is being done, or what customers can do meanwhile"
        ));
    }
    let n = text.chars().count();
    if n > MAX_TEXT {
        return Err(format!(
            "{what} has {n} characters, more than {MAX_TEXT}: shorten it (customers read it on a phone)"
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(format!(
            "{what} holds the control character U+{:04X}: remove it",
            c as u32
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANGS: [&str; 3] = ["en", "pl", "sv"];

    fn make(text: &str, texts: &[(&str, &str)]) -> Result<PublicUpdate, String> {
        PublicUpdate::new(
            UpdateState::Identified,
            text,
            texts
                .iter()
                .map(|(l, t)| (l.to_string(), t.to_string()))
                .collect(),
            "anna",
            &LANGS,
        )
    }

    #[test]
    fn a_text_is_kept_as_written_but_for_its_line_ends_and_outer_blanks() {
        let u = make(
            "  The database\r\nis being restored.\n ",
            &[("pl", " Baza\rwraca. ")],
        )
        .unwrap();
        assert_eq!(u.text, "The database\nis being restored.");
        assert_eq!(u.texts["pl"], "Baza\nwraca.");
        assert_eq!(u.text_for("pl", "en"), ("Baza\nwraca.", None));
        assert_eq!(
            u.text_for("en", "en"),
            ("The database\nis being restored.", None)
        );
        assert_eq!(
            u.text_for("sv", "en"),
            ("The database\nis being restored.", Some("en".to_string()))
        );
    }

    #[test]
    fn empty_long_controlled_or_foreign_texts_are_refused_with_the_fix() {
        let e = make(" \n\t ", &[]).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        let e = make("ok", &[("pl", "   ")]).unwrap_err();
        assert!(e.contains("the `pl` text is empty"), "{e}");
        let e = make(&"x".repeat(MAX_TEXT + 1), &[]).unwrap_err();
        assert!(e.contains("2001 characters, more than 2000"), "{e}");
        assert!(
            make(&"ż".repeat(MAX_TEXT), &[]).is_ok(),
            "characters, not bytes"
        );
        let e = make("bell\u{7}", &[]).unwrap_err();
        assert!(e.contains("U+0007"), "{e}");
        let e = make("ok", &[("de", "Hallo")]).unwrap_err();
        assert!(e.contains("`de`") && e.contains("en, pl, sv"), "{e}");
        let e = PublicUpdate::new(UpdateState::Monitoring, "ok", BTreeMap::new(), " ", &LANGS)
            .unwrap_err();
        assert!(e.contains("`by`"), "{e}");
    }

    #[test]
    fn states_are_statuspage_names() {
        for s in UpdateState::ALL {
            assert_eq!(UpdateState::parse(s.as_str()), Ok(s));
        }
        let e = UpdateState::parse("fixed").unwrap_err();
        assert!(e.contains("investigating, identified, monitoring, resolved"));
    }
}
