//! A linear parser for plain templates: text and `{{...}}` expressions made of helper calls,
//! field paths, subexpressions and scalar literals — what almost every mapping is.
//!
//! Handlebars' own compiler works out the line and column of every element by counting from
//! the start of the template, so its time grows with the square of the template's size (20,000
//! placeholders took 6.6 s). This parser builds the very tree Handlebars would build, in one
//! pass, and gives up (`None`) on anything outside the plain subset — blocks, comments,
//! whitespace control, escapes, hashes, `this`/`@`/`..` paths, array and object literals — so
//! that Handlebars parses those, within the size bound of `syntax`. `tests` and the
//! `template_compile` fuzz target check that both parsers agree wherever this one answers.
//!
//! It recurses once per subexpression level; `scan` has bounded that before it runs.

use std::collections::HashMap;

use handlebars::template::{Parameter, Subexpression, Template, TemplateElement};
use handlebars::{Path, PathSeg};
use memchr::memmem;
use serde_json::Value;

use super::scan::{MAX_NESTING, is_symbol_byte};

/// The tree Handlebars builds for `source`, if `source` is a plain template.
pub(crate) fn parse(source: &str) -> Option<Template> {
    let bytes = source.as_bytes();
    let mut template = Template::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(found) = memmem::find(&bytes[at..], b"{{") else {
            template
                .elements
                .push(TemplateElement::RawString(source[at..].to_owned()));
            break;
        };
        let open = at + found;
        if open > at {
            let text = &source[at..open];
            // `\{{` is an escape; leave escapes to Handlebars.
            if text.ends_with('\\') {
                return None;
            }
            template
                .elements
                .push(TemplateElement::RawString(text.to_owned()));
        }
        let mut parser = Parser {
            source,
            bytes,
            at: open + 2,
            depth: 0,
        };
        let element = parser.tag()?;
        template.elements.push(element);
        at = parser.at;
    }
    Some(template)
}

