//! Generators: one trait; Cohere Chat v2 with documents and citations, Command R+ on a
//! SageMaker endpoint ([`crate::sagemaker`]), OpenAI-compatible chat completions with numbered
//! sources, and an extractive fallback that needs no model.
//!
//! Every generator answers from the passages it is given and maps its citations back to them
//! (by index into `passages`), so the assistant can attach chunk, document and label to each.

use serde_json::{Value, json};

use crate::client::HttpClient;
use crate::error::Result;

/// A retrieved chunk as a generator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Passage {
    /// Title of its document.
    pub title: String,
    /// Where in the document (section path, page).
    pub location: String,
    /// The chunk's text.
    pub text: String,
}

/// A span of the answer and the passages that support it.
#[derive(Clone, Debug, PartialEq)]
pub struct Cited {
    /// Byte range in the answer text (may be empty when the backend gives no span).
    pub start: usize,
    /// End of the range.
    pub end: usize,
    /// Indexes into the passages.
    pub passages: Vec<usize>,
}

/// A generator's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Generated {
    /// The answer.
    pub text: String,
    /// Its citations.
    pub citations: Vec<Cited>,
}

/// Called with each piece of text as a streaming backend produces it.
pub type OnText<'a> = &'a mut dyn FnMut(&str);

/// A text generator answering questions from passages.
pub trait Generator: Send + Sync + std::fmt::Debug {
    /// Model name (for the audit trail).
    fn model(&self) -> String;
    /// Where it runs.
    fn endpoint(&self) -> String;
    /// Answers `question` from `passages`, citing them. With `on_text`, streams the answer
    /// (backends that cannot stream call it once with the whole text).
    fn generate(
        &self,
        question: &str,
        passages: &[Passage],
        on_text: Option<OnText<'_>>,
    ) -> Result<Generated>;
}

/// Converts a character offset (what Cohere and Python count) into a byte offset in `text`,
/// clamped to its end.
pub fn char_to_byte(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i)
}

/// Places a citation's span in `answer`: the given character offsets when they hold `quoted`
/// (or when there is no quote), else the first occurrence of `quoted`, else empty at the end.
fn place_span(
    answer: &str,
    start: Option<u64>,
    end: Option<u64>,
    quoted: Option<&str>,
) -> (usize, usize) {
    if let (Some(s), Some(e)) = (start, end) {
        let (s, e) = (
            char_to_byte(answer, s as usize),
            char_to_byte(answer, e as usize),
        );
        if s <= e && quoted.is_none_or(|q| answer.get(s..e) == Some(q)) {
            return (s, e);
        }
    }
    match quoted.and_then(|q| answer.find(q).map(|i| (i, i + q.len()))) {
        Some(span) => span,
        None => (answer.len(), answer.len()),
    }
}

/// The document id given to passage `i` in a request.
fn doc_id(i: usize) -> String {
    format!("doc-{i}")
}

/// The passage index of a document id written by [`doc_id`].
fn passage_of(id: &str, n: usize) -> Option<usize> {
    id.strip_prefix("doc-")?.parse().ok().filter(|&i| i < n)
}

/// Cohere's `documents` for Chat v2: `{"id", "data": {"title", "snippet"}}`.
fn cohere_documents(passages: &[Passage]) -> Vec<Value> {
    passages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"id": doc_id(i), "data": {"title": p.title, "section": p.location, "snippet": p.text}})
        })
        .collect()
}

/// Cohere Chat v2 (`POST /v2/chat`) with `documents`; its citations come back with the source
/// document ids, mapped here to passages.
#[derive(Clone, Debug)]
pub struct CohereChat {
    client: HttpClient,
    model: String,
    max_tokens: u32,
}

impl CohereChat {
    /// `model` (e.g. `command-r-plus-08-2024`) at `https://api.cohere.com` with `api_key`.
    pub fn new(api_key: &str, model: impl Into<String>) -> CohereChat {
        CohereChat {
            client: HttpClient::new("cohere chat", "https://api.cohere.com")
                .bearer(api_key)
                .timeout(std::time::Duration::from_secs(180)),
            model: model.into(),
            max_tokens: 1024,
        }
    }

    /// Another base URL or client settings.
    pub fn with_client(mut self, client: HttpClient) -> CohereChat {
        self.client = client;
        self
    }

