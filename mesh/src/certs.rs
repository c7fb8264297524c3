//! Cluster identity: the cluster CA, node certificates, and reading a peer's
//! identity back from its certificate.
//!
//! A node's identity is `(node id, region)`, carried in one SAN URI
//! `gatemesh://node/<name>?region=<region>` (plus CN=name, OU=region for
//! humans). Every node certificate also carries the shared DNS SAN
//! [`MESH_SERVER_NAME`], which is the SNI every node dials, so the TLS name
//! check passes for any cluster member and the identity comes from the URI.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mesh_core::{NodeId, RegionId};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The DNS SAN shared by every node certificate; used as SNI on every dial.
pub const MESH_SERVER_NAME: &str = "mesh.gatemesh.internal";
/// File name of the cluster CA certificate.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the cluster CA private key (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// Scheme and path prefix of the identity SAN URI.
const IDENTITY_URI_PREFIX: &str = "gatemesh://node/";
/// Validity of the CA certificate, in years from the start of this year.
const CA_VALIDITY_YEARS: i32 = 20;
/// Validity of a node certificate, in years from the start of this year.
const NODE_VALIDITY_YEARS: i32 = 5;

/// Errors creating, loading or parsing cluster certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `init_ca` refuses to overwrite an existing CA key.
    #[error("{0} already exists; refusing to overwrite the cluster CA")]
    AlreadyExists(PathBuf),
    /// rcgen failed to generate or sign.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file held no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A certificate could not be parsed as X.509.
    #[error("certificate is not valid X.509: {0}")]
    X509(String),
    /// The certificate has no (or a malformed) gatemesh identity URI.
    #[error("certificate carries no valid gatemesh identity: {0}")]
    NoIdentity(String),
}

/// Paths written by [`init_ca`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// `ca.pem`.
    pub cert_path: PathBuf,
    /// `ca.key` (0600).
    pub key_path: PathBuf,
}

/// Paths written by [`issue_node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    /// `<node>.pem`: the node certificate.
    pub cert_path: PathBuf,
    /// `<node>.key` (0600).
    pub key_path: PathBuf,
}

/// Who a peer is, according to its (CA-verified) certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// The node name.
    pub node: NodeId,
    /// The node's region.
    pub region: RegionId,
}

/// This node's identity and TLS material, loaded from PEM files.
pub struct NodeIdentity {
    identity: PeerIdentity,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_roots: Arc<rustls::RootCertStore>,
}

/// Creates a new cluster CA (ECDSA P-256) in `dir`: `ca.pem` and `ca.key`.
///
/// Refuses to overwrite an existing `ca.key`: replacing the CA locks every
/// existing node out of the cluster.
pub fn init_ca(dir: &Path) -> Result<CaFiles, CertError> {
    let files = CaFiles {
        cert_path: dir.join(CA_CERT_FILE),
        key_path: dir.join(CA_KEY_FILE),
    };
    if files.key_path.exists() {
        return Err(CertError::AlreadyExists(files.key_path));
    }
    fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "gatemesh cluster CA");
    name.push(DnType::OrganizationName, "gatemesh");
    params.distinguished_name = name;
    set_validity(&mut params, CA_VALIDITY_YEARS);
    let cert = params.self_signed(&key)?;
    write_file(&files.key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&files.cert_path, cert.pem().as_bytes(), false)?;
    Ok(files)
}

/// Issues a certificate for `node` in `region`, signed by the CA in `ca_dir`,
/// and writes `<node>.pem` and `<node>.key` (0600) into `out_dir`.
///
/// The certificate has both the ServerAuth and ClientAuth EKUs (one QUIC
/// endpoint dials and accepts), the shared SAN [`MESH_SERVER_NAME`], and the
/// identity URI `gatemesh://node/<node>?region=<region>`.
pub fn issue_node(
    ca_dir: &Path,
    out_dir: &Path,
    node: &NodeId,
    region: &RegionId,
) -> Result<NodeFiles, CertError> {
    let ca_cert_path = ca_dir.join(CA_CERT_FILE);
    let ca_key_path = ca_dir.join(CA_KEY_FILE);
    let ca_pem = read_text(&ca_cert_path)?;
    let ca_key = KeyPair::from_pem(&read_text(&ca_key_path)?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, node.as_str());
    name.push(DnType::OrganizationalUnitName, region.as_str());
    name.push(DnType::OrganizationName, "gatemesh");
    params.distinguished_name = name;
    params.subject_alt_names = vec![
        SanType::DnsName(MESH_SERVER_NAME.try_into()?),
        SanType::URI(identity_uri(node, region).try_into()?),
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, NODE_VALIDITY_YEARS);
    let cert = params.signed_by(&key, &issuer)?;

    fs::create_dir_all(out_dir).map_err(|source| io_error(out_dir, source))?;
    let files = NodeFiles {
        cert_path: out_dir.join(format!("{node}.pem")),
        key_path: out_dir.join(format!("{node}.key")),
    };
    write_file(&files.key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&files.cert_path, cert.pem().as_bytes(), false)?;
    Ok(files)
}

