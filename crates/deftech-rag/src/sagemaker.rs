//! Cohere models on AWS SageMaker endpoints: Embed v3 (both body shapes Cohere documents for
//! SageMaker) and Command R / R+ chat (the v1 shape).
//!
//! The bodies are plain JSON; how they reach the endpoint is an [`Invoker`]: with the feature
//! `sagemaker`, [`AwsInvoker`] calls `InvokeEndpoint` through the AWS SDK (credentials and
//! region from the usual chain); [`HttpInvoker`] posts to a SageMaker-runtime-shaped URL
//! without signing (an authenticating proxy inside the VPC, or a test server).

use serde_json::{Value, json};

use crate::client::HttpClient;
use crate::embed::{Embedder, InputKind, cohere_embeddings};
use crate::error::{Error, Result};
use crate::generate::{Generated, Generator, OnText, Passage, cohere_v1_answer, cohere_v1_body};

/// Sends a JSON body to a named endpoint and returns the JSON answer.
pub trait Invoker: Send + Sync + std::fmt::Debug {
    /// Invokes `endpoint` with `body`.
    fn invoke(&self, endpoint: &str, body: &Value) -> Result<Value>;
    /// Where it sends requests (for the audit trail).
    fn describe(&self, endpoint: &str) -> String;
}

/// POSTs to `{base}/endpoints/{endpoint}/invocations` (the SageMaker runtime path), unsigned.
#[derive(Clone, Debug)]
pub struct HttpInvoker {
    client: HttpClient,
}

impl HttpInvoker {
    /// Through `client` (its base URL replaces the runtime host).
    pub fn new(client: HttpClient) -> HttpInvoker {
        HttpInvoker { client }
    }
}

impl Invoker for HttpInvoker {
    fn invoke(&self, endpoint: &str, body: &Value) -> Result<Value> {
        self.client
            .post_json(&format!("/endpoints/{endpoint}/invocations"), body)
    }
    fn describe(&self, endpoint: &str) -> String {
        self.client
            .url(&format!("/endpoints/{endpoint}/invocations"))
    }
}

/// Which request body an embedding endpoint expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbedShape {
    /// `{"texts", "input_type", "truncate"}`; answers `{"embeddings": [[…]]}`.
    V1,
    /// v1 plus `"embedding_types": ["float"]`; answers `{"embeddings": {"float": [[…]]}}`.
    V2,
}

/// The request body for an embedding call in `shape`.
pub fn embed_body(texts: &[String], kind: InputKind, shape: EmbedShape) -> Value {
    let mut body = json!({"texts": texts, "input_type": kind.cohere(), "truncate": "END"});
    if shape == EmbedShape::V2 {
        body["embedding_types"] = json!(["float"]);
    }
    body
}

/// Cohere Embed on a SageMaker endpoint. Answers in either shape are accepted whatever shape
/// was sent.
#[derive(Debug)]
pub struct SageMakerEmbedder {
    invoker: Box<dyn Invoker>,
    endpoint: String,
    dim: usize,
    shape: EmbedShape,
}

impl SageMakerEmbedder {
    /// `endpoint` (the SageMaker endpoint name) through `invoker`, `dim`-dimensional.
    pub fn new(
        invoker: Box<dyn Invoker>,
        endpoint: impl Into<String>,
        dim: usize,
        shape: EmbedShape,
    ) -> SageMakerEmbedder {
        SageMakerEmbedder {
            invoker,
            endpoint: endpoint.into(),
            dim,
            shape,
        }
    }
}

