//! Server configuration: a TOML file, overridden by flags and `DEFTECH_*` environment variables
//! (see `main.rs`), with embedded defaults so that `deftech serve` runs with no configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
