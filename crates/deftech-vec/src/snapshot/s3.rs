//! S3 and S3-compatible object stores through aws-sdk-s3 (feature `s3`).
//!
//! The [`ObjectStore`] trait is synchronous (snapshots run on their own threads); the store
//! drives the SDK on a small private tokio runtime, so it may be called from any thread,
//! including from inside another runtime's `spawn_blocking`.

use std::future::Future;
use std::io::{self, Read};
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};

use super::store::check_key;
use super::{ObjectMeta, ObjectStore};
use crate::error::{Error, Result};

/// Where and how to reach an S3 bucket.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (`backups/prod`; empty for the bucket root).
    pub prefix: String,
    /// Region; `None` takes it from the environment (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// Endpoint override for S3-compatible stores and VPC endpoints (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    pub path_style: bool,
    /// Encrypt objects with SSE-KMS under this key id or ARN.
    pub sse_kms_key_id: Option<String>,
    /// Static credentials (access key id, secret); `None` uses the standard AWS provider chain
    /// (environment, profile, web identity, ECS / EC2 instance roles).
    pub credentials: Option<(String, String)>,
    /// Objects larger than this are uploaded in parts of this size (at least 5 MiB).
    pub part_size: usize,
    /// Attempts per request, with exponential backoff between them.
    pub max_attempts: u32,
}

impl S3Config {
    /// A bucket with the defaults: no prefix, region and credentials from the environment,
    /// virtual-hosted addressing, 16 MiB parts, 5 attempts.
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            prefix: String::new(),
            region: None,
            endpoint: None,
            path_style: false,
            sse_kms_key_id: None,
            credentials: None,
            part_size: 16 << 20,
            max_attempts: 5,
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the region.
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets an endpoint override; `path_style` for S3-compatible stores.
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>, path_style: bool) -> Self {
        self.endpoint = Some(url.into());
        self.path_style = path_style;
        self
    }

    /// Encrypts with SSE-KMS under `key_id`.
    #[must_use]
    pub fn sse_kms(mut self, key_id: impl Into<String>) -> Self {
        self.sse_kms_key_id = Some(key_id.into());
        self
    }

    /// Uses static credentials instead of the provider chain.
    #[must_use]
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.credentials = Some((access_key_id.into(), secret.into()));
        self
    }

    /// Sets the multipart part size (clamped to at least 5 MiB, S3's minimum).
    #[must_use]
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(5 << 20);
        self
    }
}

/// The store's private runtime. Dropped without waiting (`shutdown_background`): the last
/// handle may go away inside some other async context (a server shutting down), where a
/// blocking runtime drop would panic; nothing is in flight by then.
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::ops::Deref for Rt {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime lives until drop")
    }
}

/// An S3 bucket (or a prefix in one) as an [`ObjectStore`].
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    rt: Arc<Rt>,
    config: Arc<S3Config>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.location())
            .finish()
    }
}

fn sdk_error<E: std::error::Error + Send + Sync + 'static>(what: String, e: E) -> Error {
    Error::io(what, io::Error::other(DisplayErrorContext(e).to_string()))
}

