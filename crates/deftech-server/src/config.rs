//! Server configuration: a TOML file, overridden by flags and `DEFTECH_*` environment variables
//! (see `main.rs`), with embedded defaults so that `deftech serve` runs with no configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deftech_vec::ObjectStore;

use serde::Deserialize;

use crate::auth::Role;

/// Everything the server needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Database folder.
    pub data: PathBuf,
    /// Listen address.
    pub listen: String,
    /// Listen on a non-loopback address without API keys.
    pub allow_insecure_public: bool,
    /// API keys and their roles.
    pub api_keys: Vec<ApiKey>,
    /// HTTPS certificate and key (PEM files).
    pub tls: Option<TlsConfig>,
    /// Request limits.
    pub limits: ServerLimits,
    /// Seconds to let in-flight requests finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Snapshot store, scheduled snapshots and WAL archiving.
    pub snapshots: SnapshotSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data: PathBuf::from("./data"),
            listen: "127.0.0.1:6333".into(),
            allow_insecure_public: false,
            api_keys: Vec::new(),
            tls: None,
            limits: ServerLimits::default(),
            shutdown_grace_secs: 30,
            snapshots: SnapshotSettings::default(),
        }
    }
}

/// An API key and what it may do.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The secret.
    pub key: String,
    /// Its role.
    pub role: Role,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// HTTPS settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// Where snapshots go and what runs on a schedule.
///
/// ```toml
/// [snapshots]
/// interval_secs = 86400          # a snapshot of every collection daily (0 = only on request)
/// keep = 7                       # then keep the newest 7 per collection
/// wal_archive = true             # ship the WAL continuously (point-in-time restore)
/// wal_archive_interval_secs = 60 # the active WAL file at least this often (the RPO)
/// [snapshots.s3]                 # without this table: a local folder, `path`
/// bucket = "deftech-backups"
/// prefix = "prod/replica-a"
/// region = "us-gov-west-1"
/// sse_kms_key_id = "arn:aws:kms:..."
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotSettings {
    /// Local snapshot folder when no S3 bucket is set [default: `<data>/snapshots`].
    pub path: Option<PathBuf>,
    /// An S3 (or S3-compatible) bucket instead of the local folder.
    pub s3: Option<S3Settings>,
    /// Seconds between scheduled snapshots of every collection; 0 = none.
    pub interval_secs: u64,
    /// Snapshots kept per collection after each scheduled one; 0 = keep all.
    pub keep: usize,
    /// Ship every collection's WAL to the store continuously.
    pub wal_archive: bool,
    /// Seconds between shipments of the active WAL file (closed files go within a second).
    pub wal_archive_interval_secs: u64,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        SnapshotSettings {
            path: None,
            s3: None,
            interval_secs: 0,
            keep: 0,
            wal_archive: false,
            wal_archive_interval_secs: 60,
        }
    }
}

/// An S3 bucket for snapshots. Credentials come from the standard AWS provider chain unless
/// given here.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: String,
    pub region: Option<String>,
    /// Endpoint override (S3-compatible stores, VPC endpoints).
    pub endpoint: Option<String>,
    /// Path-style addressing (most S3-compatible stores).
    pub path_style: bool,
    /// SSE-KMS key id or ARN.
    pub sse_kms_key_id: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl SnapshotSettings {
    /// Opens the configured store (blocking: S3 checks the bucket).
    pub fn open_store(&self, data: &Path) -> Result<Arc<dyn ObjectStore>, String> {
        match &self.s3 {
            None => {
                let path = self.path.clone().unwrap_or_else(|| data.join("snapshots"));
                let store = deftech_vec::LocalStore::new(&path)
                    .map_err(|e| format!("snapshots.path {}: {e}", path.display()))?;
                Ok(Arc::new(store))
            }
            #[cfg(feature = "s3")]
            Some(s3) => {
                let mut c = deftech_vec::S3Config::new(s3.bucket.clone()).prefix(s3.prefix.clone());
                if let Some(r) = &s3.region {
                    c = c.region(r.clone());
                }
                if let Some(e) = &s3.endpoint {
                    c = c.endpoint(e.clone(), s3.path_style);
                }
                if let Some(k) = &s3.sse_kms_key_id {
                    c = c.sse_kms(k.clone());
                }
                match (&s3.access_key_id, &s3.secret_access_key) {
                    (Some(a), Some(k)) => c = c.credentials(a.clone(), k.clone()),
                    (None, None) => {}
                    _ => {
                        return Err(
                            "snapshots.s3: access_key_id and secret_access_key go together".into(),
                        );
                    }
                }
                let store =
                    deftech_vec::S3Store::new(c).map_err(|e| format!("snapshots.s3: {e}"))?;
                Ok(Arc::new(store))
            }
            #[cfg(not(feature = "s3"))]
            Some(_) => Err("snapshots.s3: this build has no S3 support (feature `s3`)".into()),
        }
    }
}

