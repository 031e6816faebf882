//! Rerankers: one trait; Cohere's `/v2/rerank`.

use serde_json::{Value, json};

use crate::client::HttpClient;
use crate::error::Result;

/// Orders candidate passages by relevance to a query.
pub trait Reranker: Send + Sync + std::fmt::Debug {
    /// Model name (for the audit trail).
    fn model(&self) -> String;
    /// Where it runs.
    fn endpoint(&self) -> String;
    /// `(index into documents, relevance)` for the `top_n` most relevant, best first.
    fn rerank(&self, query: &str, documents: &[String], top_n: usize) -> Result<Vec<(usize, f32)>>;
}

/// Cohere Rerank (`POST /v2/rerank`, e.g. `rerank-v3.5`).
#[derive(Clone, Debug)]
pub struct CohereReranker {
    client: HttpClient,
    model: String,
}

impl CohereReranker {
    /// `model` at `https://api.cohere.com` with `api_key`.
    pub fn new(api_key: &str, model: impl Into<String>) -> CohereReranker {
        CohereReranker {
            client: HttpClient::new("cohere rerank", "https://api.cohere.com").bearer(api_key),
            model: model.into(),
        }
    }

    /// Another base URL or client settings.
    pub fn with_client(mut self, client: HttpClient) -> CohereReranker {
        self.client = client;
        self
    }
}

impl Reranker for CohereReranker {
    fn model(&self) -> String {
        self.model.clone()
    }
    fn endpoint(&self) -> String {
        self.client.url("/v2/rerank")
    }
    fn rerank(&self, query: &str, documents: &[String], top_n: usize) -> Result<Vec<(usize, f32)>> {
        let path = "/v2/rerank";
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let answer = self.client.post_json(
            path,
            &json!({"model": self.model, "query": query, "documents": documents, "top_n": top_n.min(documents.len())}),
        )?;
        let results = answer
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| self.client.bad_answer(path, "no `results` list"))?;
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            let index = r.get("index").and_then(Value::as_u64).map(|i| i as usize);
            let score = r.get("relevance_score").and_then(Value::as_f64);
            match (index, score) {
                (Some(i), Some(s)) if i < documents.len() => out.push((i, s as f32)),
                _ => return Err(self.client.bad_answer(path, format!("bad result {r}"))),
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(out)
    }
}
