//! Chunks in `deftech-vec`: one point per chunk, its payload carrying the document, the chunk's
//! text and location, and the classification label (under `acl`, see [`crate::access`]).
//!
//! Re-ingesting is idempotent: a document whose content hash is already stored is left alone
//! (and need not be embedded again); a changed one has its new chunks written first and the old
//! ones deleted after, so a reader never finds the document missing.

use deftech_vec::{
    Collection, CollectionConfig, Condition, Database, Filter, Metric, PayloadIndexKind, Point,
    PointId, SearchRequest,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::access::{self, Label, User};
use crate::chunk::Chunk;

/// What a document is, apart from its text.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentMeta {
    /// Stable identifier (a path, a URL, a catalogue number).
    pub id: String,
    /// Title, for citations.
    pub title: String,
    /// Where it came from.
    pub source: String,
    /// Classification label, copied onto every chunk.
    pub label: Label,
}

/// What storing a document did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// New document.
    Added,
    /// Its content changed: the old chunks were replaced.
    Replaced,
}

/// A retrieved chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// Point id of the chunk.
    pub id: PointId,
    /// Similarity score.
    pub score: f32,
    /// The stored payload (document, text, location, label).
    pub payload: Value,
}

/// SHA-256 of a document's content (hex), the version stored with its chunks.
pub fn content_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The chunk collection.
#[derive(Clone, Debug)]
pub struct ChunkStore {
    collection: Collection,
}

fn doc_filter(doc_id: &str) -> Filter {
    Filter::must([Condition::matches("doc_id", doc_id)])
}

/// The chunks of one version of a document.
fn version_filter(doc_id: &str, hash: &str) -> Filter {
    doc_filter(doc_id).with_must([Condition::matches("doc_hash", hash)])
}

/// The chunks of every other version of a document.
fn stale_filter(doc_id: &str, hash: &str) -> Filter {
    doc_filter(doc_id).with_must_not([Condition::matches("doc_hash", hash)])
}

/// A chunk's point id: a UUID from the document id, its content hash and the chunk index, so
/// that re-writing the same version is idempotent and versions never collide.
pub fn chunk_id(doc_id: &str, hash: &str, index: usize) -> PointId {
    let d = Sha256::new()
        .chain_update(doc_id)
        .chain_update([0])
        .chain_update(hash)
        .chain_update(index.to_le_bytes())
        .finalize();
    let bytes: [u8; 16] = d[..16].try_into().expect("16 bytes");
    PointId::from(uuid::Uuid::from_bytes(bytes))
}

impl ChunkStore {
    /// Opens (or creates) the collection `name` for `dim`-dimensional cosine embeddings, with
    /// the payload indexes the access filter and document lookups use.
    pub fn open(db: &Database, name: &str, dim: usize) -> deftech_vec::Result<ChunkStore> {
        let collection = match db.collection(name) {
            Ok(c) => c,
            Err(deftech_vec::Error::CollectionNotFound(_)) => {
                db.create_collection(name, CollectionConfig::new(dim, Metric::Cosine))?
            }
            Err(e) => return Err(e),
        };
        for (field, kind) in [
            ("doc_id", PayloadIndexKind::Keyword),
            ("doc_hash", PayloadIndexKind::Keyword),
            ("acl.level", PayloadIndexKind::Integer),
            ("acl.compartments", PayloadIndexKind::Keyword),
            ("acl.groups", PayloadIndexKind::Keyword),
        ] {
            collection.create_payload_index(field, kind)?;
        }
        Ok(ChunkStore { collection })
    }

    /// True if exactly this version (`hash`) of the document is stored: ingest can skip
    /// chunking and embedding it.
    pub fn is_current(&self, doc_id: &str, hash: &str) -> deftech_vec::Result<bool> {
        Ok(
            self.collection.count(Some(&version_filter(doc_id, hash)))? > 0
                && self.collection.count(Some(&stale_filter(doc_id, hash)))? == 0,
        )
    }

