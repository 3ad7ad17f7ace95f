//! Where a state store lives: the one parser of the texts that name one (`--state`, the
//! workspace's `state:`), shared by validation and by every command that opens state.
//!
//! Parsing does no I/O: validation calls it to report a malformed URL before anything runs.

use std::path::{Path, PathBuf};

use super::StoreError;

/// The forms a store target takes, for messages.
pub const ACCEPTED_FORMS: &str = "`sqlite:PATH` (a file, relative to the workspace) or `postgres://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME]`";

/// A state store, resolved: a SQLite file or a PostgreSQL database and schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://` or `postgresql://`), credentials included.
    Postgres(String),
}

impl StoreTarget {
    /// Parses a store URL: `sqlite:PATH` (a relative path is taken from `base`) or
    /// `postgres://...`. With `bare_paths`, text without a scheme is a SQLite path too
    /// (`--state state.db`); the workspace file asks for the scheme, so a typo is not
    /// silently a file name.
    pub fn parse(text: &str, base: &Path, bare_paths: bool) -> Result<Self, StoreError> {
        let bad = |message: String| StoreError::BadTarget {
            target: crate::redact::redact(text).into_owned(),
            message,
        };
        if super::is_postgres(text) {
            // The driver parses the rest; `schema=` is ours and comes out first.
            let (url, _) = super::postgres::split_schema(text)?;
            url.parse::<tokio_postgres::Config>().map_err(|err| {
                bad(format!(
                    "not a PostgreSQL URL ({err}); use {ACCEPTED_FORMS}"
                ))
            })?;
            return Ok(Self::Postgres(text.to_owned()));
        }
        let path = match text.strip_prefix("sqlite:") {
            Some(path) => path.strip_prefix("//").unwrap_or(path),
            None if bare_paths && !has_scheme(text) => text,
            None => {
                let scheme = text.split_once(':').map_or("", |(scheme, _)| scheme);
                let message = if has_scheme(text) {
                    format!("unknown store `{scheme}:`; use {ACCEPTED_FORMS}")
                } else {
                    format!("no store scheme; use {ACCEPTED_FORMS}")
                };
                return Err(bad(message));
            }
        };
        if path.is_empty() {
            return Err(bad(format!("no file named; use {ACCEPTED_FORMS}")));
        }
        Ok(Self::Sqlite(base.join(path)))
    }

    /// The store a command runs against: `--state` when given (a path is taken from the
    /// current folder), else the workspace's `state:` (`None` when the workspace was not
    /// read because `--state` makes it unnecessary). Every command that opens state chooses
    /// it here.
    pub fn choose(cli: Option<&str>, workspace: Option<&StoreTarget>) -> Result<Self, StoreError> {
        match (cli, workspace) {
            (Some(text), _) => Self::parse(text, Path::new(""), true),
            (None, Some(target)) => Ok(target.clone()),
            (None, None) => Err(StoreError::BadTarget {
                target: String::new(),
                message: format!("no state store named; give --state with {ACCEPTED_FORMS}"),
            }),
        }
    }

    /// The SQLite file, if the state is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }
}

/// Written for logs and messages: credentials redacted.
impl std::fmt::Display for StoreTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

/// `scheme:` before anything else, as URLs start (`mysql://`, `file:`); a Windows drive
/// letter (`C:\`) is one character and not taken for one.
fn has_scheme(text: &str) -> bool {
    text.split_once(':').is_some_and(|(scheme, _)| {
        scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// The URL with its password hidden but the user kept: which role connects is worth
/// logging, its password never is.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return crate::redact::redact(url).into_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StoreTarget, String> {
        StoreTarget::parse(text, Path::new("/ws"), false).map_err(|err| err.to_string())
    }

    #[test]
    fn sqlite_paths_are_taken_from_the_base_and_postgres_urls_kept() {
        assert_eq!(
            parse("sqlite:state/s.db"),
            Ok(StoreTarget::Sqlite("/ws/state/s.db".into()))
        );
        assert_eq!(
            parse("sqlite:/var/s.db"),
            Ok(StoreTarget::Sqlite("/var/s.db".into()))
        );
        assert_eq!(
            parse("postgresql://u:pw@db:5433/app?schema=s_1"),
            Ok(StoreTarget::Postgres(
                "postgresql://u:pw@db:5433/app?schema=s_1".into()
            ))
        );
        assert_eq!(
            StoreTarget::parse("x.db", Path::new("/cwd"), true).map_err(|e| e.to_string()),
            Ok(StoreTarget::Sqlite("/cwd/x.db".into()))
        );
    }

    #[test]
    fn unknown_schemes_and_malformed_urls_name_the_accepted_forms() {
        for (text, says) in [
            ("mysql://db/app", "unknown store `mysql:`"),
            ("state.db", "no store scheme"),
            ("sqlite:", "no file named"),
            ("postgres://db:notaport/app", "not a PostgreSQL URL"),
            ("postgres://db/app?schema=Bad-Name", "not a plain name"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(
            parse("mysql://u:secret@db/app")
                .unwrap_err()
                .contains(ACCEPTED_FORMS)
        );
        assert!(
            !parse("mysql://u:secret@db/app")
                .unwrap_err()
                .contains("secret")
        );
    }

    #[test]
    fn the_password_is_redacted_and_the_user_kept() {
        let target = parse("postgres://app:s3cret@db:5432/ledger?schema=t").unwrap();
        assert_eq!(
            target.to_string(),
            "postgres://app:***@db:5432/ledger?schema=t"
        );
        let target = parse("postgres://db/ledger").unwrap();
        assert_eq!(target.to_string(), "postgres://db/ledger");
    }
}
