//! Writing to stdout: every line is flushed and checked, so that a full disk or a broken
//! device is a failure (exit 1) rather than a silent success; only a reader that closed the
//! pipe ends the command quietly.

use std::io::Write;

use crate::Failure;

/// Writes `args` and a newline to stdout.
pub(crate) fn line(args: std::fmt::Arguments<'_>) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    checked(writeln!(out, "{args}").and_then(|()| out.flush()))
}

/// Flushes stdout (at the end of every command).
pub(crate) fn flush() -> Result<(), Failure> {
    checked(std::io::stdout().lock().flush())
}

fn checked(r: std::io::Result<()>) -> Result<(), Failure> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Failure::runtime(format!("writing to stdout: {e}"))),
    }
}
