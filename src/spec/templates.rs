//! The template facts validation needs, borrowed from `mapping::syntax` so the spec core and
//! the runtime agree on what a template references.
//!
//! TEMPORARY: until `mapping::syntax` lands on `main`, this only checks syntax.

/// What a template references.
#[derive(Debug, Default)]
pub(crate) struct TemplateInfo {
    pub(crate) fields: Vec<String>,
    pub(crate) helpers: Vec<String>,
}

/// A template that does not compile.
#[derive(Debug)]
pub(crate) struct TemplateSyntaxError {
    pub(crate) message: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

pub(crate) fn inspect(source: &str) -> Result<TemplateInfo, TemplateSyntaxError> {
    handlebars::Template::compile(source)
        .map(|_| TemplateInfo::default())
        .map_err(|err| {
            let (line, column) = err.pos().unwrap_or((1, 1));
            TemplateSyntaxError {
                message: err.reason().to_string(),
                line,
                column,
            }
        })
}

pub(crate) fn is_known_helper(_name: &str) -> bool {
    true
}

pub(crate) fn known_helpers() -> impl Iterator<Item = &'static str> {
    std::iter::empty()
}