impl S3Store {
    /// Connects and checks that the bucket is reachable (the error says why not).
    pub fn new(config: S3Config) -> Result<S3Store> {
        if config.bucket.is_empty() {
            return Err(Error::invalid_argument(
                "bucket",
                "the S3 bucket name is empty",
            ));
        }
        let prefix = config.prefix.trim_matches('/');
        if !prefix.is_empty() {
            check_key(prefix)?;
        }
        let config = S3Config {
            prefix: prefix.to_owned(),
            part_size: config.part_size.max(5 << 20),
            max_attempts: config.max_attempts.max(1),
            ..config
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("deftech-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io("S3 client runtime", e))?;
        let rt = Arc::new(Rt(Some(rt)));
        let c = config.clone();
        let client = run(&rt, async move {
            let mut loader = aws_config::defaults(BehaviorVersion::latest());
            if let Some(r) = &c.region {
                loader = loader.region(aws_config::Region::new(r.clone()));
            }
            if let Some((ak, sk)) = &c.credentials {
                loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    ak.clone(),
                    sk.clone(),
                    None,
                    None,
                    "deftech-config",
                ));
            }
            let shared = loader.load().await;
            let mut b = aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(c.path_style)
                .retry_config(RetryConfig::standard().with_max_attempts(c.max_attempts));
            if shared.region().is_none() {
                b = b.region(aws_config::Region::new("us-east-1"));
            }
            if let Some(ep) = &c.endpoint {
                b = b.endpoint_url(ep.clone());
            }
            Client::from_conf(b.build())
        });
        let store = S3Store {
            client,
            rt,
            config: Arc::new(config),
        };
        let (client, bucket) = (store.client.clone(), store.config.bucket.clone());
        run(&store.rt, async move {
            client.head_bucket().bucket(bucket).send().await
        })
        .map_err(|e| sdk_error(format!("{} (bucket check)", store.location()), e))?;
        Ok(store)
    }

    fn full_key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(if self.config.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.config.prefix)
        })
    }

    fn shown(&self, key: &str) -> String {
        format!("{}/{key}", self.location())
    }

    fn put_small(&self, full: String, body: Vec<u8>) -> std::result::Result<(), String> {
        let (client, cfg) = (self.client.clone(), self.config.clone());
        run(&self.rt, async move {
            let mut req = client
                .put_object()
                .bucket(&cfg.bucket)
                .key(full)
                .content_length(body.len() as i64)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .body(ByteStream::from(body));
            if let Some(k) = &cfg.sse_kms_key_id {
                req = req
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(k);
            }
            req.send()
                .await
                .map(|_| ())
                .map_err(|e| DisplayErrorContext(e).to_string())
        })
    }

    fn put_multipart(
        &self,
        full: &str,
        data: &mut dyn Read,
        len: u64,
    ) -> std::result::Result<(), String> {
        let (client, cfg, key) = (self.client.clone(), self.config.clone(), full.to_owned());
        let upload_id = run(&self.rt, async move {
            let mut req = client
                .create_multipart_upload()
                .bucket(&cfg.bucket)
                .key(key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C);
            if let Some(k) = &cfg.sse_kms_key_id {
                req = req
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(k);
            }
            req.send()
                .await
                .map_err(|e| DisplayErrorContext(e).to_string())
        })?
        .upload_id
        .ok_or("the store returned no upload id")?;
        let result = self.upload_parts(full, &upload_id, data, len);
        if result.is_err() {
            let (client, cfg, key, id) = (
                self.client.clone(),
                self.config.clone(),
                full.to_owned(),
                upload_id,
            );
            let _ = run(&self.rt, async move {
                client
                    .abort_multipart_upload()
                    .bucket(&cfg.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
            });
        }
        result
    }

    fn upload_parts(
        &self,
        full: &str,
        upload_id: &str,
        data: &mut dyn Read,
        len: u64,
    ) -> std::result::Result<(), String> {
        let mut parts = Vec::new();
        let mut left = len;
        let mut number = 1;
        while left > 0 {
            let n = left.min(self.config.part_size as u64) as usize;
            let mut buf = vec![0u8; n];
            data.read_exact(&mut buf)
                .map_err(|e| format!("reading part {number}: {e}"))?;
            let (client, cfg, key, id) = (
                self.client.clone(),
                self.config.clone(),
                full.to_owned(),
                upload_id.to_owned(),
            );
            let out = run(&self.rt, async move {
                client
                    .upload_part()
                    .bucket(&cfg.bucket)
                    .key(key)
                    .upload_id(id)
                    .part_number(number)
                    .content_length(n as i64)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                    .body(ByteStream::from(buf))
                    .send()
                    .await
                    .map_err(|e| DisplayErrorContext(e).to_string())
            })?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag)
                    .set_checksum_crc32_c(out.checksum_crc32_c)
                    .build(),
            );
            left -= n as u64;
            number += 1;
        }
        let (client, cfg, key, id) = (
            self.client.clone(),
            self.config.clone(),
            full.to_owned(),
            upload_id.to_owned(),
        );
        run(&self.rt, async move {
            client
                .complete_multipart_upload()
                .bucket(&cfg.bucket)
                .key(key)
                .upload_id(id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| DisplayErrorContext(e).to_string())
        })
    }
}