    /// Stores a document's chunks with their embeddings (one vector per chunk, in order).
    /// Returns `None` when this version (`hash`) is already stored: nothing is written.
    pub fn put(
        &self,
        doc: &DocumentMeta,
        hash: &str,
        chunks: &[Chunk],
        vectors: Vec<Vec<f32>>,
    ) -> deftech_vec::Result<Option<Stored>> {
        if vectors.len() != chunks.len() {
            return Err(deftech_vec::Error::InvalidArgument {
                field: "vectors",
                reason: format!(
                    "{} embeddings for {} chunks of {}",
                    vectors.len(),
                    chunks.len(),
                    doc.id
                ),
            });
        }
        // A version's chunks are written in one upsert (one WAL record): any of them present
        // means all are.
        let stale = stale_filter(&doc.id, hash);
        let had_other = self.collection.count(Some(&stale))? > 0;
        if self
            .collection
            .count(Some(&version_filter(&doc.id, hash)))?
            > 0
        {
            // Chunks of another version left by a replace that was cut short go now.
            if had_other {
                self.collection.delete_by_filter(&stale)?;
            }
            return Ok(None);
        }
        let acl = doc.label.to_payload();
        let points = chunks.iter().zip(vectors).map(|(c, v)| {
            Point::new(chunk_id(&doc.id, hash, c.index), v).with_payload(json!({
                "doc_id": doc.id,
                "doc_hash": hash,
                "title": doc.title,
                "source": doc.source,
                "chunk": c.index,
                "text": c.text,
                "section": c.section,
                "location": c.location(),
                "start": c.start,
                "end": c.end,
                "acl": acl,
            }))
        });
        self.collection.upsert(points.collect::<Vec<_>>())?;
        if had_other {
            // The new version is in; now the old chunks go.
            self.collection.delete_by_filter(&stale)?;
        }
        Ok(Some(if had_other {
            Stored::Replaced
        } else {
            Stored::Added
        }))
    }

    /// The label of a stored document (of one of its chunks: all carry the same label), `None`
    /// when it is not stored. A chunk whose label cannot be read counts as readable by no one.
    pub fn label_of(&self, doc_id: &str) -> deftech_vec::Result<Option<Label>> {
        let page = self.collection.scroll(
            &deftech_vec::ScrollRequest::new(1)
                .filter(doc_filter(doc_id))
                .with_payload(true),
        )?;
        Ok(page.points.first().map(|p| {
            p.payload
                .as_ref()
                .and_then(|pl| pl.get("acl"))
                .and_then(Label::from_payload)
                .unwrap_or_else(|| Label {
                    level: access::Level::TopSecret,
                    compartments: [access::RELEASABLE_TO_NONE.to_owned()].into(),
                    groups: [access::RELEASABLE_TO_NONE.to_owned()].into(),
                })
        }))
    }

    /// Deletes every chunk of a document; returns whether it was stored.
    pub fn delete_document(&self, doc_id: &str) -> deftech_vec::Result<bool> {
        let present = self.collection.count(Some(&doc_filter(doc_id)))? > 0;
        if present {
            self.collection.delete_by_filter(&doc_filter(doc_id))?;
        }
        Ok(present)
    }

    /// The `k` chunks nearest to `vector` that `user` may read (the clearance is a filter inside
    /// the search).
    pub fn search(&self, user: &User, vector: Vec<f32>, k: usize) -> deftech_vec::Result<Vec<Hit>> {
        let hits = self.collection.search(
            &SearchRequest::new(vector, k)
                .filter(access::filter(user))
                .with_payload(true),
        )?;
        Ok(hits
            .into_iter()
            .map(|h| Hit {
                id: h.id,
                score: h.score,
                payload: h.payload.map(Value::Object).unwrap_or_default(),
            })
            .collect())
    }