    /// The request body (Cohere's documented shape).
    pub fn body(&self, question: &str, passages: &[Passage], stream: bool) -> Value {
        json!({
            "model": self.model,
            "messages": [{"role": "user", "content": question}],
            "documents": cohere_documents(passages),
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "stream": stream,
        })
    }

    /// Reads one v2 citation (`{"start", "end", "text", "sources": [{"type": "document",
    /// "id"}]}`).
    fn citation(answer: &str, c: &Value, n: usize) -> Option<Cited> {
        let ids = c
            .get("sources")?
            .as_array()?
            .iter()
            .filter_map(|s| s.get("id"));
        cohere_citation(answer, c, ids, n)
    }
}

/// A Cohere citation (v1 or v2: the span fields are the same, the sources differ) whose source
/// ids are `ids`; `None` when none of them names a passage.
fn cohere_citation<'a>(
    answer: &str,
    c: &Value,
    ids: impl Iterator<Item = &'a Value>,
    n: usize,
) -> Option<Cited> {
    let passages: Vec<usize> = ids.filter_map(|id| passage_of(id.as_str()?, n)).collect();
    if passages.is_empty() {
        return None;
    }
    let (start, end) = place_span(
        answer,
        c.get("start").and_then(Value::as_u64),
        c.get("end").and_then(Value::as_u64),
        c.get("text").and_then(Value::as_str),
    );
    Some(Cited {
        start,
        end,
        passages,
    })
}

impl Generator for CohereChat {
    fn model(&self) -> String {
        self.model.clone()
    }
    fn endpoint(&self) -> String {
        self.client.url("/v2/chat")
    }
    fn generate(
        &self,
        question: &str,
        passages: &[Passage],
        on_text: Option<OnText<'_>>,
    ) -> Result<Generated> {
        let path = "/v2/chat";
        let n = passages.len();
        let Some(on_text) = on_text else {
            let answer = self
                .client
                .post_json(path, &self.body(question, passages, false))?;
            let message = &answer["message"];
            let text: String = message["content"]
                .as_array()
                .ok_or_else(|| self.client.bad_answer(path, "no `message.content`"))?
                .iter()
                .filter_map(|c| c.get("text").and_then(Value::as_str))
                .collect();
            let citations = message["citations"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| Self::citation(&text, c, n))
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Generated { text, citations });
        };
        // Server-sent events: `content-delta` carries text, `citation-start` a citation.
        let mut text = String::new();
        let mut raw_citations = Vec::new();
        self.client
            .post_lines(path, &self.body(question, passages, true), &mut |line| {
                let Some(data) = line.strip_prefix("data:") else {
                    return Ok(());
                };
                let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
                    return Ok(());
                };
                match event["type"].as_str() {
                    Some("content-delta") => {
                        if let Some(t) = event["delta"]["message"]["content"]["text"].as_str() {
                            text.push_str(t);
                            on_text(t);
                        }
                    }
                    Some("citation-start") => {
                        let c = &event["delta"]["message"]["citations"];
                        match c {
                            Value::Array(cs) => raw_citations.extend(cs.iter().cloned()),
                            c if c.is_object() => raw_citations.push(c.clone()),
                            _ => {}
                        }
                    }
                    _ => {}
                }
                Ok(())
            })?;
        let citations = raw_citations
            .iter()
            .filter_map(|c| Self::citation(&text, c, n))
            .collect();
        Ok(Generated { text, citations })
    }
}

/// Command R / R+ on a SageMaker endpoint or any service speaking Cohere's v1 chat shape:
/// request `{"message", "documents": [{"id", "title", "snippet"}]}`, answer `{"text",
/// "citations": [{"start", "end", "text", "document_ids"}]}`.
pub fn cohere_v1_body(question: &str, passages: &[Passage], max_tokens: u32) -> Value {
    let documents: Vec<Value> = passages
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"id": doc_id(i), "title": p.title, "section": p.location, "snippet": p.text}))
        .collect();
    json!({
        "message": question,
        "documents": documents,
        "max_tokens": max_tokens,
        "temperature": 0.0,
    })
}

