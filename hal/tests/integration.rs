//! lx-hal integration tests: real receiver logs against gpsd's own decoding,
//! log replay, and (feature `linux`) the real serial reader on a
//! pseudo-terminal.

// Test helpers outside #[test] fns unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use lx_hal::gps::Tracker;
use lx_hal::sim::{Pacer, replay};

/// gpsd logs with an `.expected` file in tests/data, and whether gpsd's
/// time of the last fix is compared (gpsd moves the dates of some old
/// receivers past a GPS week rollover; we report what the receiver says).
const LOGS: &[(&str, bool)] = &[
    // u-blox NEO-M9N, GN talker, GPS + GLONASS + Galileo + BeiDou.
    ("ublox-neo-m9n-nmea", true),
    // u-blox ZED-F9P, GN talker, four constellations.
    ("ublox-zed-f9p-nmea", true),
    // u-blox 8 with UBX binary interleaved and a truncated last line.
    ("ublox-8", true),
    // Trimble with RTK fixed and float, GP and GN talkers, eight decimals.
    ("nmea-rtk", true),
    // GN talker, GPS + GLONASS (2014 dates that gpsd moves to 2034).
    ("bu353-glonass", false),
    // Checksum errors, truncated lines, NUL runs, sentences run together.
    ("gp-320fw-2019-04-07-coldboot", true),
    // 23 checksum errors among 69 sentences (2010 dates that gpsd moves to 2030).
    ("firefly-II", false),
];

