//! Per-pipeline request parsing (JSON or multipart, ai-runner schemas) and
//! the emulated runner's behaviour: which inputs it rejects and what it returns.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use mesh_core::{BodyKind, Pipeline};
use serde_json::{Map, Value, json};

use super::media;

/// Word that makes the emulated runner reject a prompt (tests of the 400 → 500 path).
pub const REJECT_WORD: &str = "reject-me";
/// Multipart fields accepted per request.
const MAX_FORM_FIELDS: usize = 64;
/// Images per request the emulator renders at most.
const MAX_IMAGES: u32 = 4;
/// Tokens an LLM answer has at most (fewer if `max_tokens` is lower).
const MAX_COMPLETION_TOKENS: u32 = 16;

/// A request body decoded far enough to run the job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedJob {
    pub(crate) model_id: String,
    pub(crate) kind: JobKind,
}

/// What the job asks for, per pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JobKind {
    /// text-to-image, image-to-image, upscale.
    Images {
        prompt: String,
        count: u32,
        seed: Option<u64>,
    },
    /// image-to-video.
    Video { seed: Option<u64> },
    /// audio-to-text.
    Transcribe { duration_ms: u64 },
    /// segment-anything-2.
    Segment,
    /// image-to-text.
    Caption { prompt: String },
    /// llm.
    Llm {
        prompt: String,
        max_tokens: u32,
        stream: bool,
    },
    /// text-to-speech.
    Speech { text: String },
    /// live-video-to-video start.
    Live { stream_id: String },
}

/// Parses the body of `POST /<pipeline>`; the error text is the 400 body.
pub(crate) async fn parse(
    pipeline: Pipeline,
    content_type: &str,
    body: Bytes,
) -> Result<ParsedJob, String> {
    match pipeline.body_kind() {
        BodyKind::Json => parse_json(pipeline, &body),
        BodyKind::Multipart => {
            let form = Form::parse(content_type, body).await?;
            parse_form(pipeline, &form)
        }
    }
}

fn parse_json(pipeline: Pipeline, body: &[u8]) -> Result<ParsedJob, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let object = value
        .as_object()
        .ok_or("request body must be a JSON object")?;
    let model_key = if pipeline == Pipeline::Llm {
        "model"
    } else {
        "model_id"
    };
    let model_id =
        string_field(object, model_key)?.ok_or_else(|| format!("{model_key} is required"))?;
    let kind = match pipeline {
        Pipeline::TextToImage => JobKind::Images {
            prompt: string_field(object, "prompt")?.ok_or("prompt is required")?,
            count: int_field(object, "num_images_per_prompt")?
                .unwrap_or(1)
                .clamp(1, u64::from(MAX_IMAGES)) as u32,
            seed: int_field(object, "seed")?,
        },
        Pipeline::Llm => {
            let messages = object
                .get("messages")
                .and_then(Value::as_array)
                .ok_or("messages is required")?;
            let prompt = messages
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .next_back()
                .unwrap_or_default()
                .to_owned();
            let max_tokens = int_field(object, "max_tokens")?.ok_or("MaxTokens not specified")?;
            let stream = match object.get("stream") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err("stream must be a boolean".into()),
            };
            JobKind::Llm {
                prompt,
                max_tokens: u32::try_from(max_tokens).unwrap_or(u32::MAX),
                stream,
            }
        }
        Pipeline::TextToSpeech => JobKind::Speech {
            text: string_field(object, "text")?.unwrap_or_default(),
        },
        Pipeline::LiveVideoToVideo => JobKind::Live {
            stream_id: string_field(object, "stream_id")?.unwrap_or_default(),
        },
        other => return Err(format!("{other} takes a multipart body")),
    };
    Ok(ParsedJob { model_id, kind })
}

fn string_field(object: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn int_field(object: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{key} must be a non-negative integer")),
    }
}

/// A decoded multipart form: text fields and file parts.
#[derive(Debug, Default)]
struct Form {
    fields: HashMap<String, String>,
    files: HashMap<String, Bytes>,
}

