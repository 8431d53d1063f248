//! Notification destinations written as URLs, with shoutrrr's scheme names (`generic+https://`,
//! `slack://`, `discord://`, `telegram://`, `smtp://`, `ntfy://`) plus `hc+https://` for
//! healthchecks-style pings. Parsing never echoes a URL: they hold tokens and passwords, which
//! [`Destination::secrets`] lists for masking.

use std::path::PathBuf;
use url::Url;

/// Which events a destination is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// Bad news only (failures, a suspect backup, a missing off-site copy).
    Failure,
    /// Every event.
    Always,
}

impl On {
    /// `failure` or `always`.
    ///
    /// # Errors
    /// Any other word.
    pub fn parse(text: &str) -> Result<On, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "failure" | "failures" | "fail" => Ok(On::Failure),
            "always" | "all" => Ok(On::Always),
            other => Err(format!("{other:?} is neither failure nor always")),
        }
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// STARTTLS after connecting (required).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Tls,
    /// Plain text (a local relay).
    None,
}

/// An SMTP destination.
#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub encryption: Encryption,
    /// A PEM file of extra trusted roots (`?cafile=`).
    pub cafile: Option<PathBuf>,
}

/// Where one destination's messages go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A JSON POST to this URL.
    Webhook(Url),
    /// A Slack incoming webhook.
    SlackHook(Url),
    /// Slack's chat.postMessage with a bot token.
    SlackApi {
        endpoint: Url,
        token: String,
        channel: String,
    },
    /// A Discord webhook.
    Discord(Url),
    /// The Telegram Bot API: this token, these chats (the API's base URL is a setting).
    Telegram { token: String, chats: Vec<String> },
    /// Email.
    Smtp(Smtp),
    /// An ntfy topic.
    Ntfy {
        url: Url,
        user: Option<String>,
        password: Option<String>,
    },
    /// A healthchecks-style check: `/start`, then the URL itself, or `/fail`.
    Ping(Url),
}

/// One destination of `BACKUP_NOTIFY`.
#[derive(Debug, Clone)]
pub struct Destination {
    pub target: Target,
    /// `?on=`: overrides `BACKUP_NOTIFY_ON` for this destination.
    pub on: Option<On>,
    secrets: Vec<String>,
    masked: String,
}

impl Destination {
    /// Parses one destination URL. The error never holds the URL.
    ///
    /// # Errors
    /// An unknown scheme, a missing part, or a bad `on=`.
    pub fn parse(text: &str) -> Result<Destination, String> {
        let text = text.trim();
        let url = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        let mut secrets = vec![text.to_string()];
        secrets.extend(url.password().map(decode));
        let on = match query(&url, "on") {
            Some(v) => Some(On::parse(&v)?),
            None => None,
        };
        let scheme = url.scheme().to_string();
        let target = match scheme.as_str() {
            "generic+https" | "generic+http" | "generic" => Target::Webhook(webhook(&url)?),
            "hc+https" | "hc+http" => Target::Ping(inner_url(&url, "hc+")?),
            "slack" => slack(&url, &mut secrets)?,
            "discord" => discord(&url, &mut secrets)?,
            "telegram" => telegram(&url, &mut secrets)?,
            "smtp" | "smtps" => Target::Smtp(smtp(&url)?),
            "ntfy" => ntfy(&url)?,
            other => return Err(format!("unknown notification scheme {other:?}")),
        };
        if let Target::Webhook(u) | Target::Ping(u) = &target {
            secrets.push(u.to_string());
            secrets.extend(u.path_segments().into_iter().flatten().map(str::to_string));
            secrets.extend(u.query_pairs().map(|(_, v)| v.into_owned()));
        }
        Ok(Destination {
            masked: format!(
                "{scheme}://{}/{}",
                url.host_str().unwrap_or(""),
                crate::runtime::redact::MASK
            ),
            target,
            on,
            secrets,
        })
    }

