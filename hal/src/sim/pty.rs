//! A pseudo-terminal that stands in for a GPS receiver's serial port.
//!
//! Contract: [`Pty::open`] makes a pty pair in process (`openpty`), puts the
//! slave side in raw mode and keeps one slave descriptor open for the life
//! of the value, so data written to the master waits in the line
//! discipline even while no reader has the port open (the serial reader
//! closes and reopens it while it probes baud rates). Dropping the `Pty` and
//! every handle from [`Pty::writer`] closes both sides: a reader then sees
//! the port vanish, as when a USB receiver is unplugged.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use nix::unistd::ttyname;

use crate::error::Error;

#[derive(Debug)]
pub struct Pty {
    master: File,
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    pub fn open() -> Result<Self, Error> {
        let pty = openpty(None, None).map_err(|e| Error::Pty(format!("openpty: {e}")))?;
        let mut termios =
            tcgetattr(&pty.slave).map_err(|e| Error::Pty(format!("tcgetattr: {e}")))?;
        cfmakeraw(&mut termios);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &termios)
            .map_err(|e| Error::Pty(format!("tcsetattr: {e}")))?;
        let path = ttyname(&pty.slave).map_err(|e| Error::Pty(format!("ttyname: {e}")))?;
        Ok(Self {
            master: File::from(pty.master),
            _slave: pty.slave,
            path,
        })
    }

    /// The slave device (`/dev/pts/N`), to open as the serial port.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the master, to write from another thread.
    pub fn writer(&self) -> Result<File, Error> {
        self.master
            .try_clone()
            .map_err(|e| Error::io("clone pty master", &self.path, &e))
    }
}

impl Write for Pty {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.master.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.master.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn bytes_written_to_the_master_come_out_of_the_slave_unchanged() {
        let mut pty = Pty::open().unwrap();
        let mut slave = File::open(pty.path()).unwrap();
        pty.write_all(b"$GPGGA,1*00\r\n").unwrap();
        let mut buf = [0u8; 13];
        slave.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"$GPGGA,1*00\r\n");
    }
}
