//! Compiled templates. A template is compiled once, at load, into one of three forms:
//!
//! - a single expression (`{{price}}`, `{{lower shop_sku}}`): evaluated natively and keeps its
//!   JSON type, so `{{price}}` copies a number or a decimal string exactly;
//! - text and expressions without blocks: evaluated natively and concatenated;
//! - anything else (`{{#if}}`, `{{#each}}`, hashes, partials): rendered by Handlebars with the
//!   same helpers, strict mode on and no HTML escaping.
//!
//! The native forms exist for speed (no registry lookups, no string round trips per field)
//! and must render exactly what Handlebars would; `tests` checks both against each other.

use std::borrow::Cow;
use std::sync::Arc;

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{Handlebars, Path};
use serde_json::Value;

use super::helpers::{self, HelperFn};
use super::syntax::{self, TemplateSyntaxError};

/// How interpolated values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Values are inserted as they are (JSON bodies are escaped by the JSON encoder).
    None,
    /// Values are percent-encoded as one URL path segment or query value.
    Url,
}

/// A compiled template.
#[derive(Clone)]
pub struct CompiledTemplate {
    source: String,
    form: Form,
}

impl std::fmt::Debug for CompiledTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledTemplate")
            .field("source", &self.source)
            .finish()
    }
}

#[derive(Clone)]
enum Form {
    Single(Expr),
    Segments(Vec<Segment>),
    Handlebars(Arc<Renderers>),
}

#[derive(Clone)]
enum Segment {
    Text(String),
    Expr(Expr),
}

#[derive(Clone)]
enum Expr {
    Path(FieldPath),
    Literal(Value),
    Call {
        name: String,
        function: HelperFn,
        args: Vec<Expr>,
    },
}

/// A path into a JSON value: `customer.address.city`, `lines.[0].sku`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    raw: String,
    segments: Vec<String>,
}

/// Registries for the templates Handlebars renders: one plain, one percent-encoding.
struct Renderers {
    plain: Handlebars<'static>,
    url: Handlebars<'static>,
}

/// A template failed on one record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A referenced field is absent (or `null`) in the record.
    #[error("field `{0}` is missing")]
    MissingField(String),
    /// A helper refused its arguments.
    #[error("{helper}: {message}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// What it said.
        message: String,
    },
    /// Handlebars failed while rendering.
    #[error("{0}")]
    Handlebars(String),
}

const TEMPLATE_NAME: &str = "t";

