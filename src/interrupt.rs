//! The one cancel token. Ctrl-C and SIGTERM set it (`main` installs the
//! handler), and every wait of the program ends as soon as it is set: a
//! pause between retries or rounds ([`sleep`]), a request waiting for the
//! cloud and each read of its answer ([`feed`]: the blocking HTTP client
//! works on a thread of its own), a wait for a lock, an association with the
//! destination ([`outwait`]). Nothing polls the flag on a timer: setting it
//! wakes every waiter at once.
//!
//! The program has one token ([`cancel`] and the free functions); a
//! [`Token`] of its own lets a test cancel without stopping everything else
//! in the same process.

use std::any::Any;
use std::error::Error as StdError;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The run was stopped by Ctrl-C; `main` turns this into exit status 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; what was complete is kept in the cache, run the same command again to resume")
    }
}

impl StdError for Interrupted {}

/// A flag that, once set, stays set, and wakes whoever waits on it.
pub struct Token {
    set: AtomicBool,
    /// Held to check the flag (or a [`Feed`]) before waiting, and to set
    /// it (or fill the feed), so that no wake-up falls between a waiter's
    /// check and its wait.
    gate: Mutex<()>,
    wake: Condvar,
}

impl Default for Token {
    fn default() -> Token {
        Token::new()
    }
}

