//! `switchyard diff BASE HEAD`: the semantic changes between two versions of a workspace, each
//! a folder or a git revision (`main:flows`, `HEAD~1:flows`, read with git, no checkout).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::output::{err, errln, out};
use crate::spec::diff::{self, LEVELS_FILE, Levels, Risk, Side, render};
use crate::spec::{EnvLookup, LoadOptions, diagnostic, load::load_sources};

/// Arguments of `switchyard diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The version before: a workspace folder, or `REVISION:PATH` (PATH from the repository root).
    base: String,
    /// The version after, in the same forms.
    head: String,
    /// How the report is printed.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Exit 1 when a change at or above this risk is found (0 otherwise).
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    /// Risk overrides (default: `.switchyard-diff.yaml` beside HEAD, then at the repository root).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Colours in the human report.
    #[arg(long, value_enum, default_value_t = Colour::Auto)]
    colour: Colour,
}

/// Output formats of `switchyard diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Grouped text, most severe first.
    Human,
    /// A pull-request comment.
    Markdown,
    /// Every change as JSON.
    Json,
    /// GitHub Actions annotations on HEAD's lines.
    Github,
}

/// `--fail-on` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailOn {
    High,
    Medium,
    Low,
}

/// `--colour` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Colour {
    Auto,
    Always,
    Never,
}

/// One side as read: its files (relative to the workspace folder) and where it sits.
struct Read {
    label: String,
    files: Vec<(PathBuf, String)>,
    /// The workspace folder, for loading (relative paths resolve against it).
    root: PathBuf,
    /// The workspace folder relative to the repository root, for annotations.
    in_repo: PathBuf,
    /// The levels file beside it, if any.
    levels: Option<(String, String)>,
}