impl CompiledTemplate {
    /// Compiles a template; fails on syntax errors and unknown helpers.
    pub fn compile(source: &str) -> Result<Self, TemplateSyntaxError> {
        let template = syntax::parse(source)?;
        let info = syntax::references(&template);
        if let Some(unknown) = info.helpers.iter().find(|h| !syntax::is_known_helper(h)) {
            return Err(TemplateSyntaxError {
                kind: syntax::TemplateErrorKind::Syntax,
                message: format!("unknown helper `{unknown}`"),
                line: 1,
                column: 1,
            });
        }
        let form = match native_form(&template) {
            Some(form) => form,
            None => Form::Handlebars(Arc::new(Renderers::new(template)?)),
        };
        Ok(Self {
            source: source.to_owned(),
            form,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template is exactly one path (`{{price}}`), so it copies a JSON value.
    pub fn is_single_path(&self) -> bool {
        matches!(self.form, Form::Single(Expr::Path(_)))
    }

    /// Evaluates the template over `context`. A single expression keeps its JSON type; any
    /// other template yields a string.
    pub fn evaluate(&self, context: &Value) -> Result<Value, RenderError> {
        match &self.form {
            Form::Single(expr) => expr.evaluate(context).map(Cow::into_owned),
            _ => self.render(context, Escape::None).map(Value::String),
        }
    }

    /// [`CompiledTemplate::evaluate`], borrowing from `context` when the template is one path,
    /// so copying a field does not clone it.
    pub fn evaluate_borrowed<'c>(
        &'c self,
        context: &'c Value,
    ) -> Result<Cow<'c, Value>, RenderError> {
        match &self.form {
            Form::Single(expr) => expr.evaluate(context),
            _ => self
                .render(context, Escape::None)
                .map(|s| Cow::Owned(Value::String(s))),
        }
    }

    /// Renders the template over `context` as text.
    pub fn render(&self, context: &Value, escape: Escape) -> Result<String, RenderError> {
        match &self.form {
            Form::Single(expr) => Ok(escaped(
                &helpers::render(expr.evaluate(context)?.as_ref()),
                escape,
            )),
            Form::Segments(segments) => {
                let mut out = String::new();
                for segment in segments {
                    match segment {
                        Segment::Text(text) => out.push_str(text),
                        Segment::Expr(expr) => out.push_str(&escaped(
                            &helpers::render(expr.evaluate(context)?.as_ref()),
                            escape,
                        )),
                    }
                }
                Ok(out)
            }
            Form::Handlebars(renderers) => {
                let registry = match escape {
                    Escape::None => &renderers.plain,
                    Escape::Url => &renderers.url,
                };
                registry
                    .render(TEMPLATE_NAME, context)
                    .map_err(|err| match err.reason() {
                        handlebars::RenderErrorReason::MissingVariable(Some(path)) => {
                            RenderError::MissingField(path.clone())
                        }
                        other => RenderError::Handlebars(other.to_string()),
                    })
            }
        }
    }
}

impl Renderers {
    fn new(template: Template) -> Result<Self, TemplateSyntaxError> {
        let build = |escape: Escape| {
            let mut registry = Handlebars::new();
            registry.set_strict_mode(true);
            match escape {
                Escape::None => registry.register_escape_fn(handlebars::no_escape),
                Escape::Url => registry.register_escape_fn(|s: &str| percent_encode(s)),
            }
            helpers::register_all(&mut registry);
            registry.register_template(TEMPLATE_NAME, template.clone());
            registry
        };
        Ok(Self {
            plain: build(Escape::None),
            url: build(Escape::Url),
        })
    }
}

impl Expr {
    /// The expression's value, borrowed from the context or the template where it can be.
    fn evaluate<'a>(&'a self, context: &'a Value) -> Result<Cow<'a, Value>, RenderError> {
        match self {
            Expr::Path(path) => path.lookup_present(context).map(Cow::Borrowed),
            Expr::Literal(value) => Ok(Cow::Borrowed(value)),
            Expr::Call {
                name,
                function,
                args,
            } => {
                let lenient = name == "coalesce";
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    match arg.evaluate(context) {
                        Ok(value) => values.push(value),
                        Err(RenderError::MissingField(_)) if lenient => {
                            values.push(Cow::Owned(Value::Null))
                        }
                        Err(err) => return Err(err),
                    }
                }
                function(&values)
                    .map(Cow::Owned)
                    .map_err(|message| RenderError::Helper {
                        helper: name.clone(),
                        message,
                    })
            }
        }
    }
}

impl FieldPath {
    /// Parses a Handlebars-style path (`a.b`, `a/b`, `lines.[0]`).
    pub fn parse(raw: &str) -> Self {
        let segments = raw
            .split(['.', '/'])
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_start_matches('[').trim_end_matches(']').to_owned())
            .collect();
        Self {
            raw: raw.to_owned(),
            segments,
        }
    }

    /// The value at this path; absent or `null` is a missing field.
    fn lookup_present<'v>(&self, value: &'v Value) -> Result<&'v Value, RenderError> {
        match self.lookup(value) {
            Some(Value::Null) | None => Err(RenderError::MissingField(self.raw.clone())),
            Some(value) => Ok(value),
        }
    }

    /// The value at this path, if every step exists.
    pub fn lookup<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.segments
            .iter()
            .try_fold(value, |current, segment| match current {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            })
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn escaped(text: &str, escape: Escape) -> String {
    match escape {
        Escape::None => text.to_owned(),
        Escape::Url => percent_encode(text),
    }
}

/// The native form of a template, or `None` when it needs Handlebars.
fn native_form(template: &Template) -> Option<Form> {
    let mut segments = Vec::new();
    for element in &template.elements {
        match element {
            TemplateElement::RawString(text) => segments.push(Segment::Text(text.clone())),
            TemplateElement::Expression(helper) | TemplateElement::HtmlExpression(helper) => {
                segments.push(Segment::Expr(native_expr(helper)?))
            }
            TemplateElement::Comment(_) => {}
            _ => return None,
        }
    }
    match segments.as_slice() {
        [Segment::Expr(expr)] => Some(Form::Single(expr.clone())),
        _ => Some(Form::Segments(segments)),
    }
}