impl Embedder for SageMakerEmbedder {
    fn model(&self) -> String {
        format!("sagemaker:{}", self.endpoint)
    }
    fn endpoint(&self) -> String {
        self.invoker.describe(&self.endpoint)
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn max_batch(&self) -> usize {
        96
    }
    fn embed_batch(&self, texts: &[String], kind: InputKind) -> Result<Vec<Vec<f32>>> {
        let answer = self
            .invoker
            .invoke(&self.endpoint, &embed_body(texts, kind, self.shape))?;
        cohere_embeddings(&answer).ok_or_else(|| Error::Backend {
            backend: "sagemaker embed".into(),
            endpoint: self.endpoint(),
            reason: "unexpected answer: no `embeddings` list of number arrays".into(),
        })
    }
}

/// Command R / R+ on a SageMaker endpoint (v1 chat shape: `message`, `documents`; answers
/// `text` and `citations` with `document_ids`). Not streamed: the whole text is passed to
/// `on_text` at once.
#[derive(Debug)]
pub struct SageMakerChat {
    invoker: Box<dyn Invoker>,
    endpoint: String,
    max_tokens: u32,
}

impl SageMakerChat {
    /// `endpoint` through `invoker`.
    pub fn new(invoker: Box<dyn Invoker>, endpoint: impl Into<String>) -> SageMakerChat {
        SageMakerChat {
            invoker,
            endpoint: endpoint.into(),
            max_tokens: 1024,
        }
    }
}

impl Generator for SageMakerChat {
    fn model(&self) -> String {
        format!("sagemaker:{}", self.endpoint)
    }
    fn endpoint(&self) -> String {
        self.invoker.describe(&self.endpoint)
    }
    fn generate(
        &self,
        question: &str,
        passages: &[Passage],
        on_text: Option<OnText<'_>>,
    ) -> Result<Generated> {
        let answer = self.invoker.invoke(
            &self.endpoint,
            &cohere_v1_body(question, passages, self.max_tokens),
        )?;
        let g = cohere_v1_answer(&answer, passages.len()).ok_or_else(|| Error::Backend {
            backend: "sagemaker chat".into(),
            endpoint: self.endpoint(),
            reason: "unexpected answer: no `text`".into(),
        })?;
        if let Some(on_text) = on_text {
            on_text(&g.text);
        }
        Ok(g)
    }
}

#[cfg(feature = "sagemaker")]
pub use aws::AwsInvoker;

#[cfg(feature = "sagemaker")]
mod aws {
    use serde_json::Value;

    use super::Invoker;
    use crate::error::{Error, Result};

    /// `InvokeEndpoint` through the AWS SDK (SigV4; credentials and region from the default
    /// chain, or an explicit endpoint URL for VPC endpoints and tests).
    pub struct AwsInvoker {
        client: aws_sdk_sagemakerruntime::Client,
        runtime: tokio::runtime::Runtime,
    }

    impl std::fmt::Debug for AwsInvoker {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("AwsInvoker").finish_non_exhaustive()
        }
    }

    impl Drop for AwsInvoker {
        fn drop(&mut self) {
            // The SDK's connection pool lives on this runtime; do not block on it.
            let rt = std::mem::replace(
                &mut self.runtime,
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a runtime"),
            );
            rt.shutdown_background();
        }
    }

    impl AwsInvoker {
        /// A client from the default credential chain; `endpoint_url` overrides the runtime
        /// host (a VPC endpoint), `region` the configured region.
        pub fn new(region: Option<&str>, endpoint_url: Option<&str>) -> Result<AwsInvoker> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| Error::Invalid {
                    field: "sagemaker",
                    reason: format!("cannot start a runtime: {e}"),
                })?;
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(r) = region {
                loader = loader.region(aws_config::Region::new(r.to_owned()));
            }
            if let Some(u) = endpoint_url {
                loader = loader.endpoint_url(u);
            }
            let config = runtime.block_on(loader.load());
            Ok(AwsInvoker {
                client: aws_sdk_sagemakerruntime::Client::new(&config),
                runtime,
            })
        }
    }

    impl Invoker for AwsInvoker {
        fn invoke(&self, endpoint: &str, body: &Value) -> Result<Value> {
            let fail = |reason: String| Error::Backend {
                backend: "sagemaker".into(),
                endpoint: endpoint.to_owned(),
                reason,
            };
            let out = self
                .runtime
                .block_on(
                    self.client
                        .invoke_endpoint()
                        .endpoint_name(endpoint)
                        .content_type("application/json")
                        .accept("application/json")
                        .body(aws_sdk_sagemakerruntime::primitives::Blob::new(
                            serde_json::to_vec(body).expect("JSON serializes"),
                        ))
                        .send(),
                )
                .map_err(|e| {
                    fail(format!(
                        "{}",
                        aws_sdk_sagemakerruntime::error::DisplayErrorContext(e)
                    ))
                })?;
            let bytes = out.body.map(|b| b.into_inner()).unwrap_or_default();
            serde_json::from_slice(&bytes).map_err(|e| fail(format!("response is not JSON: {e}")))
        }
        fn describe(&self, endpoint: &str) -> String {
            format!("sagemaker:{endpoint}")
        }
    }
}
