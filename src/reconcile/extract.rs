//! Reading the declared fields of one line, and nothing else: from a JSON line without
//! building a `serde_json::Value` (other fields are skipped as the parser passes them), from a
//! CSV row by column, or from an already decoded value by JSON Pointer. Values borrow from the
//! line whenever they can.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// The fields one side reads, as JSON Pointers.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pointers: Vec<String>,
    /// The top-level name of each pointer, when every pointer is one segment deep (the fast
    /// readers need that; nested pointers go through decoded values).
    names: Option<Vec<String>>,
}

/// One field's value: text (numbers as written, booleans as `true`/`false`) or absent.
pub(crate) type Slot<'a> = Option<Cow<'a, str>>;

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreadable(pub(crate) String);

impl Fields {
    pub(crate) fn new(pointers: Vec<String>) -> Self {
        let names = pointers
            .iter()
            .map(|p| {
                let name = p.strip_prefix('/')?;
                (!name.contains('/')).then(|| name.replace("~1", "/").replace("~0", "~"))
            })
            .collect();
        Self { pointers, names }
    }

    pub(crate) fn len(&self) -> usize {
        self.pointers.len()
    }

    /// The top-level field names, when every pointer is one segment deep.
    pub(crate) fn names(&self) -> Option<&[String]> {
        self.names.as_deref()
    }

    /// Reads the fields of a decoded value.
    pub(crate) fn read_value<'a>(&self, value: &'a Value, out: &mut Vec<Slot<'a>>) {
        out.clear();
        for pointer in &self.pointers {
            out.push(value.pointer(pointer).and_then(scalar_text));
        }
    }

    /// Reads the fields of one JSON line, skipping the others without decoding them.
    pub(crate) fn read_json<'a>(
        &self,
        line: &'a [u8],
        out: &mut Vec<Slot<'a>>,
    ) -> Result<(), Unreadable> {
        out.clear();
        out.resize(self.pointers.len(), None);
        let Some(names) = &self.names else {
            let value: Value =
                serde_json::from_slice(line).map_err(|err| Unreadable(err.to_string()))?;
            // Nested pointers: the slow path, owned values.
            for (slot, pointer) in out.iter_mut().zip(&self.pointers) {
                *slot = value
                    .pointer(pointer)
                    .and_then(scalar_text)
                    .map(|text| Cow::Owned(text.into_owned()));
            }
            return Ok(());
        };
        let mut deserializer = serde_json::Deserializer::from_slice(line);
        Extract { names, out }
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end())
            .map_err(|err| Unreadable(err.to_string()))
    }
}

/// A scalar value as text; objects and arrays are not amounts, keys or codes.
fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(text) => Some(Cow::Borrowed(text)),
        Value::Number(number) => Some(Cow::Owned(number.to_string())),
        Value::Bool(flag) => Some(Cow::Borrowed(if *flag { "true" } else { "false" })),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

struct Extract<'f, 'o, 'a> {
    names: &'f [String],
    out: &'o mut Vec<Slot<'a>>,
}

impl<'de, 'f, 'o> DeserializeSeed<'de> for Extract<'f, 'o, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, 'f, 'o> Visitor<'de> for Extract<'f, 'o, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let mut wanted = self.names.iter().enumerate().filter(|(_, n)| **n == *key);
            let Some((first, _)) = wanted.next() else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let Scalar(value) = map.next_value::<Scalar<'de>>()?;
            for (index, _) in wanted {
                self.out[index] = value.clone();
            }
            self.out[first] = value;
        }
        Ok(())
    }
}

/// A string that borrows from the input when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A scalar value as text; `None` for null, objects and arrays (skipped unread).
struct Scalar<'de>(Slot<'de>);

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Owned(v))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                // The shortest text that reads back as the same double: exact for amounts
                // written with up to 15 significant digits. Amounts belong in strings.
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar(Some(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar(None))
            }
            fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Splits one CSV record (without its line terminator) into fields; quoted fields may hold
/// commas, doubled quotes and line breaks. Fields borrow unless they held a doubled quote.
pub(crate) fn split_csv<'a>(
    record: &'a [u8],
    out: &mut Vec<Cow<'a, [u8]>>,
) -> Result<(), Unreadable> {
    out.clear();
    let mut at = 0;
    loop {
        if record.get(at) == Some(&b'"') {
            let mut value: Option<Vec<u8>> = None;
            let start = at + 1;
            let mut i = start;
            loop {
                match record.get(i) {
                    None => return Err(Unreadable("an unterminated quoted field".into())),
                    Some(b'"') if record.get(i + 1) == Some(&b'"') => {
                        let owned = value.get_or_insert_with(Vec::new);
                        if owned.is_empty() {
                            owned.extend_from_slice(&record[start..i]);
                        }
                        owned.push(b'"');
                        i += 2;
                        // Continue copying after the doubled quote.
                        let rest_start = i;
                        while let Some(&b) = record.get(i) {
                            if b == b'"' {
                                break;
                            }
                            i += 1;
                        }
                        owned.extend_from_slice(&record[rest_start..i]);
                    }
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            out.push(match value {
                Some(owned) => Cow::Owned(owned),
                None => Cow::Borrowed(&record[start..i]),
            });
            at = i + 1;
            match record.get(at) {
                None => return Ok(()),
                Some(b',') => at += 1,
                Some(_) => {
                    return Err(Unreadable(
                        "text after a closing quote (a quote inside a field must be doubled)"
                            .into(),
                    ));
                }
            }
        } else {
            let end = memchr::memchr(b',', &record[at..]).map_or(record.len(), |i| at + i);
            out.push(Cow::Borrowed(&record[at..end]));
            if end == record.len() {
                return Ok(());
            }
            at = end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_give_only_the_declared_fields() {
        let fields = Fields::new(vec![
            "/id".into(),
            "/amount".into(),
            "/n".into(),
            "/x".into(),
        ]);
        let mut out = Vec::new();
        let line = br#"{"skip":{"a":[1,2]},"id":"T\"1","amount":"-1.50","n":12.5,"x":null}"#;
        fields.read_json(line, &mut out).unwrap();
        assert_eq!(out[0].as_deref(), Some("T\"1"));
        assert_eq!(out[1].as_deref(), Some("-1.50"));
        assert_eq!(out[2].as_deref(), Some("12.5"));
        assert_eq!(out[3], None);
        assert!(fields.read_json(b"{\"id\":", &mut out).is_err());
        assert!(fields.read_json(b"[1]", &mut out).is_err());
    }

    #[test]
    fn csv_fields_unquote_and_keep_commas() {
        let mut out = Vec::new();
        split_csv(br#"a,"b,c","d""e",,"""""#, &mut out).unwrap();
        let texts: Vec<&[u8]> = out.iter().map(|c| c.as_ref()).collect();
        assert_eq!(texts, vec![&b"a"[..], b"b,c", b"d\"e", b"", b"\""]);
        assert!(split_csv(br#""open"#, &mut out).is_err());
        assert!(split_csv(br#""a"b"#, &mut out).is_err());
    }
}
