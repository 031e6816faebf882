//! Embedders: one trait, four backends.
//!
//! - [`CohereEmbedder`]: Cohere's `/v2/embed` (Embed v3 models), `input_type`
//!   `search_document` / `search_query`, at most 96 texts a call, float or int8 embeddings;
//! - [`OpenAiEmbedder`]: OpenAI-compatible `/v1/embeddings` (vLLM, TGI, llama.cpp, OpenAI);
//! - [`sagemaker`]: the Cohere models on an AWS SageMaker endpoint (both body shapes);
//! - [`LocalEmbedder`] (feature `local`, on by default): all-MiniLM-L6-v2 in-process with
//!   candle, offline;
//! - [`HashEmbedder`]: hashed word counts, a deterministic lexical stand-in for tests.
//!
//! [`embed_all`] splits work into the backend's batch size and checks every answer's count and
//! dimension, so a misconfigured endpoint fails loudly instead of storing garbage.

use serde_json::{Value, json};

use crate::client::HttpClient;
use crate::error::{Error, Result};

/// What a text is embedded for (asymmetric models embed queries and documents differently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A chunk being stored.
    Document,
    /// A question being searched.
    Query,
}

impl InputKind {
    /// Cohere's `input_type`.
    pub fn cohere(self) -> &'static str {
        match self {
            InputKind::Document => "search_document",
            InputKind::Query => "search_query",
        }
    }
}

/// A text embedding model.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// Model name (for the audit trail).
    fn model(&self) -> String;
    /// Where it runs: a URL, an endpoint name, or "local".
    fn endpoint(&self) -> String;
    /// Dimension of its vectors.
    fn dim(&self) -> usize;
    /// Most texts per call.
    fn max_batch(&self) -> usize;
    /// Embeds at most [`max_batch`](Embedder::max_batch) texts, one vector per text, in order.
    fn embed_batch(&self, texts: &[String], kind: InputKind) -> Result<Vec<Vec<f32>>>;
}

/// Embeds any number of texts in batches, checking every vector's count and dimension.
/// Batches group texts of similar length (a local model pads a batch to its longest text), and
/// the vectors come back in the order of `texts`.
pub fn embed_all(
    embedder: &dyn Embedder,
    texts: &[String],
    kind: InputKind,
) -> Result<Vec<Vec<f32>>> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut out = vec![Vec::new(); texts.len()];
    for batch in order.chunks(embedder.max_batch().max(1)) {
        let batch_texts: Vec<String> = batch.iter().map(|&i| texts[i].clone()).collect();
        let vectors = embedder.embed_batch(&batch_texts, kind)?;
        if vectors.len() != batch.len() {
            return Err(Error::Backend {
                backend: embedder.model(),
                endpoint: embedder.endpoint(),
                reason: format!("{} embeddings for {} texts", vectors.len(), batch.len()),
            });
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != embedder.dim()) {
            return Err(Error::Dimension {
                backend: format!("{} at {}", embedder.model(), embedder.endpoint()),
                expected: embedder.dim(),
                got: v.len(),
            });
        }
        for (&i, v) in batch.iter().zip(vectors) {
            out[i] = v;
        }
    }
    Ok(out)
}

