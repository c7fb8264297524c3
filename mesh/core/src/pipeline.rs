//! The AI pipelines a gateway offers, their Livepeer capability ids, default
//! models and price units.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::capability::CapabilityId;

/// One Livepeer AI pipeline, named as on the public API path (`/text-to-image`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pipeline {
    /// `/text-to-image`, JSON body, capability 27.
    TextToImage,
    /// `/image-to-image`, multipart body, capability 28.
    ImageToImage,
    /// `/image-to-video`, multipart body, capability 29.
    ImageToVideo,
    /// `/upscale`, multipart body, capability 30.
    Upscale,
    /// `/audio-to-text`, multipart body, capability 31.
    AudioToText,
    /// `/segment-anything-2`, multipart body, capability 32.
    #[serde(rename = "segment-anything-2")]
    SegmentAnything2,
    /// `/llm`, JSON body (model field is `model`), capability 33.
    Llm,
    /// `/image-to-text`, multipart body, capability 34.
    ImageToText,
    /// `/live-video-to-video`, capability 35 (live streams, not a batch job).
    LiveVideoToVideo,
    /// `/text-to-speech`, JSON body, capability 36.
    TextToSpeech,
}

/// How a request's body travels to the orchestrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json`.
    Json,
    /// `multipart/form-data`.
    Multipart,
}

/// What the orchestrator multiplies its per-unit price by (protocol §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceUnit {
    /// Output pixels: height × width × images (text-to-image).
    OutputPixels,
    /// Input image pixels: height × width (× images for image-to-image).
    InputPixels,
    /// Output video pixels: height × width × 25 frames.
    VideoPixels,
    /// Milliseconds of input audio.
    AudioMilliseconds,
    /// Requested `max_tokens`.
    MaxTokens,
    /// Characters of input text (text-to-speech; gateway and orchestrator disagree, §2.2).
    Characters,
    /// Pixels of a live stream at 1280×720×30 per second.
    LivePixels,
}

impl Pipeline {
    /// The nine batch pipelines served at the gateway's root paths.
    pub const BATCH: [Self; 9] = [
        Self::TextToImage,
        Self::ImageToImage,
        Self::ImageToVideo,
        Self::Upscale,
        Self::AudioToText,
        Self::SegmentAnything2,
        Self::Llm,
        Self::ImageToText,
        Self::TextToSpeech,
    ];

    /// Every pipeline, batch and live.
    pub const ALL: [Self; 10] = [
        Self::TextToImage,
        Self::ImageToImage,
        Self::ImageToVideo,
        Self::Upscale,
        Self::AudioToText,
        Self::SegmentAnything2,
        Self::Llm,
        Self::ImageToText,
        Self::LiveVideoToVideo,
        Self::TextToSpeech,
    ];

    /// The path segment and wire name, e.g. `text-to-image`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TextToImage => "text-to-image",
            Self::ImageToImage => "image-to-image",
            Self::ImageToVideo => "image-to-video",
            Self::Upscale => "upscale",
            Self::AudioToText => "audio-to-text",
            Self::SegmentAnything2 => "segment-anything-2",
            Self::Llm => "llm",
            Self::ImageToText => "image-to-text",
            Self::LiveVideoToVideo => "live-video-to-video",
            Self::TextToSpeech => "text-to-speech",
        }
    }

    /// The Livepeer capability id (go-livepeer `core/capabilities.go`).
    pub const fn capability(self) -> CapabilityId {
        CapabilityId(match self {
            Self::TextToImage => 27,
            Self::ImageToImage => 28,
            Self::ImageToVideo => 29,
            Self::Upscale => 30,
            Self::AudioToText => 31,
            Self::SegmentAnything2 => 32,
            Self::Llm => 33,
            Self::ImageToText => 34,
            Self::LiveVideoToVideo => 35,
            Self::TextToSpeech => 36,
        })
    }

    /// The pipeline for a capability id, if it is an AI pipeline.
    pub fn from_capability(capability: CapabilityId) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.capability() == capability)
    }

    /// The model go-livepeer's gateway uses when a request names none.
    pub const fn default_model_id(self) -> &'static str {
        match self {
            Self::TextToImage | Self::ImageToImage => "stabilityai/sdxl-turbo",
            Self::ImageToVideo => "stabilityai/stable-video-diffusion-img2vid-xt",
            Self::Upscale => "stabilityai/stable-diffusion-x4-upscaler",
            Self::AudioToText => "openai/whisper-large-v3",
            Self::SegmentAnything2 => "facebook/sam2-hiera-large",
            Self::Llm => "meta-llama/llama-3.1-8B-Instruct",
            Self::ImageToText => "Salesforce/blip-image-captioning-large",
            Self::LiveVideoToVideo => "noop",
            Self::TextToSpeech => "parler-tts/parler-tts-large-v1",
        }
    }

    /// How the request body is encoded.
    pub const fn body_kind(self) -> BodyKind {
        match self {
            Self::TextToImage | Self::Llm | Self::TextToSpeech | Self::LiveVideoToVideo => {
                BodyKind::Json
            }
            _ => BodyKind::Multipart,
        }
    }

    /// The unit the orchestrator prices this pipeline in.
    pub const fn price_unit(self) -> PriceUnit {
        match self {
            Self::TextToImage => PriceUnit::OutputPixels,
            Self::ImageToImage | Self::Upscale | Self::SegmentAnything2 | Self::ImageToText => {
                PriceUnit::InputPixels
            }
            Self::ImageToVideo => PriceUnit::VideoPixels,
            Self::AudioToText => PriceUnit::AudioMilliseconds,
            Self::Llm => PriceUnit::MaxTokens,
            Self::TextToSpeech => PriceUnit::Characters,
            Self::LiveVideoToVideo => PriceUnit::LivePixels,
        }
    }

    /// Whether the pipeline is a batch job (request in, response out).
    pub const fn is_batch(self) -> bool {
        !matches!(self, Self::LiveVideoToVideo)
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pipeline name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown pipeline {0:?}")]
pub struct UnknownPipeline(pub String);

impl FromStr for Pipeline {
    type Err = UnknownPipeline;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| UnknownPipeline(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_capabilities_are_unique() {
        for pipeline in Pipeline::ALL {
            assert_eq!(pipeline.as_str().parse::<Pipeline>(), Ok(pipeline));
            assert_eq!(
                Pipeline::from_capability(pipeline.capability()),
                Some(pipeline)
            );
        }
        assert!("text-to-music".parse::<Pipeline>().is_err());
    }

    #[test]
    fn serde_uses_path_names() {
        let json = serde_json::to_string(&Pipeline::SegmentAnything2).unwrap();
        assert_eq!(json, "\"segment-anything-2\"");
    }
}
