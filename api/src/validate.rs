//! Per-pipeline request parsing: body bytes in, a [`JobSpec`] out.
//!
//! Each pipeline has a typed request struct with the fields of ai-runner's
//! `gateway.openapi.yaml` (unknown fields are ignored, as the OpenAPI allows).
//! Parsing checks required fields and types and collects every problem as a
//! FastAPI-style [`FieldIssue`] (answered as 422). It then completes the body
//! the way go-livepeer's gateway does before it sends it to an orchestrator:
//! the model id (or `model` for `/llm`) is filled with the pipeline default
//! when missing or empty, `/llm` gets `max_tokens` 256 and an explicit
//! `stream`, `/text-to-image` gets 512×512 and one image when unset,
//! `/image-to-video` gets 1024×576 when unset. Finally it counts the price
//! units of protocol §2.2.
//!
//! JSON bodies are forwarded as the client's object plus those defaults;
//! multipart parts are forwarded in order, with `model_id` replaced or
//! appended. Unknown model ids are not rejected here: the runner answers
//! "no capable orchestrator".
//!
//! Types are strict on purpose: the orchestrator (go-livepeer) decodes the
//! forwarded body into typed Go structs, so `"height": "512"` would fail there
//! after we paid for a round trip. Booleans in forms accept Go's
//! `strconv.ParseBool` spellings, which pydantic also accepts.

use mesh_core::{FormPart, JobBody, JobSpec, Pipeline};
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldIssue, LocPart};
use crate::probe;

/// `max_tokens` when an `/llm` request has none (go-livepeer's default; the
/// orchestrator requires the field).
pub const DEFAULT_LLM_MAX_TOKENS: u64 = 256;
/// Output size go-livepeer forces on `/text-to-image` when the request has none.
pub const DEFAULT_TEXT_TO_IMAGE_SIZE: (u64, u64) = (512, 512);
/// Output size (width, height) of `/image-to-video` when unset (the OpenAPI
/// defaults, which go-livepeer also writes into the request).
pub const DEFAULT_IMAGE_TO_VIDEO_SIZE: (u64, u64) = (1024, 576);
/// Frames an image-to-video job is priced for (fixed in go-livepeer).
pub const IMAGE_TO_VIDEO_FRAMES: u64 = 25;
/// Longest model id we accept; ids travel in segment credentials, logs and
/// gossip records.
pub const MAX_MODEL_ID_LEN: usize = 256;
/// Most multipart parts we read; the largest form in the OpenAPI has 12
/// fields, and the bound keeps hostile bodies of tiny parts cheap.
pub const MAX_MULTIPART_PARTS: usize = 64;

/// `/text-to-image` (JSON `TextToImageParams`).
#[derive(Debug, Clone, PartialEq)]
pub struct TextToImageRequest {
    /// Model; `None` when missing or empty.
    pub model_id: Option<String>,
    /// Required.
    pub prompt: String,
    /// LoRA weights as a JSON string.
    pub loras: Option<String>,
    /// Output height in pixels.
    pub height: Option<u64>,
    /// Output width in pixels.
    pub width: Option<u64>,
    /// Classifier-free guidance.
    pub guidance_scale: Option<f64>,
    /// What to avoid.
    pub negative_prompt: Option<String>,
    /// Run the NSFW check.
    pub safety_check: Option<bool>,
    /// Random seed.
    pub seed: Option<i64>,
    /// Denoising steps.
    pub num_inference_steps: Option<i64>,
    /// Images to generate (at least 1).
    pub num_images_per_prompt: Option<u64>,
}

/// `/image-to-image` (multipart `Body_genImageToImage`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageToImageRequest {
    /// Model; `None` when missing or empty.
    pub model_id: Option<String>,
    /// Required.
    pub prompt: String,
    /// Size of the uploaded image (required part `image`).
    pub image: probe::ImageSize,
    /// LoRA weights as a JSON string.
    pub loras: Option<String>,
    /// Degree of transformation.
    pub strength: Option<f64>,
    /// Classifier-free guidance.
    pub guidance_scale: Option<f64>,
    /// Pull towards the input image.
    pub image_guidance_scale: Option<f64>,
    /// What to avoid.
    pub negative_prompt: Option<String>,
    /// Run the NSFW check.
    pub safety_check: Option<bool>,
    /// Random seed.
    pub seed: Option<i64>,
    /// Denoising steps.
    pub num_inference_steps: Option<i64>,
    /// Images to generate (at least 1).
    pub num_images_per_prompt: Option<u64>,
}

