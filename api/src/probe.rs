//! Just enough header parsing to count price units (protocol §2.2): the pixel
//! size of an uploaded image and the duration of a WAV file. Pure functions
//! over untrusted bytes: every read is bounds-checked, nothing panics.

/// Width and height of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
}

impl ImageSize {
    /// width × height.
    pub fn pixels(self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Reads the size from a PNG, JPEG, GIF, WebP or BMP header. `None` for other
/// formats, truncated headers and zero sizes.
pub fn image_size(data: &[u8]) -> Option<ImageSize> {
    let (width, height) = if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(data)?
    } else if data.starts_with(&[0xFF, 0xD8]) {
        jpeg(data)?
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        (u32::from(le16(data, 6)?), u32::from(le16(data, 8)?))
    } else if data.starts_with(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        webp(data)?
    } else if data.starts_with(b"BM") {
        bmp(data)?
    } else {
        return None;
    };
    (width > 0 && height > 0).then_some(ImageSize { width, height })
}

/// Whole seconds of audio in a PCM WAV file (data bytes / byte rate, rounded
/// down). `None` when the bytes are not a WAV file this parser understands.
pub fn wav_duration_secs(data: &[u8]) -> Option<u64> {
    wav_data(data).map(|(bytes, rate)| bytes / rate)
}

/// Milliseconds of audio in a PCM WAV file (data bytes × 1000 / byte rate,
/// rounded up), for billing. `None` as for [`wav_duration_secs`].
pub fn wav_duration_ms(data: &[u8]) -> Option<u64> {
    wav_data(data).map(|(bytes, rate)| bytes.saturating_mul(1000).div_ceil(rate))
}

/// (data bytes present, byte rate > 0) of a WAV file.
fn wav_data(data: &[u8]) -> Option<(u64, u64)> {
    if !data.starts_with(b"RIFF") || data.get(8..12) != Some(b"WAVE") {
        return None;
    }
    let mut offset = 12usize;
    let mut byte_rate: Option<u32> = None;
    // A WAV file has a handful of chunks; the bound stops pathological input
    // made of millions of empty chunks from costing time.
    for _ in 0..64 {
        let id = data.get(offset..offset.checked_add(4)?)?;
        let size = be_or_le32(data, offset + 4, false)?;
        let body = offset.checked_add(8)?;
        match id {
            b"fmt " => byte_rate = Some(be_or_le32(data, body + 8, false)?),
            b"data" => {
                let rate = byte_rate.filter(|r| *r > 0)?;
                // Streaming writers put 0xFFFFFFFF in the size; trust the bytes.
                let available = data.len().saturating_sub(body) as u64;
                let bytes = u64::from(size).min(available);
                return Some((bytes, u64::from(rate)));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        let padded = usize::try_from(size)
            .ok()?
            .checked_add(usize::try_from(size % 2).ok()?)?;
        offset = body.checked_add(padded)?;
    }
    None
}

fn png(data: &[u8]) -> Option<(u32, u32)> {
    if data.get(12..16) != Some(b"IHDR") {
        return None;
    }
    Some((be_or_le32(data, 16, true)?, be_or_le32(data, 20, true)?))
}

fn jpeg(data: &[u8]) -> Option<(u32, u32)> {
    let mut offset = 2usize;
    loop {
        // Skip fill bytes up to the marker.
        if *data.get(offset)? != 0xFF {
            return None;
        }
        while *data.get(offset)? == 0xFF {
            offset += 1;
        }
        let marker = *data.get(offset)?;
        offset += 1;
        match marker {
            // Markers without a length.
            0x01 | 0xD0..=0xD8 => continue,
            // Start of scan before any frame header: not a usable file.
            0xD9 | 0xDA => return None,
            _ => {}
        }
        let length = usize::from(be16(data, offset)?);
        if length < 2 {
            return None;
        }
        let is_frame = matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF);
        if is_frame {
            let height = be16(data, offset + 3)?;
            let width = be16(data, offset + 5)?;
            return Some((u32::from(width), u32::from(height)));
        }
        offset = offset.checked_add(length)?;
    }
}

fn webp(data: &[u8]) -> Option<(u32, u32)> {
    match data.get(12..16)? {
        b"VP8 " => {
            if data.get(23..26) != Some(&[0x9D, 0x01, 0x2A]) {
                return None;
            }
            let width = le16(data, 26)? & 0x3FFF;
            let height = le16(data, 28)? & 0x3FFF;
            Some((u32::from(width), u32::from(height)))
        }
        b"VP8L" => {
            if *data.get(20)? != 0x2F {
                return None;
            }
            let bits = be_or_le32(data, 21, false)?;
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => {
            let width = le24(data, 24)? + 1;
            let height = le24(data, 27)? + 1;
            Some((width, height))
        }
        _ => None,
    }
}

fn bmp(data: &[u8]) -> Option<(u32, u32)> {
    let width = i32::from_le_bytes(data.get(18..22)?.try_into().ok()?);
    let height = i32::from_le_bytes(data.get(22..26)?.try_into().ok()?);
    Some((width.unsigned_abs(), height.unsigned_abs()))
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn le24(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(3)?)?;
    Some(u32::from(bytes[0]) | u32::from(bytes[1]) << 8 | u32::from(bytes[2]) << 16)
}

fn be_or_le32(data: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let bytes: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    })
}

/// Minimal valid headers, for tests here and in crates that drive the API.
#[doc(hidden)]
pub mod fixtures {
    /// The first 24 bytes of a PNG of the given size (enough for the probe).
    pub fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        data.extend_from_slice(&width.to_be_bytes());
        data.extend_from_slice(&height.to_be_bytes());
        data.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        data
    }