/// Reads a JSON array of numbers as a vector (floats or int8 values).
pub(crate) fn vector_of(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

/// Reads the embeddings of a Cohere answer, in any of its documented shapes: v2 and SageMaker
/// v2 `{"embeddings": {"float": [[…]]}}` (or `"int8"`), v1 `{"embeddings": [[…]]}`.
pub fn cohere_embeddings(answer: &Value) -> Option<Vec<Vec<f32>>> {
    let e = answer.get("embeddings")?;
    let list = match e {
        Value::Array(_) => e,
        Value::Object(by_type) => ["float", "int8", "uint8"]
            .iter()
            .find_map(|t| by_type.get(*t))?,
        _ => return None,
    };
    list.as_array()?.iter().map(vector_of).collect()
}

/// Cohere Embed through Cohere's API (`POST /v2/embed`).
#[derive(Clone, Debug)]
pub struct CohereEmbedder {
    client: HttpClient,
    model: String,
    dim: usize,
    int8: bool,
}

impl CohereEmbedder {
    /// `model` (e.g. `embed-english-v3.0`, 1024-d) at `https://api.cohere.com` with `api_key`.
    pub fn new(api_key: &str, model: impl Into<String>, dim: usize) -> CohereEmbedder {
        CohereEmbedder {
            client: HttpClient::new("cohere embed", "https://api.cohere.com").bearer(api_key),
            model: model.into(),
            dim,
            int8: false,
        }
    }

    /// Another base URL (a proxy, a private endpoint, a test server).
    pub fn with_client(mut self, client: HttpClient) -> CohereEmbedder {
        self.client = client;
        self
    }

    /// Requests int8 embeddings (4× smaller on the wire; stored as floats).
    pub fn int8(mut self, yes: bool) -> CohereEmbedder {
        self.int8 = yes;
        self
    }

    /// The request body for `texts` (Cohere's documented shape).
    pub fn body(&self, texts: &[String], kind: InputKind) -> Value {
        json!({
            "model": self.model,
            "texts": texts,
            "input_type": kind.cohere(),
            "embedding_types": [if self.int8 { "int8" } else { "float" }],
            "truncate": "END",
        })
    }
}

impl Embedder for CohereEmbedder {
    fn model(&self) -> String {
        self.model.clone()
    }
    fn endpoint(&self) -> String {
        self.client.url("/v2/embed")
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn max_batch(&self) -> usize {
        96
    }
    fn embed_batch(&self, texts: &[String], kind: InputKind) -> Result<Vec<Vec<f32>>> {
        let answer = self
            .client
            .post_json("/v2/embed", &self.body(texts, kind))?;
        cohere_embeddings(&answer).ok_or_else(|| {
            self.client
                .bad_answer("/v2/embed", "no `embeddings` list of number arrays")
        })
    }
}

/// An OpenAI-compatible embeddings endpoint (`POST /v1/embeddings`).
#[derive(Clone, Debug)]
pub struct OpenAiEmbedder {
    client: HttpClient,
    model: String,
    dim: usize,
    max_batch: usize,
}

impl OpenAiEmbedder {
    /// `model` served at `client`'s base URL (without `/v1`).
    pub fn new(client: HttpClient, model: impl Into<String>, dim: usize) -> OpenAiEmbedder {
        OpenAiEmbedder {
            client,
            model: model.into(),
            dim,
            max_batch: 64,
        }
    }

    /// Most texts per call (servers differ; 64 by default).
    pub fn max_batch(mut self, n: usize) -> OpenAiEmbedder {
        self.max_batch = n.max(1);
        self
    }
}

impl Embedder for OpenAiEmbedder {
    fn model(&self) -> String {
        self.model.clone()
    }
    fn endpoint(&self) -> String {
        self.client.url("/v1/embeddings")
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    fn embed_batch(&self, texts: &[String], _kind: InputKind) -> Result<Vec<Vec<f32>>> {
        let path = "/v1/embeddings";
        let answer = self.client.post_json(
            path,
            &json!({"model": self.model, "input": texts, "encoding_format": "float"}),
        )?;
        let data = answer
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| self.client.bad_answer(path, "no `data` list"))?;
        // Answers carry an index; servers may return them out of order.
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for (i, item) in data.iter().enumerate() {
            let index = item
                .get("index")
                .and_then(Value::as_u64)
                .map_or(i, |x| x as usize);
            let v = item
                .get("embedding")
                .and_then(vector_of)
                .ok_or_else(|| self.client.bad_answer(path, "an item has no `embedding`"))?;
            match out.get_mut(index) {
                Some(slot) => *slot = Some(v),
                None => return Err(self.client.bad_answer(path, format!("index {index}"))),
            }
        }
        out.into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.client.bad_answer(path, "an input has no embedding"))
    }
}

/// Hashed word counts (signed feature hashing of lower-cased words, L2-normalized): no model,
/// deterministic, lexical only. For tests and as a smoke-test default, not for production.
#[derive(Clone, Copy, Debug)]
pub struct HashEmbedder {
    dim: usize,
}

impl HashEmbedder {
    /// Vectors of `dim` dimensions.
    pub fn new(dim: usize) -> HashEmbedder {
        HashEmbedder { dim: dim.max(1) }
    }

    /// One text's vector.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            // FNV-1a over the lower-cased word.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in word.to_lowercase().bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            v[(h % self.dim as u64) as usize] += sign;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            v[0] = 1.0;
        }
        v
    }
}