    /// What may never be shown: the URL, its password, its tokens.
    #[must_use]
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// The destination as `config` shows it: the scheme and the host, the rest masked.
    #[must_use]
    pub fn masked(&self) -> &str {
        &self.masked
    }

    /// The short name used in logs (`telegram`, `smtp`, `webhook`...).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match &self.target {
            Target::Webhook(_) => "webhook",
            Target::SlackHook(_) | Target::SlackApi { .. } => "slack",
            Target::Discord(_) => "discord",
            Target::Telegram { .. } => "telegram",
            Target::Smtp(_) => "email",
            Target::Ntfy { .. } => "ntfy",
            Target::Ping(_) => "healthchecks",
        }
    }
}

/// Parses a list: destinations separated by spaces, commas between URLs, or newlines.
///
/// # Errors
/// The first destination that does not parse (by its position, never its text).
pub fn parse_list(text: &str) -> Result<Vec<Destination>, String> {
    split_list(text)
        .iter()
        .enumerate()
        .map(|(i, t)| Destination::parse(t).map_err(|e| format!("destination {}: {e}", i + 1)))
        .collect()
}

/// The URLs of a list: split at blanks, and at commas that start a new URL (`,scheme://`), so
/// the commas inside a query (`to=a@x,b@y`) stay.
#[must_use]
pub fn split_list(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let mut current = String::new();
        for piece in word.split(',') {
            let starts_url = piece.contains("://")
                && piece
                    .split("://")
                    .next()
                    .is_some_and(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+'));
            if starts_url && !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(',');
            }
            current.push_str(piece);
        }
        if !current.is_empty() {
            out.push(current);
        }
    }
    out.retain(|s| !s.trim_matches(',').is_empty());
    out
}

/// A percent-encoded part of a URL (a user name, a password), decoded (`+` stays `+`).
fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| s.to_string(), |(_, v)| v.into_owned())
}

/// A query parameter.
fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

/// The URL without our own parameters (`on`, `base`), as a plain http(s) URL after `prefix`.
fn inner_url(url: &Url, prefix: &str) -> Result<Url, String> {
    let text = url.as_str().strip_prefix(prefix).unwrap_or(url.as_str());
    let mut inner = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    strip_own_params(&mut inner);
    if inner.host_str().is_none() {
        return Err("the URL names no host".into());
    }
    Ok(inner)
}

fn strip_own_params(url: &mut Url) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !matches!(k.to_ascii_lowercase().as_str(), "on" | "base"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
}

/// `generic+https://…`, `generic+http://…`, or `generic://…` (https; `disabletls=yes`: http).
fn webhook(url: &Url) -> Result<Url, String> {
    if url.scheme() != "generic" {
        return inner_url(url, "generic+");
    }
    let plain = query(url, "disabletls").is_some_and(|v| matches!(v.as_str(), "yes" | "true"));
    let scheme = if plain { "http" } else { "https" };
    let rest = url.as_str().strip_prefix("generic").unwrap_or_default();
    let mut u = inner_url(
        &Url::parse(&format!("{scheme}{rest}")).map_err(|e| e.to_string())?,
        "",
    )?;
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "disabletls")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.set_query(None);
    if !kept.is_empty() {
        u.query_pairs_mut().extend_pairs(kept);
    }
    Ok(u)
}

/// `?base=` (for a test server or a proxy), else the service's own address.
fn base(url: &Url, default: &str) -> Result<Url, String> {
    let text = query(url, "base").unwrap_or_else(|| default.to_string());
    Url::parse(text.trim_end_matches('/')).map_err(|e| format!("invalid base= ({e})"))
}