    /// A JPEG header with an APP0 segment then a baseline frame header.
    pub fn jpeg_header(width: u16, height: u16) -> Vec<u8> {
        let mut data = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08,
        ];
        data.extend_from_slice(&height.to_be_bytes());
        data.extend_from_slice(&width.to_be_bytes());
        data.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        data
    }

    /// A 16-bit mono PCM WAV of `samples` samples at `rate` Hz (silence).
    pub fn wav(rate: u32, samples: u32) -> Vec<u8> {
        let data_len = samples * 2;
        let mut data = b"RIFF".to_vec();
        data.extend_from_slice(&(36 + data_len).to_le_bytes());
        data.extend_from_slice(b"WAVEfmt ");
        data.extend_from_slice(&16u32.to_le_bytes());
        data.extend_from_slice(&1u16.to_le_bytes()); // PCM
        data.extend_from_slice(&1u16.to_le_bytes()); // mono
        data.extend_from_slice(&rate.to_le_bytes());
        data.extend_from_slice(&(rate * 2).to_le_bytes()); // byte rate
        data.extend_from_slice(&2u16.to_le_bytes()); // block align
        data.extend_from_slice(&16u16.to_le_bytes()); // bits
        data.extend_from_slice(b"data");
        data.extend_from_slice(&data_len.to_le_bytes());
        data.resize(data.len() + data_len as usize, 0);
        data
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_image_sizes() {
        assert_eq!(
            image_size(&png_header(640, 480)),
            Some(ImageSize {
                width: 640,
                height: 480
            })
        );
        assert_eq!(
            image_size(&jpeg_header(1024, 768)),
            Some(ImageSize {
                width: 1024,
                height: 768
            })
        );
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&[10, 0, 20, 0]);
        assert_eq!(image_size(&gif).map(ImageSize::pixels), Some(200));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\0\0\0\0\0\0\0\0".to_vec();
        webp.extend_from_slice(&[99, 0, 0, 49, 0, 0]);
        assert_eq!(image_size(&webp).map(ImageSize::pixels), Some(100 * 50));
        assert_eq!(image_size(b"not an image"), None);
        assert_eq!(image_size(&png_header(0, 5)), None);
        assert_eq!(image_size(&png_header(5, 5)[..20]), None);
    }

    #[test]
    fn reads_wav_duration() {
        assert_eq!(wav_duration_secs(&wav(8000, 8000 * 3 + 100)), Some(3));
        assert_eq!(wav_duration_secs(&wav(8000, 100)), Some(0));
        assert_eq!(wav_duration_secs(b"ID3\x03mp3 data"), None);
    }

    proptest! {
        #[test]
        fn probes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256), prefix in 0usize..5) {
            let prefixes: [&[u8]; 5] = [b"", b"\x89PNG\r\n\x1a\n", b"\xFF\xD8", b"RIFF\0\0\0\0WEBP", b"RIFF\0\0\0\0WAVE"];
            let mut input = prefixes[prefix].to_vec();
            input.extend_from_slice(&data);
            let _ = image_size(&input);
            let _ = wav_duration_secs(&input);
        }
    }
}
