//! `multipart/form-data` bodies (RFC 7578) for the image, audio and video
//! pipelines, written the way Go's `mime/multipart` writer does, which is
//! what the orchestrator parses.

use mesh_core::FormPart;

/// The content type of a file part that names none (Go's `CreateFormFile`).
pub const DEFAULT_FILE_CONTENT_TYPE: &str = "application/octet-stream";

/// Attempts at drawing a boundary that occurs in no part before giving up
/// and using the last one (128 random bits: a second draw never happens in
/// practice).
const BOUNDARY_ATTEMPTS: usize = 4;

/// A multipart body and its `Content-Type` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartBody {
    /// `multipart/form-data; boundary=…`.
    pub content_type: String,
    /// The encoded body.
    pub body: Vec<u8>,
}

/// Encodes `parts` with a fresh random boundary that occurs in none of them.
pub fn encode(parts: &[FormPart]) -> MultipartBody {
    let mut boundary = random_boundary();
    for _ in 1..BOUNDARY_ATTEMPTS {
        if !parts
            .iter()
            .any(|part| contains(&part.data, boundary.as_bytes()))
        {
            break;
        }
        boundary = random_boundary();
    }
    encode_with_boundary(parts, &boundary)
}

/// Encodes `parts` with the given boundary (deterministic, for tests).
pub fn encode_with_boundary(parts: &[FormPart], boundary: &str) -> MultipartBody {
    let size: usize = parts.iter().map(|p| p.data.len() + 160).sum();
    let mut body = Vec::with_capacity(size + boundary.len() + 8);
    for part in parts {
        body.extend_from_slice(b"--");
        body.extend_from_slice(boundary.as_bytes());
        body.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(escape(&part.name).as_bytes());
        body.push(b'"');
        if let Some(file_name) = &part.file_name {
            body.extend_from_slice(b"; filename=\"");
            body.extend_from_slice(escape(file_name).as_bytes());
            body.push(b'"');
        }
        body.extend_from_slice(b"\r\n");
        if part.file_name.is_some() || part.content_type.is_some() {
            let content_type = part
                .content_type
                .as_deref()
                .filter(|value| is_header_safe(value))
                .unwrap_or(DEFAULT_FILE_CONTENT_TYPE);
            body.extend_from_slice(b"Content-Type: ");
            body.extend_from_slice(content_type.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--");
    body.extend_from_slice(boundary.as_bytes());
    body.extend_from_slice(b"--\r\n");
    MultipartBody {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        body,
    }
}

/// 32 random hex digits.
fn random_boundary() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Quotes for a quoted-string parameter as Go does (`\` and `"` escaped);
/// CR and LF, which would end the header, become spaces.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\r' | '\n' => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    escaped
}

fn is_header_safe(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_go_mime_multipart() {
        let parts = [
            FormPart {
                name: "image".into(),
                file_name: Some("cat \"1\".png".into()),
                content_type: Some("image/png".into()),
                data: vec![0x89, b'P', b'N', b'G'],
            },
            FormPart::text("prompt", "a cat"),
        ];
        let encoded = encode_with_boundary(&parts, "XYZ");
        assert_eq!(encoded.content_type, "multipart/form-data; boundary=XYZ");
        let mut expected = b"--XYZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"cat \\\"1\\\".png\"\r\nContent-Type: image/png\r\n\r\n".to_vec();
        expected.extend_from_slice(&[0x89, b'P', b'N', b'G']);
        expected.extend_from_slice(
            b"\r\n--XYZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na cat\r\n--XYZ--\r\n",
        );
        assert_eq!(encoded.body, expected);
    }

    #[test]
    fn hostile_names_cannot_inject_headers() {
        let part = FormPart {
            name: "a\r\nX-Evil: 1".into(),
            file_name: Some("f\n".into()),
            content_type: Some("text/plain\r\nX-Evil: 1".into()),
            data: Vec::new(),
        };
        let encoded = encode_with_boundary(&[part], "B");
        let text = String::from_utf8(encoded.body).unwrap();
        assert!(!text.contains("\r\nX-Evil"));
        assert!(text.contains("Content-Type: application/octet-stream\r\n"));
    }

    #[test]
    fn random_boundary_avoids_the_data() {
        let encoded = encode(&[FormPart::text("prompt", "x")]);
        let boundary = encoded
            .content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        assert_eq!(boundary.len(), 32);
        assert_ne!(boundary, random_boundary());
        assert!(
            encoded
                .body
                .ends_with(format!("--{boundary}--\r\n").as_bytes())
        );
        assert!(!contains(b"abc", b""));
    }
}