/// Reads the gatemesh identity from a DER certificate (the peer's leaf).
///
/// Only call this on certificates that rustls has already verified against
/// the cluster CA; this function checks format, not trust.
pub fn peer_identity_from_der(der: &[u8]) -> Result<PeerIdentity, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::X509(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::X509(e.to_string()))?
        .ok_or_else(|| CertError::NoIdentity("no subjectAltName".into()))?;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name
            && let Some(rest) = uri.strip_prefix(IDENTITY_URI_PREFIX)
        {
            return parse_identity_rest(rest);
        }
    }
    Err(CertError::NoIdentity("no gatemesh:// URI".into()))
}

impl NodeIdentity {
    /// Loads a node certificate, its key and the cluster CA from PEM files,
    /// and reads the node id and region from the certificate.
    pub fn load(cert_path: &Path, key_path: &Path, ca_path: &Path) -> Result<Self, CertError> {
        let chain = read_certs(cert_path)?;
        let leaf = chain.first().ok_or_else(|| CertError::Pem {
            path: cert_path.to_owned(),
            reason: "no certificate".into(),
        })?;
        let identity = peer_identity_from_der(leaf)?;
        let key =
            PrivateKeyDer::from_pem_slice(&read_bytes(key_path)?).map_err(|e| CertError::Pem {
                path: key_path.to_owned(),
                reason: e.to_string(),
            })?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in read_certs(ca_path)? {
            roots.add(ca).map_err(|e| CertError::Pem {
                path: ca_path.to_owned(),
                reason: e.to_string(),
            })?;
        }
        Ok(Self {
            identity,
            chain,
            key,
            ca_roots: Arc::new(roots),
        })
    }

    /// Loads `<node>.pem`/`<node>.key` from `dir` and `ca.pem` from `ca_dir`,
    /// the layout [`issue_node`] writes.
    pub fn load_issued(dir: &Path, node: &NodeId, ca_dir: &Path) -> Result<Self, CertError> {
        Self::load(
            &dir.join(format!("{node}.pem")),
            &dir.join(format!("{node}.key")),
            &ca_dir.join(CA_CERT_FILE),
        )
    }

    /// This node's name.
    pub fn node(&self) -> &NodeId {
        &self.identity.node
    }

    /// This node's region.
    pub fn region(&self) -> &RegionId {
        &self.identity.region
    }

    /// Node and region together.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.chain.clone()
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    pub(crate) fn ca_roots(&self) -> Arc<rustls::RootCertStore> {
        self.ca_roots.clone()
    }
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        Self {
            identity: self.identity.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            ca_roots: self.ca_roots.clone(),
        }
    }
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node", &self.identity.node)
            .field("region", &self.identity.region)
            .finish_non_exhaustive()
    }
}

fn identity_uri(node: &NodeId, region: &RegionId) -> String {
    format!("{IDENTITY_URI_PREFIX}{node}?region={region}")
}

fn parse_identity_rest(rest: &str) -> Result<PeerIdentity, CertError> {
    let (node, query) = rest
        .split_once('?')
        .ok_or_else(|| CertError::NoIdentity(format!("no region in {rest:?}")))?;
    let region = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("region="))
        .ok_or_else(|| CertError::NoIdentity(format!("no region in {rest:?}")))?;
    Ok(PeerIdentity {
        node: NodeId::new(node).map_err(|e| CertError::NoIdentity(e.to_string()))?,
        region: RegionId::new(region).map_err(|e| CertError::NoIdentity(e.to_string()))?,
    })
}

/// Sets validity from January 1st of the current year for `years` years.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Average Gregorian year; off by at most a day around New Year, which only
    // moves `not_before` earlier.
    let year = 1970 + i32::try_from(secs / 31_556_952).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read_bytes(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            path: path.to_owned(),
            reason: "no certificate".into(),
        });
    }
    Ok(certs)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|source| io_error(path, source))
}

fn read_text(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| io_error(path, source))
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), CertError> {
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|source| io_error(path, source))?;
    file.write_all(contents)
        .map_err(|source| io_error(path, source))?;
    Ok(())
}

fn io_error(path: &Path, source: std::io::Error) -> CertError {
    CertError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn issued_certificate_round_trips_identity_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca = init_ca(dir.path()).unwrap();
        assert!(matches!(
            init_ca(dir.path()),
            Err(CertError::AlreadyExists(_))
        ));
        let node = NodeId::new("gw-fra-1").unwrap();
        let region = RegionId::new("fra").unwrap();
        let files = issue_node(dir.path(), dir.path(), &node, &region).unwrap();
        for key in [&ca.key_path, &files.key_path] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let identity =
            NodeIdentity::load(&files.cert_path, &files.key_path, &ca.cert_path).unwrap();
        assert_eq!(identity.node(), &node);
        assert_eq!(identity.region(), &region);
    }

    #[test]
    fn identity_uri_parsing_rejects_bad_input() {
        assert!(parse_identity_rest("a?region=fra").is_ok());
        assert!(parse_identity_rest("a").is_err());
        assert!(parse_identity_rest("a?zone=fra").is_err());
        assert!(parse_identity_rest("a b?region=fra").is_err());
        assert!(peer_identity_from_der(b"garbage").is_err());
    }
}
