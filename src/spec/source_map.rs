//! A pointer index of one YAML document: JSON Pointer (`/systems/erp`, `/map/sku`) to the
//! positions of its key and its value, built from the parser's events.
//!
//! Semantic checks run on deserialized raw types, which have lost positions; this index gives
//! them back, so a diagnostic points at the exact value. It never fails: on a syntax error it
//! keeps what it indexed so far (the deserializer reports the error itself).

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column.
pub type Position = (usize, usize);

/// Where one node is: its key (for mapping values) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePosition {
    /// The key's position; the value's own position for sequence items and the root.
    pub key: Position,
    /// The value's position.
    pub value: Position,
    /// Whether the value is a quoted scalar (its text starts one column after `value`).
    pub quoted: bool,
}

/// JSON Pointer -> positions, for one document.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    nodes: HashMap<String, NodePosition>,
    syntax_error: Option<(String, Position)>,
}

enum Frame {
    Mapping {
        pointer: String,
        /// The key just read, with its position, waiting for its value.
        key: Option<(String, Position)>,
    },
    Sequence {
        pointer: String,
        index: usize,
    },
    /// A complex (non-scalar) mapping key, or its descendants: not addressable by a pointer.
    Skip {
        depth: usize,
        /// Whether the skipped node is a mapping key (its value follows and is skipped too).
        is_key: bool,
    },
}

/// Marks the value of a complex key, which is skipped.
const SKIPPED: Position = (0, 0);

/// Guards the index against pathological input; the deserializer's own budget rejects such
/// documents anyway.
const MAX_EVENTS: usize = 1_000_000;

impl SourceMap {
    /// Indexes the first document of `source`.
    pub fn build(source: &str) -> Self {
        let mut map = SourceMap::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut root_seen = false;
        let mut indexing = true;
        for (count, item) in Parser::new_from_str(source).enumerate() {
            let (event, span) = match item {
                Ok(item) => item,
                Err(err) => {
                    let marker = err.marker();
                    map.syntax_error = Some((err.info(), (marker.line().max(1), marker.col() + 1)));
                    break;
                }
            };
            if count > MAX_EVENTS {
                break;
            }
            // Later documents are still scanned for syntax errors, but not indexed.
            if !indexing {
                continue;
            }
            let position = position(&span);
            match event {
                Event::DocumentEnd => indexing = false,
                Event::Scalar(value, style, ..) => {
                    let pointer =
                        map.node(&mut stack, &mut root_seen, position, Some(value.as_ref()));
                    if let Some(node) = pointer.and_then(|pointer| map.nodes.get_mut(&pointer)) {
                        node.quoted =
                            matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted);
                    }
                }
                Event::Alias(..) => {
                    map.node(&mut stack, &mut root_seen, position, None);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let is_mapping = matches!(event, Event::MappingStart(..));
                    let is_key = matches!(stack.last(), Some(Frame::Mapping { key: None, .. }));
                    let frame = match map.node(&mut stack, &mut root_seen, position, None) {
                        Some(pointer) if is_mapping => Frame::Mapping { pointer, key: None },
                        Some(pointer) => Frame::Sequence { pointer, index: 0 },
                        None => Frame::Skip { depth: 1, is_key },
                    };
                    if let (Frame::Skip { .. }, Some(Frame::Skip { depth, .. })) =
                        (&frame, stack.last_mut())
                    {
                        *depth += 1;
                    } else {
                        stack.push(frame);
                    }
                }
                Event::MappingEnd | Event::SequenceEnd => match stack.last_mut() {
                    Some(Frame::Skip { depth, .. }) if *depth > 1 => *depth -= 1,
                    Some(Frame::Skip { is_key, .. }) => {
                        let was_key = *is_key;
                        stack.pop();
                        // A complex key just ended: its value comes next, and is skipped too.
                        if let (true, Some(Frame::Mapping { key, .. })) =
                            (was_key, stack.last_mut())
                        {
                            *key = Some((String::new(), SKIPPED));
                        }
                    }
                    _ => {
                        stack.pop();
                    }
                },
                _ => {}
            }
        }
        map
    }

    /// The first YAML syntax error, with its position, if the source is not well-formed.
    pub fn syntax_error(&self) -> Option<(&str, Position)> {
        self.syntax_error
            .as_ref()
            .map(|(message, position)| (message.as_str(), *position))
    }

    /// The positions of the node at `pointer`, if it exists.
    pub fn get(&self, pointer: &str) -> Option<NodePosition> {
        self.nodes.get(pointer).copied()
    }

    /// The value's position at `pointer`, or of its nearest existing ancestor (so a missing
    /// field is reported at the mapping that should hold it), or 1:1.
    pub fn value(&self, pointer: &str) -> Position {
        self.nearest(pointer).value
    }

    /// The position of a character inside the scalar at `pointer`, given by its 1-based line and
    /// column within the scalar's text. Exact for single-line scalars without escapes; falls
    /// back to the value's position for later lines.
    pub fn inside(&self, pointer: &str, (line, column): Position) -> Position {
        let node = self.nearest(pointer);
        if line != 1 || !self.nodes.contains_key(pointer) {
            return node.value;
        }
        (
            node.value.0,
            node.value.1 + usize::from(node.quoted) + column.saturating_sub(1),
        )
    }

    /// The key's position at `pointer`, or of its nearest existing ancestor, or 1:1.
    pub fn key(&self, pointer: &str) -> Position {
        self.nearest(pointer).key
    }

    fn nearest(&self, pointer: &str) -> NodePosition {
        let mut current = pointer;
        loop {
            if let Some(node) = self.nodes.get(current) {
                return *node;
            }
            match current.rfind('/') {
                Some(index) => current = &current[..index],
                None => {
                    return NodePosition {
                        key: (1, 1),
                        value: (1, 1),
                        quoted: false,
                    };
                }
            }
        }
    }

    /// Records a node that starts at `position`; returns its pointer, or `None` for a node
    /// that is a mapping key (or inside one) and so has no pointer of its own.
    fn node(
        &mut self,
        stack: &mut [Frame],
        root_seen: &mut bool,
        position: Position,
        scalar: Option<&str>,
    ) -> Option<String> {
        let Some(top) = stack.last_mut() else {
            if *root_seen {
                return None;
            }
            *root_seen = true;
            self.nodes.insert(
                String::new(),
                NodePosition {
                    key: position,
                    value: position,
                    quoted: false,
                },
            );
            return Some(String::new());
        };
        match top {
            Frame::Skip { .. } => None,
            Frame::Sequence { pointer, index } => {
                let child = format!("{pointer}/{index}");
                *index += 1;
                self.nodes.entry(child.clone()).or_insert(NodePosition {
                    key: position,
                    value: position,
                    quoted: false,
                });
                Some(child)
            }
            Frame::Mapping { pointer, key } => match key.take() {
                None => {
                    // A key. Scalars name the entry; other keys cannot be addressed.
                    *key = Some(match scalar {
                        Some(name) => (name.to_owned(), position),
                        None => (String::new(), SKIPPED),
                    });
                    None
                }
                Some((_, key_position)) if key_position == SKIPPED => None,
                Some((name, key_position)) => {
                    let child = format!("{pointer}/{}", escape(&name));
                    // First wins: a duplicate key is an error reported by the deserializer.
                    self.nodes.entry(child.clone()).or_insert(NodePosition {
                        key: key_position,
                        value: position,
                        quoted: false,
                    });
                    Some(child)
                }
            },
        }
    }
}

