//! How deeply a template nests, measured with one forward pass and no recursion, before any
//! parser sees the text.
//!
//! Handlebars' compiler, its renderer, our native evaluator and the drop of a compiled tree
//! all recurse once per level of nesting, so a template nested a few thousand levels deep
//! overflows the stack and aborts the whole process. This scan is the gate in front of all of
//! them: it reads tags the way the Handlebars grammar does (strings, path keys and literals
//! included, so a `(` inside a string is not a level) and counts every block, `else` chain
//! link, subexpression and array/object literal. Where it may count differently from
//! Handlebars, the template is one Handlebars refuses anyway (its parser is stack-guarded and
//! nothing else runs then). `syntax::cross_check`, its tests and the `template_compile` fuzz
//! target check that the scan never counts less than the tree Handlebars builds.
//!
//! It touches nothing but the bytes: no allocation per token, no recursion.

use memchr::memmem;

/// The deepest a template may nest, counting blocks (`{{#if}}`, `{{#each}}`, ...), `else`
/// chain links, subexpressions (`(lower x)`) and array/object literals together. Real mappings
/// nest a handful of levels; this leaves room and keeps every recursive stage far from the
/// stack's end, even on small worker stacks and in debug builds.
pub const MAX_NESTING: usize = 32;

/// Why a template is refused before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// It nests deeper than the limit; the byte offset of the token that went past it.
    TooDeep(usize),
    /// A partial or decorator tag (`{{> x}}`, `{{#> x}}`, `{{* x}}`, `{{#* x}}`) at this byte
    /// offset. Mappings have no use for them, a self-calling inline partial recurses without
    /// end, and their name syntax is the one place where quotes do not mean a string: they are
    /// refused here, where the scan still knows what is a tag.
    Partial(usize),
}

/// Checks that `source` nests at most `limit` levels and has no partial or decorator tag;
/// stops at the first problem. Returns the deepest nesting found.
pub(crate) fn scan(source: &str, limit: usize) -> Result<usize, ScanError> {
    let mut scanner = Scanner {
        bytes: source.as_bytes(),
        limit,
        blocks: Vec::new(),
        block_depth: 0,
        deepest: 0,
    };
    scanner.run()?;
    Ok(scanner.deepest)
}

struct Scanner<'a> {
    bytes: &'a [u8],
    limit: usize,
    /// The weight of each open block: 1, plus 1 per `{{else x}}` link (Handlebars nests the
    /// chain one level deeper per link).
    blocks: Vec<usize>,
    /// The sum of `blocks`.
    block_depth: usize,
    /// The deepest nesting seen so far.
    deepest: usize,
}

/// What a tag does to the block structure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TagKind {
    Open,
    Close,
    ChainLink,
    Other,
}

