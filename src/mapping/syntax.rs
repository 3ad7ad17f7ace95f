//! Template syntax: parse a Handlebars template and report what it references, without
//! rendering anything. Validation uses this to check helpers and fields before a run; the
//! compiler in `compile` walks the same tree.

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{Path, PathSeg};

use super::helpers::HELPERS;

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
    /// What is wrong, in Handlebars' words.
    pub message: String,
    /// 1-based line inside the template source.
    pub line: usize,
    /// 1-based column inside the template source.
    pub column: usize,
}

/// Parses `source` and lists the fields and helpers it references.
pub fn inspect(source: &str) -> Result<TemplateInfo, TemplateSyntaxError> {
    let template = parse(source)?;
    let mut info = TemplateInfo::default();
    walk_template(&template, &mut info, 0);
    Ok(info)
}

/// Whether `name` is a helper a template may call.
pub fn is_known_helper(name: &str) -> bool {
    HELPERS.contains(&name) || BLOCK_HELPERS.contains(&name)
}

pub(crate) fn parse(source: &str) -> Result<Template, TemplateSyntaxError> {
    let template = Template::compile(source).map_err(|err| {
        let (line, column) = err.pos().unwrap_or((1, 1));
        TemplateSyntaxError {
            message: err.reason().to_string(),
            line,
            column,
        }
    })?;
    if uses_partials(&template) {
        // A mapping has no use for partials or decorators, and an inline partial that calls
        // itself recurses until the stack overflows (found by the `template_compile` fuzz
        // target): refuse them at compile time.
        return Err(TemplateSyntaxError {
            message: "partials and decorators (`{{> ...}}`, `{{#> ...}}`, `{{* ...}}`) are not \
                      supported in mappings"
                .into(),
            line: 1,
            column: 1,
        });
    }
    Ok(template)
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

fn walk_template(template: &Template, info: &mut TemplateInfo, depth: usize) {
    for element in &template.elements {
        match element {
            TemplateElement::Expression(helper)
            | TemplateElement::HtmlExpression(helper)
            | TemplateElement::HelperBlock(helper) => walk_helper(helper, info, depth),
            _ => {}
        }
    }
}

fn walk_helper(helper: &HelperTemplate, info: &mut TemplateInfo, depth: usize) {
    let is_call = !helper.params.is_empty() || !helper.hash.is_empty() || helper.block;
    match &helper.name {
        Parameter::Name(name) if is_call => push_unique(&mut info.helpers, name),
        Parameter::Name(name) => {
            // `{{name}}` without arguments is a field, unless it names a helper.
            if HELPERS.contains(&name.as_str()) {
                push_unique(&mut info.helpers, name);
            } else if depth == 0 {
                push_unique(&mut info.fields, name);
            }
        }
        Parameter::Path(path) if depth == 0 => {
            if let Some(field) = root_field(path) {
                push_unique(&mut info.fields, &field);
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

fn walk_parameter(parameter: &Parameter, info: &mut TemplateInfo, depth: usize) {
    match parameter {
        Parameter::Name(name) if depth == 0 => push_unique(&mut info.fields, name),
        Parameter::Path(path) if depth == 0 => {
            if let Some(field) = root_field(path) {
                push_unique(&mut info.fields, &field);
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

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|existing| existing == item) {
        list.push(item.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
