//! `${NAME}` references in spec values, and the environment they are read from.

use std::collections::HashMap;

/// The environment `${NAME}` references are read from: the process environment plus
/// overrides (tests and tools pass overrides instead of mutating the process environment).
#[derive(Debug, Clone, Default)]
pub struct EnvLookup {
    process: bool,
    overrides: HashMap<String, String>,
    /// No system is called with what this lookup gives (flow tests): an unset credential is
    /// then a warning, not an error.
    offline: bool,
}

impl EnvLookup {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            process: true,
            ..Self::default()
        }
    }

    /// The same lookup for a load whose systems are never called (`switchyard test`): a
    /// credential may then be unset.
    pub fn offline(mut self) -> Self {
        self.offline = true;
        self
    }

    /// Whether no system is called with this lookup's values.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// No variables at all but overrides: reproducible in tests.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds an override that wins over the process environment.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.insert(name.into(), value.into());
        self
    }

    /// The value of a variable, if set.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(value) = self.overrides.get(name) {
            return Some(value.clone());
        }
        if self.process {
            return std::env::var(name).ok();
        }
        None
    }
}

/// Expands `${NAME}` references; returns the expanded text and the byte offsets and names of
/// the unset variables (which expand to the empty string).
pub(crate) fn expand(text: &str, env: &EnvLookup) -> (String, Vec<(usize, String)>) {
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        match env.get(name) {
            Some(value) => out.push_str(&value),
            None => unset.push((offset + start, name.to_owned())),
        }
        let consumed = start + 2 + len + 1;
        offset += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    (out, unset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_and_reports_unset() {
        let env = EnvLookup::empty().with("A", "x");
        assert_eq!(
            expand("${A}/b/${B}/${A}", &env),
            ("x/b//x".to_owned(), vec![(7, "B".to_owned())])
        );
        assert_eq!(expand("${open", &env).0, "${open");
    }
}