/// `/image-to-video` (multipart `Body_genImageToVideo`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageToVideoRequest {
    /// Model; `None` when missing or empty.
    pub model_id: Option<String>,
    /// Size of the uploaded image (required part `image`).
    pub image: probe::ImageSize,
    /// Output height in pixels.
    pub height: Option<u64>,
    /// Output width in pixels.
    pub width: Option<u64>,
    /// Frames per second.
    pub fps: Option<i64>,
    /// Amount of motion.
    pub motion_bucket_id: Option<i64>,
    /// Noise added to the conditioning image.
    pub noise_aug_strength: Option<f64>,
    /// Run the NSFW check.
    pub safety_check: Option<bool>,
    /// Random seed.
    pub seed: Option<i64>,
    /// Denoising steps.
    pub num_inference_steps: Option<i64>,
}

/// `/upscale` (multipart `Body_genUpscale`).
#[derive(Debug, Clone, PartialEq)]
pub struct UpscaleRequest {
    /// Model; `None` when missing or empty.
    pub model_id: Option<String>,
    /// Required.
    pub prompt: String,
    /// Size of the uploaded image (required part `image`).
    pub image: probe::ImageSize,
    /// Run the NSFW check.
    pub safety_check: Option<bool>,
    /// Random seed.
    pub seed: Option<i64>,
    /// Denoising steps.
    pub num_inference_steps: Option<i64>,
}

/// `/audio-to-text` (multipart `Body_genAudioToText`).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioToTextRequest {
    /// Model; `None` when missing or empty.
    pub model_id: Option<String>,
    /// Whole seconds of audio when the upload is a WAV file we can read.
    pub duration_secs: Option<u64>,
    /// `sentence`, `word`, `true` or `false`.
    pub return_timestamps: Option<String>,
}

/// `/segment-anything-2` (multipart `Body_genSegmentAnything2`).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentAnything2Request {
    /// Model; `None` when missing or empty.
    pub model_id: Option<String>,
    /// Size of the uploaded image (required part `image`).
    pub image: probe::ImageSize,
    /// Nx2 point prompts (JSON text).
    pub point_coords: Option<String>,
    /// Point labels (JSON text).
    pub point_labels: Option<String>,
    /// XYXY box (JSON text).
    pub r#box: Option<String>,
    /// Low-resolution mask input.
    pub mask_input: Option<String>,
    /// Return three masks.
    pub multimask_output: Option<bool>,
    /// Return logits.
    pub return_logits: Option<bool>,
    /// Normalize point coordinates.
    pub normalize_coords: Option<bool>,
}

/// One `/llm` chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmMessage {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The text.
    pub content: String,
}

/// `/llm` (JSON `LLMRequest`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// Required, at least one.
    pub messages: Vec<LlmMessage>,
    /// Model; `None` when missing or empty.
    pub model: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Token budget (at least 1).
    pub max_tokens: Option<u64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling.
    pub top_k: Option<i64>,
    /// Answer as server-sent events.
    pub stream: Option<bool>,
}

/// `/image-to-text` (multipart `Body_genImageToText`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageToTextRequest {
    /// Model; `None` when missing or empty.
    pub model_id: Option<String>,
    /// Size of the uploaded image (required part `image`).
    pub image: probe::ImageSize,
    /// Optional guiding prompt.
    pub prompt: Option<String>,
}

/// `/text-to-speech` (JSON `TextToSpeechParams`).
#[derive(Debug, Clone, PartialEq)]
pub struct TextToSpeechRequest {
    /// Model; `None` when missing or empty.
    pub model_id: Option<String>,
    /// Text to speak (default empty).
    pub text: Option<String>,
    /// Speaker description.
    pub description: Option<String>,
}