/// `slack://hook:T-B-X@webhook`, `slack://[botname@]T/B/X`, or `slack://xoxb:TOKEN@CHANNEL`.
fn slack(url: &Url, secrets: &mut Vec<String>) -> Result<Target, String> {
    let user = url.username();
    let password = url.password().map(decode);
    if let (Some(kind @ ("xoxb" | "xoxp")), Some(rest)) = (Some(user), password.clone()) {
        let token = format!("{kind}-{rest}");
        secrets.push(token.clone());
        let channel = url
            .host_str()
            .ok_or("slack:// names no channel")?
            .to_string();
        let mut endpoint = base(url, "https://slack.com")?;
        endpoint.set_path("/api/chat.postMessage");
        return Ok(Target::SlackApi {
            endpoint,
            token,
            channel,
        });
    }
    let parts: Vec<String> = if user == "hook" {
        password
            .ok_or("slack://hook: needs the webhook token")?
            .split(['-', '/'])
            .map(str::to_string)
            .collect()
    } else {
        let mut p = vec![url.host_str().unwrap_or_default().to_string()];
        p.extend(
            url.path_segments()
                .into_iter()
                .flatten()
                .map(str::to_string),
        );
        p
    };
    let parts: Vec<String> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    if parts.len() != 3 {
        return Err(
            "slack:// needs a webhook token of three parts (T…/B…/X…) or xoxb:TOKEN@CHANNEL".into(),
        );
    }
    secrets.extend(parts.iter().cloned());
    let mut hook = base(url, "https://hooks.slack.com")?;
    hook.set_path(&format!("/services/{}", parts.join("/")));
    Ok(Target::SlackHook(hook))
}

/// `discord://TOKEN@WEBHOOK_ID`.
fn discord(url: &Url, secrets: &mut Vec<String>) -> Result<Target, String> {
    let token = decode(url.username());
    let id = url.host_str().unwrap_or_default();
    if token.is_empty() || id.is_empty() {
        return Err("discord:// needs TOKEN@WEBHOOK_ID".into());
    }
    secrets.push(token.clone());
    let mut hook = base(url, "https://discord.com")?;
    hook.set_path(&format!("/api/webhooks/{id}/{token}"));
    Ok(Target::Discord(hook))
}

/// `telegram://TOKEN@telegram?chats=ID1,ID2` (the token is `123456:ABC…`).
fn telegram(url: &Url, secrets: &mut Vec<String>) -> Result<Target, String> {
    let token = match url.password() {
        Some(p) => format!("{}:{}", decode(url.username()), decode(p)),
        None => decode(url.username()),
    };
    if token.is_empty() {
        return Err("telegram:// needs the bot token: telegram://TOKEN@telegram?chats=ID".into());
    }
    secrets.push(token.clone());
    let chats: Vec<String> = query(url, "chats")
        .or_else(|| query(url, "channels"))
        .unwrap_or_default()
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    Ok(Target::Telegram { token, chats })
}

/// `smtp://user:pass@host:587/?from=…&to=a@x,b@y[&encryption=starttls|tls|none][&cafile=…]`,
/// or `smtps://` (TLS from the start).
fn smtp(url: &Url) -> Result<Smtp, String> {
    let host = url.host_str().ok_or("smtp:// names no host")?.to_string();
    let encryption = match query(url, "encryption")
        .as_deref()
        .map(str::to_ascii_lowercase)
    {
        None if url.scheme() == "smtps" => Encryption::Tls,
        None => Encryption::StartTls,
        Some(e) => match e.as_str() {
            "starttls" | "explicittls" => Encryption::StartTls,
            "tls" | "implicittls" | "ssl" => Encryption::Tls,
            "none" | "plain" => Encryption::None,
            other => return Err(format!("encryption={other:?}: use starttls, tls or none")),
        },
    };
    let port = url.port().unwrap_or(match encryption {
        Encryption::Tls => 465,
        Encryption::StartTls => 587,
        Encryption::None => 25,
    });
    let to: Vec<String> = query(url, "to")
        .unwrap_or_default()
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if to.is_empty() {
        return Err("smtp:// needs to=ADDRESS[,ADDRESS]".into());
    }
    let user = Some(decode(url.username())).filter(|u| !u.is_empty());
    let from = query(url, "from")
        .or_else(|| user.clone().filter(|u| u.contains('@')))
        .ok_or("smtp:// needs from=ADDRESS")?;
    Ok(Smtp {
        host,
        port,
        user,
        password: url.password().map(decode),
        from,
        to,
        encryption,
        cafile: query(url, "cafile").map(PathBuf::from),
    })
}