impl Token {
    pub const fn new() -> Token {
        Token {
            set: AtomicBool::new(false),
            gate: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// Sets the token and wakes every waiter. True if it was set already.
    pub fn cancel(&self) -> bool {
        let _gate = self.gate();
        let was = self.set.swap(true, Ordering::SeqCst);
        self.wake.notify_all();
        was
    }

    pub fn is_cancelled(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// `Interrupted` once the token is set.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.is_cancelled() {
            Err(Interrupted.into())
        } else {
            Ok(())
        }
    }

    /// Waits for `delay`, or less if the token is set first (then `Interrupted`).
    pub fn sleep(&self, delay: Duration) -> anyhow::Result<()> {
        // A delay beyond any real wait (a year) stands for "until cancelled".
        let until = Instant::now() + delay.min(Duration::from_secs(365 * 24 * 3600));
        let mut gate = self.gate();
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            gate = self
                .wake
                .wait_timeout(gate, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Runs `work` on a thread of its own and returns what it returns, or
    /// `Interrupted` as soon as the token is set. For blocking work that
    /// cannot be told to stop (a DICOM association waiting for its peer):
    /// the thread is left behind, and the program is about to end anyway.
    pub fn outwait<T: Send + 'static>(&'static self, work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let mut feed = self.feed(move |give| {
            give.give(work());
        })?;
        match feed.take()? {
            Some(done) => Ok(done),
            None => unreachable!("the work hands over its result before it ends"),
        }
    }

    /// Runs `work` on a thread of its own, which hands values over one at a
    /// time; the caller takes them with [`Feed::take`], a wait that ends as
    /// soon as the token is set. For blocking work that yields a stream (an
    /// HTTP answer, read piece by piece): at most one value waits in the
    /// feed, so the worker runs only one value ahead of the caller. When the
    /// caller is gone, [`Give::give`] says so and the work should end; a
    /// worker stuck in a blocking call is left behind, as in [`Token::outwait`].
    pub fn feed<T: Send + 'static>(
        &'static self,
        work: impl FnOnce(&Give<T>) + Send + 'static,
    ) -> anyhow::Result<Feed<T>> {
        let shared = Arc::new(Handover {
            slot: Mutex::new(Slot {
                value: None,
                ended: None,
                left: false,
            }),
            taken: Condvar::new(),
        });
        let give = Give {
            token: self,
            shared: Arc::clone(&shared),
        };
        std::thread::Builder::new()
            .name("outwaited".into())
            .spawn(move || {
                let ended = catch_unwind(AssertUnwindSafe(|| work(&give)));
                give.shared.lock().ended = Some(ended);
                give.token.notify();
            })
            .map_err(|e| anyhow::anyhow!("failed to start a thread: {e}; the computer may be short of threads"))?;
        Ok(Feed { token: self, shared })
    }

    fn gate(&self) -> MutexGuard<'_, ()> {
        // The gate guards no data, so whatever panicked while holding it left nothing half done.
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the waiters after something they wait for changed.
    fn notify(&self) {
        let _gate = self.gate();
        self.wake.notify_all();
    }
}

/// What a [`Token::feed`] worker and its caller share.
struct Handover<T> {
    slot: Mutex<Slot<T>>,
    /// Signalled when the caller took the value or left.
    taken: Condvar,
}

struct Slot<T> {
    value: Option<T>,
    /// Set when the work has returned (`Ok`) or panicked.
    ended: Option<Result<(), Box<dyn Any + Send>>>,
    /// The caller dropped its [`Feed`]: nothing more will be taken.
    left: bool,
}

impl<T> Handover<T> {
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        // Only plain assignments happen under this lock: it cannot be left half done.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The worker's end of a [`Token::feed`].
pub struct Give<T> {
    token: &'static Token,
    shared: Arc<Handover<T>>,
}

impl<T> Give<T> {
    /// Hands `value` to the caller, first waiting until it took the
    /// previous one. False when the caller has gone: the work should end.
    pub fn give(&self, value: T) -> bool {
        let mut slot = self.shared.lock();
        while slot.value.is_some() && !slot.left {
            slot = self.shared.taken.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
        if slot.left {
            return false;
        }
        slot.value = Some(value);
        drop(slot);
        self.token.notify();
        true
    }
}

/// The caller's end of a [`Token::feed`].
pub struct Feed<T> {
    token: &'static Token,
    shared: Arc<Handover<T>>,
}

impl<T> Feed<T> {
    /// The next value, waiting for it; `None` once the work has ended (a
    /// panic in the work is raised here); `Interrupted` as soon as the token
    /// is set, even if a value is waiting.
    pub fn take(&mut self) -> Result<Option<T>, Interrupted> {
        let mut gate = self.token.gate();
        loop {
            if self.token.is_cancelled() {
                return Err(Interrupted);
            }
            let mut slot = self.shared.lock();
            if let Some(value) = slot.value.take() {
                drop(slot);
                self.shared.taken.notify_one();
                return Ok(Some(value));
            }
            match slot.ended.take() {
                Some(Err(panic)) => resume_unwind(panic),
                Some(Ok(())) => {
                    slot.ended = Some(Ok(()));
                    return Ok(None);
                }
                None => {}
            }
            drop(slot);
            gate = self.token.wake.wait(gate).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl<T> Drop for Feed<T> {
    fn drop(&mut self) {
        let mut slot = self.shared.lock();
        slot.left = true;
        slot.value = None;
        drop(slot);
        self.shared.taken.notify_one();
    }
}

static TOKEN: Token = Token::new();

/// Sets the program's token (Ctrl-C, SIGTERM). True if it was set already.
pub fn cancel() -> bool {
    TOKEN.cancel()
}

/// True once Ctrl-C has come: stop taking new work.
pub fn requested() -> bool {
    TOKEN.is_cancelled()
}

/// `Interrupted` once Ctrl-C has come.
pub fn check() -> anyhow::Result<()> {
    TOKEN.check()
}

/// Sleeps for `delay`, or less if Ctrl-C comes first (then `Interrupted`).
pub fn sleep(delay: Duration) -> anyhow::Result<()> {
    TOKEN.sleep(delay)
}

/// [`Token::outwait`] on the program's token.
pub fn outwait<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    TOKEN.outwait(work)
}

/// [`Token::feed`] on the program's token.
pub fn feed<T: Send + 'static>(work: impl FnOnce(&Give<T>) + Send + 'static) -> anyhow::Result<Feed<T>> {
    TOKEN.feed(work)
}

/// True when `e` is, or was caused by, Ctrl-C.
pub fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(is_cause)
}

/// True when `e` or one of its sources is [`Interrupted`], also when
/// wrapped in an `io::Error` (whose `source` skips what it wraps).
pub fn caused(e: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(e) = current {
        if is_cause(e) {
            return true;
        }
        current = e.source();
    }
    false
}

fn is_cause(e: &(dyn StdError + 'static)) -> bool {
    e.is::<Interrupted>()
        || e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<Interrupted>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_runs_its_time_when_nobody_cancels() {
        let token = Token::new();
        token.sleep(Duration::from_millis(30)).unwrap();
        token.sleep(Duration::ZERO).unwrap();
    }

    #[test]
    fn sleep_returns_early_when_cancelled() {
        static TOKEN: Token = Token::new();
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| TOKEN.sleep(Duration::from_secs(3600)));
            // Cancelled while sleeping or before: either way it must end now.
            assert!(!TOKEN.cancel());
            let e = sleeper.join().unwrap().unwrap_err();
            assert!(is_interrupted(&e), "{e:#}");
        });
        assert!(TOKEN.cancel(), "a second cancel says so");
        assert!(is_interrupted(&TOKEN.sleep(Duration::ZERO).unwrap_err()));
    }

