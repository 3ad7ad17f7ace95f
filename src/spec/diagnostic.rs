//! Diagnostics: what validation found, where, and how to fix it.
//!
//! A [`Diagnostic`] carries a stable [`Code`], a position and a message; rendering is kept
//! apart ([`render_human`], [`render_json`], [`render_github`]) so every front end (the CLI,
//! an editor, CI annotations) shows the same findings. This module knows nothing about YAML.

use std::fmt;
use std::path::PathBuf;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The workspace cannot run.
    Error,
    /// The workspace runs, but probably not as intended.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($($(#[doc = $doc:literal])* $name:ident = $code:literal,)*) => {
        /// A stable diagnostic code. Codes never change meaning once released; each is
        /// documented in `docs/spec-diagnostics.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($(#[doc = $doc])* $name,)*
        }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            /// The code as printed, such as `E0101`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$name => $code,)*
                }
            }
        }
    };
}

codes! {
    /// A file could not be read, or `switchyard.yaml` is missing.
    FileUnreadable = "E0001",
    /// A YAML file is not well-formed.
    YamlSyntax = "E0002",
    /// A mapping has the same key twice.
    DuplicateKey = "E0003",
    /// A key is not a field of the spec at that place.
    UnknownField = "E0004",
    /// A value has the wrong type, or a required field is missing.
    InvalidValue = "E0005",
    /// `version` is not a supported spec version.
    UnsupportedVersion = "E0006",
    /// A reference names a system that is not declared.
    UnknownSystem = "E0101",
    /// A reference names an owner that is not declared.
    UnknownOwner = "E0102",
    /// A flow names an object that is not declared.
    UnknownObject = "E0103",
    /// A test file names a flow that does not exist.
    UnknownFlow = "E0104",
    /// Two flow files declare the same flow name.
    DuplicateFlow = "E0105",
    /// A system declares no connector section, or more than one.
    ConnectorSections = "E0201",
    /// A flow's source system may neither create nor update the flow's object.
    SourceMayNotWrite = "E0202",
    /// A flow's sink system does not consume the flow's object.
    SinkNotConsumer = "E0203",
    /// An object's key field is not a property of its contract.
    KeyNotInContract = "E0204",
    /// A template does not compile.
    TemplateSyntax = "E0301",
    /// A template calls a helper that does not exist.
    UnknownHelper = "E0302",
    /// A template or `from` pointer names a field its input does not have.
    UnknownTemplateField = "E0303",
    /// A template nests deeper than the limit.
    TemplateTooDeep = "E0304",
    /// A template that needs Handlebars' own compiler is larger than the limit.
    TemplateTooLarge = "E0305",
    /// A cron expression does not parse.
    InvalidCron = "E0401",
    /// A time zone is not a known IANA name.
    InvalidTimezone = "E0402",
    /// A duration does not parse.
    InvalidDuration = "E0403",
    /// A retry window is shorter than the first retry delay.
    RetryWindowTooShort = "E0404",
    /// A trigger gives more than one of `poll`, `cron` and `webhook`.
    AmbiguousTrigger = "E0405",
    /// A webhook flow has no `webhook_auth` section.
    WebhookAuthMissing = "E0406",
    /// A webhook flow's `webhook_auth.secret_env` names an unset or empty variable.
    WebhookSecretUnset = "E0407",
    /// A failure mode is declared without an owner.
    FailureWithoutOwner = "E0501",
    /// A failure mode the flow can produce has no owner and there is no default owner.
    UnownedFailureMode = "E0502",
    /// An object's contract file does not exist.
    ContractMissing = "E0601",
    /// An object's contract file is not valid JSON.
    ContractNotJson = "E0602",
    /// An object's contract is not a valid JSON Schema.
    ContractInvalidSchema = "E0603",
    /// An object's contract path leads outside the workspace folder.
    ContractOutsideWorkspace = "E0604",
    /// An `${ENV}` reference names an unset variable (`--strict`).
    UnsetEnvStrict = "E0701",
    /// An `${ENV}` reference names an unset variable.
    UnsetEnv = "W0701",
    /// A secret (an `auth` variable, or a `${ENV}` in a system's `headers`) is unset or empty.
    UnsetSecret = "E0702",
    /// An `enrich:` field has the name of a field of the record's contract, which it replaces.
    EnrichShadowsField = "W0801",
    /// A flow's shape does not fit its kind: a reconciliation (`reconcile:`) with `to:` or
    /// `map:`, or another flow without `to:`.
    FlowShape = "E0901",
    /// A `reconcile:` setting is wrong: a pointer that is not one, a tolerance that is not a
    /// decimal, a rule without expectations, a contracted rate that is not a fraction from 0
    /// to 1 (or a rate table that cannot choose one).
    InvalidReconcile = "E0902",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding, with its position (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, relative to the workspace folder when inside it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// The stable code.
    pub code: Code,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is a likely fix.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at a position.
    pub fn error(
        file: impl Into<PathBuf>,
        (line, column): (usize, usize),
        code: Code,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line: line.max(1),
            column: column.max(1),
            severity: Severity::Error,
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// A warning at a position.
    pub fn warning(
        file: impl Into<PathBuf>,
        position: (usize, usize),
        code: Code,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(file, position, code, message)
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Sorts diagnostics by file, line and column (then code), the order every renderer prints.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.code, &a.message)
            .cmp(&(&b.file, b.line, b.column, b.code, &b.message))
    });
}