/// `ntfy://[user:pass@]host[:port]/topic[?scheme=http]`.
fn ntfy(url: &Url) -> Result<Target, String> {
    let host = url.host_str().ok_or("ntfy:// names no host")?;
    let topic = url.path().trim_matches('/');
    if topic.is_empty() {
        return Err("ntfy:// needs a topic: ntfy://ntfy.sh/TOPIC".into());
    }
    let scheme = query(url, "scheme").unwrap_or_else(|| "https".into());
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let target = Url::parse(&format!("{scheme}://{host}{port}/{topic}"))
        .map_err(|e| format!("not a URL ({e})"))?;
    Ok(Target::Ntfy {
        url: target,
        user: Some(decode(url.username())).filter(|u| !u.is_empty()),
        password: url.password().map(decode),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shoutrrr_urls_parse() {
        let d = Destination::parse("telegram://123456:ABC-def@telegram?chats=11,-22&on=always")
            .unwrap();
        let Target::Telegram { token, chats } = &d.target else {
            panic!()
        };
        assert_eq!(token, "123456:ABC-def");
        assert_eq!(chats, &["11", "-22"]);
        assert_eq!(d.on, Some(On::Always));
        assert!(!d.masked().contains("ABC"));
        let d =
            Destination::parse("smtp://u:p%40ss@mail.example.com/?from=a@x&to=b@y,c@z").unwrap();
        let Target::Smtp(s) = &d.target else { panic!() };
        assert_eq!((s.port, s.encryption), (587, Encryption::StartTls));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert_eq!(s.to, ["b@y", "c@z"]);
        assert!(d.secrets().contains(&"p@ss".to_string()));
        let d = Destination::parse("smtps://mail.example.com/?from=a@x&to=b@y").unwrap();
        let Target::Smtp(s) = &d.target else { panic!() };
        assert_eq!((s.port, s.encryption), (465, Encryption::Tls));
        let d = Destination::parse("generic+http://127.0.0.1:8080/hook?on=always&x=1").unwrap();
        let Target::Webhook(u) = &d.target else {
            panic!()
        };
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/hook?x=1");
        let d = Destination::parse("discord://tok@123?base=http://127.0.0.1:9").unwrap();
        let Target::Discord(u) = &d.target else {
            panic!()
        };
        assert_eq!(u.as_str(), "http://127.0.0.1:9/api/webhooks/123/tok");
        let d = Destination::parse("slack://hook:T1-B2-X3@webhook").unwrap();
        let Target::SlackHook(u) = &d.target else {
            panic!()
        };
        assert_eq!(u.as_str(), "https://hooks.slack.com/services/T1/B2/X3");
        let d = Destination::parse("ntfy://ntfy.example.com:8080/backups?scheme=http").unwrap();
        let Target::Ntfy { url, .. } = &d.target else {
            panic!()
        };
        assert_eq!(url.as_str(), "http://ntfy.example.com:8080/backups");
        assert!(Destination::parse("gopher://x").is_err());
        assert!(Destination::parse("smtp://host/?from=a@x").is_err());
    }

    #[test]
    fn lists_split_between_urls_not_inside_queries() {
        let l = split_list("smtp://h/?from=a@x&to=b@y,c@z,generic+https://w/h  ntfy://n/t");
        assert_eq!(
            l,
            [
                "smtp://h/?from=a@x&to=b@y,c@z",
                "generic+https://w/h",
                "ntfy://n/t"
            ]
        );
        let err = parse_list("telegram://secret-token@telegram gopher://secret").unwrap_err();
        assert!(
            err.starts_with("destination 2") && !err.contains("secret"),
            "{err}"
        );
    }
}
