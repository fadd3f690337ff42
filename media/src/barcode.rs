//! A time stamp carried inside the picture: 64 bits as 16 × 16-pixel
//! black or white blocks in the top-left corner of the luma plane, four rows
//! of sixteen. 48 bits of Unix milliseconds and a 16-bit check, so a frame
//! decoded after any number of hops tells when it was captured.
//!
//! Big blocks of full black and white survive VP8, H.264 and JPEG at any
//! sane bitrate; the check makes a smeared code read as nothing rather than
//! a wrong time.

use gst::prelude::*;

const BLOCK: usize = 16;
const COLUMNS: usize = 16;
const ROWS: usize = 4;
/// The corner the code covers, in pixels.
pub const WIDTH: usize = BLOCK * COLUMNS;
pub const HEIGHT: usize = BLOCK * ROWS;
const BLACK: u8 = 16;
const WHITE: u8 = 235;

fn check(ms: u64) -> u64 {
    (ms ^ (ms >> 16) ^ (ms >> 32) ^ 0xa5a5) & 0xffff
}

fn encode(ms: u64) -> u64 {
    ((ms & 0xffff_ffff_ffff) << 16) | check(ms & 0xffff_ffff_ffff)
}

/// Draws `ms` into a luma plane of `stride` bytes per row; `false` if the
/// picture is smaller than the code.
pub fn draw(luma: &mut [u8], stride: usize, ms: u64) -> bool {
    if stride < WIDTH || luma.len() < stride * HEIGHT {
        return false;
    }
    let bits = encode(ms);
    for y in 0..HEIGHT {
        let row = &mut luma[y * stride..y * stride + WIDTH];
        for (x, pixel) in row.iter_mut().enumerate() {
            let bit = (y / BLOCK) * COLUMNS + x / BLOCK;
            *pixel = if bits >> (63 - bit) & 1 == 1 {
                WHITE
            } else {
                BLACK
            };
        }
    }
    true
}

/// Reads the milliseconds back; `None` when there is no valid code.
pub fn read(luma: &[u8], stride: usize) -> Option<u64> {
    if stride < WIDTH || luma.len() < stride * HEIGHT {
        return None;
    }
    let mut bits = 0u64;
    for bit in 0..64 {
        let (bx, by) = ((bit % COLUMNS) * BLOCK, (bit / COLUMNS) * BLOCK);
        // The middle of the block: edges smear under compression.
        let mut sum = 0u32;
        for y in by + 4..by + BLOCK - 4 {
            for x in bx + 4..bx + BLOCK - 4 {
                sum += u32::from(luma[y * stride + x]);
            }
        }
        let mean = sum / ((BLOCK as u32 - 8) * (BLOCK as u32 - 8));
        bits = (bits << 1) | u64::from(mean > 128);
    }
    let ms = bits >> 16;
    (bits & 0xffff == check(ms)).then_some(ms)
}

/// The luma stride GStreamer uses for I420 of this width.
pub fn i420_stride(width: u32) -> usize {
    (width as usize + 3) & !3
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Stamps the wall clock into every I420 frame leaving `element`.
pub(crate) fn stamp_wall_clock(element: &gst::Element, width: u32, _height: u32) {
    let Some(pad) = element.static_pad("src") else {
        return;
    };
    let stride = i420_stride(width);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer_mut() {
            let buffer = buffer.make_mut();
            if let Ok(mut map) = buffer.map_writable() {
                draw(map.as_mut_slice(), stride, wall_clock_ms());
            }
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawn_time_reads_back() {
        let stride = 640;
        let mut luma = vec![128u8; stride * 480];
        for ms in [0, 1, 1_764_000_000_123, 0xffff_ffff_ffff] {
            assert!(draw(&mut luma, stride, ms));
            assert_eq!(read(&luma, stride), Some(ms));
        }
    }

    #[test]
    fn noise_and_a_damaged_code_read_as_nothing() {
        let stride = 320;
        let mut luma = vec![128u8; stride * 240];
        assert_eq!(read(&luma, stride), None);
        draw(&mut luma, stride, 1_764_000_000_123);
        // Flip one block.
        for y in 0..BLOCK {
            for x in 0..BLOCK {
                luma[y * stride + x] = 255 - luma[y * stride + x];
            }
        }
        assert_eq!(read(&luma, stride), None);
        assert!(!draw(&mut [0u8; 100], 10, 1));
    }

    #[test]
    fn blur_within_a_block_edge_does_not_change_the_reading() {
        let stride = 256;
        let mut luma = vec![0u8; stride * 64];
        draw(&mut luma, stride, 987_654_321);
        for px in luma.iter_mut() {
            *px = (*px as i32 + 20).clamp(0, 255) as u8;
        }
        assert_eq!(read(&luma, stride), Some(987_654_321));
    }
}