    /// The underlying collection.
    pub fn collection(&self) -> &Collection {
        &self.collection
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Level;
    use crate::chunk::{ChunkConfig, Format, WordCounter, chunk};
    use deftech_vec::ScrollRequest;

    /// A deterministic stand-in for an embedding model: letter frequencies.
    fn embed(text: &str) -> Vec<f32> {
        let mut v = vec![0.01f32; 26];
        for c in text.chars().filter(char::is_ascii_alphabetic) {
            v[(c.to_ascii_lowercase() as u8 - b'a') as usize] += 1.0;
        }
        v
    }

    fn store() -> ChunkStore {
        let db =
            Database::open_in(std::sync::Arc::new(deftech_vec::MemoryDirectory::new())).unwrap();
        ChunkStore::open(&db, "chunks", 26).unwrap()
    }

    fn put(s: &ChunkStore, id: &str, text: &str, level: Level) -> Option<Stored> {
        let doc = DocumentMeta {
            id: id.into(),
            title: id.to_uppercase(),
            source: "test".into(),
            label: Label::new(level),
        };
        let chunks = chunk(
            text,
            Format::Markdown,
            &ChunkConfig {
                max_tokens: 12,
                overlap_tokens: 2,
            },
            &WordCounter,
        );
        let vectors = chunks.iter().map(|c| embed(&c.text)).collect();
        s.put(&doc, &content_hash(text), &chunks, vectors).unwrap()
    }

    fn user(level: Level) -> User {
        User {
            id: "u".into(),
            roles: vec![],
            clearance: level,
            compartments: Default::default(),
            groups: Default::default(),
        }
    }

    #[test]
    fn re_ingest_is_idempotent_and_changes_replace_chunks() {
        let s = store();
        let text = "# Alpha\n\nThe quick brown fox jumps over the lazy dog. It was a bright cold day in April.\n";
        assert_eq!(put(&s, "a", text, Level::Unclassified), Some(Stored::Added));
        let lsn = s.collection().lsn();
        let n = s.collection().count(None).unwrap();
        assert!(n >= 2);
        assert_eq!(put(&s, "a", text, Level::Unclassified), None);
        assert_eq!(
            s.collection().lsn(),
            lsn,
            "an unchanged document writes nothing"
        );
        // A replace cut short left a chunk of another version: the next put of the current
        // version removes it.
        s.collection()
            .upsert([Point::new(7u64, embed("stale"))
                .with_payload(json!({"doc_id": "a", "doc_hash": "old"}))])
            .unwrap();
        assert_eq!(s.collection().count(None).unwrap(), n + 1);
        assert!(!s.is_current("a", &content_hash(text)).unwrap());
        assert_eq!(put(&s, "a", text, Level::Unclassified), None);
        assert_eq!(s.collection().count(None).unwrap(), n);

        assert!(s.is_current("a", &content_hash(text)).unwrap());
        let changed = "# Alpha\n\nA completely different text about zebras.\n";
        assert_eq!(
            put(&s, "a", changed, Level::Unclassified),
            Some(Stored::Replaced)
        );
        let all = s
            .collection()
            .scroll(&ScrollRequest::new(100).with_payload(true))
            .unwrap()
            .points;
        assert!(
            all.iter()
                .all(|p| p.payload.as_ref().unwrap()["doc_hash"] == content_hash(changed).as_str())
        );
        assert!(all.iter().any(|p| {
            p.payload.as_ref().unwrap()["text"]
                .as_str()
                .unwrap()
                .contains("zebras")
        }));

        assert!(s.delete_document("a").unwrap());
        assert!(!s.delete_document("a").unwrap());
        assert_eq!(s.collection().count(None).unwrap(), 0);
    }

    #[test]
    fn search_returns_only_what_the_user_may_read() {
        let s = store();
        put(
            &s,
            "public",
            "Zebras graze on the savanna in large herds.",
            Level::Unclassified,
        );
        put(
            &s,
            "secret",
            "Zebras zigzag: the secret zebra plan.",
            Level::Secret,
        );
        let q = embed("zebra zigzag");
        let low = s.search(&user(Level::Cui), q.clone(), 10).unwrap();
        assert!(!low.is_empty());
        assert!(
            low.iter().all(|h| h.payload["doc_id"] == "public"),
            "{low:?}"
        );
        let high = s.search(&user(Level::TopSecret), q, 10).unwrap();
        assert_eq!(high[0].payload["doc_id"], "secret");
        assert_eq!(high[0].payload["location"], "");
    }

    #[test]
    fn mismatched_embeddings_are_refused() {
        let s = store();
        let doc = DocumentMeta {
            id: "x".into(),
            title: "X".into(),
            source: "t".into(),
            label: Label::new(Level::Cui),
        };
        let chunks = chunk(
            "one. two.",
            Format::Plain,
            &ChunkConfig::default(),
            &WordCounter,
        );
        let err = s.put(&doc, "h", &chunks, vec![]).unwrap_err();
        assert!(err.to_string().contains("0 embeddings"), "{err}");
        assert_eq!(s.collection().count(None).unwrap(), 0);
    }
}
