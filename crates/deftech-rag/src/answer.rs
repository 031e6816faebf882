//! What an ask returns: the answer, its citations, what was retrieved, and where the time went.

use std::time::Duration;

use serde::Serialize;

use crate::access::Label;

/// A chunk that retrieval returned.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Retrieved {
    /// The chunk's point id.
    pub chunk: String,
    /// Its document's id.
    pub document: String,
    /// The document version (content hash) the chunk belongs to.
    pub version: String,
    /// Document title.
    pub title: String,
    /// Section path or page.
    pub location: String,
    /// Fused (or reranked) score.
    pub score: f32,
    /// Cosine similarity, when the dense search found it.
    pub dense_score: Option<f32>,
    /// Rank in the dense list (from 1).
    pub dense_rank: Option<usize>,
    /// Rank in the keyword list (from 1).
    pub keyword_rank: Option<usize>,
    /// Classification label.
    pub label: Label,
    /// The chunk's text.
    #[serde(skip)]
    pub text: String,
}

/// One citation of an answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Citation {
    /// The cited chunk's point id.
    pub chunk: String,
    /// Its document's id.
    pub document: String,
    /// Document title.
    pub title: String,
    /// Section path or page.
    pub location: String,
    /// The sentence of the chunk that supports the claim.
    pub quote: String,
    /// The chunk's number among the passages given to the generator (from 1; what `[n]`
    /// markers in the answer refer to).
    pub number: usize,
    /// Byte range of the claim in the answer text.
    pub span: (usize, usize),
    /// The chunk's retrieval score.
    pub score: f32,
    /// The chunk's label.
    pub label: Label,
}

/// Where the time went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Embedding the question.
    #[serde(serialize_with = "ms")]
    pub embed: Duration,
    /// Dense and keyword search and fusion.
    #[serde(serialize_with = "ms")]
    pub retrieve: Duration,
    /// Reranking.
    #[serde(serialize_with = "ms")]
    pub rerank: Duration,
    /// Generation.
    #[serde(serialize_with = "ms")]
    pub generate: Duration,
    /// The whole ask, audit included.
    #[serde(serialize_with = "ms")]
    pub total: Duration,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answer {
    /// The answer text (with `[n]` markers when the generator writes them).
    pub text: String,
    /// What supports it.
    pub citations: Vec<Citation>,
    /// Everything retrieval returned (the user may read all of it).
    pub retrieved: Vec<Retrieved>,
    /// False when nothing relevant was found (the text says so).
    pub found: bool,
    /// Where the time went.
    pub timings: Timings,
    /// The least upper bound of the cited chunks' labels (of the prompt's chunks when the
    /// generator cited nothing; unclassified when nothing was found).
    pub classification: Label,
    /// The generator that wrote it.
    pub model: String,
}
