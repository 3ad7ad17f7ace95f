//! Redaction of credentials carried in URLs, applied to everything the product writes: log
//! lines, error messages (and so dead letters, run reports and `switchyard status`), alert
//! payloads and the alert outbox's error column.
//!
//! Two rules:
//! - **userinfo is always redacted**: `https://user:pass@host/path` is written as
//!   `https://***@host/path`, wherever a URL appears in a text;
//! - **an alert webhook URL is written as its origin only**: for Slack-style webhooks the
//!   path (or a `?token=` query) *is* the credential, so `https://hooks.example/T0/B0/XyZ`
//!   is written as `https://hooks.example/…`.
//!
//! The functions never fail: text that is not a URL is returned as it is.

use std::borrow::Cow;

/// What replaces userinfo.
const HIDDEN_USERINFO: &str = "***";

/// What replaces a secret path and query.
const HIDDEN_PATH: &str = "…";

/// `text` with the userinfo of every URL in it (`scheme://userinfo@host`) replaced by `***`.
/// Use it on any message that may quote a URL: a request error, a configuration value.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        // The authority ends where the path, query, fragment or the surrounding text begins.
        let end = after
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | '(' | ')' | '<' | '>' | ',' | ';'
                ) || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str(HIDDEN_USERINFO);
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A URL whose path and query are secret (an owner's alert webhook): its scheme, host and
/// port, then `…` when there was anything more. Userinfo is dropped.
pub fn secret_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let origin = parsed.origin().ascii_serialization();
            let more = parsed.path() != "/" || parsed.query().is_some();
            if more {
                format!("{origin}/{HIDDEN_PATH}")
            } else {
                origin
            }
        }
        // Nothing of an unparsable URL is known to be safe to show.
        Err(_) => HIDDEN_PATH.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, secret_url};

    #[test]
    fn userinfo_is_redacted_wherever_a_url_appears() {
        assert_eq!(
            redact("GET https://user:pa%40ss@api.example:8443/v1?x=1 failed"),
            "GET https://***@api.example:8443/v1?x=1 failed"
        );
        assert_eq!(
            redact("a (http://token@h/p) and \"https://u:p@other\""),
            "a (http://***@h/p) and \"https://***@other\""
        );
        assert_eq!(redact("mail me@example.com"), "mail me@example.com");
        assert_eq!(redact("http://host/a@b"), "http://host/a@b");
        assert_eq!(redact("no url"), "no url");
    }

    #[test]
    fn alert_webhooks_show_their_origin_only() {
        assert_eq!(
            secret_url("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            secret_url("http://user:pw@127.0.0.1:9000/?token=abc"),
            "http://127.0.0.1:9000/…"
        );
        assert_eq!(
            secret_url("https://alerts.example"),
            "https://alerts.example"
        );
        assert_eq!(secret_url("not a url/secret"), "…");
    }
}