/// Request limits: larger requests get 400 or 413 naming the limit, and change nothing.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most points (or ids) in one write.
    pub max_batch_points: usize,
    /// Largest `limit` (plus `offset`) of a search or scroll.
    pub max_limit: usize,
    /// Largest `hnsw_ef`.
    pub max_ef: usize,
    /// Most searches in one batch request.
    pub max_batch_searches: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 32 << 20,
            max_batch_points: 10_000,
            max_limit: 10_000,
            max_ef: 4096,
            max_batch_searches: 256,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<ServerConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen
            .parse()
            .map_err(|e| format!("listen address {:?}: {e}", self.listen))
    }

    /// Checks the configuration; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let addr = self.listen_addr()?;
        if self.api_keys.is_empty() && !addr.ip().is_loopback() && !self.allow_insecure_public {
            return Err(format!(
                "refusing to listen on {addr} without API keys: add api_keys, listen on a loopback \
                 address, or set allow_insecure_public = true (--allow-insecure-public)"
            ));
        }
        let sn = &self.snapshots;
        if let Some(s3) = &sn.s3
            && s3.bucket.is_empty()
        {
            return Err("snapshots.s3.bucket: must be set".into());
        }
        if sn.wal_archive && sn.wal_archive_interval_secs == 0 {
            return Err("snapshots.wal_archive_interval_secs: must be at least 1".into());
        }
        for (i, k) in self.api_keys.iter().enumerate() {
            if k.key.len() < 8 {
                return Err(format!("api_keys[{i}].key: must be at least 8 characters"));
            }
        }
        let l = &self.limits;
        for (name, v) in [
            ("limits.max_body_bytes", l.max_body_bytes),
            ("limits.max_batch_points", l.max_batch_points),
            ("limits.max_limit", l.max_limit),
            ("limits.max_ef", l.max_ef),
            ("limits.max_batch_searches", l.max_batch_searches),
        ] {
            if v == 0 {
                return Err(format!("{name}: must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file_and_rejects_unknown_keys() {
        let c: ServerConfig = toml::from_str(
            r#"
            data = "/var/lib/deftech"
            listen = "0.0.0.0:6333"
            [[api_keys]]
            key = "secret-admin"
            role = "admin"
            [[api_keys]]
            key = "secret-reader"
            role = "read-only"
            [limits]
            max_body_bytes = 1024
            "#,
        )
        .unwrap();
        assert_eq!(c.api_keys.len(), 2);
        assert_eq!(c.limits.max_body_bytes, 1024);
        assert_eq!(c.limits.max_limit, 10_000);
        c.validate().unwrap();
        assert!(toml::from_str::<ServerConfig>("dta = 1").is_err());
    }

    #[test]
    fn refuses_public_addresses_without_keys() {
        let c = ServerConfig {
            listen: "0.0.0.0:6333".into(),
            ..ServerConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("without API keys"));
        let c = ServerConfig {
            allow_insecure_public: true,
            ..c
        };
        c.validate().unwrap();
        ServerConfig::default().validate().unwrap();
    }
}
