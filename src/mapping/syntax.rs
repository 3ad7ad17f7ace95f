//! Template syntax: parse a Handlebars template and report what it references, without
//! rendering anything. Validation uses this to check helpers and fields before a run; the
//! compiler in `template` walks the same tree.
//!
//! Parsing goes in three steps, each bounded before the next one starts (STYLE.md 18):
//! `scan` measures the nesting without recursing and refuses partials; `plain` parses plain
//! templates (text and expressions) in one linear pass; anything else goes to Handlebars'
//! own compiler, whose time grows with the square of the input, so only up to
//! [`MAX_HANDLEBARS_TEMPLATE_BYTES`].

use std::collections::HashSet;

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{Path, PathSeg};

use super::helpers::HELPERS;
use super::plain;
pub use super::scan::MAX_NESTING;
use super::scan::{self, ScanError};

/// The largest template Handlebars' own compiler is given: templates with blocks, comments,
/// whitespace control or other non-plain syntax. Plain templates (text and expressions) have
/// no such bound; mappings with blocks are a few hundred bytes.
pub const MAX_HANDLEBARS_TEMPLATE_BYTES: usize = 16 * 1024;

/// Names Handlebars itself provides for blocks; allowed in templates besides our helpers.
pub const BLOCK_HELPERS: &[&str] = &["if", "unless", "each", "with", "lookup"];

/// What a template references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateInfo {
    /// Top-level input fields referenced (`shop_sku` for `{{lower shop_sku}}`), in order of
    /// first use, without duplicates. Fields referenced inside `#each`/`#with` blocks are
    /// relative to the block and are not listed.
    pub fields: Vec<String>,
    /// Helpers called, in order of first use, without duplicates.
    pub helpers: Vec<String>,
}

/// A template that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateSyntaxError {
    /// Which rule the template breaks.
    pub kind: TemplateErrorKind,
    /// What is wrong, in Handlebars' words.
    pub message: String,
    /// 1-based line inside the template source.
    pub line: usize,
    /// 1-based column inside the template source.
    pub column: usize,
}

/// Which rule a template breaks; validation gives each its own diagnostic code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateErrorKind {
    /// The syntax is wrong (or uses something mappings do not support, such as partials).
    Syntax,
    /// It nests deeper than [`MAX_NESTING`].
    TooDeep,
    /// It needs Handlebars' own compiler and is larger than
    /// [`MAX_HANDLEBARS_TEMPLATE_BYTES`].
    TooLarge,
}

/// Parses `source` and lists the fields and helpers it references.
pub fn inspect(source: &str) -> Result<TemplateInfo, TemplateSyntaxError> {
    Ok(references(&parse(source)?))
}

/// The fields and helpers a parsed template references.
pub(crate) fn references(template: &Template) -> TemplateInfo {
    let mut seen = Seen::default();
    walk_template(template, &mut seen, 0);
    seen.info
}

/// Whether `name` is a helper a template may call.
pub fn is_known_helper(name: &str) -> bool {
    HELPERS.contains(&name) || BLOCK_HELPERS.contains(&name)
}

/// Parses a template into Handlebars' tree, refusing what could recurse or run without bound
/// before any parser sees it.
pub(crate) fn parse(source: &str) -> Result<Template, TemplateSyntaxError> {
    scan::scan(source, MAX_NESTING).map_err(|err| match err {
        ScanError::TooDeep(offset) => {
            let message = format!(
                "template nests deeper than {MAX_NESTING} levels (blocks, `else` chains, \
                 subexpressions and literals count together)"
            );
            error_at(TemplateErrorKind::TooDeep, message, source, offset)
        }
        ScanError::Partial(offset) => {
            error_at(TemplateErrorKind::Syntax, PARTIALS.into(), source, offset)
        }
    })?;
    if let Some(template) = plain::parse(source) {
        return Ok(template);
    }
    if source.len() > MAX_HANDLEBARS_TEMPLATE_BYTES {
        return Err(TemplateSyntaxError {
            kind: TemplateErrorKind::TooLarge,
            message: format!(
                "template is {} bytes; a template with blocks, comments, whitespace control or \
                 other syntax beyond `{{{{field}}}}` and helper calls may be at most {} bytes",
                source.len(),
                MAX_HANDLEBARS_TEMPLATE_BYTES
            ),
            line: 1,
            column: 1,
        });
    }
    #[cfg(test)]
    tests::HANDLEBARS_BYTES.with(|bytes| bytes.set(bytes.get() + source.len()));
    let template = Template::compile(source).map_err(|err| {
        let (line, column) = err.pos().unwrap_or((1, 1));
        TemplateSyntaxError {
            kind: TemplateErrorKind::Syntax,
            message: err.reason().to_string(),
            line,
            column,
        }
    })?;
    // `scan` refuses partial tags already; the tree is checked too, in case Handlebars reads
    // something as a partial that the scan did not.
    if uses_partials(&template) {
        return Err(TemplateSyntaxError {
            kind: TemplateErrorKind::Syntax,
            message: PARTIALS.into(),
            line: 1,
            column: 1,
        });
    }
    Ok(template)
}