/// `file:line:col: error[E0101]: message`, then `  = hint: ...` when there is a hint.
pub fn render_human(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&format!(
            "{}:{}:{}: {}[{}]: {}\n",
            d.file.display(),
            d.line,
            d.column,
            d.severity.as_str(),
            d.code,
            d.message
        ));
        if let Some(hint) = &d.hint {
            out.push_str(&format!("  = hint: {hint}\n"));
        }
    }
    out
}

/// The summary line of the human format, such as `2 errors, 1 warning`.
pub fn summary(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

/// A JSON array of objects with `file`, `line`, `column`, `severity`, `code`, `message`, and
/// `hint` when present.
pub fn render_json(diagnostics: &[Diagnostic]) -> String {
    let items: Vec<serde_json::Value> = diagnostics
        .iter()
        .map(|d| {
            let mut object = serde_json::Map::new();
            object.insert("file".into(), d.file.display().to_string().into());
            object.insert("line".into(), d.line.into());
            object.insert("column".into(), d.column.into());
            object.insert("severity".into(), d.severity.as_str().into());
            object.insert("code".into(), d.code.as_str().into());
            object.insert("message".into(), d.message.clone().into());
            if let Some(hint) = &d.hint {
                object.insert("hint".into(), hint.clone().into());
            }
            serde_json::Value::Object(object)
        })
        .collect();
    let mut out = serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".to_owned());
    out.push('\n');
    out
}

/// GitHub Actions workflow commands: `::error file=..,line=..,col=..,title=E0101::message`.
pub fn render_github(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let mut message = d.message.clone();
        if let Some(hint) = &d.hint {
            message.push_str(&format!(" (hint: {hint})"));
        }
        out.push_str(&format!(
            "::{} file={},line={},col={},title={}::{}\n",
            d.severity.as_str(),
            escape_property(&d.file.display().to_string()),
            d.line,
            d.column,
            d.code,
            escape_data(&message)
        ));
    }
    out
}

/// Suggests the candidate closest to `name`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| format!("did you mean \"{candidate}\"?"))
}

// GitHub's workflow command syntax reserves `%`, CR and LF in data, plus `:` and `,` in
// properties; unescaped they would cut the annotation short.
pub(crate) fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

pub(crate) fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Diagnostic> {
        vec![
            Diagnostic::error(
                "flows/a.yaml",
                (4, 11),
                Code::UnknownSystem,
                "unknown system \"erp\"",
            )
            .with_hint(Some("did you mean \"erp-prod\"?".into())),
            Diagnostic::warning("switchyard.yaml", (2, 3), Code::UnsetEnv, "unset"),
        ]
    }

    #[test]
    fn human_format() {
        assert_eq!(
            render_human(&sample()),
            "flows/a.yaml:4:11: error[E0101]: unknown system \"erp\"\n  = hint: did you mean \"erp-prod\"?\nswitchyard.yaml:2:3: warning[W0701]: unset\n"
        );
        assert_eq!(summary(&sample()), "1 error, 1 warning");
    }

    #[test]
    fn github_format_escapes() {
        let d = Diagnostic::error("a,b.yaml", (1, 2), Code::YamlSyntax, "50%\nbad");
        assert_eq!(
            render_github(&[d]),
            "::error file=a%2Cb.yaml,line=1,col=2,title=E0002::50%25%0Abad\n"
        );
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        assert!(Code::ALL.iter().all(|code| seen.insert(code.as_str())));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("erp", ["erp-prod", "storefront"]).as_deref(),
            Some("did you mean \"erp-prod\"?")
        );
        assert_eq!(did_you_mean("zzz", ["storefront"]), None);
    }
}