impl Scanner<'_> {
    fn run(&mut self) -> Result<(), ScanError> {
        let mut at = 0;
        // Where the text run since the last tag starts: backslashes before `{{` are counted
        // inside it only.
        let mut text_start = 0;
        while let Some(found) = memmem::find(&self.bytes[at..], b"{{") {
            let open = at + found;
            let backslashes = self.bytes[text_start..open]
                .iter()
                .rev()
                .take_while(|b| **b == b'\\')
                .count();
            if backslashes == 1 {
                // `\{{` (and `\{{{{`) is literal text.
                at = open + 2;
                if self.bytes[at..].starts_with(b"{{") {
                    at += 2;
                }
                continue;
            }
            at = if self.bytes[open..].starts_with(b"{{{{") {
                self.raw_block(open)?
            } else if self.bytes[open + 2..].starts_with(b"!--") {
                match memmem::find(&self.bytes[open + 5..], b"--}}") {
                    Some(end) => open + 5 + end + 4,
                    None => self.compact_comment(open),
                }
            } else if self.bytes.get(open + 2) == Some(&b'!') {
                self.compact_comment(open)
            } else {
                self.tag(open)?
            };
            text_start = at;
        }
        Ok(())
    }

    /// `{{! ... }}`: ends at the first `}}`.
    fn compact_comment(&self, open: usize) -> usize {
        match memmem::find(&self.bytes[open + 3..], b"}}") {
            Some(end) => open + 3 + end + 2,
            None => self.bytes.len(),
        }
    }

    /// `{{{{name ...}}}} raw text {{{{/name}}}}`: one level for the block; the raw text is
    /// not parsed, so it is skipped up to the next unescaped `{{{{`.
    fn raw_block(&mut self, open: usize) -> Result<usize, ScanError> {
        let mut at = open + 4;
        at = skip_whitespace_and_tilde(self.bytes, at);
        let closing = self.bytes.get(at) == Some(&b'/');
        let extra = usize::from(!closing);
        let end = self.tag_body(open, at, extra)?;
        if closing {
            return Ok(end);
        }
        let mut search = end;
        let text_start = end;
        while let Some(found) = memmem::find(&self.bytes[search..], b"{{{{") {
            let next = search + found;
            let backslashes = self.bytes[text_start..next]
                .iter()
                .rev()
                .take_while(|b| **b == b'\\')
                .count();
            if backslashes == 1 {
                search = next + 4;
                continue;
            }
            // The end tag: `{{{{/name}}}}`.
            return self.tag_body(next, next + 4, 0);
        }
        Ok(self.bytes.len())
    }

    /// A tag opened at `open` (`{{`): its kind, then its body.
    fn tag(&mut self, open: usize) -> Result<usize, ScanError> {
        let mut at = skip_whitespace_and_tilde(self.bytes, open + 2);
        let sigil = self.bytes.get(at).copied();
        let after_hash = (sigil == Some(b'#'))
            .then(|| skip_whitespace(self.bytes, at + 1))
            .and_then(|next| self.bytes.get(next).copied());
        if matches!(sigil, Some(b'>' | b'*')) || matches!(after_hash, Some(b'>' | b'*')) {
            return Err(ScanError::Partial(open));
        }
        let kind = match sigil {
            Some(b'#') => TagKind::Open,
            Some(b'/') => TagKind::Close,
            Some(b'^') => {
                at += 1;
                self.chain_or_else(at)
            }
            // `else` needs no space after it: `{{elseif x}}` is the link `else` + `if x`.
            _ if self.bytes[at..].starts_with(b"else") => {
                at += 4;
                self.chain_or_else(at)
            }
            _ => TagKind::Other,
        };
        let extra = usize::from(matches!(kind, TagKind::Open | TagKind::ChainLink));
        let end = self.tag_body(open, at, extra)?;
        match kind {
            TagKind::Open => {
                self.blocks.push(1);
                self.block_depth += 1;
            }
            TagKind::ChainLink => {
                if let Some(top) = self.blocks.last_mut() {
                    *top += 1;
                    self.block_depth += 1;
                }
            }
            TagKind::Close => {
                // A close without an open is a syntax error for Handlebars; keep counting.
                if let Some(weight) = self.blocks.pop() {
                    self.block_depth -= weight;
                }
            }
            TagKind::Other => {}
        }
        Ok(end)
    }

    /// After `else` or `^`: a plain `{{else}}` changes nothing, `{{else if x}}` is one more
    /// link of the chain.
    fn chain_or_else(&self, at: usize) -> TagKind {
        let rest = skip_whitespace_and_tilde(self.bytes, at);
        if self.bytes[rest..].starts_with(b"}}") {
            TagKind::Other
        } else {
            TagKind::ChainLink
        }
    }

    /// Scans the body of the tag opened at `open` from `at` to just past its closing `}}`,
    /// counting subexpressions and literals; `extra` levels are added for the block the tag
    /// opens.
    fn tag_body(&mut self, open: usize, mut at: usize, extra: usize) -> Result<usize, ScanError> {
        let base = self.block_depth + extra;
        self.check(base, open)?;
        let mut parens = 0usize;
        let bytes = self.bytes;
        while at < bytes.len() {
            let byte = bytes[at];
            match byte {
                b'}' if bytes.get(at + 1) == Some(&b'}') => return Ok(at + 2),
                b'"' | b'\'' => at = skip_string(bytes, at),
                b'(' => {
                    parens += 1;
                    self.check(base + parens, at)?;
                    at += 1;
                }
                b')' => {
                    parens = parens.saturating_sub(1);
                    at += 1;
                }
                b'[' if at > 0 && matches!(bytes[at - 1], b'.' | b'/' | b'@') => {
                    at = skip_path_key(bytes, at);
                }
                b'[' | b'{' => match literal(bytes, at, self.limit + 1) {
                    Literal::Ends { end, depth } => {
                        self.check(base + parens + depth, at)?;
                        at = end;
                    }
                    Literal::TooDeep => return Err(ScanError::TooDeep(at)),
                    Literal::Not if byte == b'[' => at = skip_path_key(bytes, at),
                    // A `{` that starts no object cannot parse; the byte is skipped.
                    Literal::Not => at += 1,
                },
                _ => at += 1,
            }
        }
        Ok(bytes.len())
    }

    fn check(&mut self, depth: usize, at: usize) -> Result<(), ScanError> {
        self.deepest = self.deepest.max(depth);
        if depth > self.limit {
            Err(ScanError::TooDeep(at))
        } else {
            Ok(())
        }
    }
}

