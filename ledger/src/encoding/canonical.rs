//! Strict JSON parsing and RFC 8785 (JCS) canonical serialisation.
//!
//! Event bodies and the genesis file are parsed into [`Value`], which refuses what could make one
//! logical document have two meanings or two encodings: duplicate object keys, numbers with a
//! fraction or exponent, and integers outside the interoperable range `|n| <= 2^53 - 1`.
//! [`Value::to_canonical`] then writes the RFC 8785 form. Because only integers are admitted, the
//! ECMAScript number formatting of RFC 8785 §3.2.2.3 reduces to plain decimal integers, which is
//! why this small module is written here rather than pulled in as a general JCS crate; it is
//! checked against the Python `rfc8785` reference in `docs/signing.md`'s test vectors.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Largest integer magnitude admitted: 2^53 - 1 (RFC 7493 I-JSON, RFC 8785 §3.2.2.3).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A strictly parsed JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer with `|n| <= 2^53 - 1`.
    Int(i64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object; keys are unique.
    Object(BTreeMap<String, Value>),
}

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CanonicalError(pub String);

impl Value {
    /// Parses `bytes` strictly (see the module docs).
    pub fn parse(bytes: &[u8]) -> Result<Value, CanonicalError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = Value::deserialize(&mut de).map_err(|e| CanonicalError(e.to_string()))?;
        de.end().map_err(|e| CanonicalError(e.to_string()))?;
        Ok(value)
    }

    /// The RFC 8785 canonical form.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_canonical(&mut out);
        out
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(true) => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::String(s) => write_string(s, out),
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write_canonical(out);
                }
                out.push(b']');
            }
            Value::Object(map) => {
                // RFC 8785 §3.2.3: members sorted by the UTF-16 code units of their names. The
                // map is in UTF-8 byte order, which agrees with UTF-16 order unless a key holds
                // a character at or above U+E000 (where surrogate pairs sort differently), so
                // the sort is only needed then.
                out.push(b'{');
                let needs_utf16_sort = map.keys().any(|k| k.chars().any(|c| c >= '\u{e000}'));
                if needs_utf16_sort {
                    let mut keys: Vec<&String> = map.keys().collect();
                    keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
                    for (i, key) in keys.into_iter().enumerate() {
                        write_member(i, key, &map[key], out);
                    }
                } else {
                    for (i, (key, value)) in map.iter().enumerate() {
                        write_member(i, key, value, out);
                    }
                }
                out.push(b'}');
            }
        }
    }

    /// Converts to a `serde_json::Value` (for typed deserialisation).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(n) => serde_json::Value::from(*n),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Object(map) => serde_json::Value::Object(
                map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
            ),
        }
    }

    /// Converts to a `serde_json::Value`, consuming the tree (no copies of strings).
    pub fn into_json(self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Int(n) => serde_json::Value::from(n),
            Value::String(s) => serde_json::Value::String(s),
            Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(Value::into_json).collect())
            }
            Value::Object(map) => serde_json::Value::Object(
                map.into_iter().map(|(k, v)| (k, v.into_json())).collect(),
            ),
        }
    }

    /// Converts from a `serde_json::Value`, applying the same restrictions as [`Value::parse`].
    pub fn from_json(value: &serde_json::Value) -> Result<Value, CanonicalError> {
        // Round-tripping through text applies exactly the parser's checks.
        let text = serde_json::to_vec(value).map_err(|e| CanonicalError(e.to_string()))?;
        Value::parse(&text)
    }
}

/// Nesting the canonical fast path follows; deeper documents take the general path.
const MAX_CANONICAL_DEPTH: usize = 64;

impl Value {
    /// Parses `bytes` only if they are exactly the RFC 8785 canonical form of a value that
    /// [`Value::parse`] admits, in one pass: `Some(v)` exactly when `Value::parse(bytes)` gives
    /// `v` and `v.to_canonical() == bytes`, except that a document nested more than 64 arrays
    /// or objects deep always gives `None` (property-tested, and fuzzed by
    /// `fuzz/fuzz_targets/canonical_json.rs`). `None` says nothing about why; [`Value::parse`]
    /// and [`Value::to_canonical`] then name the problem.
    ///
    /// Event bodies are stored canonical, so checking one this way skips the general parser,
    /// the re-serialisation and the comparison.
    pub fn parse_canonical(bytes: &[u8]) -> Option<Value> {
        let mut parser = CanonicalParser { bytes, pos: 0 };
        let value = parser.value(0)?;
        (parser.pos == bytes.len()).then_some(value)
    }
}

