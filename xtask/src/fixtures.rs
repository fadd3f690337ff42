//! Test fixtures fetched at test time rather than committed.
//!
//! gpsd's source package carries ~150 logs of real GNSS receivers under
//! `test/daemon/` (BSD licence) with gpsd's own decoding of each (`.chk`).
//! lx-hal's integration tests replay them; they look in `.lx/fixtures/gpsd`
//! (gitignored) or wherever `LX_GPSD_LOGS` points.
//!
//! The logs come from Debian's archive with `apt-get source --download-only
//! gpsd`, which needs a `deb-src` entry and its index. Without one, this
//! adds `/etc/apt/sources.list.d/lx-deb-src.sources` mirroring the Debian or
//! Ubuntu archives already configured, and runs `apt-get update` once. Both
//! need root: when not root, it prints the exact commands and fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{display, header, root, stream_ok};

/// A log every complete extraction has; the tests look for it too.
const MARKER: &str = "ublox-neo-m9n-nmea.log";
/// Where the deb-src entry goes when none exists.
const DEB_SRC_FILE: &str = "/etc/apt/sources.list.d/lx-deb-src.sources";

/// Makes sure gpsd's receiver logs are in `.lx/fixtures/gpsd/` and returns
/// that directory.
pub(crate) fn ensure_gpsd_logs() -> anyhow::Result<PathBuf> {
    let fixtures = root().join(".lx/fixtures");
    let dest = fixtures.join("gpsd");
    if dest.join(MARKER).is_file() {
        println!("    gpsd receiver logs: present ({})", dest.display());
        return Ok(dest);
    }
    header("fetching gpsd's receiver logs (Debian source package, test/daemon only)");
    let download = fixtures.join("gpsd-src");
    let partial = fixtures.join("gpsd.partial");
    for dir in [&download, &partial] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    if !download_source(&download)? {
        ensure_deb_src()?;
        if !download_source(&download)? {
            bail!(
                "`apt-get source --download-only gpsd` failed even with a deb-src entry \
                 and a fresh index (see its output above)"
            );
        }
    }

    let tarball = upstream_tarball(&download)?;
    stream_ok(
        "extracting test/daemon",
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&partial)
            .args(["--strip-components=3", "--wildcards", "*/test/daemon/*"]),
    )
    .context("tar needs xz-utils for Debian's .tar.xz (apt-get install xz-utils)")?;
    let logs = fs::read_dir(&partial)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .count();
    if logs < 100 || !partial.join(MARKER).is_file() {
        bail!(
            "{} holds {logs} logs and no {MARKER}: not gpsd's test/daemon",
            tarball.display()
        );
    }
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    fs::rename(&partial, &dest)
        .with_context(|| format!("moving {} to {}", partial.display(), dest.display()))?;
    fs::remove_dir_all(&download)?;
    println!("    gpsd receiver logs: {logs} logs in {}", dest.display());
    Ok(dest)
}

/// Runs `apt-get source --download-only gpsd` in `dir`; `false` when apt
/// has no source index to find it in.
fn download_source(dir: &Path) -> anyhow::Result<bool> {
    let mut cmd = Command::new("apt-get");
    cmd.args(["source", "--download-only", "gpsd"])
        .current_dir(dir);
    println!("    $ {}", display(&cmd));
    let status = cmd
        .status()
        .with_context(|| "could not run apt-get: this step needs Debian or Ubuntu")?;
    Ok(status.success())
}

/// The upstream `gpsd_*.orig.tar.*` among the downloaded files.
fn upstream_tarball(dir: &Path) -> anyhow::Result<PathBuf> {
    fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gpsd_") && n.contains(".orig.tar."))
        })
        .with_context(|| format!("no gpsd_*.orig.tar.* in {}", dir.display()))
}

