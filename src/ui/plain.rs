//! The reporter without a terminal: warnings on stderr always, progress
//! notes unless quiet, and no bars. For `--quiet` and for runs whose stderr
//! is a file or a pipe.

use crate::report::Reporter;

/// Shows nothing but warnings, on stderr: for `--quiet` and for runs
/// without a terminal.
pub struct Plain {
    pub quiet: bool,
}

impl Reporter for Plain {
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }

    fn info(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }
}
