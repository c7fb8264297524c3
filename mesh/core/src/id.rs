//! Typed identifiers, parsed once at the edge.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

/// Longest identifier we accept from config or a peer; ids travel in every
/// gossip record, so they stay short.
pub const MAX_ID_LEN: usize = 256;

/// An identifier that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty string.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which id.
        kind: &'static str,
    },
    /// Longer than [`MAX_ID_LEN`].
    #[error("{kind} is longer than {MAX_ID_LEN} bytes")]
    TooLong {
        /// Which id.
        kind: &'static str,
    },
    /// Characters outside the allowed set.
    #[error("{kind} {value:?} may only contain letters, digits, '-', '_' and '.'")]
    BadCharacter {
        /// Which id.
        kind: &'static str,
        /// The offending input.
        value: String,
    },
    /// An orchestrator address that is not an http(s) URL.
    #[error("orchestrator address {0:?} must be host:port or an http(s) URL")]
    BadAddress(String),
}

/// Ids are shared text (`Arc<str>`): snapshots and records copy them often,
/// and a copy is a reference count. Two copies of one id compare equal
/// without looking at the bytes.
macro_rules! shared_text_id {
    ($name:ident) => {
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
            }
        }

        impl Eq for $name {}

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                if Arc::ptr_eq(&self.0, &other.0) {
                    Ordering::Equal
                } else {
                    self.0.cmp(&other.0)
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(Arc<str>);

        shared_text_id!($name);

        impl $name {
            /// Parses a name: 1–256 bytes of `[A-Za-z0-9._-]`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                if value.is_empty() {
                    return Err(IdError::Empty { kind: $kind });
                }
                if value.len() > MAX_ID_LEN {
                    return Err(IdError::TooLong { kind: $kind });
                }
                if !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                {
                    return Err(IdError::BadCharacter { kind: $kind, value });
                }
                Ok(Self(value.into()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_id!(
    /// A region name such as `fra`, `lax`, `sin`.
    RegionId,
    "region"
);
name_id!(
    /// A gateway node's name, unique in the cluster (from its certificate).
    NodeId,
    "node id"
);

/// An orchestrator, identified by its normalized service URI
/// (`https://host:port`, no trailing slash). go-livepeer's `parseOrchAddrs`
/// rules apply: no scheme means `https://`, no port means 8935.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct OrchestratorId(Arc<str>);

shared_text_id!(OrchestratorId);

/// The orchestrator's default port (go-livepeer `starter.go`).
pub const DEFAULT_ORCHESTRATOR_PORT: u16 = 8935;

impl OrchestratorId {
    /// Normalizes an address: `host:port`, `https://host`, `http://host:port/`.
    pub fn parse(address: &str) -> Result<Self, IdError> {
        let address = address.trim();
        if address.is_empty() {
            return Err(IdError::Empty {
                kind: "orchestrator address",
            });
        }
        if address.len() > MAX_ID_LEN {
            return Err(IdError::TooLong {
                kind: "orchestrator address",
            });
        }
        let (scheme, rest) = match address.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("https".to_owned(), address),
        };
        if scheme != "https" && scheme != "http" {
            return Err(IdError::BadAddress(address.to_owned()));
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty()
            || authority.contains(['/', '?', '#', '@', ' '])
            || !authority.is_ascii()
        {
            return Err(IdError::BadAddress(address.to_owned()));
        }
        let has_port = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') || host.starts_with('[') => {
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(IdError::BadAddress(address.to_owned()));
                }
                true
            }
            _ => false,
        };
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:{DEFAULT_ORCHESTRATOR_PORT}")
        };
        Ok(Self(format!("{scheme}://{authority}").into()))
    }

    /// The service URI, e.g. `https://127.0.0.1:8935`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the orchestrator speaks plaintext h2c (`http://`, go-livepeer v0.9+).
    pub fn is_plaintext(&self) -> bool {
        self.0.starts_with("http://")
    }
}

impl TryFrom<String> for OrchestratorId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<OrchestratorId> for String {
    fn from(id: OrchestratorId) -> Self {
        id.0.to_string()
    }
}

impl fmt::Display for OrchestratorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orchestrator_addresses_normalize_like_go_livepeer() {
        let cases = [
            ("127.0.0.1", "https://127.0.0.1:8935"),
            ("127.0.0.1:9000", "https://127.0.0.1:9000"),
            ("https://orch.example/", "https://orch.example:8935"),
            ("http://127.0.0.1:7000", "http://127.0.0.1:7000"),
            ("HTTPS://[::1]:7000", "https://[::1]:7000"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                OrchestratorId::parse(input).unwrap().as_str(),
                expected,
                "{input}"
            );
        }
        for bad in [
            "",
            "ftp://x",
            "https://",
            "https://a/b",
            "a:notaport",
            "https://u@h:1",
        ] {
            assert!(OrchestratorId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_reject_bad_input() {
        assert!(RegionId::new("fra").is_ok());
        assert!(RegionId::new("").is_err());
        assert!(RegionId::new("f ra").is_err());
        assert!(NodeId::new("x".repeat(300)).is_err());
    }
}
