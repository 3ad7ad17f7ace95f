//! Writing to stdout and stderr without panicking. `println!` panics when the reader of a
//! pipe has gone (`switchyard dlq show 1 | head -3`); commands write with [`outln!`] and
//! [`out!`] instead, and with [`errln!`] and [`err!`] for stderr. Clippy forbids the `print`
//! macros in the crate (`clippy.toml`) so that no new command brings the panic back.
//!
//! The rule: a reader that goes away changes neither what a command does nor its exit code.
//! Output to a closed pipe is dropped (`BrokenPipe` is not an error), any other write error
//! (a full disk behind `> file`) is returned; a `BrokenPipe` that still travels up through
//! `?` ends the command quietly with exit 0 (see [`super::main`]).
//!
//! The process keeps ignoring `SIGPIPE` (Rust's default) rather than restoring the default
//! action: a `writev` on a socket whose peer left would then kill `serve` or `run` mid-batch.

use std::fmt;
use std::io::{self, Write};

/// `println!` to stdout: `io::Result<()>`, a closed pipe being `Ok`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::stdout(::std::format_args!($($arg)*), true)
    };
}

/// `print!` to stdout: `io::Result<()>`, a closed pipe being `Ok`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::stdout(::std::format_args!($($arg)*), false)
    };
}

/// `eprintln!` that never panics: what stderr cannot take is dropped.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::stderr(::std::format_args!($($arg)*), true)
    };
}

/// `eprint!` that never panics: what stderr cannot take is dropped.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::cli::output::stderr(::std::format_args!($($arg)*), false)
    };
}

pub(crate) use {err, errln, out, outln};

/// Writes to stdout; see the module doc for what a closed pipe does.
pub(crate) fn stdout(args: fmt::Arguments<'_>, newline: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    match written {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes to stderr, dropping what cannot be written: there is nowhere left to report it.
pub(crate) fn stderr(args: fmt::Arguments<'_>, newline: bool) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| {
        if newline {
            err.write_all(b"\n")
        } else {
            Ok(())
        }
    });
}

/// Whether `error` comes from writing to a pipe nobody reads any more.
pub(crate) fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        // serde_json keeps the I/O error inside rather than as its source.
        let kind = match cause.downcast_ref::<serde_json::Error>() {
            Some(json) => json.io_error_kind(),
            None => cause.downcast_ref::<io::Error>().map(io::Error::kind),
        };
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}
