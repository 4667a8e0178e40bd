//! Leaf helpers for turning values into text at the edges: times, HTML, e-mail
//! addresses. Nothing here knows of incidents, stores or mail transports; every room may
//! use it.

pub mod email;
pub mod html;
pub mod svg;
pub mod template;
pub mod time;

/// `n` and the noun, singular for one: "1 service", "3 services", "0 answers". For the
/// nouns tocsin prints, whose plural takes an `s`.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    counted(n, noun, &format!("{noun}s"))
}

/// [`count`] for a noun whose plural is not its singular and `s` ("mailbox", "mailboxes").
pub fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// `s` cut to at most `max` characters, ending with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `s` cut to at most `max` bytes of UTF-8 (on a character boundary), ending with `…`.
pub fn cut_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_on_character_boundaries() {
        assert_eq!(cut("zażółć", 4), "zaż…");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut_bytes("żółw", 5), "ż…");
        assert!(cut_bytes(&"ą".repeat(3000), 4096).len() <= 4096);
    }
}
