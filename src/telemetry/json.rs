//! A message's JSON as a tree that borrows from the payload: object keys and text without an
//! escape are slices of it, objects are lists of their fields in document order. Reading a
//! message this way makes one allocation per object or array instead of one per key and value,
//! which matters at tens of thousands of messages a second.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value borrowing from the text it was read from.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Text(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Object<'a>),
}

/// A JSON number as the reader gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Number {
    Integer(i64),
    Unsigned(u64),
    Float(f64),
}

/// Fields up to which [`Object::fields`] looks for repeated keys by comparing them.
const SCAN_FIELDS: usize = 32;

/// An object's fields in document order. A key given twice keeps both fields; [`Object::get`]
/// finds the last, as most JSON readers do.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Object<'a>(pub(super) Vec<(Cow<'a, str>, Node<'a>)>);

impl<'a> Node<'a> {
    /// Reads one JSON document, refusing trailing characters.
    pub(super) fn parse(payload: &'a [u8]) -> Result<Node<'a>, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// The value's JSON type with its article, for refusals ("a string", "an object").
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::Text(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }
}

impl<'a> Object<'a> {
    /// The value of the last field named `key`.
    pub(super) fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether a field is named `key`.
    pub(super) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Each field whose key is not given again later, in document order: what a reader that
    /// keeps the last of repeated keys would see. Small objects compare keys with the fields
    /// after them; beyond [`SCAN_FIELDS`] fields, each key's last position is looked up, so a
    /// message with many thousand fields costs linear time, not quadratic.
    pub(super) fn fields(&self) -> impl Iterator<Item = (&str, &Node<'a>)> {
        let last: Option<HashMap<&str, usize>> = (self.0.len() > SCAN_FIELDS).then(|| {
            self.0
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.as_ref(), i))
                .collect()
        });
        self.0.iter().enumerate().filter_map(move |(i, (k, v))| {
            let repeated = match &last {
                Some(last) => last.get(k.as_ref()) != Some(&i),
                None => self.0[i + 1..].iter().any(|(later, _)| later == k),
            };
            (!repeated).then_some((k.as_ref(), v))
        })
    }
}

impl Number {
    /// The number as an integer, when it is one that fits an `i64`.
    pub(super) fn as_i64(self) -> Option<i64> {
        match self {
            Number::Integer(i) => Some(i),
            Number::Unsigned(u) => i64::try_from(u).ok(),
            Number::Float(_) => None,
        }
    }

    /// The number as a double (integers beyond 2^53 rounded).
    pub(super) fn as_f64(self) -> f64 {
        match self {
            Number::Integer(i) => i as f64,
            Number::Unsigned(u) => u as f64,
            Number::Float(f) => f,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Integer(i) => write!(f, "{i}"),
            Number::Unsigned(u) => write!(f, "{u}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// An object key, borrowed when it holds no escape.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_str(NodeVisitor)? {
            Node::Text(text) => Ok(Key(text)),
            other => Err(serde::de::Error::custom(format!(
                "object key is {}",
                other.type_name()
            ))),
        }
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(Number::Integer(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(match i64::try_from(v) {
            Ok(i) => Number::Integer(i),
            Err(_) => Number::Unsigned(v),
        }))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Node::Number(Number::Float(v)))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Key(key)) = map.next_key()? {
            fields.push((key, map.next_value()?));
        }
        Ok(Node::Object(Object(fields)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_json_type_and_borrows_text_without_escapes() {
        let text = br#"{"a": null, "b": true, "c": -3, "d": 18446744073709551615, "e": 1.5,
            "f": "plain", "g": "tab\tbed", "h": [1, {"i": []}], "k\u0041": {}}"#;
        let Node::Object(object) = Node::parse(text).unwrap() else {
            panic!("an object");
        };
        assert_eq!(object.get("a"), Some(&Node::Null));
        assert_eq!(object.get("b"), Some(&Node::Bool(true)));
        assert_eq!(object.get("c"), Some(&Node::Number(Number::Integer(-3))));
        assert_eq!(
            object.get("d"),
            Some(&Node::Number(Number::Unsigned(u64::MAX)))
        );
        assert_eq!(object.get("e"), Some(&Node::Number(Number::Float(1.5))));
        assert!(matches!(
            object.get("f"),
            Some(Node::Text(Cow::Borrowed("plain")))
        ));
        assert!(matches!(object.get("g"), Some(Node::Text(Cow::Owned(t))) if t == "tab\tbed"));
        let Some(Node::Array(items)) = object.get("h") else {
            panic!("an array");
        };
        assert_eq!(items.len(), 2);
        assert_eq!(object.get("kA"), Some(&Node::Object(Object::default())));
        assert_eq!(object.get("z"), None);
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_value() {
        let Node::Object(object) = Node::parse(br#"{"x": 1, "y": 2, "x": 3}"#).unwrap() else {
            panic!("an object");
        };
        assert_eq!(object.get("x"), Some(&Node::Number(Number::Integer(3))));
        let fields: Vec<(&str, &Node)> = object.fields().collect();
        assert_eq!(
            fields,
            vec![
                ("y", &Node::Number(Number::Integer(2))),
                ("x", &Node::Number(Number::Integer(3)))
            ]
        );
    }

    #[test]
    fn repeated_keys_of_a_large_object_read_as_their_last_values() {
        // Beyond SCAN_FIELDS fields the last positions are looked up instead of compared.
        let mut text = String::from("{");
        for i in 0..200 {
            text += &format!("\"k{}\": {i}, ", i % 70);
        }
        text += "\"k3\": -1}";
        let Node::Object(object) = Node::parse(text.as_bytes()).unwrap() else {
            panic!("an object");
        };
        assert!(object.0.len() > SCAN_FIELDS);
        let fields: Vec<(&str, &Node)> = object.fields().collect();
        let mut expected: Vec<(String, i64)> = (130..200)
            .filter(|i| i % 70 != 3)
            .map(|i| (format!("k{}", i % 70), i))
            .collect();
        expected.push(("k3".into(), -1));
        let got: Vec<(String, i64)> = fields
            .iter()
            .map(|(k, v)| match v {
                Node::Number(n) => ((*k).to_owned(), n.as_i64().unwrap()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, expected);
        assert_eq!(object.get("k3"), Some(&Node::Number(Number::Integer(-1))));
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for bad in [
            &b"{"[..],
            b"{\"a\": 1} x",
            b"[1,]",
            b"{\"a\": 1e999}",
            b"\"\xff\"",
        ] {
            let ours = Node::parse(bad).map(|_| ()).map_err(|e| e.to_string());
            let theirs = serde_json::from_slice::<serde_json::Value>(bad)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(bad));
            assert!(ours.is_err());
        }
    }
}
