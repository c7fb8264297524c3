//! Small but valid media: PNG images, WAV audio and an MP4 header, plus the
//! input probes the orchestrator runs (image size, WAV duration).

/// Side of the square PNG results, pixels.
pub const IMAGE_SIDE_PX: u32 = 64;
/// Sample rate of generated WAV audio.
const WAV_SAMPLE_RATE_HZ: u32 = 8_000;

/// Why a media input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// Not an image format we can read the size of (PNG, JPEG, GIF).
    #[error("image: unknown format")]
    UnknownImage,
    /// Not a PCM WAV file with `fmt ` and `data` chunks.
    #[error("not a WAV file")]
    NotWav,
}

/// A 64×64 RGB PNG whose colours derive from `seed`.
pub fn png_image(seed: u64) -> Vec<u8> {
    let side = IMAGE_SIDE_PX as usize;
    let [r0, g0, b0, ..] = seed.to_le_bytes();
    let mut pixels = Vec::with_capacity(side * side * 3);
    for y in 0..side {
        for x in 0..side {
            pixels.push(r0.wrapping_add((x * 4) as u8));
            pixels.push(g0.wrapping_add((y * 4) as u8));
            pixels.push(b0.wrapping_add(((x + y) * 2) as u8));
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, IMAGE_SIDE_PX, IMAGE_SIDE_PX);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Writing to a Vec with a matching buffer size cannot fail.
    let written = encoder.write_header().and_then(|mut writer| {
        writer
            .write_image_data(&pixels)
            .and_then(|()| writer.finish())
    });
    if let Err(error) = written {
        tracing::error!(%error, "png encoding failed");
    }
    out
}

/// A mono 16-bit PCM WAV of `duration_ms` with a quiet 440 Hz tone.
pub fn wav_audio(duration_ms: u32) -> Vec<u8> {
    let samples = (u64::from(WAV_SAMPLE_RATE_HZ) * u64::from(duration_ms) / 1000) as u32;
    let data_len = samples * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&WAV_SAMPLE_RATE_HZ.to_le_bytes());
    out.extend_from_slice(&(WAV_SAMPLE_RATE_HZ * 2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let phase = f64::from(i) * 440.0 * std::f64::consts::TAU / f64::from(WAV_SAMPLE_RATE_HZ);
        let sample = (phase.sin() * 2_000.0) as i16;
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

/// A minimal MP4: an `ftyp` box and a `moov` box holding one `mvhd` (1 s).
pub fn mp4_video() -> Vec<u8> {
    let mut out = Vec::new();
    // ftyp: major brand, minor version, compatible brands.
    let ftyp_body: Vec<u8> = [
        b"isom".as_slice(),
        &0x200u32.to_be_bytes(),
        b"isom",
        b"iso2",
        b"mp41",
    ]
    .concat();
    push_box(&mut out, b"ftyp", &ftyp_body);
    let mut mvhd = Vec::with_capacity(100);
    mvhd.extend_from_slice(&[0, 0, 0, 0]); // version 0, flags
    mvhd.extend_from_slice(&0u32.to_be_bytes()); // creation time
    mvhd.extend_from_slice(&0u32.to_be_bytes()); // modification time
    mvhd.extend_from_slice(&1000u32.to_be_bytes()); // timescale
    mvhd.extend_from_slice(&1000u32.to_be_bytes()); // duration
    mvhd.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
    mvhd.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
    mvhd.extend_from_slice(&[0; 10]); // reserved
    for value in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        mvhd.extend_from_slice(&value.to_be_bytes()); // unity matrix
    }
    mvhd.extend_from_slice(&[0; 24]); // pre-defined
    mvhd.extend_from_slice(&1u32.to_be_bytes()); // next track id
    let mut mvhd_box = Vec::new();
    push_box(&mut mvhd_box, b"mvhd", &mvhd);
    push_box(&mut out, b"moov", &mvhd_box);
    out
}

fn push_box(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    let size = (8 + body.len()) as u32;
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
}

/// Width and height of a PNG, JPEG or GIF image, read from its header.
pub fn image_size(bytes: &[u8]) -> Result<(u32, u32), MediaError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.get(12..16) == Some(b"IHDR") {
        let width = be_u32(bytes, 16).ok_or(MediaError::UnknownImage)?;
        let height = be_u32(bytes, 20).ok_or(MediaError::UnknownImage)?;
        return Ok((width, height));
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        let width = bytes.get(6..8).ok_or(MediaError::UnknownImage)?;
        let height = bytes.get(8..10).ok_or(MediaError::UnknownImage)?;
        return Ok((
            u32::from(u16::from_le_bytes([width[0], width[1]])),
            u32::from(u16::from_le_bytes([height[0], height[1]])),
        ));
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return jpeg_size(bytes).ok_or(MediaError::UnknownImage);
    }
    Err(MediaError::UnknownImage)
}

fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        if marker == 0xFF {
            at += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        let is_sof = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let height = u16::from_be_bytes([*bytes.get(at + 5)?, *bytes.get(at + 6)?]);
            let width = u16::from_be_bytes([*bytes.get(at + 7)?, *bytes.get(at + 8)?]);
            return Some((u32::from(width), u32::from(height)));
        }
        if len < 2 {
            return None;
        }
        at += 2 + len;
    }
}

