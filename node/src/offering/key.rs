//! The operator's secp256k1 key and Ethereum personal-message signatures
//! (EIP-191), the identity Livepeer uses.
//!
//! - The key file holds the 32-byte private key as 64 hex digits (an
//!   optional `0x` and surrounding whitespace are accepted). A file that
//!   group or others may read is refused; the key is never logged (`Debug`
//!   shows only the address).
//! - [`OperatorKey::sign_personal`] signs
//!   `keccak256("\x19Ethereum Signed Message:\n" + len(message) + message)`
//!   (length in decimal) and returns the 65 bytes `r ‖ s ‖ v` with low `s` and
//!   `v` = 27 or 28, as go-livepeer, `cast wallet sign` and ethers produce.

use std::io::Write;
use std::path::{Path, PathBuf};

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use rand::Rng;
use sha3::{Digest, Keccak256};

/// An Ethereum address (20 bytes).
pub type Address = [u8; 20];

/// The operator's signing key.
pub struct OperatorKey {
    key: SigningKey,
    address: Address,
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorKey")
            .field("address", &checksum_address(&self.address))
            .finish_non_exhaustive()
    }
}

/// Why a key could not be loaded, written or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error(
        "{path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`",
        path = path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold 64 hex digits of a valid secp256k1 scalar.
    #[error("{0}: not a secp256k1 private key (expected 64 hex digits)")]
    Malformed(PathBuf),
    /// A signature that is not 65 bytes with v = 27/28, or does not recover.
    #[error("invalid signature: {0}")]
    BadSignature(String),
}

impl OperatorKey {
    /// Loads the key from `path`, refusing a file group or others may read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bytes = parse_hex(text.trim()).ok_or_else(|| KeyError::Malformed(path.to_owned()))?;
        Self::from_bytes(&bytes).ok_or_else(|| KeyError::Malformed(path.to_owned()))
    }

    /// A key from its 32 bytes; `None` if they are not a valid scalar.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let key = SigningKey::from_slice(bytes).ok()?;
        let address = address_of(key.verifying_key());
        Some(Self { key, address })
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        loop {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            // Zero or ≥ the group order: astronomically rare; draw again.
            if let Some(key) = Self::from_bytes(&bytes) {
                return key;
            }
        }
    }

    /// Generates a key and writes it to `path` (mode 0600); refuses to
    /// overwrite an existing file.
    pub fn write_new(path: &Path) -> Result<Self, KeyError> {
        let key = Self::generate();
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        let text = format!("{}\n", hex(&key.key.to_bytes()));
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(key)
    }

    /// The key's Ethereum address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The EIP-191 personal-message signature of `message`: `r ‖ s ‖ v`.
    pub fn sign_personal(&self, message: &[u8]) -> [u8; 65] {
        let digest = personal_message_hash(message);
        // RFC 6979 signing of a 32-byte digest with a valid key cannot
        // fail; if it ever did, an all-zero signature fails verification.
        let Ok((signature, recovery)) = self.key.sign_prehash_recoverable(&digest) else {
            return [0; 65];
        };
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&signature.to_bytes());
        out[64] = 27 + recovery.to_byte();
        out
    }
}

/// `keccak256("\x19Ethereum Signed Message:\n" + len + message)`.
pub fn personal_message_hash(message: &[u8]) -> [u8; 32] {
    let mut hasher = Keccak256::new();
    hasher.update(b"\x19Ethereum Signed Message:\n");
    hasher.update(message.len().to_string().as_bytes());
    hasher.update(message);
    hasher.finalize().into()
}

/// The address that signed `message` with `signature` (65 bytes, v = 27/28).
pub fn recover_personal(message: &[u8], signature: &[u8]) -> Result<Address, KeyError> {
    let bad = |why: &str| KeyError::BadSignature(why.to_owned());
    let [body @ .., v] = signature else {
        return Err(bad("empty"));
    };
    if body.len() != 64 {
        return Err(bad("expected 65 bytes"));
    }
    let recovery = v
        .checked_sub(27)
        .and_then(RecoveryId::from_byte)
        .filter(|r| r.to_byte() < 2)
        .ok_or_else(|| bad("v must be 27 or 28"))?;
    let signature = Signature::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let key =
        VerifyingKey::recover_from_prehash(&personal_message_hash(message), &signature, recovery)
            .map_err(|e| bad(&e.to_string()))?;
    Ok(address_of(&key))
}

/// The EIP-55 mixed-case form of an address, `0x`-prefixed.
pub fn checksum_address(address: &Address) -> String {
    let lower = hex(address);
    let hash = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}

/// Lower-case hex without a prefix.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Hex (optional `0x`, either case) to bytes; `None` if malformed.
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    address
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The well-known first Hardhat/Anvil account.
    const ANVIL_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const ANVIL_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    fn anvil() -> OperatorKey {
        OperatorKey::from_bytes(&parse_hex(ANVIL_KEY).expect("hex")).expect("valid key")
    }

    #[test]
    fn the_address_is_the_known_eip55_address() {
        assert_eq!(checksum_address(&anvil().address()), ANVIL_ADDRESS);
        assert!(!format!("{:?}", anvil()).contains(ANVIL_KEY));
    }

    #[test]
    fn signatures_recover_to_the_signer_and_fail_when_tampered() {
        let key = anvil();
        let message = br#"{"name":"x"}"#;
        let signature = key.sign_personal(message);
        assert!(signature[64] == 27 || signature[64] == 28);
        assert_eq!(
            recover_personal(message, &signature).expect("recovers"),
            key.address()
        );
        let tampered = recover_personal(br#"{"name":"y"}"#, &signature);
        assert!(tampered.is_err() || tampered.is_ok_and(|a| a != key.address()));
        assert!(recover_personal(message, &signature[..64]).is_err());
    }

    #[test]
    fn key_files_must_be_private_and_well_formed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("operator.key");
        let written = OperatorKey::write_new(&path).expect("written");
        assert_eq!(
            OperatorKey::load(&path).expect("loads").address(),
            written.address()
        );
        assert!(OperatorKey::write_new(&path).is_err(), "never overwrites");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
            assert!(matches!(
                OperatorKey::load(&path),
                Err(KeyError::Permissions { .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        std::fs::write(&path, "0xnothex").expect("write");
        assert!(matches!(
            OperatorKey::load(&path),
            Err(KeyError::Malformed(_))
        ));
    }
}
