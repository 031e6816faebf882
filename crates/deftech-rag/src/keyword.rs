//! Keyword retrieval: BM25 over the chunks' text with tantivy, in-process, in its own folder
//! next to the vector collection.
//!
//! The clearance rule is part of the query, never a post-filter: every chunk is indexed with
//! its label as terms (`level`, each compartment, each releasability group or a "none" marker)
//! and a search for a user is
//!
//! ```text
//! text query  AND  level ∈ {0..=clearance}  AND  groups ∈ user's groups ∪ {none}
//!             AND NOT compartments ∈ (every indexed compartment − the user's)
//! ```
//!
//! The label clauses score nothing (constant 0), so ranking is pure BM25.

use std::collections::BTreeSet;
use std::path::Path;

use parking_lot::Mutex;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value as _,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::access::{Label, User};
use crate::error::{Error, Result};

/// The groups term of a chunk releasable to every cleared reader.
const NO_GROUPS: &str = "\u{0}none";

#[derive(Clone, Copy, Debug)]
struct Fields {
    id: Field,
    doc_id: Field,
    doc_hash: Field,
    text: Field,
    level: Field,
    compartments: Field,
    groups: Field,
}

/// One chunk as the keyword index stores it.
#[derive(Clone, Debug)]
pub struct KeywordChunk<'a> {
    /// The chunk's point id in the vector collection (its text form).
    pub id: String,
    /// The chunk's text.
    pub text: &'a str,
}

/// The BM25 index of chunk texts.
pub struct KeywordIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

impl std::fmt::Debug for KeywordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeywordIndex").finish_non_exhaustive()
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        doc_id: b.add_text_field("doc_id", STRING),
        doc_hash: b.add_text_field("doc_hash", STRING),
        text: b.add_text_field("text", text_options),
        level: b.add_text_field("level", STRING),
        compartments: b.add_text_field("compartments", STRING),
        groups: b.add_text_field("groups", STRING),
    };
    (b.build(), fields)
}

