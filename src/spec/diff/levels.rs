//! A repository's own risk levels: a small YAML file raising, lowering or silencing checks,
//! as oasdiff's severity-levels file does.
//!
//! ```yaml
//! # .switchyard-diff.yaml
//! risk:
//!   consumer-added: medium     # our storefront consumers are billed per call
//!   spec-changed: off          # do not report settings no check covers
//! ```

use std::collections::HashMap;

use super::checks::{self, Risk};

/// The file name looked up beside the HEAD workspace, then at the repository root.
pub const LEVELS_FILE: &str = ".switchyard-diff.yaml";

/// Risk per check, defaults overridden by the repository.
#[derive(Debug, Clone, Default)]
pub struct Levels {
    overrides: HashMap<&'static str, Option<Risk>>,
}

/// A levels file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LevelsError {
    /// Not YAML of the expected shape.
    #[error("{file}: {message} (expected `risk:` mapping check IDs to high, medium, low or off)")]
    Shape {
        /// The file.
        file: String,
        /// What the parser said.
        message: String,
    },
    /// A check ID the catalog does not have.
    #[error("{file}: unknown check `{id}`{hint} (the checks are listed in docs/diff-checks.md)")]
    UnknownCheck {
        /// The file.
        file: String,
        /// The ID given.
        id: String,
        /// A did-you-mean, with its leading space.
        hint: String,
    },
    /// A level other than high, medium, low or off.
    #[error("{file}: `{id}: {level}` is not a level; use high, medium, low or off")]
    UnknownLevel {
        /// The file.
        file: String,
        /// The check.
        id: String,
        /// The level given.
        level: String,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelsFile {
    #[serde(default)]
    risk: indexmap::IndexMap<String, String>,
}

impl Levels {
    /// Parses a levels file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Levels, LevelsError> {
        let parsed: LevelsFile = serde_saphyr::from_str(text).map_err(|e| LevelsError::Shape {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        let mut overrides = HashMap::new();
        for (id, level) in parsed.risk {
            let Some(check) = checks::by_id(&id) else {
                let hint =
                    crate::spec::diagnostic::did_you_mean(&id, checks::ALL.iter().map(|c| c.id))
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                return Err(LevelsError::UnknownCheck {
                    file: file.to_owned(),
                    id,
                    hint,
                });
            };
            let risk = match level.as_str() {
                "off" => None,
                other => Some(Risk::parse(other).ok_or_else(|| LevelsError::UnknownLevel {
                    file: file.to_owned(),
                    id: id.clone(),
                    level: level.clone(),
                })?),
            };
            overrides.insert(check.id, risk);
        }
        Ok(Levels { overrides })
    }

    /// The risk a check is reported at; `None` when the repository silenced it.
    pub fn risk_of(&self, id: &str) -> Option<Risk> {
        match self.overrides.get(id) {
            Some(level) => *level,
            None => checks::by_id(id).map(|c| c.risk),
        }
    }
}