/// Parses a JSON body for a JSON pipeline into the job to run.
pub fn job_from_json(pipeline: Pipeline, body: &[u8]) -> Result<JobSpec, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::Validation(vec![FieldIssue::body(
            "dict_type",
            "Input should be a JSON object",
        )]));
    };
    let mut fields = Fields::json(&object);
    let (model_field, model_id, stream, units) = match pipeline {
        Pipeline::TextToImage => {
            let request = TextToImageRequest::read(&mut fields);
            fields.finish()?;
            let request = request.ok_or_else(internal_inconsistency)?;
            let (default_width, default_height) = DEFAULT_TEXT_TO_IMAGE_SIZE;
            let width = request.width.unwrap_or(default_width);
            let height = request.height.unwrap_or(default_height);
            let images = request.num_images_per_prompt.unwrap_or(1);
            object.insert("width".into(), width.into());
            object.insert("height".into(), height.into());
            object.insert("num_images_per_prompt".into(), images.into());
            let units = width.saturating_mul(height).saturating_mul(images);
            ("model_id", request.model_id, false, units)
        }
        Pipeline::Llm => {
            let request = LlmRequest::read(&mut fields);
            fields.finish()?;
            let request = request.ok_or_else(internal_inconsistency)?;
            let max_tokens = request.max_tokens.unwrap_or(DEFAULT_LLM_MAX_TOKENS);
            let stream = request.stream.unwrap_or(false);
            object.insert("max_tokens".into(), max_tokens.into());
            object.insert("stream".into(), stream.into());
            ("model", request.model, stream, max_tokens)
        }
        Pipeline::TextToSpeech => {
            let request = TextToSpeechRequest::read(&mut fields);
            fields.finish()?;
            let request = request.ok_or_else(internal_inconsistency)?;
            let characters = request.text.as_deref().map_or(0, |t| t.chars().count());
            ("model_id", request.model_id, false, characters as u64)
        }
        other => return Err(wrong_kind(other)),
    };
    let model_id = model_id.unwrap_or_else(|| pipeline.default_model_id().to_owned());
    object.insert(model_field.into(), Value::String(model_id.clone()));
    let body = serde_json::to_vec(&Value::Object(object))
        .map_err(|e| ApiError::Job(mesh_core::JobError::Internal(e.to_string())))?;
    Ok(JobSpec {
        pipeline,
        model_id,
        body: JobBody::Json(body),
        stream,
        units,
    })
}

/// Parses the parts of a multipart body for a multipart pipeline into the
/// job to run.
pub fn job_from_parts(pipeline: Pipeline, mut parts: Vec<FormPart>) -> Result<JobSpec, ApiError> {
    let mut fields = Fields::form(&parts);
    let (model_id, units, extra) = match pipeline {
        Pipeline::ImageToImage => {
            let request = ImageToImageRequest::read(&mut fields);
            fields.finish()?;
            let request = request.ok_or_else(internal_inconsistency)?;
            let images = request.num_images_per_prompt.unwrap_or(1);
            (
                request.model_id,
                request.image.pixels().saturating_mul(images),
                vec![],
            )
        }
        Pipeline::ImageToVideo => {
            let request = ImageToVideoRequest::read(&mut fields);
            fields.finish()?;
            let request = request.ok_or_else(internal_inconsistency)?;
            let (default_width, default_height) = DEFAULT_IMAGE_TO_VIDEO_SIZE;
            let mut extra = vec![];
            if request.width.is_none() {
                extra.push(FormPart::text("width", &default_width.to_string()));
            }
            if request.height.is_none() {
                extra.push(FormPart::text("height", &default_height.to_string()));
            }
            let width = request.width.unwrap_or(default_width);
            let height = request.height.unwrap_or(default_height);
            let units = width
                .saturating_mul(height)
                .saturating_mul(IMAGE_TO_VIDEO_FRAMES);
            (request.model_id, units, extra)
        }
        Pipeline::Upscale => {
            let request = UpscaleRequest::read(&mut fields);
            fields.finish()?;
            let request = request.ok_or_else(internal_inconsistency)?;
            (request.model_id, request.image.pixels(), vec![])
        }
        Pipeline::AudioToText => {
            let request = AudioToTextRequest::read(&mut fields);
            fields.finish()?;
            let request = request.ok_or_else(internal_inconsistency)?;
            let millis = request.duration_secs.unwrap_or(0).saturating_mul(1000);
            (request.model_id, millis, vec![])
        }
        Pipeline::SegmentAnything2 => {
            let request = SegmentAnything2Request::read(&mut fields);
            fields.finish()?;
            let request = request.ok_or_else(internal_inconsistency)?;
            (request.model_id, request.image.pixels(), vec![])
        }
        Pipeline::ImageToText => {
            let request = ImageToTextRequest::read(&mut fields);
            fields.finish()?;
            let request = request.ok_or_else(internal_inconsistency)?;
            (request.model_id, request.image.pixels(), vec![])
        }
        other => return Err(wrong_kind(other)),
    };
    let model_id = model_id.unwrap_or_else(|| pipeline.default_model_id().to_owned());
    match parts.iter_mut().find(|p| p.name == "model_id") {
        Some(part) => {
            part.data = model_id.clone().into_bytes();
            part.file_name = None;
            part.content_type = None;
        }
        None => parts.push(FormPart::text("model_id", &model_id)),
    }
    parts.extend(extra);
    Ok(JobSpec {
        pipeline,
        model_id,
        body: JobBody::Multipart(parts),
        stream: false,
        units,
    })
}

