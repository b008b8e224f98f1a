//! What the core tells the person watching: a push-style observer, so that
//! progress bars, quiet runs and tests are implementations, and no core
//! signature mentions a terminal.

use crate::uid::Uid;

/// Events from a running command. Every method has a default that does nothing.
pub trait Reporter: Send + Sync {
    /// Work on a study begins: `total` instances, `done` of them already in place.
    fn study_started(&self, _study: &Uid, _label: &str, _total: u64, _done: u64) {}
    /// One more instance of `study` is in place (`bytes` long).
    fn instance_done(&self, _study: &Uid, _bytes: u64) {}
    /// Work on a study ended; `summary` says how, in a few words.
    fn study_finished(&self, _study: &Uid, _ok: bool, _summary: &str) {}
    /// Something the person should know about even in a quiet run: a
    /// rejected instance, a retry that gave up.
    fn warn(&self, _message: &str) {}
    /// A progress note (a retry, a wait for a lock); shown only with a terminal.
    fn info(&self, _message: &str) {}
}

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