impl Form {
    async fn parse(content_type: &str, body: Bytes) -> Result<Self, String> {
        let boundary = multer::parse_boundary(content_type)
            .map_err(|e| format!("invalid multipart request: {e}"))?;
        let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut form = Self::default();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| format!("invalid multipart body: {e}"))?
        {
            if form.fields.len() + form.files.len() >= MAX_FORM_FIELDS {
                return Err("too many multipart fields".into());
            }
            let name = field.name().unwrap_or_default().to_owned();
            let is_file = field.file_name().is_some();
            let data = field
                .bytes()
                .await
                .map_err(|e| format!("invalid multipart body: {e}"))?;
            if is_file {
                form.files.insert(name, data);
            } else {
                let text = String::from_utf8(data.to_vec())
                    .map_err(|_| format!("field {name} is not UTF-8"))?;
                form.fields.insert(name, text);
            }
        }
        Ok(form)
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A file part, or a text field carrying the bytes (some clients omit the file name).
    fn file(&self, key: &str) -> Option<Bytes> {
        self.files
            .get(key)
            .cloned()
            .or_else(|| self.fields.get(key).map(|s| Bytes::from(s.clone())))
    }

    fn int(&self, key: &str) -> Result<Option<u64>, String> {
        self.text(key)
            .map(|s| {
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{key} must be a non-negative integer"))
            })
            .transpose()
    }

    fn image(&self) -> Result<(u32, u32), String> {
        let image = self.file("image").ok_or("image is required")?;
        media::image_size(&image).map_err(|e| e.to_string())
    }
}

fn parse_form(pipeline: Pipeline, form: &Form) -> Result<ParsedJob, String> {
    let model_id = form
        .text("model_id")
        .filter(|m| !m.is_empty())
        .ok_or("model_id is required")?
        .to_owned();
    let kind = match pipeline {
        Pipeline::ImageToImage | Pipeline::Upscale => {
            form.image()?;
            JobKind::Images {
                prompt: form.text("prompt").ok_or("prompt is required")?.to_owned(),
                count: form
                    .int("num_images_per_prompt")?
                    .unwrap_or(1)
                    .clamp(1, u64::from(MAX_IMAGES)) as u32,
                seed: form.int("seed")?,
            }
        }
        Pipeline::ImageToVideo => {
            form.image()?;
            JobKind::Video {
                seed: form.int("seed")?,
            }
        }
        Pipeline::SegmentAnything2 => {
            form.image()?;
            JobKind::Segment
        }
        Pipeline::ImageToText => {
            form.image()?;
            JobKind::Caption {
                prompt: form.text("prompt").unwrap_or_default().to_owned(),
            }
        }
        Pipeline::AudioToText => {
            let audio = form.file("audio").ok_or("audio is required")?;
            let duration_ms = media::wav_duration_ms(&audio)
                .map_err(|_| "Unable to calculate duration".to_owned())?;
            if duration_ms < 1_000 {
                return Err("Unable to calculate duration".into());
            }
            JobKind::Transcribe { duration_ms }
        }
        other => return Err(format!("{other} takes a JSON body")),
    };
    Ok(ParsedJob { model_id, kind })
}

impl JobKind {
    /// The emulated runner's input validation: `Some(message)` means the
    /// container answers 400 with that message.
    pub(crate) fn runner_rejection(&self) -> Option<String> {
        let (text, name) = match self {
            Self::Images { prompt, .. } => (prompt.as_str(), "prompt"),
            Self::Caption { prompt } => (prompt.as_str(), "prompt"),
            Self::Llm { prompt, .. } => (prompt.as_str(), "messages"),
            Self::Speech { text } => (text.as_str(), "text"),
            Self::Video { .. } | Self::Transcribe { .. } | Self::Segment | Self::Live { .. } => {
                return None;
            }
        };
        let captions_may_be_empty = matches!(self, Self::Caption { .. });
        if text.trim().is_empty() && !captions_may_be_empty {
            return Some(format!("{name} must not be empty"));
        }
        text.contains(REJECT_WORD)
            .then(|| format!("{name} rejected by the emulated runner"))
    }
}

