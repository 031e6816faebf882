//! Starting servers for the tests.

use std::net::SocketAddr;
use std::sync::mpsc;

use deftech_server::ServerConfig;
use deftech_server::auth::Role;
use deftech_server::config::ApiKey;
use serde_json::Value;

use crate::client::{Response, request};

/// A server running in this process on an ephemeral port, with its own data folder.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    pub key: Option<String>,
}

pub const ADMIN: &str = "admin-key-123";
pub const WRITER: &str = "writer-key-123";
pub const READER: &str = "reader-key-123";

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    /// A server with an admin, a read-write and a read-only key; requests use the admin key.
    pub fn with_keys() -> TestServer {
        let mut s = Self::start_with(|c| {
            c.api_keys = vec![
                ApiKey {
                    key: ADMIN.into(),
                    role: Role::Admin,
                },
                ApiKey {
                    key: WRITER.into(),
                    role: Role::ReadWrite,
                },
                ApiKey {
                    key: READER.into(),
                    role: Role::ReadOnly,
                },
            ];
        });
        s.key = Some(ADMIN.into());
        s
    }

    pub fn start_with(edit: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig {
            data: dir.path().join("data"),
            listen: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        };
        edit(&mut config);
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(deftech_server::run(
                config,
                async move {
                    let _ = stop_rx.await;
                },
                Some(Box::new(move |a| {
                    let _ = addr_tx.send(a);
                })),
            ))
            .map_err(|e| e.to_string())
        });
        let addr = addr_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("server listens");
        let s = TestServer {
            addr,
            dir,
            stop: Some(stop_tx),
            thread: Some(thread),
            key: None,
        };
        for _ in 0..500 {
            if s.raw("GET", "/readyz", b"", &[]).status == 200 {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("server never became ready");
    }

    pub fn raw(&self, method: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Response {
        request(self.addr, method, path, body, headers).expect("request")
    }

    /// A JSON request with this server's key; returns status and parsed body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(self.key.as_deref(), method, path, body)
    }

    pub fn call_as(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        let headers: Vec<(&str, &str)> = key.map(|k| vec![("api-key", k)]).unwrap_or_default();
        let r = self.raw(method, path, &bytes, &headers);
        (r.status, r.json())
    }

    /// `call`, asserting 200 and returning `result`.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {v}");
        assert_eq!(v["status"], "ok", "{v}");
        assert!(v["time"].is_number(), "{v}");
        v["result"].clone()
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.shutdown();
        }
    }
}
