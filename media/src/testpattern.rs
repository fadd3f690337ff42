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

/// Checks the middle of each top bar in packed RGB pixels, within a
/// tolerance that survives two lossy encodings; the error names the bar.
pub fn smpte_bars_match(rgb: &[u8], width: u32, height: u32) -> Result<(), String> {
    if rgb.len() < (width * height * 3) as usize {
        return Err(format!(
            "{} bytes is not a {width}×{height} RGB picture",
            rgb.len()
        ));
    }
    for (i, (name, want)) in SMPTE_TOP_BARS.iter().enumerate() {
        let x = (width * (2 * i as u32 + 1)) / 14;
        let y = height / 3;
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
    Ok(())
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
        let at = ((10 * 140 + 50) * 3) as usize;
        rgb[at..at + 3].copy_from_slice(&[0, 0, 0]);
        let err = smpte_bars_match(&rgb, 140, 30).unwrap_err();
        assert!(err.contains("bar 2 (cyan)"), "{err}");
        assert!(smpte_bars_match(&rgb[..10], 140, 30).is_err());
    }
}