/// Where the linear parser or the nesting scan disagrees with Handlebars.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
#[doc(hidden)]
pub struct Disagreement(String);

/// For the `template_compile` fuzz target and the tests: checks that the linear parser builds
/// the tree Handlebars builds, and that the nesting scan never counts less than the tree
/// holds. Returns the first disagreement.
#[doc(hidden)]
pub fn cross_check(source: &str) -> Result<(), Disagreement> {
    // Past the limits nothing reaches Handlebars, which is the point; nothing to compare.
    let Ok(scanned) = scan::scan(source, MAX_NESTING) else {
        return Ok(());
    };
    if source.len() > MAX_HANDLEBARS_TEMPLATE_BYTES {
        return Ok(());
    }
    let plain = plain::parse(source);
    match (Template::compile(source), plain) {
        (Ok(reference), plain) => {
            let depth = tree_depth(&reference);
            if depth > scanned {
                return Err(Disagreement(format!(
                    "the scan counted {scanned} levels, the tree has {depth}"
                )));
            }
            match plain {
                Some(plain) if plain.elements != reference.elements => Err(Disagreement(format!(
                    "the trees differ:\n plain: {:?}\n handlebars: {:?}",
                    plain.elements, reference.elements
                ))),
                _ => Ok(()),
            }
        }
        (Err(err), Some(plain)) => Err(Disagreement(format!(
            "Handlebars refuses the template ({err}) but the plain parser read {:?}",
            plain.elements
        ))),
        (Err(_), None) => Ok(()),
    }
}