/// The result of matching a literal.
enum Literal {
    /// A whole array or object literal, ending before `end`, nested `depth` levels.
    Ends { end: usize, depth: usize },
    /// Deeper than allowed (Handlebars would hand it to `serde_json`, which refuses it too).
    TooDeep,
    /// Not a literal: at `[`, Handlebars reads a path key instead.
    Not,
}

/// Matches an array or object literal at `start` the way the Handlebars grammar does
/// (`array_literal`, `object_literal`), with an explicit stack instead of recursion.
fn literal(bytes: &[u8], start: usize, limit: usize) -> Literal {
    /// What the matcher expects next inside a container.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Expect {
        /// Just after `[`: a literal, a `,` or `]`.
        ArrayStart,
        /// After an item: `,` or `]`.
        ArrayNext,
        /// After `,` in an array: a literal.
        ArrayItem,
        /// Just after `{`: a string key, a `,` or `}`.
        ObjectStart,
        /// After `,` in an object: a string key.
        ObjectKey,
        /// After a key: `:`.
        Colon,
        /// After `:`: a literal.
        ObjectValue,
        /// After a value: `,` or `}`.
        ObjectNext,
    }
    let mut stack: Vec<Expect> = Vec::new();
    let mut depth = 0;
    let mut at = start;
    loop {
        at = skip_whitespace(bytes, at);
        let Some(&byte) = bytes.get(at) else {
            return Literal::Not;
        };
        let expect = stack.last().copied();
        let wants_value = matches!(
            expect,
            None | Some(Expect::ArrayStart | Expect::ArrayItem | Expect::ObjectValue)
        );
        // A value just ended: the container moves on.
        let value_done = |stack: &mut Vec<Expect>| {
            if let Some(top) = stack.last_mut() {
                *top = match *top {
                    Expect::ObjectValue => Expect::ObjectNext,
                    _ => Expect::ArrayNext,
                };
            }
        };
        match (expect, byte) {
            (_, b'[') if wants_value => {
                stack.push(Expect::ArrayStart);
                depth = depth.max(stack.len());
                at += 1;
            }
            (_, b'{') if wants_value => {
                stack.push(Expect::ObjectStart);
                depth = depth.max(stack.len());
                at += 1;
            }
            (Some(Expect::ArrayStart | Expect::ArrayNext), b']')
            | (Some(Expect::ObjectStart | Expect::ObjectNext), b'}') => {
                stack.pop();
                at += 1;
                if stack.is_empty() {
                    return Literal::Ends { end: at, depth };
                }
                value_done(&mut stack);
            }
            (Some(Expect::ArrayStart | Expect::ArrayNext), b',') => {
                replace_top(&mut stack, Expect::ArrayItem);
                at += 1;
            }
            (Some(Expect::ObjectStart | Expect::ObjectNext), b',') => {
                replace_top(&mut stack, Expect::ObjectKey);
                at += 1;
            }
            (Some(Expect::ObjectStart | Expect::ObjectKey), b'"' | b'\'') => {
                match match_string(bytes, at) {
                    Some(end) => at = end,
                    None => return Literal::Not,
                }
                replace_top(&mut stack, Expect::Colon);
            }
            (Some(Expect::Colon), b':') => {
                replace_top(&mut stack, Expect::ObjectValue);
                at += 1;
            }
            (Some(_), _) if wants_value => match scalar(bytes, at) {
                Some(end) => {
                    at = end;
                    value_done(&mut stack);
                }
                None => return Literal::Not,
            },
            _ => return Literal::Not,
        }
        if stack.len() > limit {
            return Literal::TooDeep;
        }
    }
}