fn expected(name: &str) -> Expected {
    let path = data_dir().join(format!("{name}.expected"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_expected(&text)
}

#[test]
fn real_receiver_logs_decode_to_gpsds_positions_and_times() {
    let dir = gpsd_logs();
    for &(name, compare_time) in LOGS {
        let want = expected(name);
        let got = track(&receiver_bytes(&dir.join(format!("{name}.log"))));
        let positions = distinct(got.positions.iter().copied());
        if let Some(i) = first_difference(&positions, &want.positions, TOLERANCE_DEG) {
            panic!(
                "{name}: position {i} differs: ours {:?}, gpsd {:?} ({} vs {} positions)",
                positions.get(i),
                want.positions.get(i),
                positions.len(),
                want.positions.len()
            );
        }
        if compare_time {
            let want_ms = want.last_utc.as_deref().map(iso_to_unix_ms);
            assert_eq!(got.last_utc_ms, want_ms, "{name}: time of the last fix");
        }
        assert_eq!(got.stats.unparsed, 0, "{name}: {:?}", got.stats);
    }
}

#[test]
fn the_expected_files_are_gpsds_output_not_ours() {
    let dir = gpsd_logs();
    let bless = std::env::var_os("LX_BLESS_EXPECTED").is_some();
    for &(name, _) in LOGS {
        let derived = expected_from_chk(name, &dir.join(format!("{name}.log.chk")));
        let path = data_dir().join(format!("{name}.expected"));
        if bless {
            std::fs::write(&path, &derived).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            committed, derived,
            "{name}.expected is not what gpsd's .chk says; \
             LX_BLESS_EXPECTED=1 rewrites it from the .chk"
        );
    }
}

#[test]
fn corrupt_logs_count_checksum_errors_and_truncated_lines() {
    let dir = gpsd_logs();
    let coldboot = track(&receiver_bytes(
        &dir.join("gp-320fw-2019-04-07-coldboot.log"),
    ))
    .stats;
    assert!(coldboot.checksum_errors > 0, "{coldboot:?}");
    assert!(coldboot.malformed > 0, "{coldboot:?}");
    assert!(coldboot.sentences_ok > 0, "{coldboot:?}");
    let firefly = track(&receiver_bytes(&dir.join("firefly-II.log"))).stats;
    assert!(firefly.checksum_errors >= 20, "{firefly:?}");
}

#[test]
fn every_gpsd_log_feeds_through_the_tracker_without_a_panic() {
    let dir = gpsd_logs();
    let mut logs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let got = track(&std::fs::read(&path).unwrap());
        for (lat, lng) in &got.positions {
            assert!(
                lat.abs() <= 90.0 && lng.abs() <= 180.0,
                "{}",
                path.display()
            );
        }
        logs += 1;
    }
    assert!(logs >= 100, "only {logs} logs in {}", dir.display());
}

#[test]
fn a_replayed_log_carries_the_receiver_bytes_at_the_logs_own_pace() {
    let log = gpsd_logs().join("ublox-neo-m9n-nmea.log");
    let mut written = Vec::new();
    let mut slept = Duration::ZERO;
    let pacer = Pacer::new(10.0, Duration::from_secs(5)).unwrap();
    let file = std::io::BufReader::new(std::fs::File::open(&log).unwrap());
    let stats = replay(file, &mut written, pacer, |d| slept += d).unwrap();
    assert_eq!(written, receiver_bytes(&log));
    // 22:37:45 to 22:38:45 at ten times real time.
    assert_eq!(slept, Duration::from_secs(6));
    assert!(stats.comments > 0);

    let mut tracker = Tracker::default();
    tracker.feed(&written, std::time::Instant::now());
    let want = expected("ublox-neo-m9n-nmea").positions;
    let last = tracker.fix().unwrap();
    assert_eq!(
        first_difference(
            &[(last.lat, last.lng)],
            &want[want.len() - 1..],
            TOLERANCE_DEG
        ),
        None
    );
}

#[cfg(feature = "linux")]
mod serial {
    use std::io::Write;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use lx_hal::gps::serial::{Baud, Event, GpsReader, SerialConfig};
    use lx_hal::sim::{LatLng, Pacer, Path, Pty, Synth, replay};

    use super::common::*;

    fn build_config(path: &std::path::Path) -> SerialConfig {
        let mut config = SerialConfig::new(path);
        config.detect_window = Duration::from_millis(800);
        config.backoff_min = Duration::from_millis(20);
        config.backoff_max = Duration::from_millis(100);
        config
    }

    fn spawn(config: SerialConfig) -> (GpsReader, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        let reader = GpsReader::spawn(config, move |e| tx.send(e).is_ok()).unwrap();
        (reader, rx)
    }

    /// Writes `synth`'s epochs at 10 Hz of simulated time, 20 ms apart in
    /// real time, until `stop` is dropped.
    fn write_epochs(mut out: std::fs::File, synth: Synth, stop: mpsc::Receiver<()>) {
        std::thread::spawn(move || {
            for tenth in 0u64.. {
                let text = synth.sentences(Duration::from_millis(tenth * 100));
                if out.write_all(text.as_bytes()).is_err() {
                    return;
                }
                if !matches!(
                    stop.recv_timeout(Duration::from_millis(20)),
                    Err(mpsc::RecvTimeoutError::Timeout)
                ) {
                    return;
                }
            }
        });
    }

    fn build_synth() -> Synth {
        let path = Path::Orbit {
            center: LatLng::new(46.948_090, 7.447_440),
            radius_m: 150.0,
            period_s: 30.0,
        };
        Synth::new(path, 1_763_900_000_000).unwrap()
    }

    #[test]
    fn a_synthetic_path_through_a_pty_reads_back_to_1e7_degrees_with_auto_baud() {
        let pty = Pty::open().unwrap();
        let synth = build_synth();
        let (stop_tx, stop_rx) = mpsc::channel();
        write_epochs(pty.writer().unwrap(), synth.clone(), stop_rx);
        let config = build_config(pty.path());
        assert_eq!(config.baud, Baud::Auto);
        let (reader, events) = spawn(config);

        let deadline = Instant::now() + Duration::from_secs(20);
        let mut checked = 0;
        let mut connected = None;
        let mut without_date = 0;
        while checked < 30 && Instant::now() < deadline {
            match events.recv_timeout(Duration::from_secs(5)).unwrap() {
                Event::Connected { baud } => connected = Some(baud),
                Event::Fix(fix) => {
                    // Until the first RMC there is no date, so no UTC time.
                    let Some(utc) = fix.utc_ms else {
                        without_date += 1;
                        continue;
                    };
                    let want = synth.position_at_utc(utc).unwrap();
                    assert!((fix.lat - want.lat).abs() < 1e-7, "{fix:?} vs {want:?}");
                    assert!((fix.lng - want.lng).abs() < 1e-7, "{fix:?} vs {want:?}");
                    checked += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(checked, 30);
        assert!(without_date <= 1, "{without_date} fixes without a date");
        assert_eq!(
            connected,
            Some(9600),
            "a pty takes the first candidate baud"
        );
        drop(stop_tx);
        reader.stop();
    }

    #[test]
    fn a_replayed_gpsd_log_through_a_pty_matches_gpsds_positions() {
        let name = "ublox-neo-m9n-nmea";
        let log = gpsd_logs().join(format!("{name}.log"));
        let text = std::fs::read_to_string(data_dir().join(format!("{name}.expected"))).unwrap();
        let want = parse_expected(&text).positions;

        let mut pty = Pty::open().unwrap();
        let (reader, events) = spawn(build_config(pty.path()));
        let writer = std::thread::spawn(move || {
            let pacer = Pacer::new(20.0, Duration::from_secs(2)).unwrap();
            let file = std::io::BufReader::new(std::fs::File::open(log).unwrap());
            replay(file, &mut pty, pacer, std::thread::sleep).unwrap();
            pty
        });

        let mut got = Vec::new();
        while let Ok(event) = events.recv_timeout(Duration::from_secs(2)) {
            if let Event::Fix(fix) = event {
                got.push((fix.lat, fix.lng));
            }
        }
        let pty = writer.join().unwrap();
        reader.stop();
        drop(pty);

        // Baud detection consumes the first second or so of the log.
        let got = distinct(got);
        assert!(
            got.len() + 5 >= want.len(),
            "{} of {} positions",
            got.len(),
            want.len()
        );
        let tail = &want[want.len() - got.len()..];
        assert_eq!(first_difference(&got, tail, TOLERANCE_DEG), None);
    }

    #[test]
    fn the_reader_survives_the_receiver_unplugged_and_plugged_back() {
        let dir = std::env::temp_dir().join(format!("lx-hal-replug-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("gps0");
        let plug = |pty: &Pty| {
            let tmp = dir.join("gps0.new");
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(pty.path(), &tmp).unwrap();
            std::fs::rename(&tmp, &link).unwrap();
        };
        let synth = build_synth();

        let first = Pty::open().unwrap();
        plug(&first);
        let (stop1, rx1) = mpsc::channel();
        write_epochs(first.writer().unwrap(), synth.clone(), rx1);
        let (reader, events) = spawn(build_config(&link));
        let wait_for = |want: &dyn Fn(&Event) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(e) = events.recv_timeout(Duration::from_millis(500))
                    && want(&e)
                {
                    return e;
                }
            }
            panic!("timed out");
        };
        wait_for(&|e| matches!(e, Event::Connected { .. }));
        wait_for(&|e| matches!(e, Event::Fix(_)));

        drop(stop1);
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        let _ = std::fs::remove_file(&link);
        wait_for(&|e| matches!(e, Event::Disconnected { .. }));

        let second = Pty::open().unwrap();
        plug(&second);
        let (stop2, rx2) = mpsc::channel();
        write_epochs(second.writer().unwrap(), synth, rx2);
        wait_for(&|e| matches!(e, Event::Reconnected { .. }));
        let Event::Fix(fix) = wait_for(&|e| matches!(e, Event::Fix(_))) else {
            unreachable!()
        };
        assert!(fix.utc_ms.is_some());

        drop(stop2);
        reader.stop();
        drop(second);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
