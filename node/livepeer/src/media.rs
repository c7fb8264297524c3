//! Result media: `data:` URIs decoded in place (RFC 2397), without a network
//! call. Orchestrators return them for images when the request lacks the
//! `Livepeer-AI-Worker-1.0` authorization (protocol §2.1, §2.3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use crate::error::OrchestratorError;

/// RFC 2397's media type when a `data:` URI names none.
pub const DEFAULT_DATA_URI_TYPE: &str = "text/plain;charset=US-ASCII";

/// Whether `url` is a `data:` URI (scheme is case-insensitive).
pub fn is_data_uri(url: &str) -> bool {
    url.get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:"))
}

/// Decodes a `data:<mime>[;param…][;base64],<payload>` URI into its media
/// type and bytes, refusing payloads over `max_bytes`.
pub fn decode_data_uri(url: &str, max_bytes: usize) -> Result<(String, Bytes), OrchestratorError> {
    if !is_data_uri(url) {
        return Err(OrchestratorError::DataUri("not a data: URI".into()));
    }
    let rest = &url[5..];
    let (header, payload) = rest
        .split_once(',')
        .ok_or_else(|| OrchestratorError::DataUri("missing ','".into()))?;
    const BASE64_SUFFIX: &str = ";base64";
    // The suffix is ASCII, so when it matches, the cut is a char boundary.
    let is_base64 = header.len() >= BASE64_SUFFIX.len()
        && header.as_bytes()[header.len() - BASE64_SUFFIX.len()..]
            .eq_ignore_ascii_case(BASE64_SUFFIX.as_bytes());
    let media_type = if is_base64 {
        &header[..header.len() - BASE64_SUFFIX.len()]
    } else {
        header
    };
    let media_type = media_type.trim();
    let media_type = if media_type.is_empty() {
        DEFAULT_DATA_URI_TYPE.to_owned()
    } else if media_type.starts_with(';') {
        format!("text/plain{media_type}")
    } else {
        media_type.to_owned()
    };
    if media_type.bytes().any(|b| !(b' '..=b'~').contains(&b)) {
        return Err(OrchestratorError::DataUri(
            "media type is not printable ASCII".into(),
        ));
    }
    let data = if is_base64 {
        if payload.len() / 4 * 3 > max_bytes.saturating_add(3) {
            return Err(OrchestratorError::BodyTooLarge {
                limit_bytes: max_bytes,
            });
        }
        let compact: String = payload
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        BASE64
            .decode(compact)
            .map_err(|error| OrchestratorError::DataUri(format!("bad base64: {error}")))?
    } else {
        percent_decode(payload)?
    };
    if data.len() > max_bytes {
        return Err(OrchestratorError::BodyTooLarge {
            limit_bytes: max_bytes,
        });
    }
    Ok((media_type, Bytes::from(data)))
}

fn percent_decode(payload: &str) -> Result<Vec<u8>, OrchestratorError> {
    let bytes = payload.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| OrchestratorError::DataUri("bad percent escape".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_images() {
        let (media_type, data) =
            decode_data_uri("data:image/png;base64,iVBORw0KGgo=", 100).unwrap();
        assert_eq!(media_type, "image/png");
        assert_eq!(&data[..], b"\x89PNG\r\n\x1a\n");
        let (media_type, _) = decode_data_uri("DATA:image/png;BASE64,iVBO\nRw0KGgo=", 100).unwrap();
        assert_eq!(media_type, "image/png");
    }

    #[test]
    fn decodes_plain_payloads_and_defaults() {
        let (media_type, data) = decode_data_uri("data:,a%20b", 100).unwrap();
        assert_eq!(media_type, DEFAULT_DATA_URI_TYPE);
        assert_eq!(&data[..], b"a b");
        let (media_type, _) = decode_data_uri("data:;charset=utf-8,x", 100).unwrap();
        assert_eq!(media_type, "text/plain;charset=utf-8");
    }

    #[test]
    fn rejects_bad_and_oversized_uris() {
        assert!(decode_data_uri("https://x/y.png", 100).is_err());
        assert!(decode_data_uri("data:image/png;base64", 100).is_err());
        assert!(decode_data_uri("data:image/png;base64,!!!", 100).is_err());
        assert!(decode_data_uri("data:,%zz", 100).is_err());
        assert!(decode_data_uri("data:,%4", 100).is_err());
        assert!(decode_data_uri("dat", 100).is_err());
        assert!(decode_data_uri("data:é;base64,AA==", 100).is_err());
        assert_eq!(
            decode_data_uri(&format!("data:x/y;base64,{}", "QUFB".repeat(100)), 10),
            Err(OrchestratorError::BodyTooLarge { limit_bytes: 10 })
        );
        assert_eq!(
            decode_data_uri("data:,aaaa", 3),
            Err(OrchestratorError::BodyTooLarge { limit_bytes: 3 })
        );
    }
}
