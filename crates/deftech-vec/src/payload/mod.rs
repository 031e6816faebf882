//! Payloads: JSON paths into them, edits, and payload indexes.
//!
//! Paths follow Qdrant: `a.b` walks objects, `a[]` takes every element of an array, `a[2]` one
//! element, `"a.b"` quotes a key containing dots. A path never walks through an array without
//! `[]`. A value found at the end of a path that is an array counts as its elements (one level).

pub(crate) mod index;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::types::Payload;

/// The kind of a payload index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadIndexKind {
    /// Exact string values.
    Keyword,
    /// Integer values (match and range).
    Integer,
    /// Numeric values (range).
    Float,
    /// Booleans.
    Bool,
}

impl PayloadIndexKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            PayloadIndexKind::Keyword => 1,
            PayloadIndexKind::Integer => 2,
            PayloadIndexKind::Float => 3,
            PayloadIndexKind::Bool => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => PayloadIndexKind::Keyword,
            2 => PayloadIndexKind::Integer,
            3 => PayloadIndexKind::Float,
            4 => PayloadIndexKind::Bool,
            _ => return None,
        })
    }

    /// Name as used in the API (`keyword`, `integer`, `float`, `bool`).
    pub fn name(self) -> &'static str {
        match self {
            PayloadIndexKind::Keyword => "keyword",
            PayloadIndexKind::Integer => "integer",
            PayloadIndexKind::Float => "float",
            PayloadIndexKind::Bool => "bool",
        }
    }
}

/// One step of a parsed path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Step {
    Key(String),
    All,
    Index(usize),
}

/// A parsed JSON path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct JsonPath {
    pub steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `a.b[].c[0]`, `"dotted.key".x`; the error says what is wrong.
    pub(crate) fn parse(path: &str) -> std::result::Result<JsonPath, String> {
        let mut steps = Vec::new();
        let b = path.as_bytes();
        let mut i = 0;
        if path.is_empty() {
            return Err("empty key".into());
        }
        loop {
            // A key: quoted or bare.
            if i < b.len() && b[i] == b'"' {
                let end = path[i + 1..]
                    .find('"')
                    .ok_or_else(|| format!("unterminated quote in key {path:?}"))?;
                steps.push(Step::Key(path[i + 1..i + 1 + end].to_owned()));
                i += end + 2;
            } else {
                let start = i;
                while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                    i += 1;
                }
                if i == start {
                    return Err(format!("empty segment in key {path:?}"));
                }
                steps.push(Step::Key(path[start..i].to_owned()));
            }
            // Brackets.
            while i < b.len() && b[i] == b'[' {
                let end = path[i..]
                    .find(']')
                    .ok_or_else(|| format!("unterminated bracket in key {path:?}"))?;
                let inner = &path[i + 1..i + end];
                if inner.is_empty() {
                    steps.push(Step::All);
                } else {
                    let n = inner
                        .parse::<usize>()
                        .map_err(|_| format!("bad array index {inner:?} in key {path:?}"))?;
                    steps.push(Step::Index(n));
                }
                i += end + 1;
            }
            if i == b.len() {
                break;
            }
            if b[i] != b'.' {
                return Err(format!("unexpected {:?} in key {path:?}", b[i] as char));
            }
            i += 1;
            if i == b.len() {
                return Err(format!("key {path:?} ends with a dot"));
            }
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path reaches (arrays at the end are returned whole).
    pub(crate) fn values<'a>(&self, root: &'a Payload) -> Vec<&'a Value> {
        let mut cur: Vec<&'a Value> = Vec::new();
        let mut first = true;
        for step in &self.steps {
            let mut next = Vec::new();
            match step {
                Step::Key(k) => {
                    if first {
                        if let Some(v) = root.get(k) {
                            next.push(v);
                        }
                    } else {
                        for v in &cur {
                            if let Some(v) = v.as_object().and_then(|o| o.get(k)) {
                                next.push(v);
                            }
                        }
                    }
                }
                Step::All => {
                    for v in &cur {
                        if let Value::Array(a) = v {
                            next.extend(a.iter());
                        }
                    }
                }
                Step::Index(n) => {
                    for v in &cur {
                        if let Some(v) = v.as_array().and_then(|a| a.get(*n)) {
                            next.push(v);
                        }
                    }
                }
            }
            first = false;
            cur = next;
        }
        cur
    }

    /// The values conditions look at: like [`values`](Self::values), with arrays at the end
    /// replaced by their elements (one level).
    pub(crate) fn leaves<'a>(&self, root: &'a Payload) -> Vec<&'a Value> {
        let mut out = Vec::new();
        for v in self.values(root) {
            match v {
                Value::Array(a) => out.extend(a.iter()),
                other => out.push(other),
            }
        }
        out
    }
}

