//! Tools from PyPI, pinned in `tools/python/requirements.txt` and installed
//! into a project-local virtual environment, `tools/python/venv`: nothing
//! goes into the machine's own Python.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{root, stream_ok};

/// Each installed command the tests run: (environment variable, command).
const COMMANDS: &[(&str, &str)] = &[("LX_SCHEMATHESIS", "st"), ("LX_PYTHON", "python")];

#[derive(Debug)]
pub(crate) struct PythonTools {
    pub(crate) commands: Vec<(&'static str, PathBuf)>,
}

impl PythonTools {
    pub(crate) fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        for (var, path) in &self.commands {
            cmd.env(var, path);
        }
        cmd
    }
}

fn dir() -> PathBuf {
    root().join("tools/python")
}

/// Creates the virtual environment if there is none, and installs the
/// requirements when they changed since the last install.
pub(crate) fn ensure_python_tools() -> anyhow::Result<PythonTools> {
    let dir = dir();
    let venv = dir.join("venv");
    let requirements = dir.join("requirements.txt");
    let stamp = venv.join(".installed-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let bin = venv.join("bin");
    let commands: Vec<(&'static str, PathBuf)> = COMMANDS
        .iter()
        .map(|&(var, command)| (var, bin.join(command)))
        .collect();
    let current = std::fs::read_to_string(&stamp).ok();
    let missing = commands.iter().any(|(_, p)| !p.exists());
    if current.as_deref() != Some(wanted.as_str()) || missing {
        if !bin.join("python").exists() {
            println!("    Python tools: no virtual environment, creating tools/python/venv");
            if !venv_works(&venv) {
                crate::debian::ensure("Python venv", &["python3-venv"])?;
                if !venv_works(&venv) {
                    bail!("`python3 -m venv {}` fails", venv.display());
                }
            }
        }
        println!("    Python tools: installing tools/python/requirements.txt");
        stream_ok(
            "pip install -r tools/python/requirements.txt",
            Command::new(bin.join("python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(["-r"])
                .arg(&requirements),
        )?;
        std::fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
    }
    for (var, path) in &commands {
        if !path.exists() {
            bail!("pip did not install {}", path.display());
        }
        println!("    {var}={}", path.display());
    }
    Ok(PythonTools { commands })
}

fn venv_works(venv: &std::path::Path) -> bool {
    Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .is_ok_and(|s| s.success())
        && venv.join("bin/python").exists()
}
