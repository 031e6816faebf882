//! Payload indexes of sealed segments: one immutable file per indexed field.
//!
//! Keyword and bool indexes (`DTIDXKW\0`, `DTIDXBO\0`) map each distinct value to a roaring
//! bitmap of segment offsets; integer and float indexes (`DTIDXIN\0`, `DTIDXFL\0`) hold
//! `(value, offset)` pairs sorted by value. Every index also stores a *residual* bitmap: points
//! with values at the path that are not of the index's type (a float in an integer index, say).
//! Range queries check those points one by one, so that results with and without an index are
//! identical. Byte layouts are in ARCHITECTURE.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;
use serde_json::Value;

use super::{JsonPath, PayloadIndexKind};
use crate::codec::{FileWriter, HEADER_LEN, open_file};
use crate::directory::{Directory, FileBytes};
use crate::error::{Error, Result};
use crate::filter::Range;
use crate::types::Payload;

const MAGIC_KEYWORD: &[u8; 8] = b"DTIDXKW\0";
const MAGIC_BOOL: &[u8; 8] = b"DTIDXBO\0";
const MAGIC_INTEGER: &[u8; 8] = b"DTIDXIN\0";
const MAGIC_FLOAT: &[u8; 8] = b"DTIDXFL\0";
const KEY_ENTRY: usize = 32;
const PAIR: usize = 16;

fn magic(kind: PayloadIndexKind) -> &'static [u8; 8] {
    match kind {
        PayloadIndexKind::Keyword => MAGIC_KEYWORD,
        PayloadIndexKind::Bool => MAGIC_BOOL,
        PayloadIndexKind::Integer => MAGIC_INTEGER,
        PayloadIndexKind::Float => MAGIC_FLOAT,
    }
}

/// File name of the index of `field` of `kind` inside a segment folder (hex of the field name,
/// so any field name makes a safe file name; the kind in the name, so re-indexing a field with
/// another kind never replaces a file an older manifest still lists).
pub(crate) fn file_name(field: &str, kind: PayloadIndexKind) -> String {
    let hex: String = field.bytes().map(|b| format!("{b:02x}")).collect();
    format!("index-{hex}-{}.idx", kind.name())
}