/// Qdrant's `set_payload`: merges `new` into the payload (at the object at `key`, created if
/// needed); a `null` value removes the key.
pub(crate) fn set_payload(payload: &mut Payload, new: &Payload, key: Option<&JsonPath>) {
    let target = match key {
        None => payload,
        Some(path) => {
            let mut cur = payload;
            for step in &path.steps {
                let Step::Key(k) = step else {
                    unreachable!("set_payload keys are validated to be plain object paths");
                };
                let slot = cur
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Payload::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Payload::new());
                }
                cur = slot.as_object_mut().expect("just made an object");
            }
            cur
        }
    };
    for (k, v) in new {
        if v.is_null() {
            target.remove(k);
        } else {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// Checks a `set_payload` key: a plain object path.
pub(crate) fn parse_set_key(key: &str) -> Result<JsonPath> {
    let path = JsonPath::parse(key).map_err(|e| Error::invalid_argument("key", e))?;
    if path.steps.iter().any(|s| !matches!(s, Step::Key(_))) {
        return Err(Error::invalid_argument(
            "key",
            format!("{key:?}: set_payload keys must be object paths without array brackets"),
        ));
    }
    Ok(path)
}

/// Removes the value at `path`: `a.b` removes `b` from object `a`; `a[].b` from every element;
/// a trailing `[]` empties the array; a trailing index does nothing.
pub(crate) fn delete_path(payload: &mut Payload, path: &JsonPath) {
    fn walk(v: &mut Value, steps: &[Step]) {
        match steps {
            [] => {}
            [Step::Key(k)] => {
                if let Some(o) = v.as_object_mut() {
                    o.remove(k);
                }
            }
            [Step::All] => {
                if let Some(a) = v.as_array_mut() {
                    a.clear();
                }
            }
            [Step::Index(_)] => {}
            [Step::Key(k), rest @ ..] => {
                if let Some(child) = v.as_object_mut().and_then(|o| o.get_mut(k)) {
                    walk(child, rest);
                }
            }
            [Step::All, rest @ ..] => {
                if let Some(a) = v.as_array_mut() {
                    for e in a {
                        walk(e, rest);
                    }
                }
            }
            [Step::Index(n), rest @ ..] => {
                if let Some(e) = v.as_array_mut().and_then(|a| a.get_mut(*n)) {
                    walk(e, rest);
                }
            }
        }
    }
    let mut root = Value::Object(std::mem::take(payload));
    walk(&mut root, &path.steps);
    if let Value::Object(o) = root {
        *payload = o;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn paths_follow_qdrant() {
        let doc = p(json!({
            "a": {"b": 1},
            "arr": [{"x": 1}, {"x": [2, 3]}, {"y": 4}],
            "tags": ["t1", "t2"],
            "dot.key": {"z": true}
        }));
        let vals = |s: &str| {
            JsonPath::parse(s)
                .unwrap()
                .values(&doc)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        let leaves = |s: &str| {
            JsonPath::parse(s)
                .unwrap()
                .leaves(&doc)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(vals("a.b"), vec![json!(1)]);
        assert_eq!(
            vals("arr.x"),
            Vec::<Value>::new(),
            "no walking through arrays without []"
        );
        assert_eq!(vals("arr[].x"), vec![json!(1), json!([2, 3])]);
        assert_eq!(leaves("arr[].x"), vec![json!(1), json!(2), json!(3)]);
        assert_eq!(vals("arr[1].x"), vec![json!([2, 3])]);
        assert_eq!(vals("arr[9].x"), Vec::<Value>::new());
        assert_eq!(leaves("tags"), vec![json!("t1"), json!("t2")]);
        assert_eq!(vals("\"dot.key\".z"), vec![json!(true)]);
        assert!(JsonPath::parse("").is_err());
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a[x]").is_err());
        assert!(JsonPath::parse("a.").is_err());
    }

    #[test]
    fn set_and_delete_follow_qdrant() {
        let mut doc = p(json!({"a": 1, "b": 2, "n": {"k": 5}, "arr": [{"x": 1, "y": 2}]}));
        set_payload(&mut doc, &p(json!({"a": null, "c": 3})), None);
        assert_eq!(
            doc,
            p(json!({"b": 2, "n": {"k": 5}, "arr": [{"x": 1, "y": 2}], "c": 3}))
        );
        set_payload(
            &mut doc,
            &p(json!({"j": 1})),
            Some(&parse_set_key("n.m").unwrap()),
        );
        assert_eq!(doc["n"], json!({"k": 5, "m": {"j": 1}}));
        set_payload(
            &mut doc,
            &p(json!({"j": 1})),
            Some(&parse_set_key("b").unwrap()),
        );
        assert_eq!(doc["b"], json!({"j": 1}));
        assert!(parse_set_key("a[0]").is_err());

        delete_path(&mut doc, &JsonPath::parse("arr[].x").unwrap());
        assert_eq!(doc["arr"], json!([{"y": 2}]));
        delete_path(&mut doc, &JsonPath::parse("n.k").unwrap());
        assert_eq!(doc["n"], json!({"m": {"j": 1}}));
        delete_path(&mut doc, &JsonPath::parse("arr[]").unwrap());
        assert_eq!(doc["arr"], json!([]));
        delete_path(&mut doc, &JsonPath::parse("missing.path").unwrap());
    }
}
