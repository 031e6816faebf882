//! API keys with roles, in the `api-key` header or `Authorization: Bearer`, compared in
//! constant time.

use serde::Deserialize;

use crate::config::ApiKey;

/// What a key may do. Each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Searches, reads, counts, collection info.
    ReadOnly,
    /// Also point and payload writes and payload indexes.
    ReadWrite,
    /// Also creating and deleting collections.
    Admin,
}

impl Role {
    /// Name as in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::ReadWrite => "read-write",
            Role::Admin => "admin",
        }
    }
}

/// Byte-wise comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// The configured keys.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    keys: Vec<ApiKey>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No key, or an unknown key: 401.
    Unauthenticated,
    /// A valid key without the role: 403.
    Forbidden { have: Role, need: Role },
}

impl Keys {
    pub fn new(keys: Vec<ApiKey>) -> Self {
        Keys { keys }
    }

    /// True when no key is configured (everything is allowed).
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// The role of `presented`, checking every key (no early exit).
    fn role_of(&self, presented: &str) -> Option<Role> {
        let mut found = None;
        for k in &self.keys {
            if constant_time_eq(k.key.as_bytes(), presented.as_bytes()) {
                found = found.max(Some(k.role));
            }
        }
        found
    }

    /// Checks the headers of a request needing `need`.
    pub fn check(&self, headers: &axum::http::HeaderMap, need: Role) -> Result<(), Denied> {
        if self.is_open() {
            return Ok(());
        }
        let presented = headers
            .get("api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            })
            .ok_or(Denied::Unauthenticated)?;
        let have = self
            .role_of(presented.trim())
            .ok_or(Denied::Unauthenticated)?;
        if have < need {
            return Err(Denied::Forbidden { have, need });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn keys() -> Keys {
        Keys::new(vec![
            ApiKey {
                key: "reader-key".into(),
                role: Role::ReadOnly,
            },
            ApiKey {
                key: "admin-key!".into(),
                role: Role::Admin,
            },
        ])
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[test]
    fn roles_are_checked() {
        let k = keys();
        assert_eq!(
            k.check(&HeaderMap::new(), Role::ReadOnly),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(
            k.check(&headers("api-key", "nope"), Role::ReadOnly),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(
            k.check(&headers("api-key", "reader-key"), Role::ReadOnly),
            Ok(())
        );
        assert_eq!(
            k.check(&headers("api-key", "reader-key"), Role::ReadWrite),
            Err(Denied::Forbidden {
                have: Role::ReadOnly,
                need: Role::ReadWrite
            })
        );
        assert_eq!(
            k.check(&headers("authorization", "Bearer admin-key!"), Role::Admin),
            Ok(())
        );
        assert!(
            Keys::default()
                .check(&HeaderMap::new(), Role::Admin)
                .is_ok()
        );
    }

    #[test]
    fn comparison_needs_equal_length_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