/// Runs a future on the store's runtime and waits for it, from any thread.
fn run<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    f: impl Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().expect("the S3 runtime dropped a request")
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, data: &mut dyn Read, len: u64) -> Result<()> {
        let full = self.full_key(key)?;
        let shown = self.shown(key);
        let result = if len <= self.config.part_size as u64 {
            let mut body = vec![0u8; len as usize];
            data.read_exact(&mut body).map_err(|e| {
                Error::io(
                    &shown,
                    io::Error::new(e.kind(), format!("expected {len} bytes: {e}")),
                )
            })?;
            self.put_small(full, body)
        } else {
            self.put_multipart(&full, data, len)
        };
        result.map_err(|e| Error::io(shown, io::Error::other(e)))
    }

    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let full = self.full_key(key)?;
        let (client, cfg) = (self.client.clone(), self.config.clone());
        let out = run(&self.rt, async move {
            client
                .get_object()
                .bucket(&cfg.bucket)
                .key(full)
                .send()
                .await
        })
        .map_err(|e| sdk_error(self.shown(key), e))?;
        Ok(Box::new(S3Reader {
            rt: self.rt.clone(),
            body: Some(out.body),
            chunk: Default::default(),
            shown: self.shown(key),
        }))
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let full = self.full_key(key)?;
        let (client, cfg) = (self.client.clone(), self.config.clone());
        match run(&self.rt, async move {
            client
                .head_object()
                .bucket(&cfg.bucket)
                .key(full)
                .send()
                .await
        }) {
            Ok(o) => Ok(Some(o.content_length.unwrap_or(0).max(0) as u64)),
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_not_found()) {
                    Ok(None)
                } else {
                    Err(sdk_error(self.shown(key), e))
                }
            }
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let strip = if self.config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.config.prefix)
        };
        let full = format!("{strip}{prefix}");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (client, cfg, p, t) = (
                self.client.clone(),
                self.config.clone(),
                full.clone(),
                token.clone(),
            );
            let page = run(&self.rt, async move {
                client
                    .list_objects_v2()
                    .bucket(&cfg.bucket)
                    .prefix(p)
                    .set_continuation_token(t)
                    .send()
                    .await
            })
            .map_err(|e| sdk_error(self.shown(prefix), e))?;
            for o in page.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&strip)) {
                    out.push(ObjectMeta {
                        key: k.to_owned(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        let (client, cfg) = (self.client.clone(), self.config.clone());
        run(&self.rt, async move {
            client
                .delete_object()
                .bucket(&cfg.bucket)
                .key(full)
                .send()
                .await
        })
        .map(|_| ())
        .map_err(|e| sdk_error(self.shown(key), e))
    }

    fn location(&self) -> String {
        if self.config.prefix.is_empty() {
            format!("s3://{}", self.config.bucket)
        } else {
            format!("s3://{}/{}", self.config.bucket, self.config.prefix)
        }
    }
}

/// A streaming object body read chunk by chunk.
struct S3Reader {
    rt: Arc<Rt>,
    body: Option<ByteStream>,
    chunk: bytes::Bytes,
    shown: String,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            let Some(mut body) = self.body.take() else {
                return Ok(0);
            };
            let (body, next) = run(&self.rt, async move {
                let next = body.try_next().await;
                (body, next)
            });
            match next {
                Ok(Some(c)) => {
                    self.chunk = c;
                    self.body = Some(body);
                }
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(format!("{}: {e}", self.shown))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}
