//! Cuts a byte stream into candidate NMEA lines.
//!
//! Contract: bytes in any chunking go in; out come, in order, each run that
//! starts at a `$` and ends before CR, LF or the next `$` ([`Frame::Line`]),
//! and each run cut short by a binary byte or by growing past
//! [`MAX_LINE`] ([`Frame::Malformed`]). Bytes outside a line, other than
//! line ends, are counted as noise. State between calls is only the line in progress, at most
//! [`MAX_LINE`] bytes.

/// Longest line kept. NMEA 0183 allows 82 bytes with CR LF; receivers in the
/// wild send up to ~100 (gpsd's notes, kept in the `nmea` crate).
pub(crate) const MAX_LINE: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between lines: discard until `$`.
    Idle,
    /// Inside a line that started with `$`.
    Line,
    /// The current line is lost: discard until the end of the line or `$`.
    Skip,
}

/// One framing result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// From `$` up to (not including) the terminator.
    Line(&'a [u8]),
    /// The line was cut by a binary byte or by its length.
    Malformed(&'a [u8]),
}

#[derive(Debug)]
pub(crate) struct Framer {
    buf: Vec<u8>,
    state: State,
    noise_bytes: u64,
}

impl Framer {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::with_capacity(MAX_LINE),
            state: State::Idle,
            noise_bytes: 0,
        }
    }

    /// Bytes seen outside any line (binary protocols, line noise).
    pub(crate) fn noise_bytes(&self) -> u64 {
        self.noise_bytes
    }

    /// Forgets the line in progress (after a reconnect, for example).
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.state = State::Idle;
    }

    pub(crate) fn push(&mut self, bytes: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
        for &byte in bytes {
            match (self.state, byte) {
                (State::Line, b'$') => {
                    on_frame(Frame::Line(&self.buf));
                    self.start_line();
                }
                (_, b'$') => self.start_line(),
                (State::Line, b'\r' | b'\n') => {
                    on_frame(Frame::Line(&self.buf));
                    self.buf.clear();
                    self.state = State::Idle;
                }
                (State::Line, 0x20..=0x7e) if self.buf.len() < MAX_LINE => self.buf.push(byte),
                (State::Line, _) => {
                    on_frame(Frame::Malformed(&self.buf));
                    self.buf.clear();
                    self.state = State::Skip;
                    self.noise_bytes += 1;
                }
                (State::Idle | State::Skip, b'\r' | b'\n') => self.state = State::Idle,
                (State::Idle | State::Skip, _) => self.noise_bytes += 1,
            }
        }
    }

    fn start_line(&mut self) {
        self.buf.clear();
        self.buf.push(b'$');
        self.state = State::Line;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Result<String, String>> {
        let mut framer = Framer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk, |frame| {
                out.push(match frame {
                    Frame::Line(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                    Frame::Malformed(l) => Err(String::from_utf8_lossy(l).into_owned()),
                })
            });
        }
        out
    }

    #[test]
    fn lines_split_on_cr_lf_and_crlf_alike() {
        let got = frames(&[b"$A*00\r\n$B*00\n$C*00\r$D"]);
        assert_eq!(
            got,
            vec![Ok("$A*00".into()), Ok("$B*00".into()), Ok("$C*00".into())]
        );
    }

    #[test]
    fn a_line_split_across_chunks_is_joined() {
        let got = frames(&[b"$GPG", b"GA,1", b"*00", b"\r", b"\n"]);
        assert_eq!(got, vec![Ok("$GPGGA,1*00".into())]);
    }

    #[test]
    fn a_dollar_inside_a_line_starts_a_new_one() {
        let got = frames(&[b"$GPGSA,A,1*1E$GPRMC,x*00\r\n"]);
        assert_eq!(
            got,
            vec![Ok("$GPGSA,A,1*1E".into()), Ok("$GPRMC,x*00".into())]
        );
    }

    #[test]
    fn binary_bytes_cut_the_line_and_the_rest_is_skipped() {
        let got = frames(&[b"$GPRMC,0003\x00\x00  tail\r\n$B*00\n"]);
        assert_eq!(got, vec![Err("$GPRMC,0003".into()), Ok("$B*00".into())]);
    }

    #[test]
    fn an_overlong_line_is_malformed_and_skipped_to_its_end() {
        let long = [b'A'; MAX_LINE + 10];
        let got = frames(&[b"$", &long, b"\r\n$B*00\n"]);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok("$B*00".into()));
    }

    #[test]
    fn noise_outside_lines_is_counted() {
        let mut framer = Framer::new();
        framer.push(b"\xb5\x62garbage$X*00\n", |_| {});
        assert_eq!(framer.noise_bytes(), 9);
    }
}