/// Duration of a PCM WAV file in milliseconds (data bytes / byte rate).
pub fn wav_duration_ms(bytes: &[u8]) -> Result<u64, MediaError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(MediaError::NotWav);
    }
    let mut at = 12;
    let mut byte_rate = None;
    while let (Some(id), Some(len)) = (bytes.get(at..at + 4), le_u32(bytes, at + 4)) {
        let body = at + 8;
        match id {
            b"fmt " => byte_rate = le_u32(bytes, body + 8),
            b"data" => {
                let rate = u64::from(byte_rate.filter(|r| *r > 0).ok_or(MediaError::NotWav)?);
                // A streamed WAV may declare more data than it carries; count what is there.
                let present = bytes.len().saturating_sub(body) as u64;
                let data_len = u64::from(len).min(present);
                return Ok(data_len * 1000 / rate);
            }
            _ => {}
        }
        at = body + len as usize + (len as usize & 1);
    }
    Err(MediaError::NotWav)
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_png_decodes_and_reports_its_size() {
        let png = png_image(42);
        assert_eq!(image_size(&png), Ok((IMAGE_SIDE_PX, IMAGE_SIDE_PX)));
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().expect("valid png");
        assert_eq!(reader.info().width, IMAGE_SIDE_PX);
    }

    #[test]
    fn wav_round_trips_its_duration() {
        assert_eq!(wav_duration_ms(&wav_audio(1_500)), Ok(1_500));
        assert_eq!(
            wav_duration_ms(b"RIFF....WAVEjunk"),
            Err(MediaError::NotWav)
        );
        assert_eq!(wav_duration_ms(b"not audio"), Err(MediaError::NotWav));
    }

    #[test]
    fn jpeg_size_from_sof() {
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00,
            0x20, 0x00, 0x30, 0x01, 0x01, 0x11, 0x00,
        ];
        assert_eq!(image_size(&jpeg), Ok((0x30, 0x20)));
        assert_eq!(
            image_size(&[0xFF, 0xD8, 0xFF]),
            Err(MediaError::UnknownImage)
        );
    }

    #[test]
    fn mp4_starts_with_ftyp_and_has_moov() {
        let mp4 = mp4_video();
        assert_eq!(&mp4[4..8], b"ftyp");
        let ftyp_len = u32::from_be_bytes([mp4[0], mp4[1], mp4[2], mp4[3]]) as usize;
        assert_eq!(&mp4[ftyp_len + 4..ftyp_len + 8], b"moov");
        assert_eq!(&mp4[ftyp_len + 12..ftyp_len + 16], b"mvhd");
        assert_eq!(mp4.len(), ftyp_len + 8 + 108);
    }
}