/// Escapes one JSON Pointer segment (RFC 6901).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn position(span: &Span) -> Position {
    // granit markers: 1-based lines, 0-based columns.
    (span.start.line().max(1), span.start.col() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
version: 1
systems:
  erp: { http: { base_url: x } }
  shop:
    file:
      dir: out
list:
  - a
  - { b: c }
\"a/b\": 2
";

    #[test]
    fn indexes_keys_and_values() {
        let map = SourceMap::build(DOC);
        assert_eq!(map.value("/version"), (1, 10));
        assert_eq!(map.key("/version"), (1, 1));
        assert_eq!(map.key("/systems/erp"), (3, 3));
        assert_eq!(map.value("/systems/erp/http/base_url"), (3, 28));
        assert_eq!(map.value("/systems/shop/file/dir"), (6, 12));
        assert_eq!(map.value("/list/0"), (8, 5));
        assert_eq!(map.value("/list/1/b"), (9, 10));
        assert_eq!(map.value("/a~1b"), (10, 8));
    }

    #[test]
    fn falls_back_to_ancestor() {
        let map = SourceMap::build(DOC);
        assert_eq!(map.value("/systems/shop/http"), map.value("/systems/shop"));
        assert_eq!(map.value("/nothing"), (1, 1));
    }

    #[test]
    fn survives_garbage() {
        for source in ["", ":", "a: [", "? [a]\n: b\nc: d", "- - -\n  x: *y"] {
            let _ = SourceMap::build(source);
        }
        let map = SourceMap::build("? [a, b]\n: {x: 1}\nc: d\n");
        assert_eq!(map.value("/c"), (3, 4));
    }
}
