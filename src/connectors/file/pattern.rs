//! The `files:` of a drop folder: a folder (no wildcards) and a file-name pattern where `*`
//! matches any run of characters and `?` one character. Only the folder itself is listed,
//! never its subfolders, so an archive folder inside the drop folder is never read again.

/// A parsed drop-folder pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DropPattern {
    /// The folder, relative to the system's folder (`""` for the system's folder itself).
    pub(super) folder: String,
    /// The pattern the file names must match.
    pub(super) name: String,
}

impl DropPattern {
    /// Splits `text` (`statements/*.csv`) into its folder and name pattern; an error names
    /// what is wrong and how to write it instead.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (folder, name) = match text.rsplit_once('/') {
            Some((folder, name)) => (folder.trim_end_matches('/'), name),
            None => ("", text),
        };
        if name.is_empty() {
            return Err(format!(
                "files `{text}` names a folder but no files; add a file-name pattern such as \
                 `{text}*.csv`"
            ));
        }
        if folder.contains(['*', '?']) {
            return Err(format!(
                "files `{text}` has a wildcard in its folder; wildcards match file names in \
                 one folder only (`statements/*.csv`)"
            ));
        }
        Ok(Self {
            folder: normalize(folder),
            name: name.to_owned(),
        })
    }

    /// Whether a file name matches the name pattern.
    pub(super) fn matches(&self, file_name: &str) -> bool {
        wildcard_match(self.name.as_bytes(), file_name.as_bytes())
    }
}

/// Whether a file name is one writers use while a file is not complete yet (a dotfile, an
/// editor's backup, a download or upload in progress): such a file is never read, whatever
/// the pattern says.
pub(super) fn is_in_progress_name(file_name: &str) -> bool {
    const SUFFIXES: [&str; 6] = [".part", ".tmp", ".partial", ".filepart", ".crdownload", "~"];
    let lower = file_name.to_ascii_lowercase();
    file_name.starts_with('.') || SUFFIXES.iter().any(|suffix| lower.ends_with(suffix))
}

/// A folder path as compared with another: no `./` segments, no trailing or doubled `/`.
pub(super) fn normalize(folder: &str) -> String {
    folder
        .split('/')
        .filter(|segment| !segment.is_empty() && *segment != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Glob matching of `*` and `?` over bytes, iterative with one backtrack point (linear in
/// practice, never exponential).
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_a_folder_and_a_name_pattern() {
        let pattern = DropPattern::parse("./statements//*.csv").unwrap();
        assert_eq!(pattern.folder, "statements");
        assert_eq!(pattern.name, "*.csv");
        assert_eq!(DropPattern::parse("*.jsonl").unwrap().folder, "");
        let err = DropPattern::parse("in/*/x.csv").unwrap_err();
        assert!(err.contains("wildcard in its folder"), "{err}");
        let err = DropPattern::parse("statements/").unwrap_err();
        assert!(err.contains("no files"), "{err}");
    }

    #[test]
    fn names_match_stars_and_question_marks() {
        let pattern = DropPattern::parse("in/stmt-????-*.csv").unwrap();
        assert!(pattern.matches("stmt-2026-11.csv"));
        assert!(pattern.matches("stmt-2026-.csv"));
        assert!(!pattern.matches("stmt-26-11.csv"));
        assert!(!pattern.matches("stmt-2026-11.csv.part"));
        assert!(!pattern.matches("STMT-2026-11.csv"));
        let any = DropPattern::parse("*").unwrap();
        assert!(any.matches("a") && any.matches(""));
        let stars = DropPattern::parse("*a*a*a*b").unwrap();
        assert!(!stars.matches(&"a".repeat(5_000)));
        assert!(stars.matches(&format!("{}b", "a".repeat(5_000))));
    }

    #[test]
    fn names_writers_use_while_writing_are_in_progress() {
        for name in [
            ".stmt.csv",
            "stmt.csv.part",
            "stmt.csv.TMP",
            "stmt.csv~",
            "a.filepart",
        ] {
            assert!(is_in_progress_name(name), "{name}");
        }
        for name in ["stmt.csv", "stmt.partial.csv", "tmp.csv"] {
            assert!(!is_in_progress_name(name), "{name}");
        }
    }
}