/// A parser of the canonical grammar: no whitespace; integers without sign of zero, leading
/// zeros, fraction or exponent, within `2^53 - 1`; strings escaped exactly as
/// [`write_string`] escapes; object members in strictly increasing UTF-16 order of their names.
struct CanonicalParser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl CanonicalParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn literal(&mut self, literal: &[u8], value: Value) -> Option<Value> {
        let end = self.pos.checked_add(literal.len())?;
        (self.bytes.get(self.pos..end)? == literal).then(|| {
            self.pos = end;
            value
        })
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        match self.peek()? {
            b'n' => self.literal(b"null", Value::Null),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'"' => self.string().map(Value::String),
            b'[' if depth < MAX_CANONICAL_DEPTH => self.array(depth),
            b'{' if depth < MAX_CANONICAL_DEPTH => self.object(depth),
            b'-' | b'0'..=b'9' => self.int(),
            _ => None,
        }
    }

    fn int(&mut self) -> Option<Value> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let digits = &self.bytes[start..self.pos];
        // 2^53 - 1 has 16 digits; "0" is the only form of zero; no leading zeros.
        if digits.is_empty()
            || digits.len() > 16
            || (digits[0] == b'0' && (digits.len() > 1 || negative))
        {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let magnitude = digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        if magnitude > MAX_SAFE_INTEGER {
            return None;
        }
        Some(Value::Int(if negative { -magnitude } else { magnitude }))
    }

    fn string(&mut self) -> Option<String> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            let byte = self.peek()?;
            match byte {
                b'"' | b'\\' => {
                    // A UTF-8 sequence never contains these bytes, so the run ends on a boundary.
                    out.push_str(std::str::from_utf8(&self.bytes[run..self.pos]).ok()?);
                    if byte == b'"' {
                        self.pos += 1;
                        return Some(out);
                    }
                    let (c, len) = self.escape()?;
                    out.push(c);
                    self.pos += len;
                    run = self.pos;
                }
                0..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
    }

    /// The escape at `pos` (a backslash), if it is the one `write_string` writes: its character
    /// and length.
    fn escape(&self) -> Option<(char, usize)> {
        let short = match *self.bytes.get(self.pos + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hex = self.bytes.get(self.pos + 2..self.pos + 6)?;
                let digit = |b: u8| match b {
                    b'0'..=b'9' => Some(b - b'0'),
                    b'a'..=b'f' => Some(b - b'a' + 10),
                    _ => None,
                };
                if hex[0] != b'0' || hex[1] != b'0' {
                    return None;
                }
                let code = digit(hex[2])? * 16 + digit(hex[3])?;
                // Only control characters without a short escape are written as \u00xx.
                if code >= 0x20 || matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                    return None;
                }
                return Some((char::from(code), 6));
            }
            _ => return None,
        };
        Some((short, 2))
    }

    fn array(&mut self, depth: usize) -> Option<Value> {
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(Value::Array(items));
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value> {
        self.pos += 1;
        let mut members: Vec<(String, Value)> = Vec::new();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Value::Object(BTreeMap::new()));
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            if let Some((previous, _)) = members.last() {
                if utf16_order(previous, &key) != std::cmp::Ordering::Less {
                    return None;
                }
            }
            if self.peek()? != b':' {
                return None;
            }
            self.pos += 1;
            let value = self.value(depth + 1)?;
            members.push((key, value));
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    // Already sorted: the map is built in one pass.
                    return Some(Value::Object(members.into_iter().collect()));
                }
                _ => return None,
            }
        }
    }
}

/// RFC 8785 member order: by UTF-16 code units. Strings without a character at or above
/// U+E000 (no UTF-8 byte >= 0xEE) order the same by bytes.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    let high = |s: &str| s.bytes().any(|b| b >= 0xee);
    if high(a) || high(b) {
        a.encode_utf16().cmp(b.encode_utf16())
    } else {
        a.as_bytes().cmp(b.as_bytes())
    }
}