/// Reads every part of a buffered `multipart/form-data` body, in order.
pub async fn read_multipart(body: bytes::Bytes, boundary: &str) -> Result<Vec<FormPart>, ApiError> {
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::MalformedMultipart(e.to_string()))?
    {
        if parts.len() == MAX_MULTIPART_PARTS {
            return Err(ApiError::MalformedMultipart(format!(
                "more than {MAX_MULTIPART_PARTS} parts"
            )));
        }
        let Some(name) = field.name().map(str::to_owned) else {
            return Err(ApiError::MalformedMultipart(
                "a part has no field name".into(),
            ));
        };
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(ToString::to_string);
        let data = field
            .bytes()
            .await
            .map_err(|e| ApiError::MalformedMultipart(e.to_string()))?;
        parts.push(FormPart {
            name,
            file_name,
            content_type,
            data: data.to_vec(),
        });
    }
    Ok(parts)
}

fn wrong_kind(pipeline: Pipeline) -> ApiError {
    ApiError::Job(mesh_core::JobError::Internal(format!(
        "pipeline {pipeline} routed to the wrong body parser"
    )))
}

/// A request struct came back `None` although no issue was recorded: a bug in
/// the readers below, never client input.
fn internal_inconsistency() -> ApiError {
    ApiError::Job(mesh_core::JobError::Internal(
        "request parser returned nothing without an issue".into(),
    ))
}

// ---------------------------------------------------------------------------
// Field readers shared by JSON objects and multipart forms.

enum Source<'a> {
    Json(&'a Map<String, Value>),
    Form(&'a [FormPart]),
}

/// Typed access to the fields of one request, collecting issues.
struct Fields<'a> {
    source: Source<'a>,
    issues: Vec<FieldIssue>,
}