    #[test]
    fn outwait_returns_the_work_or_interrupted() {
        static TOKEN: Token = Token::new();
        assert_eq!(TOKEN.outwait(|| 7).unwrap(), 7);
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let blocked = std::thread::spawn(|| {
            TOKEN.outwait(move || {
                let _ = held.recv();
            })
        });
        TOKEN.cancel();
        let e = blocked.join().unwrap().unwrap_err();
        assert!(is_interrupted(&e), "{e:#}");
        drop(hold);
    }

    #[test]
    fn a_feed_hands_over_in_order_and_ends() {
        static TOKEN: Token = Token::new();
        let mut feed = TOKEN
            .feed(|give| {
                for n in 0..100 {
                    assert!(give.give(n));
                }
            })
            .unwrap();
        let got: Vec<i32> = std::iter::from_fn(|| feed.take().unwrap()).collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert!(feed.take().unwrap().is_none(), "ended stays ended");
    }

    #[test]
    fn a_feed_tells_the_worker_when_the_caller_has_gone() {
        static TOKEN: Token = Token::new();
        let (told, was_told) = std::sync::mpsc::channel();
        let mut feed = TOKEN
            .feed(move |give| {
                let mut n = 0;
                while give.give(n) {
                    n += 1;
                }
                told.send(n).unwrap();
            })
            .unwrap();
        assert_eq!(feed.take().unwrap(), Some(0));
        drop(feed);
        // At most one value was ahead of the caller when it left.
        assert!(was_told.recv().unwrap() <= 2);
    }

    #[test]
    fn a_feed_wait_ends_when_cancelled() {
        static TOKEN: Token = Token::new();
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let waiting = std::thread::spawn(|| {
            let mut feed = TOKEN
                .feed(move |give: &Give<()>| {
                    let _ = held.recv();
                    give.give(());
                })
                .unwrap();
            feed.take()
        });
        TOKEN.cancel();
        assert!(matches!(waiting.join().unwrap(), Err(Interrupted)));
        drop(hold);
        let wrapped = anyhow::Error::new(std::io::Error::other(Interrupted)).context("reading");
        assert!(is_interrupted(&wrapped));
        assert!(!is_interrupted(&anyhow::anyhow!("something else")));
    }

    #[test]
    #[should_panic(expected = "the work's own panic")]
    fn a_panic_in_the_work_is_raised_in_the_caller() {
        static TOKEN: Token = Token::new();
        let mut feed = TOKEN.feed(|_: &Give<()>| panic!("the work's own panic")).unwrap();
        let _ = feed.take();
    }
}