/// A query an index can answer.
#[derive(Debug)]
pub(crate) enum IndexQuery<'a> {
    Keywords(&'a [String]),
    Integers(&'a [i64]),
    Bool(bool),
    Range(&'a Range),
}

/// What an index says: `matched` points match; `unsure` points (residual) must be checked one by
/// one.
#[derive(Debug, Default)]
pub(crate) struct IndexAnswer {
    pub matched: RoaringBitmap,
    pub unsure: RoaringBitmap,
}

/// Collects the values of one field while a segment is written.
pub(crate) struct IndexBuilder {
    kind: PayloadIndexKind,
    path: JsonPath,
    keys: BTreeMap<String, RoaringBitmap>,
    pairs: Vec<(u64, u32)>,
    residual: RoaringBitmap,
}

impl IndexBuilder {
    pub(crate) fn new(kind: PayloadIndexKind, path: JsonPath) -> Self {
        IndexBuilder {
            kind,
            path,
            keys: BTreeMap::new(),
            pairs: Vec::new(),
            residual: RoaringBitmap::new(),
        }
    }

    pub(crate) fn kind(&self) -> PayloadIndexKind {
        self.kind
    }

    pub(crate) fn add(&mut self, offset: u32, payload: &Payload) {
        for v in self.path.leaves(payload) {
            match (self.kind, v) {
                (_, Value::Null) => {}
                (PayloadIndexKind::Keyword, Value::String(s)) => {
                    self.keys.entry(s.clone()).or_default().insert(offset);
                }
                (PayloadIndexKind::Bool, Value::Bool(b)) => {
                    let key = if *b { "true" } else { "false" };
                    self.keys.entry(key.to_owned()).or_default().insert(offset);
                }
                (PayloadIndexKind::Integer, Value::Number(n)) if n.as_i64().is_some() => {
                    let i = n.as_i64().expect("checked");
                    self.pairs.push((i as u64, offset));
                }
                (PayloadIndexKind::Float, Value::Number(n)) => {
                    let f = n.as_f64().expect("serde_json numbers convert to f64");
                    self.pairs.push((f.to_bits(), offset));
                }
                _ => {
                    self.residual.insert(offset);
                }
            }
        }
    }

    /// Writes the index file (synced).
    pub(crate) fn write(mut self, dir: &dyn Directory, path: &Path, n_points: u32) -> Result<()> {
        let mut w = FileWriter::create(dir, path, magic(self.kind))?;
        let mut residual = Vec::new();
        self.residual
            .serialize_into(&mut residual)
            .expect("writing to a Vec cannot fail");
        match self.kind {
            PayloadIndexKind::Keyword | PayloadIndexKind::Bool => {
                let n = self.keys.len() as u64;
                let mut postings = Vec::new();
                let mut key_bytes = Vec::new();
                let mut table = Vec::new();
                for (k, bm) in &self.keys {
                    table.push((
                        key_bytes.len() as u64,
                        k.len() as u64,
                        postings.len() as u64,
                    ));
                    key_bytes.extend_from_slice(k.as_bytes());
                    let before = postings.len();
                    bm.serialize_into(&mut postings)
                        .expect("writing to a Vec cannot fail");
                    table.last_mut().expect("pushed").2 = before as u64;
                }
                let keys_start = n * KEY_ENTRY as u64 + residual.len() as u64;
                let post_start = keys_start + key_bytes.len() as u64;
                let mut ends = table.iter().skip(1).map(|t| t.2).collect::<Vec<_>>();
                ends.push(postings.len() as u64);
                for ((ko, kl, po), pe) in table.iter().zip(ends) {
                    w.write_u64(keys_start + ko)?;
                    w.write_u64(*kl)?;
                    w.write_u64(post_start + po)?;
                    w.write_u64(pe - po)?;
                }
                w.write(&residual)?;
                w.write(&key_bytes)?;
                w.write(&postings)?;
                w.finish([u64::from(n_points), n, residual.len() as u64])?;
            }
            PayloadIndexKind::Integer | PayloadIndexKind::Float => {
                if self.kind == PayloadIndexKind::Integer {
                    self.pairs.sort_by_key(|&(v, o)| (v as i64, o));
                } else {
                    self.pairs.sort_by(|a, b| {
                        f64::from_bits(a.0)
                            .total_cmp(&f64::from_bits(b.0))
                            .then(a.1.cmp(&b.1))
                    });
                }
                for &(v, o) in &self.pairs {
                    w.write_u64(v)?;
                    w.write_u32(o)?;
                    w.write_u32(0)?;
                }
                w.write(&residual)?;
                w.finish([
                    u64::from(n_points),
                    self.pairs.len() as u64,
                    residual.len() as u64,
                ])?;
            }
        }
        Ok(())
    }
}

/// An index file opened from its segment folder (mapped, not parsed).
#[derive(Clone)]
pub(crate) struct SealedIndex {
    kind: PayloadIndexKind,
    bytes: FileBytes,
    path: PathBuf,
    entries: usize,
    residual: RoaringBitmap,
}

impl std::fmt::Debug for SealedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedIndex")
            .field("kind", &self.kind)
            .field("entries", &self.entries)
            .finish()
    }
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

impl SealedIndex {
    pub(crate) fn open(
        dir: &dyn Directory,
        path: &Path,
        kind: PayloadIndexKind,
        n_points: u32,
    ) -> Result<Self> {
        let (bytes, header) = open_file(dir, path, magic(kind))?;
        let shown = dir.describe(path);
        let [points, entries, residual_len] = header.params;
        if points != u64::from(n_points) {
            return Err(Error::corrupted(
                &shown,
                32,
                format!("index covers {points} points, the segment has {n_points}"),
            ));
        }
        let entry = match kind {
            PayloadIndexKind::Keyword | PayloadIndexKind::Bool => KEY_ENTRY,
            _ => PAIR,
        };
        let fixed = entries
            .checked_mul(entry as u64)
            .and_then(|t| t.checked_add(residual_len))
            .filter(|&t| t <= header.body_len)
            .ok_or_else(|| {
                Error::corrupted(
                    &shown,
                    40,
                    format!("{entries} entries do not fit in the file"),
                )
            })?;
        let res_start = HEADER_LEN + (fixed - residual_len) as usize;
        let residual =
            RoaringBitmap::deserialize_from(&bytes[res_start..res_start + residual_len as usize])
                .map_err(|e| {
                Error::corrupted(
                    &shown,
                    res_start as u64,
                    format!("bad residual bitmap: {e}"),
                )
            })?;
        Ok(SealedIndex {
            kind,
            bytes,
            path: shown,
            entries: entries as usize,
            residual,
        })
    }

    pub(crate) fn kind(&self) -> PayloadIndexKind {
        self.kind
    }

    /// Bytes of the index file.
    pub(crate) fn file_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes of the index file resident in memory.
    pub(crate) fn resident_bytes(&self) -> u64 {
        self.bytes.resident_bytes()
    }

    fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    fn slice(&self, off: u64, len: u64) -> Result<&[u8]> {
        let body = self.body();
        off.checked_add(len)
            .filter(|&end| end <= body.len() as u64)
            .map(|end| &body[off as usize..end as usize])
            .ok_or_else(|| {
                Error::corrupted(
                    &self.path,
                    HEADER_LEN as u64 + off,
                    "index entry out of bounds",
                )
            })
    }

    fn key(&self, i: usize) -> Result<&[u8]> {
        let b = self.body();
        self.slice(u64_at(b, i * KEY_ENTRY), u64_at(b, i * KEY_ENTRY + 8))
    }

    fn postings(&self, key: &str) -> Result<Option<RoaringBitmap>> {
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid)?.cmp(key.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let b = self.body();
                    let raw = self.slice(
                        u64_at(b, mid * KEY_ENTRY + 16),
                        u64_at(b, mid * KEY_ENTRY + 24),
                    )?;
                    return RoaringBitmap::deserialize_from(raw).map(Some).map_err(|e| {
                        Error::corrupted(
                            &self.path,
                            HEADER_LEN as u64,
                            format!("bad postings of {key:?}: {e}"),
                        )
                    });
                }
            }
        }
        Ok(None)
    }

    fn pair(&self, i: usize) -> (u64, u32) {
        let b = self.body();
        let v = u64_at(b, i * PAIR);
        let o = u32::from_le_bytes(b[i * PAIR + 8..i * PAIR + 12].try_into().expect("4 bytes"));
        (v, o)
    }

    fn as_f64(&self, bits: u64) -> f64 {
        match self.kind {
            PayloadIndexKind::Integer => bits as i64 as f64,
            _ => f64::from_bits(bits),
        }
    }

    /// First pair index whose value does not satisfy `below` (values are sorted).
    fn partition(&self, below: impl Fn(f64) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if below(self.as_f64(self.pair(mid).0)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Answers a query. The caller has checked that the query suits the index kind.
    pub(crate) fn query(&self, q: &IndexQuery<'_>) -> Result<IndexAnswer> {
        let mut ans = IndexAnswer::default();
        match (self.kind, q) {
            (PayloadIndexKind::Keyword, IndexQuery::Keywords(keys)) => {
                for k in keys.iter() {
                    if let Some(bm) = self.postings(k)? {
                        ans.matched |= bm;
                    }
                }
            }
            (PayloadIndexKind::Bool, IndexQuery::Bool(b)) => {
                if let Some(bm) = self.postings(if *b { "true" } else { "false" })? {
                    ans.matched = bm;
                }
            }
            (PayloadIndexKind::Integer, IndexQuery::Integers(values)) => {
                for &v in values.iter() {
                    let start = {
                        let (mut lo, mut hi) = (0, self.entries);
                        while lo < hi {
                            let mid = (lo + hi) / 2;
                            if (self.pair(mid).0 as i64) < v {
                                lo = mid + 1;
                            } else {
                                hi = mid;
                            }
                        }
                        lo
                    };
                    for i in start..self.entries {
                        let (bits, o) = self.pair(i);
                        if bits as i64 != v {
                            break;
                        }
                        ans.matched.insert(o);
                    }
                }
            }
            (PayloadIndexKind::Integer | PayloadIndexKind::Float, IndexQuery::Range(r)) => {
                // Values are compared as f64 exactly as the per-point check does.
                let start = self.partition(|v| !r.lower_ok(v));
                let end = self.partition(|v| r.upper_ok(v));
                let mut offsets: Vec<u32> =
                    (start..end.max(start)).map(|i| self.pair(i).1).collect();
                offsets.sort_unstable();
                ans.matched = RoaringBitmap::from_sorted_iter(
                    offsets
                        .into_iter()
                        .scan(None, |last, o| {
                            let keep = *last != Some(o);
                            *last = Some(o);
                            Some((keep, o))
                        })
                        .filter(|(k, _)| *k)
                        .map(|(_, o)| o),
                )
                .expect("sorted and deduplicated");
                ans.unsure = self.residual.clone();
            }
            _ => {
                return Err(Error::InvalidFilter(format!(
                    "a {} index cannot answer {q:?}",
                    self.kind.name()
                )));
            }
        }
        Ok(ans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::MemoryDirectory;
    use serde_json::json;

    fn build(kind: PayloadIndexKind, docs: &[Value]) -> SealedIndex {
        let dir = MemoryDirectory::new();
        let mut b = IndexBuilder::new(kind, JsonPath::parse("f").unwrap());
        for (i, d) in docs.iter().enumerate() {
            b.add(i as u32, d.as_object().unwrap());
        }
        b.write(&dir, Path::new("i"), docs.len() as u32).unwrap();
        SealedIndex::open(&dir, Path::new("i"), kind, docs.len() as u32).unwrap()
    }

    fn ids(bm: &RoaringBitmap) -> Vec<u32> {
        bm.iter().collect()
    }

    #[test]
    fn keyword_index_answers_matches() {
        let idx = build(
            PayloadIndexKind::Keyword,
            &[
                json!({"f": "a"}),
                json!({"f": ["b", "a"]}),
                json!({"f": 3}),
                json!({}),
                json!({"f": "c"}),
            ],
        );
        let q = ["a".to_owned(), "c".to_owned()];
        assert_eq!(
            ids(&idx.query(&IndexQuery::Keywords(&q)).unwrap().matched),
            vec![0, 1, 4]
        );
        let q = ["zzz".to_owned()];
        assert!(
            idx.query(&IndexQuery::Keywords(&q))
                .unwrap()
                .matched
                .is_empty()
        );
        assert!(idx.query(&IndexQuery::Bool(true)).is_err());
    }

    #[test]
    fn numeric_indexes_answer_ranges_exactly() {
        let docs = [
            json!({"f": 1}),
            json!({"f": [5, 10]}),
            json!({"f": 2.5}),
            json!({"f": -3}),
            json!({"f": "x"}),
        ];
        let int = build(PayloadIndexKind::Integer, &docs);
        let r = Range {
            gte: Some(1.5),
            lt: Some(6.0),
            ..Range::default()
        };
        let a = int.query(&IndexQuery::Range(&r)).unwrap();
        assert_eq!(ids(&a.matched), vec![1]);
        assert_eq!(
            ids(&a.unsure),
            vec![2, 4],
            "the float and the string need a check"
        );
        assert_eq!(
            ids(&int.query(&IndexQuery::Integers(&[-3, 10])).unwrap().matched),
            vec![1, 3]
        );

        let float = build(PayloadIndexKind::Float, &docs);
        let a = float.query(&IndexQuery::Range(&r)).unwrap();
        assert_eq!(ids(&a.matched), vec![1, 2]);
        let r = Range {
            gt: Some(10.0),
            ..Range::default()
        };
        assert!(
            float
                .query(&IndexQuery::Range(&r))
                .unwrap()
                .matched
                .is_empty()
        );
    }

    #[test]
    fn corrupt_index_is_an_error() {
        let dir = MemoryDirectory::new();
        let mut b = IndexBuilder::new(PayloadIndexKind::Keyword, JsonPath::parse("f").unwrap());
        b.add(0, json!({"f": "a"}).as_object().unwrap());
        b.write(&dir, Path::new("i"), 1).unwrap();
        assert!(SealedIndex::open(&dir, Path::new("i"), PayloadIndexKind::Keyword, 2).is_err());
        assert!(SealedIndex::open(&dir, Path::new("i"), PayloadIndexKind::Integer, 1).is_err());
    }
}
