//! The test runner of the integration binary (`harness = false`, on `libtest-mimic`): each
//! module lists its tests with the peers they need in a [`tests!`] block, and a test whose
//! peer is missing is reported `ignored` with the reason instead of a silent `ok`. In CI
//! (`CI=true`) a missing peer fails the test, because a green run must mean the test ran.
//!
//! A test can also find out only while running that it cannot run here (no permission to
//! mount a tmpfs, an opt-in size not asked for): it calls [`ignore`], which ends it as
//! `ignored` with the reason.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use libtest_mimic::{Completion, Failed, Trial};

use super::{in_ci, missing_peer};

/// Registers the tests of one module: `tests! { name, name: ["orthanc", "storescp"], ... }`,
/// each an `fn()` of the module, with the peers it needs (names as [`missing_peer`] knows
/// them). Defines the module's `tests()`, which `main` collects. A `#[cfg(...)]` before a name
/// applies to its registration.
macro_rules! tests {
    ($( $(#[$cfg:meta])* $name:ident $(: [$($peer:expr),* $(,)?])? ),* $(,)?) => {
        /// This module's tests, for the runner in `main.rs`.
        pub fn tests() -> Vec<libtest_mimic::Trial> {
            let module = module_path!().split_once("::").map_or("", |(_, m)| m);
            let mut trials = Vec::new();
            $(
                $(#[$cfg])*
                trials.push($crate::common::harness::trial(
                    &format!("{module}::{}", stringify!($name)),
                    &[$($($peer),*)?],
                    $name,
                ));
            )*
            trials
        }
    };
}

/// Why a test ended as `ignored` at run time: the payload [`ignore`] unwinds with.
struct Ignored(String);

/// Ends the calling test as `ignored`, with `reason` shown in the report. In CI, where every
/// test must run, it fails the test instead.
pub fn ignore(reason: impl Into<String>) -> ! {
    let reason = reason.into();
    assert!(!in_ci(), "{reason}; with CI=true that is a failure, not a skip");
    // resume_unwind, not panic!: the panic hook would print this as if the test had failed.
    resume_unwind(Box::new(Ignored(reason)))
}

/// One test: checks its peers, then runs it; a missing peer or a call to [`ignore`] makes it
/// `ignored` (a failure in CI), a panic makes it fail.
pub fn trial(name: &str, peers: &'static [&'static str], test: fn()) -> Trial {
    Trial::ignorable_test(name, move || {
        for peer in peers {
            if let Some(why) = missing_peer(peer) {
                if in_ci() {
                    return Err(Failed::from(format!(
                        "{why}; with CI=true that is a failure, not a skip"
                    )));
                }
                return Ok(Completion::ignored_with(why));
            }
        }
        match catch_unwind(AssertUnwindSafe(test)) {
            Ok(()) => Ok(Completion::Completed),
            Err(payload) => match payload.downcast::<Ignored>() {
                Ok(ignored) => Ok(Completion::ignored_with(ignored.0)),
                Err(payload) => resume_unwind(payload),
            },
        }
    })
}