pub(crate) fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let (base, head) = match (read_side(&args.base), read_side(&args.head)) {
        (Ok(b), Ok(h)) => (b, h),
        (Err(e), _) | (_, Err(e)) => {
            errln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    for side in [&base, &head] {
        let options = LoadOptions {
            strict: false,
            env: EnvLookup::process().offline(),
        };
        let loaded = load_sources(&side.root, &side.files, &options);
        if loaded.workspace.is_none() {
            let errors: Vec<_> = loaded
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .cloned()
                .collect();
            err!("{}", diagnostic::render_human(&errors));
            errln!(
                "error: {} does not validate ({}); a diff needs two valid workspaces",
                side.label,
                diagnostic::summary(&loaded.diagnostics)
            );
            return Ok(ExitCode::from(2));
        }
    }
    let levels = match levels(&args, &head) {
        Ok(levels) => levels,
        Err(e) => {
            errln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let report = diff::compare(
        &Side::parse(&base.label, &base.files),
        &Side::parse(&head.label, &head.files),
        &levels,
    );
    let colour = match args.colour {
        Colour::Always => true,
        Colour::Never => false,
        Colour::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let text = match args.format {
        Format::Human => render::human(&report, colour),
        Format::Markdown => render::markdown(&report),
        Format::Json => render::json(&report),
        Format::Github => render::github(&report, &head.in_repo),
    };
    out!("{text}")?;
    let threshold = args.fail_on.map(|f| match f {
        FailOn::High => Risk::High,
        FailOn::Medium => Risk::Medium,
        FailOn::Low => Risk::Low,
    });
    Ok(match (threshold, report.worst()) {
        (Some(t), Some(worst)) if worst >= t => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

fn levels(args: &DiffArgs, head: &Read) -> anyhow::Result<Levels> {
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(Levels::parse(&path.display().to_string(), &text)?);
    }
    if let Some((name, text)) = &head.levels {
        return Ok(Levels::parse(name, text)?);
    }
    if let Ok(top) = git(Path::new("."), &["rev-parse", "--show-toplevel"]) {
        let path = PathBuf::from(top.trim()).join(LEVELS_FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(Levels::parse(&path.display().to_string(), &text)?);
        }
    }
    Ok(Levels::default())
}

/// Spec files are YAML and JSON; anything bigger than a spec file can be is not one.
fn is_spec(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

const MAX_FILES: usize = 2_000;

fn read_side(arg: &str) -> anyhow::Result<Read> {
    let folder = Path::new(arg);
    if folder.is_dir() {
        return read_folder(arg, folder);
    }
    let Some((revision, path)) = arg.split_once(':') else {
        bail!("{arg} is neither a folder nor REVISION:PATH (for example main:flows)");
    };
    read_revision(arg, revision, path.trim_matches('/'))
}

fn read_folder(label: &str, folder: &Path) -> anyhow::Result<Read> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries = std::fs::read_dir(folder.join(&relative))
            .with_context(|| format!("cannot read {}", folder.join(&relative).display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            // State, data and hidden folders hold no spec.
            if name.to_string_lossy().starts_with('.') && name != LEVELS_FILE {
                continue;
            }
            let path = relative.join(&name);
            let kind = entry.file_type()?;
            if kind.is_dir() && path.components().count() < 4 {
                pending.push(path);
            } else if kind.is_file() && (is_spec(&path) || name == LEVELS_FILE) {
                if entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX)
                    > crate::spec::load::MAX_FILE_BYTES as u64
                {
                    continue;
                }
                let text = std::fs::read_to_string(folder.join(&path))
                    .with_context(|| format!("cannot read {}", folder.join(&path).display()))?;
                files.push((path, text));
                if files.len() > MAX_FILES {
                    bail!(
                        "{label} holds more than {MAX_FILES} YAML and JSON files; is it a workspace folder?"
                    );
                }
            }
        }
    }
    if !files
        .iter()
        .any(|(p, _)| p == Path::new(crate::spec::load::WORKSPACE_FILE))
    {
        bail!("{label} has no switchyard.yaml; give the workspace folder");
    }
    let levels = take_levels(&mut files, label);
    let in_repo = git(folder, &["rev-parse", "--show-prefix"])
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_else(|_| folder.to_path_buf());
    Ok(Read {
        label: label.to_owned(),
        files,
        root: folder.to_path_buf(),
        in_repo,
        levels,
    })
}

fn take_levels(files: &mut Vec<(PathBuf, String)>, label: &str) -> Option<(String, String)> {
    let at = files
        .iter()
        .position(|(p, _)| p == Path::new(LEVELS_FILE))?;
    let (_, text) = files.remove(at);
    Some((format!("{label}/{LEVELS_FILE}"), text))
}

fn read_revision(label: &str, revision: &str, path: &str) -> anyhow::Result<Read> {
    let top = git(Path::new("."), &["rev-parse", "--show-toplevel"])
        .context("a REVISION:PATH side needs to run inside a git repository")?;
    let top = PathBuf::from(top.trim());
    git(
        &top,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{revision}^{{commit}}"),
        ],
    )
    .with_context(|| format!("{revision} is not a revision of this repository"))?;
    let listing = git(
        &top,
        &[
            "ls-tree",
            "-r",
            "-z",
            revision,
            "--",
            if path.is_empty() { "." } else { path },
        ],
    )?;
    let mut files = Vec::new();
    for entry in listing.split('\0').filter(|e| !e.is_empty()) {
        let Some((meta, file)) = entry.split_once('\t') else {
            continue;
        };
        let mut parts = meta.split_whitespace();
        let (_, kind, blob) = (parts.next(), parts.next(), parts.next());
        let relative = Path::new(file)
            .strip_prefix(path)
            .unwrap_or(Path::new(file))
            .to_path_buf();
        if kind != Some("blob")
            || !(is_spec(&relative) || relative == Path::new(LEVELS_FILE))
            || relative.components().count() > 4
        {
            continue;
        }
        let Some(blob) = blob else { continue };
        files.push((relative, git(&top, &["cat-file", "blob", blob])?));
        if files.len() > MAX_FILES {
            bail!(
                "{label} holds more than {MAX_FILES} YAML and JSON files; is it a workspace folder?"
            );
        }
    }
    if !files
        .iter()
        .any(|(p, _)| p == Path::new(crate::spec::load::WORKSPACE_FILE))
    {
        bail!("{label}: {revision} has no {path}/switchyard.yaml");
    }
    let levels = take_levels(&mut files, label);
    Ok(Read {
        label: label.to_owned(),
        files,
        root: top.join(path),
        in_repo: PathBuf::from(path),
        levels,
    })
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("cannot run git")?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("git printed something that is not UTF-8")
}
