//! Secret scrubbing. Each operation keeps the secrets it learns in its own [`Secrets`] (its
//! [`OpContext`](super::context::OpContext) holds one), and its messages are scrubbed with them.
//! The log sink is shared by the whole process, so [`scrub`] masks the secrets of every live
//! operation: a password can't reach a log line even when a library echoes it. Also
//! [`sanitize`], for names read from files that must not forge lines or terminal sequences.

use std::sync::{Arc, Mutex, PoisonError, Weak};

type List = Mutex<Vec<String>>;

/// The secret sets of the live operations, for the process-wide log sink. Entries die with their
/// operation; a set registered here is never read for anything but masking.
static LIVE: Mutex<Vec<Weak<List>>> = Mutex::new(Vec::new());

/// What a secret is replaced with.
pub const MASK: &str = "********";

/// One operation's secrets (a cheap handle: clones share the set).
#[derive(Debug, Clone)]
pub struct Secrets(Arc<List>);

impl Default for Secrets {
    fn default() -> Self {
        Secrets::new()
    }
}

impl Secrets {
    /// An empty set, which the log sink masks for as long as it lives.
    #[must_use]
    pub fn new() -> Secrets {
        let list = Arc::new(Mutex::new(Vec::new()));
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&list));
        Secrets(list)
    }

    /// Remembers a secret (and its percent-encoded forms). Empty and very short secrets are
    /// ignored: masking every "a" would make messages unreadable.
    pub fn register(&self, secret: &str) {
        if secret.len() < 3 {
            return;
        }
        let mut secrets = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for s in [secret.to_string(), encoded, percent_encode_all(secret)] {
            if !secrets.contains(&s) {
                secrets.push(s);
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with this operation's secrets replaced by [`MASK`].
    #[must_use]
    pub fn scrub(&self, text: &str) -> String {
        mask(&self.0.lock().unwrap_or_else(PoisonError::into_inner), text)
    }
}

fn mask(secrets: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

fn percent_encode_all(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// `text` with the secrets of every live operation replaced by [`MASK`]: for what the whole
/// process shares (the log sink, the front end's last word).
#[must_use]
pub fn scrub(text: &str) -> String {
    let live: Vec<Arc<List>> = LIVE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let mut all: Vec<String> = live
        .iter()
        .flat_map(|l| l.lock().unwrap_or_else(PoisonError::into_inner).clone())
        .collect();
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    mask(&all, text)
}

/// Registers a secret with a set that lives as long as the process: for what is learnt before any
/// operation exists, such as a malformed URL's password.
pub fn register(secret: &str) {
    static PROCESS: std::sync::OnceLock<Secrets> = std::sync::OnceLock::new();
    PROCESS.get_or_init(Secrets::new).register(secret);
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
    fn two_operations_do_not_see_each_others_secrets_and_the_log_sees_both() {
        let (a, b) = (Secrets::new(), Secrets::new());
        a.register("alpha-secret-1");
        b.register("beta-secret-2");
        assert_eq!(
            a.scrub("alpha-secret-1 beta-secret-2"),
            "******** beta-secret-2"
        );
        assert_eq!(
            b.scrub("alpha-secret-1 beta-secret-2"),
            "alpha-secret-1 ********"
        );
        assert_eq!(scrub("alpha-secret-1 beta-secret-2"), "******** ********");
        drop(a);
        assert_eq!(
            scrub("alpha-secret-1"),
            "alpha-secret-1",
            "a finished operation's secrets are forgotten"
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