struct Parser<'a> {
    source: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    /// The inside of `{{ ... }}`, from just after `{{` to just after `}}`.
    fn tag(&mut self) -> Option<TemplateElement> {
        self.skip_whitespace();
        match self.peek()? {
            // Sigils (blocks, comments, partials, triple stash, whitespace control) and a
            // subexpression as the name are for Handlebars.
            b'{' | b'&' | b'#' | b'/' | b'^' | b'!' | b'>' | b'*' | b'~' | b'(' => return None,
            _ => {}
        }
        // `{{else}}`, and `{{elseif x}}` too (the grammar needs no space after `else`), are
        // chain tags; the same body as an expression is not worth telling apart.
        if self.bytes[self.at..].starts_with(b"else") {
            return None;
        }
        let (name, params) = self.call_or_reference()?;
        self.skip_whitespace();
        if !self.bytes[self.at..].starts_with(b"}}") {
            return None;
        }
        self.at += 2;
        Some(*Subexpression::new(name, params, HashMap::new()).element)
    }

    /// `identifier param+` (a helper call) or a single reference: the grammar's
    /// `(identifier ~ (hash|helper_parameter)+) | name`.
    fn call_or_reference(&mut self) -> Option<(Parameter, Vec<Parameter>)> {
        let start = self.at;
        let identifier = self.identifier();
        if identifier > start {
            let name = self.source[start..identifier].to_owned();
            self.at = identifier;
            let mut params = Vec::new();
            loop {
                self.skip_whitespace();
                match self.peek() {
                    None => return None,
                    Some(b'}' | b')') => break,
                    Some(_) => match self.param() {
                        Some(param) => params.push(param),
                        // No parameter at all: the grammar tries a reference (`a.b`) instead.
                        None if params.is_empty() => break,
                        None => return None,
                    },
                }
            }
            if !params.is_empty() {
                return Some((Parameter::Name(name), params));
            }
            self.at = start;
        }
        Some((Parameter::Path(self.reference()?), Vec::new()))
    }

    /// One helper parameter: a literal, a reference or a subexpression.
    fn param(&mut self) -> Option<Parameter> {
        let start = self.at;
        // `as` and `else` are keywords where a parameter may stand.
        if self.starts_word(b"as") || self.starts_word(b"else") {
            return None;
        }
        // `name=value` is a hash argument: for Handlebars.
        let identifier = self.identifier();
        if identifier > start {
            let mut after = identifier;
            while self
                .bytes
                .get(after)
                .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            {
                after += 1;
            }
            if self.bytes.get(after) == Some(&b'=') {
                return None;
            }
        }
        match self.peek()? {
            b'"' => {
                let end = self.string_end()?;
                let value = serde_json::from_str::<Value>(&self.source[start..end]).ok()?;
                self.at = end;
                Some(Parameter::Literal(value))
            }
            b'(' => self.subexpression(),
            // Single-quoted strings, arrays and objects are for Handlebars.
            b'\'' | b'[' | b'{' => None,
            _ => {
                if let Some(end) = self.number_end().or_else(|| self.word_literal_end()) {
                    // Handlebars reads the literal with serde_json and refuses what it refuses
                    // (`1.`, `01`).
                    let value = serde_json::from_str::<Value>(&self.source[start..end]).ok()?;
                    self.at = end;
                    return Some(Parameter::Literal(value));
                }
                Some(Parameter::Path(self.reference()?))
            }
        }
    }

    /// `( identifier param+ )` or `( reference )`.
    fn subexpression(&mut self) -> Option<Parameter> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return None;
        }
        self.at += 1;
        self.skip_whitespace();
        let (name, params) = self.call_or_reference()?;
        self.skip_whitespace();
        if self.peek()? != b')' {
            return None;
        }
        self.at += 1;
        self.depth -= 1;
        Some(Parameter::Subexpression(Subexpression::new(
            name,
            params,
            HashMap::new(),
        )))
    }

    /// A relative path: `a`, `a.b`, `a/b`, `lines.[0].sku`. Paths that start at `this`, `@`,
    /// `.` or `..`, or name `this` anywhere, are for Handlebars.
    fn reference(&mut self) -> Option<Path> {
        let start = self.at;
        let mut segments = Vec::new();
        loop {
            let segment = self.path_item()?;
            if segment == "this" {
                return None;
            }
            segments.push(PathSeg::Named(segment));
            match (self.peek(), self.bytes.get(self.at + 1)) {
                (Some(b'.' | b'/'), Some(next)) if is_symbol_byte(*next) || *next == b'[' => {
                    self.at += 1;
                }
                _ => break,
            }
        }
        let raw = self.source[start..self.at].to_owned();
        Some(Path::Relative((segments, raw)))
    }

    /// `identifier` or `[raw key]`.
    fn path_item(&mut self) -> Option<String> {
        let start = self.at;
        if self.peek()? == b'[' {
            let close = memchr::memchr(b']', &self.bytes[start + 1..])?;
            let end = start + 1 + close;
            self.at = end + 1;
            return Some(self.source[start + 1..end].to_owned());
        }
        let end = self.identifier();
        if end == start {
            return None;
        }
        self.at = end;
        Some(self.source[start..end].to_owned())
    }

    /// The end of the identifier at the cursor (the cursor itself when there is none).
    fn identifier(&self) -> usize {
        let mut end = self.at;
        while self.bytes.get(end).is_some_and(|b| is_symbol_byte(*b)) {
            end += 1;
        }
        end
    }

    /// The end of a double-quoted string with JSON escapes, as the grammar reads it.
    fn string_end(&self) -> Option<usize> {
        let mut at = self.at + 1;
        loop {
            match *self.bytes.get(at)? {
                b'"' => return Some(at + 1),
                b'\\' => match *self.bytes.get(at + 1)? {
                    b'u' => {
                        let hex = self.bytes.get(at + 2..at + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        at += 6;
                    }
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                    _ => return None,
                },
                _ => at += 1,
            }
        }
    }

    /// The end of a number literal at the cursor.
    fn number_end(&self) -> Option<usize> {
        super::scan::number_end(self.bytes, self.at)
    }

    /// The end of `null`, `true` or `false` as whole words.
    fn word_literal_end(&self) -> Option<usize> {
        [b"null".as_slice(), b"true", b"false"]
            .into_iter()
            .find(|word| self.starts_word(word))
            .map(|word| self.at + word.len())
    }

    /// Whether `word` is at the cursor, not followed by an identifier character.
    fn starts_word(&self, word: &[u8]) -> bool {
        self.bytes[self.at..].starts_with(word)
            && !self
                .bytes
                .get(self.at + word.len())
                .is_some_and(|b| is_symbol_byte(*b))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while self
            .peek()
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }
}
