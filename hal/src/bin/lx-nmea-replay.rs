//! `lx-nmea-replay <log> [--speed X] [--loop]`: a GPS receiver without the
//! hardware, to try an agent (or anything that reads NMEA from a serial
//! port) at a desk.
//!
//! Contract: it opens a pseudo-terminal and prints the path of its slave
//! side (`/dev/pts/N`, the port to give the agent as `gps.port`) as the
//! first line on stdout, flushed; nothing else goes to stdout, so a script
//! can read that line and drop the pipe. It then writes the log into the
//! terminal at the pace of the log's own UTC times (`--speed` divides the
//! gaps; a gap longer than 5 s is cut to 5 s), byte for byte except `#`
//! comment lines. With `--loop` it starts over after the last line, one
//! receiver epoch later; without it the port stays open and silent after the
//! last line (a receiver with nothing more to say). Either way it runs until
//! it is stopped (Ctrl-C, SIGTERM). Progress and errors go to stderr; a bad
//! argument exits with 2, anything else that fails with 1.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use lx_hal::sim::{Pacer, Pty, replay_file};

/// Longest wait between two lines at speed 1 (logs jump across reboots).
const MAX_GAP: Duration = Duration::from_secs(5);

const USAGE: &str = "\
usage: lx-nmea-replay <log> [--speed X] [--loop]

Opens a pseudo-terminal, prints its path (/dev/pts/N) on the first line of
stdout, and replays the NMEA 0183 log into it at the pace of the log's own
UTC times, until stopped. Point the agent at it (gps.source = \"serial\",
gps.port = that path) to try it without a receiver.

arguments:
  <log>        a recorded NMEA log (one sentence a line; # lines are skipped)

options:
  --speed X    replay X times faster than recorded (default 1; 0.5 is half speed)
  --loop       start over at the end of the log (default: keep the port open, silent)
  -h, --help   print this help
  -V, --version";

#[derive(Debug)]
struct Args {
    log: PathBuf,
    speed: f64,
    looping: bool,
}

/// Why the command line was not understood (exit 2, with the usage).
#[derive(Debug)]
struct Usage(String);

enum Parsed {
    Run(Args),
    Help,
    Version,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Parsed, Usage> {
    let mut log = None;
    let mut speed = 1.0;
    let mut looping = false;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--loop" if inline.is_none() => looping = true,
            "--speed" => {
                let value = match inline {
                    Some(v) => v.to_owned(),
                    None => args
                        .next()
                        .ok_or_else(|| Usage("--speed needs a value".into()))?,
                };
                speed = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        Usage(format!("--speed must be a number above 0, not '{value}'"))
                    })?;
            }
            _ if arg.starts_with('-') && arg != "-" => {
                return Err(Usage(format!("unknown option '{arg}'")));
            }
            _ if log.is_some() => {
                return Err(Usage(format!(
                    "one log at a time ('{arg}' is a second one)"
                )));
            }
            _ => log = Some(PathBuf::from(arg)),
        }
    }
    let log = log.ok_or_else(|| Usage("the log to replay is missing".into()))?;
    Ok(Parsed::Run(Args {
        log,
        speed,
        looping,
    }))
}

/// A failure after the arguments were understood (exit 1).
#[derive(Debug)]
struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fails early, with the file named, on what would otherwise surface as an
/// error from the replay after the port was already announced.
fn check_log(path: &Path) -> Result<(), Failure> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure(format!("cannot read the log {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Failure(format!("{} is not a file", path.display())));
    }
    std::fs::File::open(path)
        .map_err(|e| Failure(format!("cannot open the log {}: {e}", path.display())))?;
    Ok(())
}

fn run(args: &Args) -> Result<(), Failure> {
    check_log(&args.log)?;
    let pacer = Pacer::new(args.speed, MAX_GAP).map_err(|e| Failure(e.to_string()))?;
    let mut pty = Pty::open().map_err(|e| Failure(e.to_string()))?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", pty.path().display())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure(format!("writing the port's path to stdout: {e}")))?;
    drop(stdout);
    eprintln!(
        "lx-nmea-replay: {} → {} at {}× speed{}; stop with Ctrl-C",
        args.log.display(),
        pty.path().display(),
        args.speed,
        if args.looping { ", looping" } else { "" }
    );

    let mut pass = 1u64;
    loop {
        let stats =
            replay_file(&args.log, &mut pty, pacer.clone()).map_err(|e| Failure(e.to_string()))?;
        if stats.lines == 0 {
            return Err(Failure(format!(
                "{} has nothing to replay (empty, or only # comments)",
                args.log.display()
            )));
        }
        eprintln!(
            "lx-nmea-replay: pass {pass}: {} lines, {} bytes over {:.1} s",
            stats.lines,
            stats.bytes,
            stats.paced.as_secs_f64()
        );
        if !args.looping {
            break;
        }
        pass += 1;
        // The log's next epoch after its last one: a receiver reports once a second.
        std::thread::sleep(Duration::from_secs(1).div_f64(args.speed));
    }
    eprintln!("lx-nmea-replay: end of the log; the port stays open, silent, until stopped");
    // Holding `pty` keeps the port present, as a receiver still plugged in.
    loop {
        std::thread::park();
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("lx-nmea-replay {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(Usage(why)) => {
            eprintln!("lx-nmea-replay: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("lx-nmea-replay: error: {failure}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_args(line: &[&str]) -> Result<Parsed, Usage> {
        parse_args(line.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn a_log_with_speed_and_loop_is_understood_in_any_order() {
        for line in [
            &["a.log", "--speed", "4", "--loop"][..],
            &["--loop", "--speed=4", "a.log"][..],
        ] {
            let Ok(Parsed::Run(args)) = build_args(line) else {
                panic!("{line:?} was not understood");
            };
            assert_eq!(args.log, PathBuf::from("a.log"));
            assert!((args.speed - 4.0).abs() < f64::EPSILON);
            assert!(args.looping);
        }
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        let why = |line: &[&str]| match build_args(line) {
            Err(Usage(why)) => why,
            _ => panic!("{line:?} was accepted"),
        };
        assert!(why(&[]).contains("missing"));
        assert!(why(&["a.log", "--speed", "0"]).contains("above 0"));
        assert!(why(&["a.log", "--speed"]).contains("needs a value"));
        assert!(why(&["a.log", "--fast"]).contains("--fast"));
        assert!(why(&["a.log", "b.log"]).contains("b.log"));
    }

    #[test]
    fn a_missing_log_is_named() {
        let err = check_log(Path::new("/nonexistent/receiver.log")).unwrap_err();
        assert!(err.0.contains("/nonexistent/receiver.log"), "{err}");
    }
}