fn replace_top<T>(stack: &mut [T], value: T) {
    if let Some(top) = stack.last_mut() {
        *top = value;
    }
}

/// A string, number, `null`, `true` or `false` at `at`; returns its end.
fn scalar(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes[at] {
        b'"' | b'\'' => match_string(bytes, at),
        b'-' | b'0'..=b'9' => number_end(bytes, at),
        _ => ["null", "true", "false"].iter().find_map(|word| {
            bytes[at..]
                .starts_with(word.as_bytes())
                .then(|| word_ends(bytes, at + word.len()))
                .flatten()
        }),
    }
}

/// `end` if no symbol character follows (the grammar's `!symbol_char`).
/// The end of a number literal at `at`: `-? digit+ .? digit* (E -? digit+)?` not followed by
/// an identifier character; `None` when there is none.
pub(super) fn number_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut end = at + usize::from(bytes.get(at) == Some(&b'-'));
    let digits = |end: &mut usize| {
        let from = *end;
        while bytes.get(*end).is_some_and(u8::is_ascii_digit) {
            *end += 1;
        }
        *end > from
    };
    if !digits(&mut end) {
        return None;
    }
    if bytes.get(end) == Some(&b'.') {
        end += 1;
    }
    digits(&mut end);
    if bytes.get(end) == Some(&b'E') {
        let mut exponent = end + 1;
        if bytes.get(exponent) == Some(&b'-') {
            exponent += 1;
        }
        if digits(&mut exponent) {
            end = exponent;
        }
    }
    word_ends(bytes, end)
}

fn word_ends(bytes: &[u8], end: usize) -> Option<usize> {
    match bytes.get(end) {
        Some(b) if is_symbol_byte(*b) => None,
        _ => Some(end),
    }
}

/// A quoted string literal with JSON escapes; `None` when it is not one.
fn match_string(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = bytes[start];
    let mut at = start + 1;
    loop {
        match *bytes.get(at)? {
            b if b == quote => return Some(at + 1),
            b'\\' => match *bytes.get(at + 1)? {
                b'u' => {
                    let hex = bytes.get(at + 2..at + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    at += 6;
                }
                b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                b if b == quote => at += 2,
                _ => return None,
            },
            _ => at += 1,
        }
    }
}

/// Skips a quoted string from its opening quote. An unterminated string runs to the end (the
/// template cannot parse then). Any escaped byte is skipped: a bad escape makes the template
/// fail to parse anyway.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b if b == quote => return at + 1,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// Skips a path key `[...]`: its text runs to the first `]`, whatever it holds.
fn skip_path_key(bytes: &[u8], start: usize) -> usize {
    match memchr::memchr(b']', &bytes[start..]) {
        Some(end) => start + end + 1,
        None => bytes.len(),
    }
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

fn skip_whitespace_and_tilde(bytes: &[u8], at: usize) -> usize {
    let at = skip_whitespace(bytes, at);
    if bytes.get(at) == Some(&b'~') {
        skip_whitespace(bytes, at + 1)
    } else {
        at
    }
}

/// A byte that can be part of a Handlebars identifier: ASCII letters and digits, `-`, `_`,
/// `$`, `:`, and every byte of a non-ASCII character.
pub(crate) fn is_symbol_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'$' | b':') || byte >= 0x80
}
