//! Redaction of credentials carried in URLs, applied to everything the product writes: log
//! lines, error messages (and so dead letters, run reports and `switchyard status`), alert
//! payloads and the alert outbox's error column.
//!
//! Three rules:
//! - **userinfo is always redacted**: `https://user:pass@host/path` is written as
//!   `https://***@host/path`, wherever a URL appears in a text;
//! - **a password given as a parameter is always redacted**: `password=` and `sslpassword=`,
//!   in a URL's query (`postgres://db/ledger?user=app&password=s3cret`) or a `key=value`
//!   connection string (`host=db password='s 3'`), are written as `password=***`;
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

/// Parameters whose value is a secret, wherever they appear as `name=value`.
const SECRET_PARAMS: [&str; 2] = ["sslpassword", "password"];

/// `text` with the userinfo of every URL in it (`scheme://userinfo@host`) and the value of
/// every password parameter (`password=`, `sslpassword=`) replaced by `***`. Use it on any
/// message that may quote a URL or a connection string: a request error, a configuration
/// value.
pub fn redact(text: &str) -> Cow<'_, str> {
    match redact_userinfo(text) {
        Cow::Borrowed(text) => redact_params(text),
        Cow::Owned(text) => Cow::Owned(redact_params(&text).into_owned()),
    }
}

/// `text` with the value of every secret parameter replaced by `***`: from after `name=` to
/// the next `&`, `#`, whitespace, quote or bracket; a value in single quotes (a `key=value`
/// connection string) up to its closing quote.
fn redact_params(text: &str) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    if !SECRET_PARAMS.iter().any(|name| lower.contains(name)) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while at < text.len() {
        // A name counts only as a whole word: `xpassword=` is someone else's parameter.
        let starts_word =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let name = SECRET_PARAMS.iter().find(|name| {
            starts_word
                && lower.as_bytes()[at..].starts_with(name.as_bytes())
                && bytes.get(at + name.len()) == Some(&b'=')
        });
        let Some(name) = name else {
            at += 1;
            continue;
        };
        let value_start = at + name.len() + 1;
        let value_end = if bytes.get(value_start) == Some(&b'\'') {
            // Quoted: up to the closing quote not escaped by a backslash, or the end.
            let mut escaped = false;
            text[value_start + 1..]
                .char_indices()
                .find(|&(_, c)| {
                    let closes = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                })
                .map_or(text.len(), |(end, _)| value_start + 1 + end + 1)
        } else {
            // A `: ` after the value is the message going on (`PostgreSQL at URL: ...`).
            let rest = &text[value_start..];
            rest.char_indices()
                .find(|&(index, c)| {
                    matches!(
                        c,
                        '&' | '#' | '"' | '\'' | '(' | ')' | '<' | '>' | ',' | ';'
                    ) || c.is_whitespace()
                        || (c == ':'
                            && rest[index + 1..]
                                .chars()
                                .next()
                                .is_none_or(char::is_whitespace))
                })
                .map_or(text.len(), |(end, _)| value_start + end)
        };
        out.push_str(&text[copied..value_start]);
        out.push_str(HIDDEN_USERINFO);
        copied = value_end;
        at = value_end.max(at + 1);
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// `text` with the userinfo of every URL in it replaced by `***`.
fn redact_userinfo(text: &str) -> Cow<'_, str> {
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
    fn password_parameters_are_redacted_in_urls_and_connection_strings() {
        assert_eq!(
            redact("PostgreSQL at postgres://db/ledger?user=app&password=s3cret: refused"),
            "PostgreSQL at postgres://db/ledger?user=app&password=***: refused"
        );
        assert_eq!(
            redact("postgres://u:pw@db/x?PASSWORD=a%26b&sslmode=require&sslpassword=k#f"),
            "postgres://***@db/x?PASSWORD=***&sslmode=require&sslpassword=***#f"
        );
        assert_eq!(
            redact("host=db password='it\\'s a \\\\ x' dbname=ledger"),
            "host=db password=*** dbname=ledger"
        );
        assert_eq!(redact("password=s3cret"), "password=***");
        assert_eq!(redact("é password=ü€x é"), "é password=*** é");
        assert_eq!(redact("é password='ü\\€' é"), "é password=*** é");
        assert_eq!(
            redact("xpassword=keep passwords=keep"),
            "xpassword=keep passwords=keep"
        );
        assert_eq!(redact("the password is wrong"), "the password is wrong");
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
