//! Model backends against local HTTP servers speaking the documented JSON shapes. The request
//! and response examples below follow Cohere's API reference (v2 embed, chat, rerank; the
//! SageMaker v1/v2 bodies) and OpenAI's (embeddings, chat completions, streaming chunks).

mod common;

use std::time::Duration;

use common::{Reply, TestServer};
use deftech_rag::Error;
use deftech_rag::client::HttpClient;
use deftech_rag::embed::{CohereEmbedder, Embedder, InputKind, OpenAiEmbedder, embed_all};
use deftech_rag::generate::{CohereChat, Generator, OpenAiChat, Passage};
use deftech_rag::rerank::{CohereReranker, Reranker};
use deftech_rag::sagemaker::{EmbedShape, HttpInvoker, SageMakerChat, SageMakerEmbedder};
use serde_json::{Value, json};

fn client(name: &str, s: &TestServer) -> HttpClient {
    HttpClient::new(name, &s.url)
        .bearer("test-key")
        .retries(3, Duration::from_millis(5))
        .timeout(Duration::from_secs(10))
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text {i}")).collect()
}

/// `POST /v2/embed` answer, as in Cohere's reference:
/// `{"id": "…", "embeddings": {"float": [[0.016, …]]}, "texts": […], "meta": {…},
///   "response_type": "embeddings_by_type"}`.
fn cohere_embed_reply(req: &common::Request, dim: usize) -> Reply {
    let n = req.body["texts"].as_array().unwrap().len();
    let kind = req.body["embedding_types"][0].as_str().unwrap().to_owned();
    let vectors: Vec<Vec<Value>> = (0..n)
        .map(|i| {
            (0..dim)
                .map(|d| {
                    if kind == "int8" {
                        json!(((i + d) % 100) as i64 - 50)
                    } else {
                        json!((i * dim + d) as f64 / 1000.0)
                    }
                })
                .collect()
        })
        .collect();
    Reply::json(json!({
        "id": "da6e531f-54c6-4a73-bf92-f60566d8d753",
        "embeddings": {kind: vectors},
        "texts": req.body["texts"],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2}},
        "response_type": "embeddings_by_type",
    }))
}