/// Reads a v1 chat answer (see [`cohere_v1_body`]); `None` when it has no `text`.
pub fn cohere_v1_answer(answer: &Value, n: usize) -> Option<Generated> {
    let text = answer.get("text")?.as_str()?.to_owned();
    let citations = answer
        .get("citations")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    let ids = c.get("document_ids")?.as_array()?.iter();
                    cohere_citation(&text, c, ids, n)
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Generated { text, citations })
}

/// The numbered-sources prompt for models without a documents API.
pub fn numbered_prompt(question: &str, passages: &[Passage]) -> (String, String) {
    let system = "You answer questions using only the numbered sources provided. Cite every \
                  statement with the number of its source in square brackets, like [1] or [1][3]. \
                  If the sources do not contain the answer, say that they do not; never invent \
                  facts or sources."
        .to_owned();
    let mut user = String::from("Sources:\n\n");
    for (i, p) in passages.iter().enumerate() {
        let location = if p.location.is_empty() {
            String::new()
        } else {
            format!(" — {}", p.location)
        };
        user.push_str(&format!(
            "[{}] {}{location}\n{}\n\n",
            i + 1,
            p.title,
            p.text.trim()
        ));
    }
    user.push_str(&format!("Question: {question}"));
    (system, user)
}

/// Finds `[n]` / `[n, m]` markers (1-based) in an answer: each cites the text from the previous
/// sentence boundary (or marker) up to the marker.
pub fn parse_numbered_citations(answer: &str, n: usize) -> Vec<Cited> {
    let mut out: Vec<Cited> = Vec::new();
    // Start of the text after the previous marker.
    let mut rest = 0;
    let mut from = 0;
    while let Some(open) = answer[from..].find('[').map(|i| from + i) {
        let Some(close) = answer[open..].find(']').map(|i| open + i) else {
            break;
        };
        from = open + 1;
        let numbers: Option<Vec<usize>> = answer[open + 1..close]
            .split(',')
            .map(|s| s.trim().parse::<usize>().ok())
            .collect();
        let Some(numbers) = numbers else { continue };
        let passages: Vec<usize> = numbers
            .into_iter()
            .filter(|&k| k >= 1 && k <= n)
            .map(|k| k - 1)
            .collect();
        let seg = &answer[rest..open];
        rest = close + 1;
        from = close + 1;
        if passages.is_empty() {
            continue;
        }
        if seg.trim().is_empty()
            && let Some(last) = out.last_mut()
        {
            // `[1][2]`: more sources for the same claim.
            for p in passages {
                if !last.passages.contains(&p) {
                    last.passages.push(p);
                }
            }
            continue;
        }
        // The claim: the last sentence before the marker.
        let body = seg.trim_end().trim_end_matches(['.', '!', '?']);
        let claim_from = body.rfind(['.', '!', '?', '\n']).map_or(0, |p| p + 1);
        let claim = &body[claim_from..];
        let start = open - seg.len() + claim_from + (claim.len() - claim.trim_start().len());
        let end = open - seg.len() + body.len();
        out.push(Cited {
            start,
            end: end.max(start),
            passages,
        });
    }
    out
}

/// An OpenAI-compatible chat completions endpoint (`POST /v1/chat/completions`: vLLM, TGI,
/// llama.cpp, OpenAI) prompted with numbered sources; `[n]` markers become citations.
#[derive(Clone, Debug)]
pub struct OpenAiChat {
    client: HttpClient,
    model: String,
    max_tokens: u32,
}

impl OpenAiChat {
    /// `model` served at `client`'s base URL (without `/v1`).
    pub fn new(client: HttpClient, model: impl Into<String>) -> OpenAiChat {
        OpenAiChat {
            client,
            model: model.into(),
            max_tokens: 1024,
        }
    }

    /// The request body.
    pub fn body(&self, question: &str, passages: &[Passage], stream: bool) -> Value {
        let (system, user) = numbered_prompt(question, passages);
        json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "stream": stream,
        })
    }
}

