//! Secret scrubbing: every secret we learn is registered here, and every line we print passes through
//! [`scrub`], so a password can't reach a log line or an error even when a library echoes it. Also
//! [`sanitize`], for names read from files that must not forge lines or terminal sequences.

use std::sync::{Mutex, PoisonError};

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// What a secret is replaced with.
pub const MASK: &str = "********";

/// Remembers a secret (and its percent-encoded form) so that [`scrub`] hides it. Empty and
/// very short secrets are ignored: masking every "a" would make messages unreadable.
pub fn register(secret: &str) {
    if secret.len() < 3 {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    for s in [secret.to_string(), encoded, percent_encode_all(secret)] {
        if !secrets.contains(&s) {
            secrets.push(s);
        }
    }
    // Longest first, so a secret that contains another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

fn percent_encode_all(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Replaces every registered secret in `text` with [`MASK`].
#[must_use]
pub fn scrub(text: &str) -> String {
    let secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = text.to_string();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

/// Text read from files others may have written (a sidecar's database name, label or reason, a
/// file name), made safe to print in a log line, a message or a table: control characters (a
/// newline that would forge a log line, the escape of a terminal sequence) and the Unicode
/// characters that reorder or break lines become `?`.
#[must_use]
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            let reorders = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || reorders || matches!(c, '\u{2028}' | '\u{2029}') {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_names_on_one_line() {
        assert_eq!(sanitize("shop"), "shop");
        assert_eq!(sanitize("déjà vu"), "déjà vu");
        assert_eq!(
            sanitize("shop\u{1b}[31m\nINFO fake\r\u{202e}x\u{2028}"),
            "shop?[31m?INFO fake??x?"
        );
    }

    #[test]
    fn registered_secrets_are_masked_in_plain_and_encoded_form() {
        register("Zq9-p@ss:w/rd%");
        let line = "url postgresql://u:Zq9-p%40ss%3Aw%2Frd%25@h/db and raw Zq9-p@ss:w/rd% here";
        let out = scrub(line);
        assert!(!out.contains("Zq9"), "{out}");
        assert_eq!(out.matches(MASK).count(), 2, "{out}");
    }

    #[test]
    fn short_secrets_are_not_registered() {
        register("ab");
        assert_eq!(scrub("abc ab"), "abc ab");
    }
}
