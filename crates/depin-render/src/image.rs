//! Decoded frames: 8-bit RGBA pixels, rows from the top.

use crate::blender::Region;
use depin_types::Hash;

/// An 8-bit RGBA image, rows from the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    /// `width × height × 4` bytes.
    pub rgba: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("not a PNG we can read: {0}")]
    Decode(#[from] png::DecodingError),
    #[error("cannot write the PNG: {0}")]
    Encode(png::EncodingError),
    #[error("the PNG is {0:?} at {1} bits; frames are 8-bit RGBA")]
    Format(png::ColorType, u8),
    #[error("the PNG is {width}×{height}, over the {max_pixels}-pixel limit")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("images of {}×{} and {}×{} cannot be compared", .left.0, .left.1, .right.0, .right.1)]
    SizeMismatch { left: (u32, u32), right: (u32, u32) },
    #[error("region {region} is outside the {width}×{height} image")]
    RegionOutside {
        region: Region,
        width: u32,
        height: u32,
    },
}

impl Image {
    /// Decodes an 8-bit RGBA PNG of at most `max_pixels` pixels; the decoder's memory is
    /// bounded by the same figure before any pixel is read.
    pub fn decode_png(bytes: &[u8], max_pixels: u64) -> Result<Self, ImageError> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let limit = usize::try_from(max_pixels.saturating_mul(4)).unwrap_or(usize::MAX);
        decoder.set_limits(png::Limits { bytes: limit });
        let header = decoder.read_header_info()?;
        let (width, height) = (header.width, header.height);
        if u64::from(width) * u64::from(height) > max_pixels {
            return Err(ImageError::TooLarge {
                width,
                height,
                max_pixels,
            });
        }
        let mut reader = decoder.read_info()?;
        let (color, depth) = reader.output_color_type();
        if color != png::ColorType::Rgba || depth != png::BitDepth::Eight {
            return Err(ImageError::Format(color, depth as u8));
        }
        let size = reader.output_buffer_size().unwrap_or(0);
        let mut rgba = vec![0; size];
        let info = reader.next_frame(&mut rgba)?;
        rgba.truncate(info.buffer_size());
        Ok(Image {
            width,
            height,
            rgba,
        })
    }

    /// The pixels of `region` (columns `x0..x1`, rows `y0..y1` from the top).
    pub fn crop(&self, region: Region) -> Result<Image, ImageError> {
        if !region.fits(self.width, self.height) {
            return Err(ImageError::RegionOutside {
                region,
                width: self.width,
                height: self.height,
            });
        }
        let (w, h) = (region.width(), region.height());
        let mut rgba = Vec::with_capacity(w as usize * h as usize * 4);
        for y in region.y0..region.y1 {
            let start = (y as usize * self.width as usize + region.x0 as usize) * 4;
            rgba.extend_from_slice(&self.rgba[start..start + w as usize * 4]);
        }
        Ok(Image {
            width: w,
            height: h,
            rgba,
        })
    }

    /// The image as an 8-bit RGBA PNG (what a provider serves for a piece it rendered).
    pub fn encode_png(&self) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(ImageError::Encode)?;
        writer
            .write_image_data(&self.rgba)
            .map_err(ImageError::Encode)?;
        writer.finish().map_err(ImageError::Encode)?;
        Ok(out)
    }

    /// BLAKE3 of the size and pixels: what a render commits to (not the PNG bytes, which
    /// carry Blender's timings).
    pub fn pixel_hash(&self) -> Hash {
        Hash::tagged(
            "depin render pixels",
            &[
                &self.width.to_be_bytes(),
                &self.height.to_be_bytes(),
                &self.rgba,
            ],
        )
    }
}