impl Generator for OpenAiChat {
    fn model(&self) -> String {
        self.model.clone()
    }
    fn endpoint(&self) -> String {
        self.client.url("/v1/chat/completions")
    }
    fn generate(
        &self,
        question: &str,
        passages: &[Passage],
        on_text: Option<OnText<'_>>,
    ) -> Result<Generated> {
        let path = "/v1/chat/completions";
        let text = match on_text {
            None => {
                let answer = self
                    .client
                    .post_json(path, &self.body(question, passages, false))?;
                answer["choices"][0]["message"]["content"]
                    .as_str()
                    .ok_or_else(|| {
                        self.client
                            .bad_answer(path, "no `choices[0].message.content`")
                    })?
                    .to_owned()
            }
            Some(on_text) => {
                let mut text = String::new();
                self.client.post_lines(
                    path,
                    &self.body(question, passages, true),
                    &mut |line| {
                        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                            return Ok(());
                        };
                        if data == "[DONE]" {
                            return Ok(());
                        }
                        if let Ok(event) = serde_json::from_str::<Value>(data)
                            && let Some(t) = event["choices"][0]["delta"]["content"].as_str()
                        {
                            text.push_str(t);
                            on_text(t);
                        }
                        Ok(())
                    },
                )?;
                text
            }
        };
        let citations = parse_numbered_citations(&text, passages.len());
        Ok(Generated { text, citations })
    }
}

/// Splits text into sentences (byte ranges): at `.`, `!` or `?` followed by white space, at
/// blank lines, and before list items and headings.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let starts_block = |i: usize| {
        // `i` is just after a newline: a list item or a heading starts here?
        let rest = text[i..].trim_start_matches([' ', '\t']);
        rest.starts_with("- ")
            || rest.starts_with("* ")
            || rest.starts_with('#')
            || rest.split_once(". ").is_some_and(|(n, _)| {
                !n.is_empty() && n.len() <= 3 && n.bytes().all(|c| c.is_ascii_digit())
            })
    };
    let mut out = Vec::new();
    let mut push = |from: usize, to: usize| {
        let s = &text[from..to];
        if !s.trim().is_empty() {
            let lead = s.len() - s.trim_start().len();
            out.push((from + lead, from + s.trim_end().len()));
        }
    };
    let mut start = 0;
    for i in 0..b.len() {
        // `2. step`: the number of a list item ends no sentence.
        let item_number = || {
            let line = &text[text[..i].rfind('\n').map_or(0, |n| n + 1)..i];
            let t = line.trim_start();
            !t.is_empty() && t.len() <= 3 && t.bytes().all(|c| c.is_ascii_digit())
        };
        if matches!(b[i], b'.' | b'!' | b'?')
            && b.get(i + 1).is_none_or(|c| c.is_ascii_whitespace())
            && !item_number()
        {
            push(start, i + 1);
            start = i + 1;
        } else if b[i] == b'\n'
            && (b.get(i + 1) == Some(&b'\n') || (i + 1 < b.len() && starts_block(i + 1)))
        {
            push(start, i);
            start = i + 1;
        }
    }
    push(start, b.len());
    out
}

/// Function words that say nothing about what a sentence is about.
const STOPWORDS: [&str; 48] = [
    "about", "after", "all", "also", "and", "any", "are", "because", "been", "but", "can", "could",
    "did", "does", "for", "from", "had", "has", "have", "how", "into", "its", "may", "more", "not",
    "one", "only", "other", "should", "some", "such", "than", "that", "the", "their", "then",
    "there", "these", "they", "this", "was", "were", "what", "when", "where", "which", "with",
    "would",
];

/// Lower-cased content words of three letters or more (stop words left out).
pub fn terms(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|w| STOPWORDS.binary_search(&w.as_str()).is_err())
        .collect()
}

/// The sentence of `passage` sharing the most terms with `claim` (the quote a citation shows).
pub fn best_quote(passage: &str, claim: &str) -> String {
    let want = terms(claim);
    sentences(passage)
        .into_iter()
        .map(|(s, e)| &passage[s..e])
        .max_by_key(|s| terms(s).intersection(&want).count())
        .unwrap_or(passage)
        .to_owned()
}

/// No model: the answer is the passages' sentences that best match the question, each cited.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extractive {
    /// Most sentences in the answer.
    pub max_sentences: usize,
}