impl Embedder for HashEmbedder {
    fn model(&self) -> String {
        format!("hash-{}", self.dim)
    }
    fn endpoint(&self) -> String {
        "local".into()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn max_batch(&self) -> usize {
        1024
    }
    fn embed_batch(&self, texts: &[String], _kind: InputKind) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

#[cfg(feature = "local")]
pub use local::LocalEmbedder;

#[cfg(feature = "local")]
mod local {
    use std::path::{Path, PathBuf};

    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    use candle_transformers::models::bert::{BertModel, Config};
    use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

    use super::{Embedder, InputKind};
    use crate::error::{Error, Result};

    /// all-MiniLM-L6-v2 (or another BERT sentence encoder with mean pooling) run in-process
    /// with candle on the CPU: 384-d, normalized, sentence-transformers' numbers.
    pub struct LocalEmbedder {
        dir: PathBuf,
        model: BertModel,
        tokenizer: Tokenizer,
        dim: usize,
    }

    impl std::fmt::Debug for LocalEmbedder {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("LocalEmbedder")
                .field("dir", &self.dir)
                .field("dim", &self.dim)
                .finish_non_exhaustive()
        }
    }

    fn model_error(dir: &Path, e: impl std::fmt::Display) -> Error {
        Error::Backend {
            backend: "local embedder".into(),
            endpoint: dir.display().to_string(),
            reason: e.to_string(),
        }
    }

    impl LocalEmbedder {
        /// Loads `config.json`, `tokenizer.json` and `model.safetensors` (mmapped) from `dir`.
        pub fn open(dir: impl Into<PathBuf>) -> Result<LocalEmbedder> {
            let dir = dir.into();
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name)).map_err(|source| Error::Io {
                    path: dir.join(name),
                    source,
                })
            };
            let config: Config =
                serde_json::from_str(&read("config.json")?).map_err(|e| model_error(&dir, e))?;
            let config_json: serde_json::Value =
                serde_json::from_str(&read("config.json")?).map_err(|e| model_error(&dir, e))?;
            let dim = config_json["hidden_size"]
                .as_u64()
                .ok_or_else(|| model_error(&dir, "config.json has no hidden_size"))?
                as usize;
            let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
                .map_err(|e| model_error(&dir, e))?;
            tokenizer.with_padding(Some(PaddingParams::default()));
            tokenizer
                .with_truncation(Some(TruncationParams {
                    max_length: 256,
                    ..Default::default()
                }))
                .map_err(|e| model_error(&dir, e))?;
            let weights = dir.join("model.safetensors");
            if !weights.exists() {
                return Err(Error::Io {
                    path: weights,
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
            // SAFETY: the weights file is mapped read-only and must not change while the model
            // lives; it sits in the model cache, written once by the set-up script.
            let vb = unsafe {
                VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)
                    .map_err(|e| model_error(&dir, e))?
            };
            let model = BertModel::load(vb, &config).map_err(|e| model_error(&dir, e))?;
            Ok(LocalEmbedder {
                dir,
                model,
                tokenizer,
                dim,
            })
        }

        fn run(&self, texts: &[String]) -> candle_core::Result<Vec<Vec<f32>>> {
            let encodings = self
                .tokenizer
                .encode_batch(texts.to_vec(), true)
                .map_err(candle_core::Error::msg)?;
            let device = Device::Cpu;
            let ids = encodings
                .iter()
                .map(|e| Tensor::new(e.get_ids(), &device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let masks = encodings
                .iter()
                .map(|e| Tensor::new(e.get_attention_mask(), &device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let ids = Tensor::stack(&ids, 0)?;
            let mask = Tensor::stack(&masks, 0)?;
            let types = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?;
            // Mean over the real tokens, then L2-normalize (sentence-transformers' pooling).
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
            let mean = sum.broadcast_div(&mask.sum(1)?)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        }
    }

    impl Embedder for LocalEmbedder {
        fn model(&self) -> String {
            self.dir
                .file_name()
                .map_or_else(|| "local".into(), |n| n.to_string_lossy().into_owned())
        }
        fn endpoint(&self) -> String {
            "local".into()
        }
        fn dim(&self) -> usize {
            self.dim
        }
        fn max_batch(&self) -> usize {
            32
        }
        fn embed_batch(&self, texts: &[String], _kind: InputKind) -> Result<Vec<Vec<f32>>> {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            self.run(texts).map_err(|e| model_error(&self.dir, e))
        }
    }
}