/// A field as found: absent, JSON value, or form part.
enum Raw<'a> {
    Absent,
    Json(&'a Value),
    Form(&'a FormPart),
}

impl<'a> Fields<'a> {
    fn json(object: &'a Map<String, Value>) -> Self {
        Self {
            source: Source::Json(object),
            issues: Vec::new(),
        }
    }

    fn form(parts: &'a [FormPart]) -> Self {
        let mut issues = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for part in parts {
            if !seen.insert(part.name.as_str()) {
                issues.push(FieldIssue::new(
                    &part.name,
                    "duplicate",
                    "Field given more than once",
                ));
            }
        }
        Self {
            source: Source::Form(parts),
            issues,
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.issues))
        }
    }

    fn raw(&self, name: &str) -> Raw<'a> {
        match self.source {
            Source::Json(object) => match object.get(name) {
                None | Some(Value::Null) => Raw::Absent,
                Some(value) => Raw::Json(value),
            },
            Source::Form(parts) => match parts.iter().find(|p| p.name == name) {
                None => Raw::Absent,
                Some(part) => Raw::Form(part),
            },
        }
    }

    fn issue(&mut self, name: &str, kind: &'static str, msg: impl Into<String>) {
        self.issues.push(FieldIssue::new(name, kind, msg));
    }

    fn text(&mut self, name: &str) -> Option<String> {
        match self.raw(name) {
            Raw::Absent => None,
            Raw::Json(Value::String(s)) => Some(s.clone()),
            Raw::Json(_) => {
                self.issue(name, "string_type", "Input should be a valid string");
                None
            }
            Raw::Form(part) => match std::str::from_utf8(&part.data) {
                Ok(s) => Some(s.to_owned()),
                Err(_) => {
                    self.issue(name, "string_unicode", "Input should be valid UTF-8 text");
                    None
                }
            },
        }
    }

    fn required_text(&mut self, name: &str) -> Option<String> {
        if matches!(self.raw(name), Raw::Absent) {
            self.issue(name, "missing", "Field required");
            return None;
        }
        self.text(name)
    }

    /// `model_id` / `model`: empty means "use the default".
    fn model(&mut self, name: &str) -> Option<String> {
        let model = self.text(name)?;
        let model = model.trim().to_owned();
        if model.is_empty() {
            return None;
        }
        if model.len() > MAX_MODEL_ID_LEN || model.chars().any(char::is_control) {
            self.issue(
                name,
                "string_pattern_mismatch",
                format!("model id must be at most {MAX_MODEL_ID_LEN} bytes of printable text"),
            );
            return None;
        }
        Some(model)
    }

    fn int(&mut self, name: &str) -> Option<i64> {
        let parsed = match self.raw(name) {
            Raw::Absent => return None,
            Raw::Json(value) => value.as_i64().or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            }),
            Raw::Form(part) => std::str::from_utf8(&part.data)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok()),
        };
        if parsed.is_none() {
            self.issue(name, "int_parsing", "Input should be a valid integer");
        }
        parsed
    }

    /// An integer that must be at least 1.
    fn positive(&mut self, name: &str) -> Option<u64> {
        let value = self.int(name)?;
        match u64::try_from(value) {
            Ok(v) if v >= 1 => Some(v),
            _ => {
                self.issue(
                    name,
                    "greater_than_equal",
                    "Input should be greater than or equal to 1",
                );
                None
            }
        }
    }

    fn number(&mut self, name: &str) -> Option<f64> {
        let parsed = match self.raw(name) {
            Raw::Absent => return None,
            Raw::Json(value) => value.as_f64(),
            Raw::Form(part) => std::str::from_utf8(&part.data)
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok()),
        };
        let parsed = parsed.filter(|f| f.is_finite());
        if parsed.is_none() {
            self.issue(name, "float_parsing", "Input should be a valid number");
        }
        parsed
    }

    fn boolean(&mut self, name: &str) -> Option<bool> {
        let parsed = match self.raw(name) {
            Raw::Absent => return None,
            Raw::Json(value) => value.as_bool(),
            // Go's strconv.ParseBool spellings (all of which pydantic accepts).
            Raw::Form(part) => match std::str::from_utf8(&part.data).map(str::trim) {
                Ok("1" | "t" | "T" | "TRUE" | "true" | "True") => Some(true),
                Ok("0" | "f" | "F" | "FALSE" | "false" | "False") => Some(false),
                _ => None,
            },
        };
        if parsed.is_none() {
            self.issue(name, "bool_parsing", "Input should be a valid boolean");
        }
        parsed
    }

    /// A required uploaded file.
    fn file(&mut self, name: &str) -> Option<&'a FormPart> {
        match self.raw(name) {
            Raw::Form(part) if !part.data.is_empty() => Some(part),
            Raw::Form(_) => {
                self.issue(name, "value_error", "Expected a non-empty uploaded file");
                None
            }
            _ => {
                self.issue(name, "missing", "Field required");
                None
            }
        }
    }

    /// A required uploaded image whose header we can read.
    fn image(&mut self, name: &str) -> Option<probe::ImageSize> {
        let part = self.file(name)?;
        let size = probe::image_size(&part.data);
        if size.is_none() {
            self.issue(
                name,
                "value_error",
                "Expected a PNG, JPEG, GIF, WebP or BMP image with a readable size",
            );
        }
        size
    }
}

impl TextToImageRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        let model_id = f.model("model_id");
        let prompt = f.required_text("prompt");
        let loras = f.text("loras");
        let height = f.positive("height");
        let width = f.positive("width");
        let guidance_scale = f.number("guidance_scale");
        let negative_prompt = f.text("negative_prompt");
        let safety_check = f.boolean("safety_check");
        let seed = f.int("seed");
        let num_inference_steps = f.int("num_inference_steps");
        let num_images_per_prompt = f.positive("num_images_per_prompt");
        Some(Self {
            model_id,
            prompt: prompt?,
            loras,
            height,
            width,
            guidance_scale,
            negative_prompt,
            safety_check,
            seed,
            num_inference_steps,
            num_images_per_prompt,
        })
    }
}