impl Generator for Extractive {
    fn model(&self) -> String {
        "extractive".into()
    }
    fn endpoint(&self) -> String {
        "local".into()
    }
    fn generate(
        &self,
        question: &str,
        passages: &[Passage],
        on_text: Option<OnText<'_>>,
    ) -> Result<Generated> {
        let want = terms(question);
        let mut scored: Vec<(usize, usize, usize, &str)> = Vec::new(); // (overlap, rank, passage, sentence)
        for (pi, p) in passages.iter().enumerate() {
            for (s, e) in sentences(&p.text) {
                let sentence = p.text[s..e].trim();
                // Headings and fragments make poor answers.
                let words = sentence.split_whitespace().count();
                if !(4..=80).contains(&words) || sentence.starts_with('#') {
                    continue;
                }
                let overlap = terms(sentence).intersection(&want).count();
                if overlap > 0 {
                    scored.push((overlap, pi, pi, sentence));
                }
            }
        }
        // Most overlap first; among equals, the better-ranked passage; then document order.
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let max = if self.max_sentences == 0 {
            3
        } else {
            self.max_sentences
        };
        let mut text = String::new();
        let mut citations = Vec::new();
        for (_, _, pi, sentence) in scored.into_iter().take(max) {
            if !text.is_empty() {
                text.push(' ');
            }
            let start = text.len();
            let sentence = sentence.trim_start_matches(['-', '*', ' ']);
            text.push_str(&sentence.split_whitespace().collect::<Vec<_>>().join(" "));
            citations.push(Cited {
                start,
                end: text.len(),
                passages: vec![pi],
            });
            text.push_str(&format!(" [{}]", pi + 1));
        }
        if let Some(on_text) = on_text {
            on_text(&text);
        }
        Ok(Generated { text, citations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Passage {
        Passage {
            title: "T".into(),
            location: String::new(),
            text: text.into(),
        }
    }

    #[test]
    fn numbered_markers_become_citations() {
        let a = "Paris is the capital [1]. It is on the Seine [2][3]. Unknown [9]. Plain text.";
        let c = parse_numbered_citations(a, 3);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(&a[c[0].start..c[0].end], "Paris is the capital");
        assert_eq!(c[0].passages, vec![0]);
        assert_eq!(&a[c[1].start..c[1].end], "It is on the Seine");
        assert_eq!(c[1].passages, vec![1, 2]);
        let c = parse_numbered_citations("Both hold [1, 2].", 2);
        assert_eq!(c[0].passages, vec![0, 1]);
        assert!(parse_numbered_citations("see [a] and [] and [", 2).is_empty());
    }

    #[test]
    fn spans_use_character_offsets() {
        let answer = "Ünïcode first. Then the claim.";
        // Cohere counts characters: "Then the claim" starts at character 15.
        let (s, e) = place_span(answer, Some(15), Some(29), Some("Then the claim"));
        assert_eq!(&answer[s..e], "Then the claim");
        // Wrong offsets: fall back to the quoted text.
        let (s, e) = place_span(answer, Some(0), Some(3), Some("the claim"));
        assert_eq!(&answer[s..e], "the claim");
    }

    #[test]
    fn extractive_answers_cite_their_sentences() {
        let passages = [
            p("Unrelated words here today. The reactor cools with heavy water in the loop."),
            p("Heavy water moderates the reactor core in this design."),
        ];
        let g = Extractive::default()
            .generate(
                "How is the reactor cooled with heavy water?",
                &passages,
                None,
            )
            .unwrap();
        assert!(!g.citations.is_empty());
        for c in &g.citations {
            let quoted = &g.text[c.start..c.end];
            assert!(passages[c.passages[0]].text.contains(quoted), "{quoted}");
        }
        assert!(g.text.contains("[1]"));
        let none = Extractive::default()
            .generate("zebra migration", &passages, None)
            .unwrap();
        assert!(none.text.is_empty() && none.citations.is_empty());
    }

    #[test]
    fn stopwords_are_sorted_and_ignored() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
        let t = terms("How does the Reactor work, and what is it for?");
        assert_eq!(t, ["reactor", "work"].map(str::to_owned).into());
    }

    #[test]
    fn sentences_and_quotes() {
        let t = "First one. Second one? Third\n\nFourth\n- item one\n- item two\n2. step";
        let s: Vec<&str> = sentences(t).into_iter().map(|(a, b)| &t[a..b]).collect();
        assert_eq!(
            s,
            [
                "First one.",
                "Second one?",
                "Third",
                "Fourth",
                "- item one",
                "- item two",
                "2. step"
            ]
        );
        assert_eq!(best_quote(t, "the second"), "Second one?");
    }
}