/// Adds a deb-src entry if there is none, then refreshes the index.
fn ensure_deb_src() -> anyhow::Result<()> {
    let root_user = crate::debian::is_root();
    if has_deb_src()? {
        println!("    a deb-src entry exists; refreshing the package index");
    } else {
        let entry = deb_src_entry()?;
        if !root_user {
            eprintln!(
                "\nFetching gpsd's test logs needs a deb-src entry and root to add it. Run:\n\n\
                 sudo tee {DEB_SRC_FILE} >/dev/null <<'EOF'\n{entry}EOF\n\
                 sudo apt-get update\n\nthen `cargo xtask test` again."
            );
            bail!("no deb-src entry in the apt sources, and not root to add one");
        }
        fs::write(DEB_SRC_FILE, &entry).with_context(|| format!("writing {DEB_SRC_FILE}"))?;
        println!("    wrote {DEB_SRC_FILE}:\n{entry}");
        return crate::debian::refresh_index_for_new_sources();
    }
    if !root_user {
        eprintln!(
            "\nThe source index needs a refresh, which needs root. Run:\n\n    sudo apt-get update\n\nthen `cargo xtask test` again."
        );
        bail!("apt-get update needs root");
    }
    crate::debian::refresh_index()
}

/// Every apt source file: `sources.list` and `sources.list.d/*.{list,sources}`.
fn source_files() -> anyhow::Result<Vec<PathBuf>> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.filter_map(Result::ok) {
            let path = entry.path();
            if path
                .extension()
                .is_some_and(|e| e == "list" || e == "sources")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files.into_iter().filter(|p| p.is_file()).collect())
}

/// True when some enabled entry already has type `deb-src`.
fn has_deb_src() -> anyhow::Result<bool> {
    for file in source_files()? {
        let text = fs::read_to_string(&file).unwrap_or_default();
        let found = text.lines().map(str::trim).any(|line| {
            line.starts_with("deb-src ")
                || line
                    .strip_prefix("Types:")
                    .is_some_and(|types| types.split_whitespace().any(|t| t == "deb-src"))
        });
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A deb822 file with one `deb-src` stanza per Debian/Ubuntu archive that is
/// configured as `deb` (third-party repositories rarely publish sources).
fn deb_src_entry() -> anyhow::Result<String> {
    let mut out = String::new();
    for file in source_files()? {
        let text = fs::read_to_string(&file).unwrap_or_default();
        if file.extension().is_some_and(|e| e == "sources") {
            for stanza in text.split("\n\n") {
                out.push_str(&deb822_stanza(stanza));
            }
        } else {
            for line in text.lines() {
                out.push_str(&one_line_entry(line));
            }
        }
    }
    if out.is_empty() {
        bail!("no Debian or Ubuntu archive in the apt sources to take a deb-src entry from");
    }
    Ok(out)
}

fn is_distro_archive(uri: &str) -> bool {
    uri.contains("debian") || uri.contains("ubuntu")
}

/// A `.sources` stanza of type deb, as a deb-src stanza; empty otherwise.
fn deb822_stanza(stanza: &str) -> String {
    let field = |name: &str| {
        stanza
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let is_deb = field("Types:").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
    let enabled = field("Enabled:").is_none_or(|v| v != "no");
    let uris = field("URIs:").unwrap_or_default();
    if !is_deb || !enabled || !is_distro_archive(&uris) {
        return String::new();
    }
    let mut out = String::from("Types: deb-src\n");
    let mut keeping = false;
    for line in stanza.lines() {
        // A line that starts with whitespace continues the field above it
        // (an inline Signed-By key, for one).
        if !line.starts_with([' ', '\t']) {
            keeping = ["URIs:", "Suites:", "Components:", "Signed-By:"]
                .iter()
                .any(|k| line.starts_with(k));
        }
        if keeping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// A one-line `deb [opts] uri suite components…` entry as a deb822 stanza.
fn one_line_entry(line: &str) -> String {
    let Some(rest) = line.trim().strip_prefix("deb ") else {
        return String::new();
    };
    let mut words = rest.split_whitespace().peekable();
    let mut signed_by = None;
    if words.peek().is_some_and(|w| w.starts_with('[')) {
        for w in words.by_ref() {
            if let Some(v) = w.trim_matches(['[', ']']).strip_prefix("signed-by=") {
                signed_by = Some(v.to_owned());
            }
            if w.ends_with(']') {
                break;
            }
        }
    }
    let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
        return String::new();
    };
    if !is_distro_archive(uri) {
        return String::new();
    }
    let components: Vec<&str> = words.collect();
    let mut out = format!(
        "Types: deb-src\nURIs: {uri}\nSuites: {suite}\nComponents: {}\n",
        components.join(" ")
    );
    if let Some(key) = signed_by {
        out.push_str(&format!("Signed-By: {key}\n"));
    }
    out.push('\n');
    out
}