impl ImageToImageRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        let model_id = f.model("model_id");
        let prompt = f.required_text("prompt");
        let image = f.image("image");
        let loras = f.text("loras");
        let strength = f.number("strength");
        let guidance_scale = f.number("guidance_scale");
        let image_guidance_scale = f.number("image_guidance_scale");
        let negative_prompt = f.text("negative_prompt");
        let safety_check = f.boolean("safety_check");
        let seed = f.int("seed");
        let num_inference_steps = f.int("num_inference_steps");
        let num_images_per_prompt = f.positive("num_images_per_prompt");
        Some(Self {
            model_id,
            prompt: prompt?,
            image: image?,
            loras,
            strength,
            guidance_scale,
            image_guidance_scale,
            negative_prompt,
            safety_check,
            seed,
            num_inference_steps,
            num_images_per_prompt,
        })
    }
}

impl ImageToVideoRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        let model_id = f.model("model_id");
        let image = f.image("image");
        let height = f.positive("height");
        let width = f.positive("width");
        let fps = f.int("fps");
        let motion_bucket_id = f.int("motion_bucket_id");
        let noise_aug_strength = f.number("noise_aug_strength");
        let safety_check = f.boolean("safety_check");
        let seed = f.int("seed");
        let num_inference_steps = f.int("num_inference_steps");
        Some(Self {
            model_id,
            image: image?,
            height,
            width,
            fps,
            motion_bucket_id,
            noise_aug_strength,
            safety_check,
            seed,
            num_inference_steps,
        })
    }
}

impl UpscaleRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        let model_id = f.model("model_id");
        let prompt = f.required_text("prompt");
        let image = f.image("image");
        let safety_check = f.boolean("safety_check");
        let seed = f.int("seed");
        let num_inference_steps = f.int("num_inference_steps");
        Some(Self {
            model_id,
            prompt: prompt?,
            image: image?,
            safety_check,
            seed,
            num_inference_steps,
        })
    }
}

impl AudioToTextRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        let model_id = f.model("model_id");
        let audio = f.file("audio");
        let return_timestamps = f.text("return_timestamps");
        let audio = audio?;
        Some(Self {
            model_id,
            duration_secs: probe::wav_duration_secs(&audio.data),
            return_timestamps,
        })
    }
}

impl SegmentAnything2Request {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        let model_id = f.model("model_id");
        let image = f.image("image");
        let point_coords = f.text("point_coords");
        let point_labels = f.text("point_labels");
        let r#box = f.text("box");
        let mask_input = f.text("mask_input");
        let multimask_output = f.boolean("multimask_output");
        let return_logits = f.boolean("return_logits");
        let normalize_coords = f.boolean("normalize_coords");
        Some(Self {
            model_id,
            image: image?,
            point_coords,
            point_labels,
            r#box,
            mask_input,
            multimask_output,
            return_logits,
            normalize_coords,
        })
    }
}

impl LlmRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        let messages = read_messages(f);
        let model = f.model("model");
        let temperature = f.number("temperature");
        let max_tokens = f.positive("max_tokens");
        let top_p = f.number("top_p");
        let top_k = f.int("top_k");
        let stream = f.boolean("stream");
        Some(Self {
            messages: messages?,
            model,
            temperature,
            max_tokens,
            top_p,
            top_k,
            stream,
        })
    }
}

fn read_messages(f: &mut Fields<'_>) -> Option<Vec<LlmMessage>> {
    let items = match f.raw("messages") {
        Raw::Json(Value::Array(items)) => items,
        Raw::Absent => {
            f.issue("messages", "missing", "Field required");
            return None;
        }
        _ => {
            f.issue("messages", "list_type", "Input should be a valid list");
            return None;
        }
    };
    if items.is_empty() {
        f.issue("messages", "too_short", "List should have at least 1 item");
        return None;
    }
    let mut messages = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        if !item.is_object() {
            f.issues.push(FieldIssue {
                loc: vec![
                    LocPart::Field("body".into()),
                    LocPart::Field("messages".into()),
                    LocPart::Index(index),
                ],
                msg: "Input should be a JSON object".into(),
                kind: "dict_type",
            });
            ok = false;
            continue;
        }
        let mut field = |key: &str| -> Option<String> {
            let value = item.get(key);
            let problem = match value {
                Some(Value::String(s)) => return Some(s.clone()),
                None | Some(Value::Null) => ("missing", "Field required"),
                Some(_) => ("string_type", "Input should be a valid string"),
            };
            let loc = vec![
                LocPart::Field("body".into()),
                LocPart::Field("messages".into()),
                LocPart::Index(index),
                LocPart::Field(key.into()),
            ];
            f.issues.push(FieldIssue {
                loc,
                msg: problem.1.into(),
                kind: problem.0,
            });
            None
        };
        let role = field("role");
        let content = field("content");
        match (role, content) {
            (Some(role), Some(content)) => messages.push(LlmMessage { role, content }),
            _ => ok = false,
        }
    }
    ok.then_some(messages)
}

