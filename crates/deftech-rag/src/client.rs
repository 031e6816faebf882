//! The HTTP client the model backends share: JSON over HTTP(S) with timeouts, retries with
//! exponential backoff on transient failures (connection errors, timeouts, 408, 429 and 5xx,
//! honouring `Retry-After`), and errors that name the backend, the URL, the status and the
//! start of the body.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};

/// How a backend is reached.
#[derive(Clone, Debug)]
pub struct HttpClient {
    agent: ureq::Agent,
    backend: String,
    base_url: String,
    headers: Vec<(String, String)>,
    retries: u32,
    backoff: Duration,
}

/// Longest `Retry-After` honoured (a server asking for more is treated as failing).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_owned(),
    }
}

fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

impl HttpClient {
    /// A client for `backend` (its name in errors) at `base_url` (no trailing slash needed),
    /// with a 60 s timeout per call and 3 retries starting at 500 ms.
    pub fn new(backend: impl Into<String>, base_url: impl Into<String>) -> HttpClient {
        HttpClient {
            agent: Self::agent(Duration::from_secs(60)),
            backend: backend.into(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            headers: Vec::new(),
            retries: 3,
            backoff: Duration::from_millis(500),
        }
    }

    fn agent(timeout: Duration) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// Adds a header to every request (an API key).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> HttpClient {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> HttpClient {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Time limit for one call, the whole response included.
    pub fn timeout(mut self, timeout: Duration) -> HttpClient {
        self.agent = Self::agent(timeout);
        self
    }

    /// Retries after a transient failure, and the first wait (doubled each time).
    pub fn retries(mut self, retries: u32, backoff: Duration) -> HttpClient {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// The backend's name.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn error(&self, url: &str, reason: impl Into<String>) -> Error {
        Error::Backend {
            backend: self.backend.clone(),
            endpoint: url.to_owned(),
            reason: reason.into(),
        }
    }

    /// Sends `body` and returns the successful response, retrying transient failures.
    fn send(&self, path: &str, body: &Value) -> Result<ureq::http::Response<ureq::Body>> {
        let url = self.url(path);
        let mut attempt = 0;
        loop {
            let mut req = self.agent.post(&url);
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            let wait = self.backoff * 2u32.saturating_pow(attempt);
            let (failure, wait) = match req.send_json(body) {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.body_mut().read_to_string().unwrap_or_default();
                    let failure = self.error(&url, format!("HTTP {status}: {}", excerpt(&text)));
                    if !transient(status) || retry_after.is_some_and(|r| r > MAX_RETRY_AFTER) {
                        return Err(failure);
                    }
                    (failure, retry_after.unwrap_or(wait))
                }
                Err(e) => (self.error(&url, e.to_string()), wait),
            };
            if attempt >= self.retries {
                return Err(match failure {
                    Error::Backend {
                        backend,
                        endpoint,
                        reason,
                    } => Error::Backend {
                        backend,
                        endpoint,
                        reason: format!("{reason} (after {} attempts)", attempt + 1),
                    },
                    other => other,
                });
            }
            tracing::warn!(backend = %self.backend, %url, attempt, "retrying: {failure}");
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    /// POSTs JSON and parses the JSON answer.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let mut resp = self.send(path, body)?;
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| self.error(&self.url(path), format!("reading the response: {e}")))?;
        serde_json::from_str(&text).map_err(|e| {
            self.error(
                &self.url(path),
                format!("response is not JSON ({e}): {}", excerpt(&text)),
            )
        })
    }

    /// POSTs JSON and hands each line of the streamed answer (server-sent events or JSON
    /// lines) to `on_line`. Retries happen only before the answer starts.
    pub fn post_lines(
        &self,
        path: &str,
        body: &Value,
        on_line: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<()> {
        let resp = self.send(path, body)?;
        let reader = BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| self.error(&self.url(path), format!("stream cut: {e}")))?;
            on_line(line.trim_end_matches('\r'))?;
        }
        Ok(())
    }

    /// An error for a malformed answer at `path`.
    pub fn bad_answer(&self, path: &str, reason: impl std::fmt::Display) -> Error {
        self.error(&self.url(path), format!("unexpected answer: {reason}"))
    }
}