#[test]
fn cohere_embed_batches_of_96_with_input_types() {
    let s = TestServer::start(|req, _| cohere_embed_reply(req, 8));
    let e = CohereEmbedder::new("test-key", "embed-english-v3.0", 8)
        .with_client(client("cohere embed", &s));
    let v = embed_all(&e, &texts(200), InputKind::Document).unwrap();
    assert_eq!(v.len(), 200);
    assert_eq!(
        v[101][0],
        (5 * 8) as f32 / 1000.0,
        "vectors stay in order across batches"
    );
    let reqs = s.requests();
    assert_eq!(reqs.len(), 3);
    let sizes: Vec<usize> = reqs
        .iter()
        .map(|r| r.body["texts"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [96, 96, 8]);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v2/embed"));
    assert_eq!(r.header("authorization"), Some("Bearer test-key"));
    assert_eq!(r.body["model"], "embed-english-v3.0");
    assert_eq!(r.body["input_type"], "search_document");
    assert_eq!(r.body["embedding_types"], json!(["float"]));

    let q = embed_all(&e, &texts(1), InputKind::Query).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(s.requests()[3].body["input_type"], "search_query");

    let e8 = e.clone().int8(true);
    let v = e8.embed_batch(&texts(2), InputKind::Document).unwrap();
    assert_eq!(v[1][0], -49.0);
    assert_eq!(s.requests()[4].body["embedding_types"], json!(["int8"]));
}

#[test]
fn a_wrong_dimension_is_a_clear_error() {
    let s = TestServer::start(|req, _| cohere_embed_reply(req, 5));
    let e = CohereEmbedder::new("k", "embed-english-v3.0", 1024)
        .with_client(client("cohere embed", &s));
    let err = embed_all(&e, &texts(3), InputKind::Document).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Dimension {
                expected: 1024,
                got: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("returned 5-dimensional embeddings, the collection holds 1024"),
        "{err}"
    );
}

#[test]
fn transient_failures_are_retried_and_permanent_ones_are_not() {
    // 503, then 429 with Retry-After, then success.
    let s = TestServer::start(|req, n| match n {
        0 => Reply::status(503, r#"{"message":"overloaded"}"#),
        1 => {
            let mut r = Reply::status(429, r#"{"message":"slow down"}"#);
            r.headers.push(("retry-after", "0".into()));
            r
        }
        _ => cohere_embed_reply(req, 4),
    });
    let e = CohereEmbedder::new("k", "m", 4).with_client(client("cohere embed", &s));
    assert_eq!(
        e.embed_batch(&texts(2), InputKind::Document).unwrap().len(),
        2
    );
    assert_eq!(s.requests().len(), 3);

    // A 400 is the caller's fault: one attempt, and the error carries status and body.
    let s = TestServer::start(|_, _| {
        Reply::status(
            400,
            r#"{"message":"invalid request: texts must not be empty"}"#,
        )
    });
    let e = CohereEmbedder::new("k", "m", 4).with_client(client("cohere embed", &s));
    let err = e
        .embed_batch(&texts(1), InputKind::Document)
        .unwrap_err()
        .to_string();
    assert_eq!(s.requests().len(), 1);
    assert!(
        err.contains("HTTP 400")
            && err.contains("texts must not be empty")
            && err.contains("/v2/embed"),
        "{err}"
    );

    // Always failing: gives up after the retries, saying so.
    let s = TestServer::start(|_, _| Reply::status(502, "bad gateway"));
    let e = CohereEmbedder::new("k", "m", 4).with_client(client("cohere embed", &s));
    let err = e
        .embed_batch(&texts(1), InputKind::Document)
        .unwrap_err()
        .to_string();
    assert_eq!(s.requests().len(), 4);
    assert!(err.contains("after 4 attempts"), "{err}");

    // Nothing listening.
    let dead =
        HttpClient::new("cohere embed", "http://127.0.0.1:9").retries(1, Duration::from_millis(1));
    let err = CohereEmbedder::new("k", "m", 4)
        .with_client(dead)
        .embed_batch(&texts(1), InputKind::Document)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cohere embed (http://127.0.0.1:9/v2/embed)"),
        "{err}"
    );

    // Not JSON.
    let s = TestServer::start(|_, _| Reply::status(200, "<html>proxy login</html>"));
    let e = CohereEmbedder::new("k", "m", 4).with_client(client("cohere embed", &s));
    let err = e
        .embed_batch(&texts(1), InputKind::Document)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not JSON") && err.contains("proxy login"),
        "{err}"
    );
}

/// `POST /v1/embeddings`: `{"object": "list", "data": [{"object": "embedding", "index": 0,
/// "embedding": […]}], "model": "…", "usage": {…}}` — items may come in any order.
#[test]
fn openai_embeddings_in_index_order() {
    let s = TestServer::start(|req, _| {
        let n = req.body["input"].as_array().unwrap().len();
        let mut data: Vec<Value> = (0..n)
            .map(|i| json!({"object": "embedding", "index": i, "embedding": [i as f32, 1.0, 2.0]}))
            .collect();
        data.reverse();
        Reply::json(
            json!({"object": "list", "data": data, "model": "bge-m3", "usage": {"prompt_tokens": 3, "total_tokens": 3}}),
        )
    });
    let e = OpenAiEmbedder::new(client("openai embed", &s), "bge-m3", 3).max_batch(2);
    let v = embed_all(&e, &texts(5), InputKind::Query).unwrap();
    assert_eq!(
        v.iter().map(|v| v[0]).collect::<Vec<_>>(),
        [0.0, 1.0, 0.0, 1.0, 0.0]
    );
    let r = &s.requests()[0];
    assert_eq!(r.path, "/v1/embeddings");
    assert_eq!(r.body["model"], "bge-m3");
    assert_eq!(r.body["input"], json!(["text 0", "text 1"]));
}

/// `POST /v2/rerank`: `{"results": [{"index": 3, "relevance_score": 0.999}, …], "id": "…",
/// "meta": {…}}`.
#[test]
fn cohere_rerank() {
    let s = TestServer::start(|_, _| {
        Reply::json(json!({
            "results": [{"index": 2, "relevance_score": 0.98}, {"index": 0, "relevance_score": 0.12}],
            "id": "07734bd2-2473-4f07-94e1-0d9f0e6843cf",
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        }))
    });
    let r = CohereReranker::new("k", "rerank-v3.5").with_client(client("cohere rerank", &s));
    let docs = texts(3);
    assert_eq!(r.rerank("q", &docs, 2).unwrap(), vec![(2, 0.98), (0, 0.12)]);
    let req = &s.requests()[0];
    assert_eq!(req.path, "/v2/rerank");
    assert_eq!(req.body["query"], "q");
    assert_eq!(req.body["top_n"], 2);
    assert_eq!(req.body["documents"], json!(docs));
}

fn passages() -> Vec<Passage> {
    vec![
        Passage {
            title: "Penguins".into(),
            location: "Size".into(),
            text: "Emperor penguins are the tallest.".into(),
        },
        Passage {
            title: "Habitat".into(),
            location: String::new(),
            text: "Emperor penguins only live in Antarctica.".into(),
        },
    ]
}

/// Cohere Chat v2 with documents: request `{"model", "messages", "documents": [{"id", "data":
/// {…}}]}`; answer `{"message": {"content": [{"type": "text", "text"}], "citations": [{"start",
/// "end", "text", "sources": [{"type": "document", "id", "document"}]}]}}`.
#[test]
fn cohere_chat_v2_citations_map_to_passages() {
    let text = "The tallest penguins are the Emperor penguins. They only live in Antarctica.";
    let s = TestServer::start(move |_, _| {
        Reply::json(json!({
            "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
            "finish_reason": "COMPLETE",
            "message": {
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "citations": [
                    {"start": 29, "end": 46, "text": "Emperor penguins.", "type": "TEXT_CONTENT",
                     "sources": [{"type": "document", "id": "doc-0", "document": {"id": "doc-0", "snippet": "Emperor penguins are the tallest.", "title": "Penguins"}}]},
                    {"start": 65, "end": 76, "text": "Antarctica.", "type": "TEXT_CONTENT",
                     "sources": [{"type": "document", "id": "doc-1", "document": {"id": "doc-1"}}]},
                ],
            },
            "usage": {"billed_units": {"input_tokens": 31, "output_tokens": 16}, "tokens": {"input_tokens": 1190, "output_tokens": 16}},
        }))
    });
    let g = CohereChat::new("k", "command-r-plus-08-2024").with_client(client("cohere chat", &s));
    let out = g
        .generate("Which penguins are the tallest?", &passages(), None)
        .unwrap();
    assert_eq!(out.text, text);
    assert_eq!(out.citations.len(), 2);
    assert_eq!(
        &out.text[out.citations[0].start..out.citations[0].end],
        "Emperor penguins."
    );
    assert_eq!(out.citations[0].passages, [0]);
    assert_eq!(out.citations[1].passages, [1]);
    let req = &s.requests()[0];
    assert_eq!(req.path, "/v2/chat");
    assert_eq!(
        req.body["messages"][0],
        json!({"role": "user", "content": "Which penguins are the tallest?"})
    );
    assert_eq!(req.body["documents"][1]["id"], "doc-1");
    assert_eq!(
        req.body["documents"][1]["data"]["snippet"],
        "Emperor penguins only live in Antarctica."
    );
    assert_eq!(req.body["stream"], false);
}

#[test]
fn cohere_chat_v2_streams_text_and_citations() {
    let s = TestServer::start(|_, _| {
        Reply::sse(&[
            json!({"id": "29f14a5a", "type": "message-start", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
            json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
            json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "The tallest are "}}}}),
            json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Emperor penguins."}}}}),
            json!({"type": "citation-start", "index": 0, "delta": {"message": {"citations": {"start": 16, "end": 33, "text": "Emperor penguins.", "sources": [{"type": "document", "id": "doc-0", "document": {"id": "doc-0"}}], "type": "TEXT_CONTENT"}}}}),
            json!({"type": "citation-end", "index": 0}),
            json!({"type": "content-end", "index": 0}),
            json!({"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 9}}}}),
        ])
    });
    let g = CohereChat::new("k", "command-r-plus-08-2024").with_client(client("cohere chat", &s));
    let mut pieces = Vec::new();
    let out = g
        .generate(
            "q",
            &passages(),
            Some(&mut |t: &str| pieces.push(t.to_owned())),
        )
        .unwrap();
    assert_eq!(pieces, ["The tallest are ", "Emperor penguins."]);
    assert_eq!(out.text, "The tallest are Emperor penguins.");
    assert_eq!(out.citations.len(), 1);
    assert_eq!(
        &out.text[out.citations[0].start..out.citations[0].end],
        "Emperor penguins."
    );
    assert_eq!(s.requests()[0].body["stream"], true);
}

/// OpenAI chat completions: `{"choices": [{"index": 0, "message": {"role": "assistant",
/// "content": "…"}, "finish_reason": "stop"}]}`; streamed as `data: {"choices": [{"delta":
/// {"content": "…"}}]}` lines ending with `data: [DONE]`.
#[test]
fn openai_chat_with_numbered_sources() {
    let answer = "Emperor penguins are the tallest [1]. They live in Antarctica [2].";
    let s = TestServer::start(move |req, _| {
        if req.body["stream"] == true {
            let mut body = String::new();
            for piece in [
                "Emperor penguins are the tallest [1].",
                " They live in Antarctica [2].",
            ] {
                body.push_str(&format!("data: {}\n\n", json!({"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]})));
            }
            body.push_str("data: [DONE]\n\n");
            return Reply {
                status: 200,
                content_type: "text/event-stream",
                body,
                headers: vec![],
            };
        }
        Reply::json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "llama-3.1-70b",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        }))
    });
    let g = OpenAiChat::new(client("openai chat", &s), "llama-3.1-70b");
    let out = g
        .generate("Which penguins are the tallest?", &passages(), None)
        .unwrap();
    assert_eq!(out.text, answer);
    assert_eq!(out.citations.len(), 2);
    assert_eq!(
        &out.text[out.citations[1].start..out.citations[1].end],
        "They live in Antarctica"
    );
    assert_eq!(out.citations[1].passages, [1]);
    let req = &s.requests()[0];
    assert_eq!(req.path, "/v1/chat/completions");
    let prompt = req.body["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.contains("[1] Penguins — Size\nEmperor penguins are the tallest."),
        "{prompt}"
    );
    assert!(
        prompt.ends_with("Question: Which penguins are the tallest?"),
        "{prompt}"
    );

    let mut streamed = String::new();
    let out = g
        .generate("q", &passages(), Some(&mut |t: &str| streamed.push_str(t)))
        .unwrap();
    assert_eq!(streamed, answer);
    assert_eq!(out.citations.len(), 2);
}

/// SageMaker, both embedding body shapes Cohere documents: v1 `{"texts", "input_type",
/// "truncate"}` → `{"embeddings": [[…]], "response_type": "embeddings_floats"}`; v2 adds
/// `"embedding_types": ["float"]` → `{"embeddings": {"float": [[…]]}, "response_type":
/// "embeddings_by_type"}`. Command R+ (v1): `{"message", "documents"}` → `{"text", "citations":
/// [{"start", "end", "text", "document_ids"}]}`.
#[test]
fn sagemaker_body_shapes() {
    let s = TestServer::start(|req, _| {
        if req.path.contains("command") {
            return Reply::json(json!({
                "response_id": "r1", "generation_id": "g1",
                "text": "Emperor penguins are the tallest.",
                "citations": [{"start": 0, "end": 16, "text": "Emperor penguins", "document_ids": ["doc-0"]}],
                "finish_reason": "COMPLETE",
            }));
        }
        let n = req.body["texts"].as_array().unwrap().len();
        let vectors: Vec<Vec<f32>> = (0..n).map(|i| vec![i as f32, 0.5]).collect();
        if req.body.get("embedding_types").is_some() {
            Reply::json(
                json!({"id": "e", "embeddings": {"float": vectors}, "texts": req.body["texts"], "response_type": "embeddings_by_type"}),
            )
        } else {
            Reply::json(
                json!({"id": "e", "embeddings": vectors, "texts": req.body["texts"], "response_type": "embeddings_floats"}),
            )
        }
    });
    for shape in [EmbedShape::V1, EmbedShape::V2] {
        let e = SageMakerEmbedder::new(
            Box::new(HttpInvoker::new(client("sagemaker", &s))),
            "cohere-embed-v3",
            2,
            shape,
        );
        let v = embed_all(&e, &texts(3), InputKind::Query).unwrap();
        assert_eq!(v[2], [2.0, 0.5]);
    }
    let reqs = s.requests();
    assert_eq!(reqs[0].path, "/endpoints/cohere-embed-v3/invocations");
    assert_eq!(
        reqs[0].body,
        json!({"texts": texts(3), "input_type": "search_query", "truncate": "END"})
    );
    assert_eq!(reqs[1].body["embedding_types"], json!(["float"]));

    let g = SageMakerChat::new(
        Box::new(HttpInvoker::new(client("sagemaker", &s))),
        "command-r-plus",
    );
    let out = g
        .generate("Which penguins are the tallest?", &passages(), None)
        .unwrap();
    assert_eq!(out.citations[0].passages, [0]);
    assert_eq!(&out.text[..out.citations[0].end], "Emperor penguins");
    let req = s.requests().pop().unwrap();
    assert_eq!(req.path, "/endpoints/command-r-plus/invocations");
    assert_eq!(req.body["message"], "Which penguins are the tallest?");
    assert_eq!(
        req.body["documents"][0]["snippet"],
        "Emperor penguins are the tallest."
    );
}

/// The offline default: all-MiniLM-L6-v2 with candle. `scripts/test` fetches the model and sets
/// `DEFTECH_REQUIRE_MODEL=1`, so in CI a missing model fails instead of skipping.
#[cfg(feature = "local")]
#[test]
fn local_minilm_embeds_like_sentence_transformers() {
    use deftech_rag::embed::LocalEmbedder;
    let dir = std::env::var_os("DEFTECH_MODEL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/deftech/all-MiniLM-L6-v2")
        });
    if !dir.join("model.safetensors").exists() {
        assert!(
            std::env::var_os("DEFTECH_REQUIRE_MODEL").is_none(),
            "no model in {}",
            dir.display()
        );
        return;
    }
    let e = LocalEmbedder::open(&dir).unwrap();
    assert_eq!(e.dim(), 384);
    let t = |s: &str| s.to_owned();
    let v = embed_all(
        &e,
        &[
            t("A man is eating food."),
            t("A man is eating a piece of bread."),
            t("The girl is carrying a baby."),
            t(""),
        ],
        InputKind::Document,
    )
    .unwrap();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for x in &v {
        assert!((dot(x, x) - 1.0).abs() < 1e-4, "normalized");
    }
    // sentence-transformers' documentation gives 0.7553 for this pair with this model.
    let similar = dot(&v[0], &v[1]);
    let unrelated = dot(&v[0], &v[2]);
    assert!((similar - 0.7553).abs() < 0.01, "{similar}");
    assert!(unrelated < 0.2, "{unrelated}");
    // Batching does not change the numbers (padding is masked out).
    let alone = embed_all(&e, &[t("A man is eating food.")], InputKind::Document).unwrap();
    assert!(dot(&alone[0], &v[0]) > 0.9999);
    let err = LocalEmbedder::open(dir.join("missing"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
}
