//! Points, ids, payloads, metrics: the data model shared by every module.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

/// Log sequence number: every write gets the next one. It orders everything: WAL records,
/// point versions, snapshots and replication.
pub type Lsn = u64;

/// A point's payload: a JSON object.
pub type Payload = serde_json::Map<String, Value>;

/// A point id: an unsigned integer or a UUID, as in Qdrant.
///
/// Ordering (used by `scroll`): all numeric ids in numeric order, then all UUIDs in the order of
/// their 128-bit value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PointId {
    /// An unsigned 64-bit id.
    Num(u64),
    /// A UUID.
    Uuid(Uuid),
}

impl PointId {
    /// The (kind, 128-bit value) key this id sorts and is stored by.
    pub(crate) fn key(self) -> (u32, u128) {
        match self {
            PointId::Num(n) => (0, n as u128),
            PointId::Uuid(u) => (1, u.as_u128()),
        }
    }

    /// Rebuilds an id from its stored key; `None` for an unknown kind or an out-of-range number.
    pub(crate) fn from_key(kind: u32, value: u128) -> Option<PointId> {
        match kind {
            0 => u64::try_from(value).ok().map(PointId::Num),
            1 => Some(PointId::Uuid(Uuid::from_u128(value))),
            _ => None,
        }
    }
}

impl From<u64> for PointId {
    fn from(n: u64) -> Self {
        PointId::Num(n)
    }
}

impl From<Uuid> for PointId {
    fn from(u: Uuid) -> Self {
        PointId::Uuid(u)
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => f.pad(&n.to_string()),
            PointId::Uuid(u) => f.pad(&u.hyphenated().to_string()),
        }
    }
}

impl fmt::Debug for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PointId {
    type Err = String;

    /// Parses a decimal number or a UUID (any of the forms the `uuid` crate accepts).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(n) = s.parse::<u64>() {
            return Ok(PointId::Num(n));
        }
        Uuid::parse_str(s)
            .map(PointId::Uuid)
            .map_err(|_| format!("point id {s:?} is neither an unsigned integer nor a UUID"))
    }
}

impl Serialize for PointId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PointId::Num(n) => s.serialize_u64(*n),
            PointId::Uuid(u) => s.serialize_str(&u.hyphenated().to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        PointId::try_from(&v).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&Value> for PointId {
    type Error = String;

    /// Accepts a JSON unsigned integer or a UUID string, as Qdrant does.
    fn try_from(v: &Value) -> Result<Self, Self::Error> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .map(PointId::Num)
                .ok_or_else(|| format!("point id {n} is not an unsigned 64-bit integer")),
            Value::String(s) => Uuid::parse_str(s)
                .map(PointId::Uuid)
                .map_err(|_| format!("point id {s:?} is not a valid UUID")),
            other => Err(format!(
                "point id must be an unsigned integer or a UUID string, got {other}"
            )),
        }
    }
}

/// How vectors are compared. Scores follow Qdrant's conventions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    /// Cosine similarity; vectors are normalized at insert, so it is the dot product of unit
    /// vectors. Higher is closer. Stored (and returned) vectors are the normalized ones.
    Cosine,
    /// Dot product. Higher is closer.
    Dot,
    /// Euclidean distance (not squared). Lower is closer.
    Euclid,
    /// Manhattan (L1) distance. Lower is closer.
    Manhattan,
}

impl Metric {
    /// True when a higher score means closer (Cosine, Dot).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Cosine | Metric::Dot)
    }

    /// The code stored in file headers.
    pub(crate) fn code(self) -> u64 {
        match self {
            Metric::Cosine => 1,
            Metric::Dot => 2,
            Metric::Euclid => 3,
            Metric::Manhattan => 4,
        }
    }
}

/// A point to upsert: an id, a vector and an optional JSON-object payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The point's id.
    pub id: PointId,
    /// Its vector; its length must be the collection's dimension.
    pub vector: Vec<f32>,
    /// Its payload: a JSON object, or `Value::Null` for none.
    pub payload: Value,
}

impl Point {
    /// A point without payload.
    pub fn new(id: impl Into<PointId>, vector: Vec<f32>) -> Self {
        Point {
            id: id.into(),
            vector,
            payload: Value::Null,
        }
    }

    /// Sets the payload; it must be a JSON object (checked at upsert).
    #[must_use]
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }
}

/// A stored point as returned by `get` and `scroll`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    /// The point's id.
    pub id: PointId,
    /// LSN of the write that produced this version of the point.
    pub version: Lsn,
    /// The payload, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// The vector, when asked for (normalized for Cosine collections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// A search hit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoredPoint {
    /// The point's id.
    pub id: PointId,
    /// LSN of the write that produced this version of the point.
    pub version: Lsn,
    /// The score, by the collection's metric (see [`Metric`]).
    pub score: f32,
    /// The payload, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// The vector, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_sort_before_uuids() {
        let u = PointId::Uuid(Uuid::from_u128(1));
        assert!(PointId::Num(u64::MAX) < u);
        assert!(PointId::Num(2) < PointId::Num(10));
    }

    #[test]
    fn ids_round_trip_through_json_and_keys() {
        let ids = [
            PointId::Num(0),
            PointId::Num(u64::MAX),
            PointId::Uuid(Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0)),
        ];
        for id in ids {
            let json = serde_json::to_value(id).unwrap();
            assert_eq!(serde_json::from_value::<PointId>(json).unwrap(), id);
            let (k, v) = id.key();
            assert_eq!(PointId::from_key(k, v), Some(id));
        }
        assert!(serde_json::from_value::<PointId>(serde_json::json!(-1)).is_err());
        assert!(serde_json::from_value::<PointId>(serde_json::json!("nope")).is_err());
        assert!(serde_json::from_value::<PointId>(serde_json::json!(1.5)).is_err());
    }
}
