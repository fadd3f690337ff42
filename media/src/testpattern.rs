//! What `videotestsrc pattern=smpte` looks like, to check a decoded picture
//! against the test source by its colours rather than by its bytes.

/// The top two thirds of the SMPTE pattern: seven full-intensity bars.
pub const SMPTE_TOP_BARS: [(&str, [u8; 3]); 7] = [
    ("white", [255, 255, 255]),
    ("yellow", [255, 255, 0]),
    ("cyan", [0, 255, 255]),
    ("green", [0, 255, 0]),
    ("magenta", [255, 0, 255]),
    ("red", [255, 0, 0]),
    ("blue", [0, 0, 255]),
];

/// Checks the middle of each top bar in packed RGB pixels, near the top and
/// near the bottom of the bars (an encoder's first and last slices), within
/// a tolerance that survives two lossy encodings; the error names the bar.
pub fn smpte_bars_match(rgb: &[u8], width: u32, height: u32) -> Result<(), String> {
    if rgb.len() < (width * height * 3) as usize {
        return Err(format!(
            "{} bytes is not a {width}×{height} RGB picture",
            rgb.len()
        ));
    }
    for y in [height / 6, height * 5 / 8] {
        for (i, (name, want)) in SMPTE_TOP_BARS.iter().enumerate() {
            let x = (width * (2 * i as u32 + 1)) / 14;
            let at = ((y * width + x) * 3) as usize;
            let got = [rgb[at], rgb[at + 1], rgb[at + 2]];
            let off = want
                .iter()
                .zip(got)
                .map(|(a, b)| (i32::from(*a) - i32::from(b)).abs())
                .max()
                .unwrap_or(0);
            if off > 40 {
                return Err(format!(
                    "bar {i} ({name}) at ({x},{y}) is {got:?}, want about {want:?}"
                ));
            }
        }
    }
    Ok(())
}

/// BT.601 limited-range Y, Cb, Cr of an RGB colour.
fn yuv(rgb: [u8; 3]) -> [u8; 3] {
    let [r, g, b] = rgb.map(|c| f64::from(c) / 255.0);
    let y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b;
    let cb = 128.0 - 37.797 * r - 74.203 * g + 112.0 * b;
    let cr = 128.0 + 112.0 * r - 93.786 * g - 18.214 * b;
    [y, cb, cr].map(|v| v.round().clamp(0.0, 255.0) as u8)
}

/// A YUV4MPEG2 (`.y4m`) clip of the seven SMPTE top bars over the whole
/// height: what Chromium's `--use-file-for-fake-video-capture` plays as its
/// camera, so a browser publisher can be checked like `videotestsrc`.
pub fn smpte_bars_y4m(width: u32, height: u32, frames: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let bar = |x: usize| yuv(SMPTE_TOP_BARS[x * 7 / w].1);
    let mut frame = Vec::with_capacity(w * h * 3 / 2);
    for _ in 0..h {
        frame.extend((0..w).map(|x| bar(x)[0]));
    }
    for plane in [1, 2] {
        for _ in 0..h / 2 {
            frame.extend((0..w / 2).map(|x| bar(x * 2)[plane]));
        }
    }
    let mut out = format!("YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..frames {
        out.extend_from_slice(b"FRAME\n");
        out.extend_from_slice(&frame);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(width: u32, height: u32) -> Vec<u8> {
        let mut rgb = vec![0u8; (width * height * 3) as usize];
        for y in 0..height {
            for x in 0..width {
                let (_, c) = SMPTE_TOP_BARS[(x * 7 / width) as usize];
                let at = ((y * width + x) * 3) as usize;
                rgb[at..at + 3].copy_from_slice(&c);
            }
        }
        rgb
    }

    #[test]
    fn the_pattern_matches_and_a_wrong_bar_is_named() {
        let mut rgb = bars(140, 30);
        assert_eq!(smpte_bars_match(&rgb, 140, 30), Ok(()));
        let at = ((18 * 140 + 50) * 3) as usize;
        rgb[at..at + 3].copy_from_slice(&[0, 0, 0]);
        let err = smpte_bars_match(&rgb, 140, 30).unwrap_err();
        assert!(err.contains("bar 2 (cyan) at (50,18)"), "{err}");
        assert!(smpte_bars_match(&rgb[..10], 140, 30).is_err());
    }

    #[test]
    fn the_y4m_clip_has_its_header_frames_and_bar_colours() {
        let clip = smpte_bars_y4m(70, 10, 2);
        let header = b"YUV4MPEG2 W70 H10 F30:1 Ip A1:1 C420jpeg\n";
        assert!(clip.starts_with(header));
        let frame = 70 * 10 * 3 / 2;
        assert_eq!(clip.len(), header.len() + 2 * (6 + frame));
        let luma = &clip[header.len() + 6..];
        assert_eq!(luma[5], 235, "white");
        assert_eq!(luma[65], 41, "blue");
        assert_eq!(yuv([255, 0, 0]), [81, 90, 240]);
    }
}