impl ImageToTextRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        let model_id = f.model("model_id");
        let image = f.image("image");
        let prompt = f.text("prompt");
        Some(Self {
            model_id,
            image: image?,
            prompt,
        })
    }
}

impl TextToSpeechRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            model_id: f.model("model_id"),
            text: f.text("text"),
            description: f.text("description"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixtures;

    fn json_body(spec: &JobSpec) -> Value {
        match &spec.body {
            JobBody::Json(bytes) => serde_json::from_slice(bytes).expect("valid json"),
            JobBody::Multipart(_) => panic!("expected a JSON body"),
        }
    }

    fn file(name: &str, data: Vec<u8>) -> FormPart {
        FormPart {
            name: name.into(),
            file_name: Some("f".into()),
            content_type: Some("application/octet-stream".into()),
            data,
        }
    }

    #[test]
    fn text_to_image_fills_defaults() {
        let spec = job_from_json(Pipeline::TextToImage, br#"{"prompt":"a cat","extra":1}"#)
            .expect("valid");
        assert_eq!(spec.model_id, "stabilityai/sdxl-turbo");
        assert_eq!(spec.units, 512 * 512);
        let body = json_body(&spec);
        assert_eq!(body["model_id"], "stabilityai/sdxl-turbo");
        assert_eq!(body["width"], 512);
        assert_eq!(body["extra"], 1);
    }

    #[test]
    fn collects_every_issue() {
        let err = job_from_json(
            Pipeline::TextToImage,
            br#"{"height":"tall","width":-3,"safety_check":"yes"}"#,
        )
        .expect_err("invalid");
        let ApiError::Validation(issues) = err else {
            panic!("expected validation error, got {err:?}");
        };
        let kinds: Vec<&str> = issues.iter().map(|i| i.kind).collect();
        assert_eq!(
            kinds,
            [
                "missing",
                "int_parsing",
                "greater_than_equal",
                "bool_parsing"
            ]
        );
    }

    #[test]
    fn llm_messages_are_checked_per_item() {
        let err = job_from_json(Pipeline::Llm, br#"{"messages":[{"role":"user"},7]}"#)
            .expect_err("invalid");
        let ApiError::Validation(issues) = err else {
            panic!("expected validation error");
        };
        assert_eq!(
            issues[0].describe(),
            "body.messages.0.content: Field required"
        );
        assert_eq!(
            issues[1].describe(),
            "body.messages.1: Input should be a JSON object"
        );
        assert!(matches!(
            job_from_json(Pipeline::Llm, br#"{"messages":[]}"#),
            Err(ApiError::Validation(_))
        ));
    }

    #[test]
    fn multipart_model_id_is_replaced_when_empty() {
        let parts = vec![
            file("image", fixtures::png_header(10, 20)),
            FormPart::text("model_id", ""),
        ];
        let spec = job_from_parts(Pipeline::ImageToText, parts).expect("valid");
        let JobBody::Multipart(parts) = &spec.body else {
            panic!("expected multipart");
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].data, b"Salesforce/blip-image-captioning-large");
        assert_eq!(spec.units, 200);
    }

    #[test]
    fn duplicate_and_undecodable_parts_are_rejected() {
        let parts = vec![
            file("image", b"garbage".to_vec()),
            FormPart::text("prompt", "a"),
            FormPart::text("prompt", "b"),
        ];
        let Err(ApiError::Validation(issues)) = job_from_parts(Pipeline::Upscale, parts) else {
            panic!("expected validation error");
        };
        let kinds: Vec<&str> = issues.iter().map(|i| i.kind).collect();
        assert_eq!(kinds, ["duplicate", "value_error"]);
    }
}