fn write_member(index: usize, key: &str, value: &Value, out: &mut Vec<u8>) {
    if index > 0 {
        out.push(b',');
    }
    write_string(key, out);
    out.push(b':');
    value.write_canonical(out);
}

/// RFC 8785 §3.2.2.2: the ECMAScript JSON.stringify string form. Only `"`, `\` and control
/// characters are escaped; every other byte of the (valid UTF-8) string is copied as is, so
/// unescaped runs are copied in bulk.
fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
        run_start = i + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

fn check_int<E: de::Error>(n: i128) -> Result<Value, E> {
    if n.abs() > i128::from(MAX_SAFE_INTEGER) {
        return Err(E::custom(format!(
            "integer {n} is outside the range -(2^53-1)..=2^53-1; send large values as strings"
        )));
    }
    #[allow(clippy::cast_possible_truncation)] // checked just above
    Ok(Value::Int(n as i64))
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        check_int(i128::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        check_int(i128::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Err(E::custom(format!(
            "number {v} has a fraction or exponent; only integers are allowed (write money and \
             quantities as decimal strings such as \"12.50\")"
        )))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Value>()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key \"{key}\"")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Typed deserialisation straight from a parsed [`Value`] (no intermediate `serde_json::Value`):
/// `T::deserialize(value)`.
impl<'de> Deserializer<'de> for Value {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(n) => visitor.visit_i64(n),
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => {
                let mut seq = NamedItems { items: items.into_iter().enumerate() };
                visitor.visit_seq(&mut seq)
            }
            Value::Object(map) => {
                let mut access = NamedFields { fields: map.into_iter(), value: None };
                visitor.visit_map(&mut access)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::IntoDeserializer;
        match self {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => other.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// An object's members for serde; an error in a member's value names the member
/// (`amount: "12,5" is not a decimal ...`), so a user learns which field is wrong.
struct NamedFields {
    fields: std::collections::btree_map::IntoIter<String, Value>,
    value: Option<(String, Value)>,
}

impl<'de> MapAccess<'de> for NamedFields {
    type Error = de::value::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((name, value)) = self.fields.next() else {
            return Ok(None);
        };
        let key = seed.deserialize(de::value::StrDeserializer::<Self::Error>::new(&name))?;
        self.value = Some((name, value));
        Ok(Some(key))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (name, value) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value was asked before its key"))?;
        seed.deserialize(value).map_err(|e| de::Error::custom(format!("{name}: {e}")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len())
    }
}

/// An array's items for serde; an error in an item names its position (`[2]: ...`).
struct NamedItems {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
}

impl<'de> SeqAccess<'de> for NamedItems {
    type Error = de::value::Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let Some((i, item)) = self.items.next() else {
            return Ok(None);
        };
        seed.deserialize(item).map(Some).map_err(|e| de::Error::custom(format!("[{i}]: {e}")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

impl<'de> de::IntoDeserializer<'de, de::value::Error> for Value {
    type Deserializer = Value;

    fn into_deserializer(self) -> Value {
        self
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        String::from_utf8(Value::parse(text.as_bytes()).expect("parse").to_canonical())
            .expect("utf8")
    }

    #[test]
    fn sorts_keys_and_strips_whitespace() {
        assert_eq!(
            canon(r#"{ "b": 1, "a": [true, null, "x"] }"#),
            r#"{"a":[true,null,"x"],"b":1}"#
        );
    }

    #[test]
    fn sorts_by_utf16_code_units_not_utf8_bytes() {
        // U+FB01 (one UTF-16 unit 0xFB01) sorts after U+1F600 (surrogates 0xD83D...) in UTF-16,
        // though before it in UTF-8 byte order.
        assert_eq!(canon("{\"\u{fb01}\":1,\"\u{1f600}\":2}"), "{\"\u{1f600}\":2,\"\u{fb01}\":1}");
    }

    #[test]
    fn escapes_like_ecmascript() {
        assert_eq!(canon(r#""a\u0001\n\"\\\/é\u2028""#), "\"a\\u0001\\n\\\"\\\\/é\u{2028}\"");
    }

    #[test]
    fn rejects_duplicates_fractions_and_big_integers() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":9007199254740992}"#,
            r#"{"a":-9007199254740992}"#,
            r#"{"a":1} x"#,
        ] {
            assert!(Value::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(Value::parse(br#"{"a":9007199254740991}"#).is_ok());
    }

    /// What the canonical fast path must agree with: `parse`, then `to_canonical` equal to the
    /// input.
    fn slow(bytes: &[u8]) -> Option<Value> {
        Value::parse(bytes).ok().filter(|v| v.to_canonical() == bytes)
    }

    #[test]
    fn canonical_fast_path_agrees_on_crafted_documents() {
        let cases: &[&[u8]] = &[
            br#"{"a":[true,null,"x"],"b":1}"#,
            br#"{"b":1,"a":2}"#,
            br#"{"a":1,"a":2}"#,
            br#"{"a":-0}"#,
            br#"{"a":0}"#,
            br#"{"a":-1}"#,
            br#"{"a":01}"#,
            br#"{"a":1.0}"#,
            br#"{"a":1e3}"#,
            br#"{"a":9007199254740991}"#,
            br#"{"a":9007199254740992}"#,
            br#"{"a":-9007199254740991}"#,
            br#"{"a":12345678901234567}"#,
            br#"{ "a":1}"#,
            br#"{"a":1} "#,
            br#""\u0041""#,
            br#""\/""#,
            br#""\u001f""#,
            br#""\u001F""#,
            br#""\u000a""#,
            br#""\n\t\"\\\b\f\r""#,
            br#""\u0000\u007f""#,
            "\"\u{7f}é\u{2028}\"".as_bytes(),
            b"\"a\x01\"",
            b"\"\xff\"",
            b"\"\xc3\"",
            "{\"\u{1f600}\":2,\"\u{fb01}\":1}".as_bytes(),
            "{\"\u{fb01}\":1,\"\u{1f600}\":2}".as_bytes(),
            br#"[]"#,
            br#"{}"#,
            br#"[1,]"#,
            br#"{"a":}"#,
            br#"nul"#,
            br#"truex"#,
            br#""#,
            br#"""#,
            br#"{"a""#,
        ];
        for case in cases {
            assert_eq!(
                Value::parse_canonical(case),
                slow(case),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        // Deep nesting: the fast path declines past its depth; the answer is still the same.
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(Value::parse_canonical(deep.as_bytes()), None);
        let shallow = format!("{}{}", "[".repeat(60), "]".repeat(60));
        assert_eq!(Value::parse_canonical(shallow.as_bytes()), slow(shallow.as_bytes()));
        assert!(slow(shallow.as_bytes()).is_some());
    }

    fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).prop_map(Value::Int),
            any::<String>().prop_map(Value::String),
            "[a-c\u{1f600}\u{fb01}\u{0}-\u{1f}\"\\\\]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(
                    "[a-c\u{1f600}\u{fb01}\u{e000}é]{0,3}",
                    inner,
                    0..5
                )
                .prop_map(Value::Object),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn canonical_fast_path_reads_every_canonical_document(value in arb_value()) {
            let bytes = value.to_canonical();
            proptest::prop_assert_eq!(Value::parse_canonical(&bytes), Some(value));
        }

        #[test]
        fn canonical_fast_path_agrees_on_damaged_documents(
            value in arb_value(),
            at in proptest::prelude::any::<usize>(),
            byte in proptest::prelude::any::<u8>(),
            insert in proptest::prelude::any::<bool>(),
        ) {
            let mut bytes = value.to_canonical();
            let at = at % (bytes.len() + 1);
            if insert || at == bytes.len() {
                bytes.insert(at, byte);
            } else {
                bytes[at] = byte;
            }
            proptest::prop_assert_eq!(Value::parse_canonical(&bytes), slow(&bytes));
        }

        #[test]
        fn canonical_fast_path_agrees_on_pretty_json(value in arb_value()) {
            let pretty = serde_json::to_vec_pretty(&value.to_json()).unwrap_or_default();
            proptest::prop_assert_eq!(Value::parse_canonical(&pretty), slow(&pretty));
        }
    }
}