fn native_expr(helper: &HelperTemplate) -> Option<Expr> {
    if !helper.hash.is_empty() || helper.block || helper.template.is_some() {
        return None;
    }
    let args = helper
        .params
        .iter()
        .map(native_parameter)
        .collect::<Option<Vec<_>>>()?;
    match &helper.name {
        Parameter::Name(name) => match helpers::lookup(name) {
            Some(function) => Some(Expr::Call {
                name: name.clone(),
                function,
                args,
            }),
            None if args.is_empty() => Some(Expr::Path(FieldPath::parse(name))),
            None => None,
        },
        Parameter::Path(path) if args.is_empty() => native_path(path),
        _ => None,
    }
}

fn native_parameter(parameter: &Parameter) -> Option<Expr> {
    match parameter {
        Parameter::Name(name) => Some(Expr::Path(FieldPath::parse(name))),
        Parameter::Path(path) => native_path(path),
        Parameter::Literal(value) => Some(Expr::Literal(value.clone())),
        Parameter::Subexpression(sub) => match sub.as_element() {
            TemplateElement::Expression(helper) => native_expr(helper),
            _ => None,
        },
        _ => None,
    }
}

fn native_path(path: &Path) -> Option<Expr> {
    match path {
        Path::Relative((_, raw)) if !raw.starts_with("this") && !raw.starts_with("..") => {
            Some(Expr::Path(FieldPath::parse(raw)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn handlebars_only(source: &str) -> CompiledTemplate {
        let template = syntax::parse(source).unwrap();
        CompiledTemplate {
            source: source.to_owned(),
            form: Form::Handlebars(Arc::new(Renderers::new(template).unwrap())),
        }
    }

    fn offer() -> Value {
        json!({
            "offer_id": 42, "shop_sku": "SKU-Ab12", "price": "129.95", "quantity": 3,
            "state_code": "11", "currency": "EUR", "title": "  12\" Pizza Stone {Pro} \\ Größe XL  ",
            "customer": {"address": {"city": "Lyon"}}, "lines": [{"sku": "a"}, {"sku": "b"}]
        })
    }

    #[test]
    fn native_and_handlebars_render_the_same_text() {
        let record = offer();
        for source in [
            "{{lower shop_sku}}",
            "{{offer_id}}:{{shop_sku}}",
            "{{minor_units price}}",
            "{{trim title}}",
            "{{customer.address.city}}",
            "{{lines.[1].sku}}",
            "{{and (gt quantity 0) (eq state_code \"11\")}}",
            "sku {{upper (lower shop_sku)}} x{{quantity}}",
            "{{concat shop_sku \"-\" offer_id}}",
            "{{json title}}",
            "{{minor_units price currency}}",
            "{{minor_units price \"BHD\"}}",
            "{{money price currency}}",
            "{{major_units quantity currency}}",
            "{{currency_exponent currency}} {{money \"1.5\" \"KWD\"}}",
        ] {
            let compiled = CompiledTemplate::compile(source).unwrap();
            assert!(
                !matches!(compiled.form, Form::Handlebars(_)),
                "{source} not native"
            );
            for escape in [Escape::None, Escape::Url] {
                let native = compiled.render(&record, escape).unwrap();
                let reference = handlebars_only(source).render(&record, escape).unwrap();
                assert_eq!(native, reference, "{source} with {escape:?}");
            }
        }
    }

    #[test]
    fn single_path_keeps_json_type() {
        let record = json!({"price": "129.95", "quantity": 3, "tags": ["a"], "ok": true});
        let eval = |s: &str| {
            CompiledTemplate::compile(s)
                .unwrap()
                .evaluate(&record)
                .unwrap()
        };
        assert_eq!(eval("{{price}}"), json!("129.95"));
        assert_eq!(eval("{{quantity}}"), json!(3));
        assert_eq!(eval("{{tags}}"), json!(["a"]));
        assert_eq!(eval("{{ok}}"), json!(true));
        assert_eq!(eval("{{minor_units price}}"), json!(12995));
        assert_eq!(eval("n={{quantity}}"), json!("n=3"));
    }

    #[test]
    fn missing_fields_are_errors_in_both_forms() {
        let record = json!({"present": "x", "nothing": null});
        for source in [
            "{{absent}}",
            "a {{absent}}",
            "{{lower absent}}",
            "{{nothing}}",
        ] {
            let err = CompiledTemplate::compile(source)
                .unwrap()
                .evaluate(&record)
                .unwrap_err();
            assert!(
                matches!(err, RenderError::MissingField(_)),
                "{source}: {err:?}"
            );
        }
        let block = CompiledTemplate::compile("{{#with present}}{{absent}}{{/with}}").unwrap();
        assert!(block.evaluate(&record).is_err());
    }

    #[test]
    fn blocks_fall_back_to_handlebars_without_html_escaping() {
        let record = offer();
        let t = CompiledTemplate::compile("{{#if (gt quantity 0)}}<{{title}}>{{else}}none{{/if}}")
            .unwrap();
        assert!(matches!(t.form, Form::Handlebars(_)));
        assert_eq!(
            t.evaluate(&record).unwrap(),
            json!("<  12\" Pizza Stone {Pro} \\ Größe XL  >")
        );
        let each = CompiledTemplate::compile("{{#each lines}}{{sku}};{{/each}}").unwrap();
        assert_eq!(each.evaluate(&record).unwrap(), json!("a;b;"));
    }

    #[test]
    fn url_escape_encodes_values_not_the_template_text() {
        let record = json!({"sku": "a b/c?"});
        let t = CompiledTemplate::compile("/catalog/offers/{{sku}}").unwrap();
        assert_eq!(
            t.render(&record, Escape::Url).unwrap(),
            "/catalog/offers/a%20b%2Fc%3F"
        );
    }

    #[test]
    fn unknown_helpers_are_refused_at_compile_time() {
        let err = CompiledTemplate::compile("{{shout title}}").unwrap_err();
        assert!(err.message.contains("shout"), "{err:?}");
    }

    #[test]
    fn item_08_templates_at_the_nesting_limit_run_on_half_a_worker_stack() {
        let levels = crate::mapping::MAX_NESTING;
        let helpers = format!(
            "{{{{lower {}x{}}}}}",
            "(lower ".repeat(levels),
            ")".repeat(levels)
        );
        let blocks = format!(
            "{}{{{{lower (lower x)}}}}{}",
            "{{#if x}}".repeat(levels - 1),
            "{{/if}}".repeat(levels - 1)
        );
        let chain = format!(
            "{{{{#if n}}}}{}{{{{else}}}}y{{{{/if}}}}",
            "{{else if n}}".repeat(levels - 1)
        );
        // Worker threads (tokio's and ours) have 2 MiB stacks; half of that must do, in debug
        // builds too.
        let run = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || {
                let record = json!({"x": "A", "n": false});
                for source in [&helpers, &blocks, &chain] {
                    let template = CompiledTemplate::compile(source).unwrap();
                    let value = template.evaluate(&record).unwrap();
                    assert!(value == json!("a") || value == json!("y"), "{value}");
                    drop(template);
                }
                for source in [&helpers, &blocks, &chain] {
                    let deeper = format!("{{{{#if x}}}}{source}{{{{/if}}}}");
                    let err = CompiledTemplate::compile(&deeper).unwrap_err();
                    assert_eq!(err.kind, crate::mapping::TemplateErrorKind::TooDeep);
                }
            })
            .unwrap();
        run.join().unwrap();
    }

    #[test]
    fn money_helper_errors_agree_in_both_forms() {
        let record = json!({"price": "12.345", "currency": "EUR", "code": "EUX"});
        for source in ["{{money price currency}}", "{{minor_units price code}}"] {
            let native = CompiledTemplate::compile(source)
                .unwrap()
                .render(&record, Escape::None)
                .unwrap_err();
            let reference = handlebars_only(source)
                .render(&record, Escape::None)
                .unwrap_err()
                .to_string();
            let message = native.to_string();
            let message = message.split_once(": ").map_or("", |(_, m)| m);
            assert!(!message.is_empty(), "{native}");
            assert!(
                reference.contains(message),
                "{source}: {reference} vs {native}"
            );
        }
    }

    #[test]
    fn helper_errors_name_the_helper() {
        let err = CompiledTemplate::compile("{{minor_units price}}")
            .unwrap()
            .evaluate(&json!({"price": "abc"}))
            .unwrap_err();
        assert!(err.to_string().starts_with("minor_units:"), "{err}");
    }
}