/// The words of an emulated LLM answer.
pub(crate) fn llm_tokens(orchestrator: &str, max_tokens: u32) -> Vec<String> {
    let words = [
        "This",
        "is",
        "an",
        "emulated",
        "answer",
        "from",
        orchestrator,
        "with",
        "a",
        "few",
        "more",
        "words",
        "to",
        "stream",
        "out",
        "here",
    ];
    let count = max_tokens.clamp(1, MAX_COMPLETION_TOKENS) as usize;
    words
        .iter()
        .cycle()
        .take(count)
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                (*w).to_owned()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// Prompt tokens as the emulator counts them (whitespace words, at least 1).
pub(crate) fn prompt_tokens(prompt: &str) -> u32 {
    u32::try_from(prompt.split_whitespace().count())
        .unwrap_or(u32::MAX)
        .max(1)
}

/// One `LLMResponse` (non-stream form: `message`; stream form: `delta`).
pub(crate) fn llm_response(
    id: &str,
    model: &str,
    created: i64,
    usage: (u32, u32),
    content: &str,
    finish_reason: Option<&str>,
    stream: bool,
) -> Value {
    let (prompt_tokens, completion_tokens) = usage;
    let body_key = if stream { "delta" } else { "message" };
    json!({
        "id": id,
        "model": model,
        "created": created,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens.saturating_add(completion_tokens),
        },
        "choices": [{
            "index": 0,
            "finish_reason": finish_reason,
            body_key: {"role": "assistant", "content": content},
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn json_bodies() {
        let t2i = parse(
            Pipeline::TextToImage,
            "application/json",
            Bytes::from_static(br#"{"model_id":"m","prompt":"cat","num_images_per_prompt":9}"#),
        )
        .await;
        assert_eq!(
            t2i,
            Ok(ParsedJob {
                model_id: "m".into(),
                kind: JobKind::Images {
                    prompt: "cat".into(),
                    count: MAX_IMAGES,
                    seed: None
                }
            })
        );
        let no_model = parse(
            Pipeline::TextToImage,
            "application/json",
            Bytes::from_static(br#"{"prompt":"cat"}"#),
        )
        .await;
        assert_eq!(no_model, Err("model_id is required".into()));
        let llm = parse(
            Pipeline::Llm,
            "application/json",
            Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#),
        )
        .await;
        assert_eq!(llm, Err("MaxTokens not specified".into()));
        let garbage = parse(
            Pipeline::Llm,
            "application/json",
            Bytes::from_static(b"\xff{"),
        )
        .await;
        assert!(garbage.is_err());
    }

    #[tokio::test]
    async fn multipart_audio_needs_a_second_of_wav() {
        let form = |audio: &[u8]| {
            let mut body = Vec::new();
            body.extend_from_slice(
                b"--XX\r\nContent-Disposition: form-data; name=\"model_id\"\r\n\r\nw\r\n",
            );
            body.extend_from_slice(b"--XX\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n\r\n");
            body.extend_from_slice(audio);
            body.extend_from_slice(b"\r\n--XX--\r\n");
            Bytes::from(body)
        };
        let ct = "multipart/form-data; boundary=XX";
        let ok = parse(Pipeline::AudioToText, ct, form(&media::wav_audio(2_000))).await;
        assert_eq!(
            ok.map(|j| j.kind),
            Ok(JobKind::Transcribe { duration_ms: 2_000 })
        );
        let short = parse(Pipeline::AudioToText, ct, form(&media::wav_audio(500))).await;
        assert_eq!(short, Err("Unable to calculate duration".into()));
        let not_wav = parse(Pipeline::AudioToText, ct, form(b"mp3?")).await;
        assert_eq!(not_wav, Err("Unable to calculate duration".into()));
        assert!(
            parse(Pipeline::AudioToText, "text/plain", form(b""))
                .await
                .is_err()
        );
    }

    #[test]
    fn runner_rejections() {
        let images = |p: &str| JobKind::Images {
            prompt: p.into(),
            count: 1,
            seed: None,
        };
        assert!(images("").runner_rejection().is_some());
        assert!(images("please reject-me").runner_rejection().is_some());
        assert!(images("a cat").runner_rejection().is_none());
        assert!(
            JobKind::Caption {
                prompt: String::new()
            }
            .runner_rejection()
            .is_none()
        );
    }

    #[test]
    fn llm_tokens_respect_max_tokens() {
        assert_eq!(llm_tokens("o", 3).len(), 3);
        assert_eq!(llm_tokens("o", 1_000).len(), MAX_COMPLETION_TOKENS as usize);
        assert_eq!(llm_tokens("o", 0).len(), 1);
    }
}