impl KeywordIndex {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &Path) -> Result<KeywordIndex> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let (schema, fields) = schema();
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| Error::Keyword(format!("{}: {e}", dir.display())))?;
        let index = Index::open_or_create(directory, schema)?;
        Self::with_index(index, fields)
    }

    /// An index held in memory (tests).
    pub fn in_memory() -> Result<KeywordIndex> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<KeywordIndex> {
        // One indexing thread and a small arena: chunks arrive a document at a time.
        let writer = index.writer_with_num_threads(1, 32 << 20)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(KeywordIndex {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
        })
    }

    fn count(&self, query: &dyn Query) -> Result<usize> {
        Ok(self.reader.searcher().search(query, &Count)?)
    }

    fn doc_query(&self, doc_id: &str) -> TermQuery {
        TermQuery::new(
            Term::from_field_text(self.fields.doc_id, doc_id),
            IndexRecordOption::Basic,
        )
    }

    /// True if the index holds exactly version `hash` of the document.
    pub fn is_current(&self, doc_id: &str, hash: &str) -> Result<bool> {
        let all = self.count(&self.doc_query(doc_id))?;
        let version = BooleanQuery::intersection(vec![
            Box::new(self.doc_query(doc_id)),
            Box::new(TermQuery::new(
                Term::from_field_text(self.fields.doc_hash, hash),
                IndexRecordOption::Basic,
            )),
        ]);
        Ok(all > 0 && self.count(&version)? == all)
    }

    /// Replaces the document's chunks with `chunks` (version `hash`, label `label`) in one
    /// commit.
    pub fn put(
        &self,
        doc_id: &str,
        hash: &str,
        label: &Label,
        chunks: &[KeywordChunk<'_>],
    ) -> Result<()> {
        let f = self.fields;
        let mut writer = self.writer.lock();
        writer.delete_term(Term::from_field_text(f.doc_id, doc_id));
        for c in chunks {
            let mut d = TantivyDocument::default();
            d.add_text(f.id, &c.id);
            d.add_text(f.doc_id, doc_id);
            d.add_text(f.doc_hash, hash);
            d.add_text(f.text, c.text);
            d.add_text(f.level, label.level.rank().to_string());
            for c in &label.compartments {
                d.add_text(f.compartments, c);
            }
            if label.groups.is_empty() {
                d.add_text(f.groups, NO_GROUPS);
            }
            for g in &label.groups {
                d.add_text(f.groups, g);
            }
            writer.add_document(d)?;
        }
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Removes the document's chunks.
    pub fn delete_document(&self, doc_id: &str) -> Result<()> {
        let mut writer = self.writer.lock();
        writer.delete_term(Term::from_field_text(self.fields.doc_id, doc_id));
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Every compartment some chunk in `searcher`'s view carries.
    fn compartments(&self, searcher: &tantivy::Searcher) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for segment in searcher.segment_readers() {
            let inverted = segment.inverted_index(self.fields.compartments)?;
            let mut terms = inverted
                .terms()
                .stream()
                .map_err(|e| Error::Keyword(e.to_string()))?;
            while terms.advance() {
                out.insert(String::from_utf8_lossy(terms.key()).into_owned());
            }
        }
        Ok(out)
    }

    /// The clearance rule as a query that matches every chunk `user` may read.
    /// Built from the same `searcher` that runs the search, so a compartment committed in
    /// between cannot be missing from the forbidden list.
    fn clearance(&self, user: &User, searcher: &tantivy::Searcher) -> Result<BooleanQuery> {
        let f = self.fields;
        let levels =
            (0..=user.clearance.rank()).map(|l| Term::from_field_text(f.level, &l.to_string()));
        let groups = user
            .groups
            .iter()
            .map(String::as_str)
            .chain([NO_GROUPS])
            .map(|g| Term::from_field_text(f.groups, g));
        let forbidden: Vec<Term> = self
            .compartments(searcher)?
            .difference(&user.compartments)
            .map(|c| Term::from_field_text(f.compartments, c))
            .collect();
        let zero = |q: Box<dyn Query>| -> Box<dyn Query> { Box::new(ConstScoreQuery::new(q, 0.0)) };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, zero(Box::new(TermSetQuery::new(levels)))),
            (Occur::Must, zero(Box::new(TermSetQuery::new(groups)))),
        ];
        if !forbidden.is_empty() {
            clauses.push((Occur::MustNot, Box::new(TermSetQuery::new(forbidden))));
        }
        Ok(BooleanQuery::new(clauses))
    }

    /// The `k` best BM25 matches for `query` among the chunks `user` may read: `(chunk id,
    /// score)`, best first. Query syntax errors are forgiven (the text is searched as words).
    pub fn search(&self, user: &User, query: &str, k: usize) -> Result<Vec<(String, f32)>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        // Words are OR-ed (BM25 ranks documents matching more of them higher).
        let parser = QueryParser::for_index(&self.index, vec![self.fields.text]);
        let (text, _errors) = parser.parse_query_lenient(query);
        let searcher = self.reader.searcher();
        let q = BooleanQuery::new(vec![
            (Occur::Must, text),
            (Occur::Must, Box::new(self.clearance(user, &searcher)?)),
        ]);
        let top = searcher.search(&q, &TopDocs::with_limit(k))?;
        let mut out = Vec::with_capacity(top.len());
        for (score, address) in top {
            let d: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = d.get_first(self.fields.id).and_then(|v| v.as_str()) {
                out.push((id.to_owned(), score));
            }
        }
        Ok(out)
    }

    /// Number of chunks indexed.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Level;

    fn user(level: Level, compartments: &[&str], groups: &[&str]) -> User {
        User {
            id: "u".into(),
            roles: vec![],
            clearance: level,
            compartments: compartments.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn label(level: Level, compartments: &[&str], groups: &[&str]) -> Label {
        Label {
            level,
            compartments: compartments.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn bm25_under_clearance() {
        let k = KeywordIndex::in_memory().unwrap();
        let chunk = |id: &str, text: &'static str| KeywordChunk {
            id: id.into(),
            text,
        };
        k.put(
            "pub",
            "h1",
            &label(Level::Unclassified, &[], &[]),
            &[chunk("1", "the reactor cooling loop uses heavy water")],
        )
        .unwrap();
        k.put(
            "sec",
            "h1",
            &label(Level::Secret, &[], &[]),
            &[chunk("2", "reactor reactor reactor design secrets")],
        )
        .unwrap();
        k.put(
            "si",
            "h1",
            &label(Level::Unclassified, &["SI"], &[]),
            &[chunk("3", "reactor signals intelligence")],
        )
        .unwrap();
        k.put(
            "gbr",
            "h1",
            &label(Level::Unclassified, &[], &["GBR"]),
            &[chunk("4", "reactor releasable to GBR only")],
        )
        .unwrap();
        let ids = |u: &User| -> Vec<String> {
            let mut v: Vec<String> = k
                .search(u, "reactors", 10)
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            v.sort();
            v
        };
        // Stemming: "reactors" finds "reactor".
        assert_eq!(ids(&user(Level::Cui, &[], &[])), ["1"]);
        assert_eq!(ids(&user(Level::Secret, &[], &["USA"])), ["1", "2"]);
        assert_eq!(
            ids(&user(Level::Secret, &["SI"], &["GBR"])),
            ["1", "2", "3", "4"]
        );
        let top = k
            .search(&user(Level::Secret, &[], &[]), "reactor", 10)
            .unwrap();
        assert_eq!(top[0].0, "2", "term frequency ranks first: {top:?}");
        // Syntax errors are forgiven.
        assert!(
            !k.search(&user(Level::Secret, &[], &[]), "reactor AND (\"", 10)
                .unwrap()
                .is_empty()
        );

        assert!(k.is_current("pub", "h1").unwrap());
        assert!(!k.is_current("pub", "h2").unwrap());
        k.put(
            "pub",
            "h2",
            &label(Level::Unclassified, &[], &[]),
            &[chunk("5", "new text")],
        )
        .unwrap();
        assert!(k.is_current("pub", "h2").unwrap());
        assert_eq!(ids(&user(Level::Cui, &[], &[])), Vec::<String>::new());
        k.delete_document("pub").unwrap();
        assert!(!k.is_current("pub", "h2").unwrap());
        assert_eq!(k.len(), 3);
    }
}
