//! Leaf helpers for turning values into text at the edges: times, HTML, e-mail
//! addresses. Nothing here knows of incidents, stores or mail transports; every room may
//! use it.

pub mod email;
pub mod html;
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
