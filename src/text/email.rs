//! E-mail addresses as tocsin compares and checks them. The transport (lettre) parses
//! them fully when a message is built; this is what config checks and opt-outs need.

/// Normalised form of an address for opt-outs and duplicates.
pub fn address_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A plain `local@domain` check (also inside `Name <local@domain>`); the transport
/// validates the rest.
pub fn valid_email(s: &str) -> bool {
    let addr = match (s.rfind('<'), s.ends_with('>')) {
        (Some(i), true) => &s[i + 1..s.len() - 1],
        _ => s,
    };
    match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !addr.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_case_and_spaces() {
        assert_eq!(address_key("  Anna@Example.COM "), "anna@example.com");
    }

    #[test]
    fn addresses_need_a_local_part_and_a_dotted_domain() {
        assert!(valid_email("anna@example.com"));
        assert!(valid_email("Anna <anna@example.com>"));
        assert!(!valid_email("anna@localhost"));
        assert!(!valid_email("@example.com"));
        assert!(!valid_email("anna example@example.com"));
    }
}