/// How deeply a parsed template nests, counted the way the scan counts (blocks, `else`
/// links, subexpressions, literal arrays and objects), with an explicit stack.
fn tree_depth(template: &Template) -> usize {
    enum Node<'t> {
        Template(&'t Template),
        Element(&'t TemplateElement),
        Parameter(&'t Parameter),
        Value(&'t serde_json::Value),
    }
    let mut deepest = 0;
    let mut stack = vec![(Node::Template(template), 0)];
    while let Some((node, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match node {
            Node::Template(template) => {
                stack.extend(template.elements.iter().map(|e| (Node::Element(e), depth)));
            }
            Node::Element(
                TemplateElement::Expression(helper)
                | TemplateElement::HtmlExpression(helper)
                | TemplateElement::HelperBlock(helper),
            ) => {
                let inner = depth + usize::from(helper.block);
                deepest = deepest.max(inner);
                let parameters = std::iter::once(&helper.name)
                    .chain(&helper.params)
                    .chain(helper.hash.values());
                stack.extend(parameters.map(|p| (Node::Parameter(p), inner)));
                stack.extend(
                    helper
                        .template
                        .iter()
                        .chain(&helper.inverse)
                        .map(|t| (Node::Template(t), inner)),
                );
            }
            Node::Element(_) => {}
            Node::Parameter(Parameter::Subexpression(sub)) => {
                stack.push((Node::Element(sub.as_element()), depth + 1));
            }
            Node::Parameter(Parameter::Literal(value)) => stack.push((Node::Value(value), depth)),
            Node::Parameter(_) => {}
            Node::Value(serde_json::Value::Array(items)) => {
                stack.extend(items.iter().map(|v| (Node::Value(v), depth + 1)));
                deepest = deepest.max(depth + 1);
            }
            Node::Value(serde_json::Value::Object(map)) => {
                stack.extend(map.values().map(|v| (Node::Value(v), depth + 1)));
                deepest = deepest.max(depth + 1);
            }
            Node::Value(_) => {}
        }
    }
    deepest
}

/// A mapping has no use for partials or decorators, and an inline partial that calls itself
/// recurses until the stack overflows (found by the `template_compile` fuzz target).
const PARTIALS: &str = "partials and decorators (`{{> ...}}`, `{{#> ...}}`, `{{* ...}}`) are not \
                        supported in mappings";

fn error_at(
    kind: TemplateErrorKind,
    message: String,
    source: &str,
    offset: usize,
) -> TemplateSyntaxError {
    let (line, column) = line_column(source, offset);
    TemplateSyntaxError {
        kind,
        message,
        line,
        column,
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, column)
}

fn uses_partials(template: &Template) -> bool {
    template.elements.iter().any(|element| match element {
        TemplateElement::PartialExpression(_)
        | TemplateElement::PartialBlock(_)
        | TemplateElement::DecoratorExpression(_)
        | TemplateElement::DecoratorBlock(_) => true,
        TemplateElement::HelperBlock(helper) => {
            helper.template.as_ref().is_some_and(uses_partials)
                || helper.inverse.as_ref().is_some_and(uses_partials)
        }
        _ => false,
    })
}

/// The top-level field a path starts at, if it starts at the root of the context.
pub(crate) fn root_field(path: &Path) -> Option<String> {
    match path {
        Path::Relative((segments, _)) => match segments.first() {
            Some(PathSeg::Named(name)) if name != "this" => Some(name.clone()),
            _ => None,
        },
        Path::Local(_) => None,
    }
}

/// The references found so far, with sets so that a template with thousands of fields is
/// still walked in linear time.
#[derive(Default)]
struct Seen {
    info: TemplateInfo,
    fields: HashSet<String>,
    helpers: HashSet<String>,
}

impl Seen {
    fn field(&mut self, name: &str) {
        if !self.fields.contains(name) {
            self.fields.insert(name.to_owned());
            self.info.fields.push(name.to_owned());
        }
    }

    fn helper(&mut self, name: &str) {
        if !self.helpers.contains(name) {
            self.helpers.insert(name.to_owned());
            self.info.helpers.push(name.to_owned());
        }
    }
}

fn walk_template(template: &Template, info: &mut Seen, depth: usize) {
    for element in &template.elements {
        match element {
            TemplateElement::Expression(helper)
            | TemplateElement::HtmlExpression(helper)
            | TemplateElement::HelperBlock(helper) => walk_helper(helper, info, depth),
            _ => {}
        }
    }
}

fn walk_helper(helper: &HelperTemplate, info: &mut Seen, depth: usize) {
    let is_call = !helper.params.is_empty() || !helper.hash.is_empty() || helper.block;
    match &helper.name {
        Parameter::Name(name) if is_call => info.helper(name),
        Parameter::Name(name) => {
            // `{{name}}` without arguments is a field, unless it names a helper.
            if HELPERS.contains(&name.as_str()) {
                info.helper(name);
            } else if depth == 0 {
                info.field(name);
            }
        }
        Parameter::Path(path) if depth == 0 => {
            if let Some(field) = root_field(path) {
                info.field(&field);
            }
        }
        other => walk_parameter(other, info, depth),
    }
    for parameter in helper.params.iter().chain(helper.hash.values()) {
        walk_parameter(parameter, info, depth);
    }
    // `#each` and `#with` change the context: paths inside are relative to the block value.
    let inner_depth = match &helper.name {
        Parameter::Name(name) if name == "each" || name == "with" => depth + 1,
        _ => depth,
    };
    if let Some(inner) = &helper.template {
        walk_template(inner, info, inner_depth);
    }
    if let Some(inverse) = &helper.inverse {
        walk_template(inverse, info, depth);
    }
}

fn walk_parameter(parameter: &Parameter, info: &mut Seen, depth: usize) {
    match parameter {
        Parameter::Name(name) if depth == 0 => info.field(name),
        Parameter::Path(path) if depth == 0 => {
            if let Some(field) = root_field(path) {
                info.field(&field);
            }
        }
        Parameter::Subexpression(sub) => {
            if let TemplateElement::Expression(helper) = sub.as_element() {
                walk_helper(helper, info, depth);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Bytes handed to Handlebars' own (quadratic) compiler on this thread.
        pub(super) static HANDLEBARS_BYTES: Cell<usize> = const { Cell::new(0) };
    }

    fn handlebars_bytes_for(source: &str) -> (Result<Template, TemplateSyntaxError>, usize) {
        HANDLEBARS_BYTES.with(|bytes| bytes.set(0));
        let result = parse(source);
        (result, HANDLEBARS_BYTES.with(Cell::get))
    }

    fn nested(open: &str, inner: &str, close: &str, levels: usize) -> String {
        format!("{}{inner}{}", open.repeat(levels), close.repeat(levels))
    }

    #[test]
    fn item_08_parse_refuses_deep_nesting_before_any_parser_runs() {
        let cases = [
            format!("{{{{lower {}}}}}", nested("(lower ", "x", ")", 3_000)),
            nested("{{#if a}}", "x", "{{/if}}", 5_000),
            format!("{{{{#if a}}}}{}{{{{/if}}}}", "{{else if b}}".repeat(100)),
            format!("{{{{#if a}}}}{}{{{{/if}}}}", "{{elseif b}}".repeat(100)),
            format!("{{{{lower {}}}}}", nested("[", "1", "]", 200)),
            nested(
                "{{#each a}}",
                "{{lower (lower (lower x))}}",
                "{{/each}}",
                MAX_NESTING - 1,
            ),
        ];
        for source in &cases {
            let (result, handlebars) = handlebars_bytes_for(source);
            let err = result.expect_err("too deep");
            assert_eq!(err.kind, TemplateErrorKind::TooDeep, "{err:?}");
            assert_eq!(handlebars, 0, "nothing reached Handlebars");
        }
        // Raw block contents are text, not blocks: no nesting there.
        let raw = format!(
            "{{{{{{{{raw}}}}}}}}{}{{{{{{{{/raw}}}}}}}}",
            "{{#if a}}".repeat(100)
        );
        assert!(parse(&raw).is_ok());
        // The position is that of the first token past the limit, inside the template.
        let source = format!("ab\n  {}", nested("{{#if a}}", "x", "{{/if}}", 40));
        let err = parse(&source).expect_err("too deep");
        assert_eq!((err.line, err.column), (2, 3 + 9 * MAX_NESTING));
    }

    #[test]
    fn item_08_strings_and_path_keys_do_not_hide_nesting() {
        let deep = nested("(lower ", "x", ")", 100);
        for source in [
            format!("{{{{concat \")))\" {deep}}}}}"),
            format!("{{{{concat a.[)))] {deep}}}}}"),
            format!("{{{{concat [\"]\", \")\"] {deep}}}}}"),
            format!("{{{{concat [)))] {deep}}}}}"),
            format!("\\\\{{{{concat {deep}}}}}"),
            format!("{{{{!-- ))) --}}}}{{{{concat {deep}}}}}"),
        ] {
            let err = parse(&source).expect_err(&source);
            assert_eq!(err.kind, TemplateErrorKind::TooDeep, "{source}: {err:?}");
        }
    }

    #[test]
    fn item_09_no_template_hands_more_than_the_bound_to_handlebars() {
        let placeholders = 80_000;
        let shapes = [
            "{{sku}} ".repeat(placeholders),
            (0..placeholders)
                .map(|i| format!("{{{{f{i}}}}}\n"))
                .collect::<String>(),
            "{{lower (concat a.b \"-\" lines.[0].sku 1.5 true)}}".repeat(placeholders),
        ];
        for source in &shapes {
            let (result, handlebars) = handlebars_bytes_for(source);
            let template = result.expect("plain templates compile");
            assert_eq!(
                handlebars, 0,
                "a plain template never reaches Handlebars' compiler"
            );
            assert!(template.elements.len() >= placeholders);
        }
        let info = inspect(&shapes[1]).expect("compiles");
        assert_eq!(info.fields.len(), placeholders);
        // Templates that need Handlebars are refused past the bound, before it runs.
        let blocks = "{{#if a}}{{b}}{{/if}}".repeat(placeholders);
        let (result, handlebars) = handlebars_bytes_for(&blocks);
        assert_eq!(
            result.expect_err("too large").kind,
            TemplateErrorKind::TooLarge
        );
        assert_eq!(handlebars, 0);
        let small = "{{#if a}}{{b}}{{/if}}".repeat(MAX_HANDLEBARS_TEMPLATE_BYTES / 21);
        let (result, handlebars) = handlebars_bytes_for(&small);
        assert!(result.is_ok());
        assert!(handlebars <= MAX_HANDLEBARS_TEMPLATE_BYTES);
    }

    /// Random templates from pieces of every syntax the grammar has: where the plain parser
    /// answers it must build Handlebars' tree, and the scan must never count less nesting than
    /// the tree has.
    #[test]
    fn plain_parser_and_scan_agree_with_handlebars() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        const TEXT: &[&str] = &[
            "a", " ", "\n", "  \n", "x y", "\\", "}", "{", "(", ")", "\"", "'", "[", "]", "é",
            "\r\n", "\t",
        ];
        const ATOMS: &[&str] = &[
            "a",
            "a.b",
            "a/b",
            "lines.[0].sku",
            "[x y]",
            "this",
            "this.a",
            "@index",
            "../a",
            "a.this",
            "\"s\"",
            "\"a\\\"b\"",
            "'q'",
            "1",
            "-2",
            "1.5",
            "1.",
            "01",
            "1E5",
            "1e5",
            "true",
            "null",
            "falsey",
            "[1,2]",
            "{\"a\":1}",
            "[\"]\"]",
            "as",
            "else",
            "k=v",
            "a.[)]",
            "\"(\"",
            "-",
            "é",
            "a:b",
            "[]",
            "[,1]",
            "\"\\u00e9\"",
            "\"\\q\"",
        ];
        const HELPERS_USED: &[&str] =
            &["lower", "concat", "eq", "if", "json", "x", "elseif", "else"];
        let mut checked = 0;
        for _ in 0..20_000 {
            let mut source = String::new();
            for _ in 0..next(6) + 1 {
                match next(10) {
                    0..=2 => source.push_str(TEXT[next(TEXT.len())]),
                    3..=6 => {
                        source.push_str(
                            ["{{", "{{ ", "{{~", "{{{", "{{&", "\\{{"]
                                [next(6).min(5) * usize::from(next(3) == 0)],
                        );
                        let mut expression = HELPERS_USED[next(HELPERS_USED.len())].to_owned();
                        for _ in 0..next(4) {
                            expression.push_str([" ", "", "  "][next(3)]);
                            if next(4) == 0 {
                                expression.push_str(&format!(
                                    "({} {})",
                                    HELPERS_USED[next(HELPERS_USED.len())],
                                    ATOMS[next(ATOMS.len())]
                                ));
                            } else {
                                expression.push_str(ATOMS[next(ATOMS.len())]);
                            }
                        }
                        source.push_str(&expression);
                        source.push_str(
                            ["}}", " }}", "~}}", "}}}", ")}}"]
                                [next(5).min(4) * usize::from(next(3) == 0)],
                        );
                    }
                    7 => source.push_str(
                        [
                            "{{#if a}}",
                            "{{/if}}",
                            "{{else}}",
                            "{{else if b}}",
                            "{{#each l}}",
                            "{{/each}}",
                        ][next(6)],
                    ),
                    8 => source.push_str(
                        [
                            "{{!c}}",
                            "{{!-- c --}}",
                            "{{{{raw}}}}",
                            "{{{{/raw}}}}",
                            "{{^}}",
                        ][next(5)],
                    ),
                    _ => source.push_str(ATOMS[next(ATOMS.len())]),
                }
            }
            if let Err(disagreement) = cross_check(&source) {
                panic!("{source:?}: {disagreement}");
            }
            checked += usize::from(plain::parse(&source).is_some());
        }
        assert!(
            checked > 2_000,
            "the plain parser answered only {checked} times"
        );
    }

    #[test]
    fn lists_fields_and_helpers() {
        let info = inspect("{{lower shop_sku}}-{{offer_id}} {{minor_units price}}").unwrap();
        assert_eq!(info.fields, ["shop_sku", "offer_id", "price"]);
        assert_eq!(info.helpers, ["lower", "minor_units"]);
    }

    #[test]
    fn nested_paths_report_their_root() {
        let info = inspect("{{customer.address.city}} {{lines.[0].sku}}").unwrap();
        assert_eq!(info.fields, ["customer", "lines"]);
    }

    #[test]
    fn subexpressions_and_blocks_are_walked() {
        let info = inspect("{{#if (gt quantity 0)}}{{upper title}}{{else}}none{{/if}}").unwrap();
        assert_eq!(info.fields, ["quantity", "title"]);
        assert_eq!(info.helpers, ["if", "gt", "upper"]);
    }

    #[test]
    fn each_block_paths_are_relative() {
        let info = inspect("{{#each lines}}{{sku}}{{/each}}").unwrap();
        assert_eq!(info.fields, ["lines"]);
    }

    #[test]
    fn unknown_helpers_are_reported_as_helpers() {
        let info = inspect("{{shout title}}").unwrap();
        assert_eq!(info.helpers, ["shout"]);
        assert!(!is_known_helper("shout"));
    }

    #[test]
    fn partials_and_decorators_are_refused() {
        for source in [
            "{{> header}}",
            "{{#*inline \"a\"}}{{> a}}{{/inline}}{{> a}}",
            "{{#if x}}{{> a}}{{/if}}",
            "{{#> layout}}x{{/layout}}",
        ] {
            let err = inspect(source).unwrap_err();
            assert!(err.message.contains("partials"), "{source}: {err:?}");
        }
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = inspect("{{lower shop_sku").unwrap_err();
        assert!(err.line >= 1 && err.column >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }
}
