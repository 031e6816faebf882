//! The SageMaker backends through the real AWS SDK (`InvokeEndpoint`, SigV4-signed), pointed
//! at a local server that speaks the runtime's REST shape: `POST
//! /endpoints/{name}/invocations`, JSON in, JSON out. Runs with `--features sagemaker` (the
//! workspace test build enables it through deftech-tests).

#![cfg(feature = "sagemaker")]

mod common;

use common::{Reply, TestServer};
use deftech_rag::embed::{InputKind, embed_all};
use deftech_rag::generate::{Generator, Passage};
use deftech_rag::sagemaker::{AwsInvoker, EmbedShape, SageMakerChat, SageMakerEmbedder};
use serde_json::json;

#[test]
fn invoke_endpoint_through_the_sdk() {
    // Static test credentials: the SDK signs, the local server does not check.
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
        std::env::set_var(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        );
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let s = TestServer::start(|req, _| {
        if req.path.contains("command") {
            return Reply::json(
                json!({"text": "Emperor penguins.", "citations": [{"start": 0, "end": 16, "text": "Emperor penguins", "document_ids": ["doc-0"]}]}),
            );
        }
        if req.path.contains("broken") {
            return Reply::status(
                400,
                r#"{"message":"Received client error (400) from primary with message \"bad input\""}"#,
            );
        }
        let n = req.body["texts"].as_array().map_or(0, Vec::len);
        Reply::json(
            json!({"id": "e", "embeddings": {"float": vec![vec![0.25f32; 4]; n]}, "response_type": "embeddings_by_type"}),
        )
    });
    let invoker = || Box::new(AwsInvoker::new(Some("us-gov-west-1"), Some(&s.url)).unwrap());
    let e = SageMakerEmbedder::new(invoker(), "cohere-embed", 4, EmbedShape::V2);
    let v = embed_all(&e, &["a".to_owned(), "b".to_owned()], InputKind::Document).unwrap();
    assert_eq!(v, vec![vec![0.25; 4]; 2]);
    let req = &s.requests()[0];
    assert_eq!(req.path, "/endpoints/cohere-embed/invocations");
    assert!(
        req.header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "signed"
    );
    assert_eq!(req.body["input_type"], "search_document");

    let g = SageMakerChat::new(invoker(), "command-r-plus");
    let p = [Passage {
        title: "P".into(),
        location: String::new(),
        text: "Emperor penguins are tallest.".into(),
    }];
    assert_eq!(
        g.generate("q", &p, None).unwrap().citations[0].passages,
        [0]
    );

    let bad = SageMakerEmbedder::new(invoker(), "broken", 4, EmbedShape::V1);
    let err = embed_all(&bad, &["a".to_owned()], InputKind::Query)
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken") && err.contains("bad input"), "{err}");
}
