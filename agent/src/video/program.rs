//! Where the video worker's program comes from, in this order:
//! 1. `video.worker_program`, when set;
//! 2. the worker bundled into this agent's own file (a release artefact,
//!    `lx_protocol::update::bundle`): copied into a sealed memfd and run
//!    from there, so that an update's swap and rollback, which move one
//!    file, always bring the worker built with this agent;
//! 3. `lx-agent-video` beside this agent's binary (a development build:
//!    cargo puts both programs in its target directory).

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::Context;
use lx_protocol::update::{BUNDLE_TRAILER_LEN, bundled_worker};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

/// The worker program's name beside the agent's.
pub(super) const WORKER_PROGRAM: &str = "lx-agent-video";

/// A worker program ready to start.
pub(super) enum Program {
    File(PathBuf),
    /// The bundled worker, in a memfd this process holds until the worker
    /// has started (the worker's own mapping keeps it afterwards).
    Bundled(OwnedFd),
}

impl Program {
    /// Finds the program for `configured` (`video.worker_program`).
    pub(super) fn locate(configured: &str) -> anyhow::Result<Self> {
        if !configured.trim().is_empty() {
            return Ok(Self::File(PathBuf::from(configured.trim())));
        }
        let exe = std::env::current_exe().context("finding this agent's own program")?;
        if let Some(bundled) = unbundle(&exe)? {
            return Ok(Self::Bundled(bundled));
        }
        let beside = exe.with_file_name(WORKER_PROGRAM);
        if beside.exists() {
            return Ok(Self::File(beside));
        }
        anyhow::bail!(
            "no video worker: {} carries none (a release build does) and there is no {}; set video.worker_program",
            exe.display(),
            beside.display()
        )
    }

    /// The path to exec: the file, or this process's descriptor of the
    /// memfd (the child resolves it before its descriptors close).
    pub(super) fn path(&self) -> OsString {
        match self {
            Self::File(path) => path.clone().into_os_string(),
            Self::Bundled(fd) => {
                format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd()).into()
            }
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Bundled(_) => format!("{WORKER_PROGRAM} (bundled)"),
        }
    }
}

/// The worker appended to `exe`, copied into a sealed memfd; `None` when
/// `exe` carries none.
fn unbundle(exe: &Path) -> anyhow::Result<Option<OwnedFd>> {
    let mut file = File::open(exe).with_context(|| format!("reading {}", exe.display()))?;
    let len = file.metadata()?.len();
    if len < BUNDLE_TRAILER_LEN {
        return Ok(None);
    }
    let mut trailer = [0u8; BUNDLE_TRAILER_LEN as usize];
    file.seek(SeekFrom::End(-(BUNDLE_TRAILER_LEN as i64)))?;
    file.read_exact(&mut trailer)?;
    let Some((offset, size)) = bundled_worker(len, &trailer) else {
        return Ok(None);
    };
    let memfd = memfd_create(
        WORKER_PROGRAM,
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .context("memfd_create for the bundled video worker")?;
    let mut out = File::from(memfd);
    file.seek(SeekFrom::Start(offset))?;
    let copied = std::io::copy(&mut (&mut file).take(size), &mut out)
        .context("copying the bundled video worker")?;
    anyhow::ensure!(
        copied == size,
        "{} is cut short: its video worker has {copied} of {size} bytes",
        exe.display()
    );
    // Nothing may change the program between this check and its exec.
    fcntl(
        &out,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE
                | SealFlag::F_SEAL_SEAL,
        ),
    )
    .context("sealing the bundled video worker")?;
    Ok(Some(OwnedFd::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundled_program_runs_from_its_memfd_and_a_plain_one_has_none() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let script = b"#!/bin/sh\necho bundled-worker-ran\n";
        let agent = dir.join("agent");
        std::fs::write(
            &agent,
            lx_protocol::update::bundle(b"not an ELF, never run".to_vec(), script),
        )
        .unwrap();
        let fd = unbundle(&agent).unwrap().expect("a bundled worker");
        let program = Program::Bundled(fd);
        let out = std::process::Command::new(program.path()).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "bundled-worker-ran"
        );
        let Program::Bundled(fd) = &program else {
            unreachable!()
        };
        let mut sealed = File::from(fd.try_clone().unwrap());
        assert!(
            std::io::Write::write_all(&mut sealed, b"x").is_err(),
            "the memfd is sealed against writes"
        );
        let plain = dir.join("plain");
        std::fs::write(&plain, b"#!/bin/sh\nexit 0\n").unwrap();
        assert!(unbundle(&plain).unwrap().is_none());
        let mut cut = lx_protocol::update::bundle(b"agent".to_vec(), script);
        cut.drain(5..10);
        std::fs::write(&plain, &cut).unwrap();
        assert!(
            unbundle(&plain).unwrap().is_none(),
            "a trailer whose worker would start before the file"
        );
    }

    #[test]
    fn a_configured_program_wins() {
        let Program::File(path) = Program::locate(" /opt/worker ").unwrap() else {
            panic!("a configured program is a file")
        };
        assert_eq!(path, Path::new("/opt/worker"));
    }
}
