//! `/admin/keys`: API keys managed at run time. The node replicates every
//! change to the whole cluster; keys are only ever shown as the hex of their
//! SHA-256 (the `id`), never in clear, except once in the answer that
//! generated them.
//!
//! | route | answer |
//! |---|---|
//! | `GET /admin/keys` | `{"keys":[KeyRow…]}`: configured and runtime keys |
//! | `POST /admin/keys` | body `{"tenant", "tier"?, "key"?}`; 201 with the row (and `key` when generated) |
//! | `DELETE /admin/keys/{id}` | revokes the key with that SHA-256 hex (or its first 16 hex digits); 200 with the row |

use serde::{Deserialize, Serialize};

use super::AdminError;

/// Key management, implemented by the node.
pub trait KeyAdmin: Send + Sync + 'static {
    /// Every key the node knows: configured ones and runtime ones.
    fn list(&self) -> Vec<KeyRow>;

    /// Adds a key (generated when `request.key` is `None`).
    fn create(&self, request: NewKey) -> Result<CreatedKey, AdminError>;

    /// Revokes the key whose id (full SHA-256 hex or its first 16 digits)
    /// is `id`; cluster-wide and permanent.
    fn revoke(&self, id: &str) -> Result<KeyRow, AdminError>;
}

/// Body of `POST /admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// The tenant the key belongs to.
    pub tenant: String,
    /// The tier (default `default`).
    #[serde(default)]
    pub tier: Option<String>,
    /// The key itself; omit it to have one generated.
    #[serde(default)]
    pub key: Option<String>,
}

/// One key as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRow {
    /// Hex SHA-256 of the key.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its tier.
    pub tier: String,
    /// `config` (the node's file) or `runtime` (the admin API).
    pub source: &'static str,
    /// Refused everywhere.
    pub revoked: bool,
}

/// Answer of `POST /admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedKey {
    /// The new key's row.
    #[serde(flatten)]
    pub row: KeyRow,
    /// The key in clear, only when the node generated it (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Body of `GET /admin/keys`.
#[derive(Debug, Serialize)]
pub(crate) struct KeysBody {
    pub(crate) keys: Vec<KeyRow>,
}
