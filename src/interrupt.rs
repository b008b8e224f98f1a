//! The one cancel token. Ctrl-C and SIGTERM set it (`main` installs the
//! handler), and every wait of the program ends as soon as it is set: a
//! pause between retries or rounds ([`sleep`]), a request waiting for the
//! cloud ([`or_cancelled`], raced on the HTTP runtime), a wait for a lock,
//! an association with the destination ([`outwait`]). Nothing polls the
//! flag on a timer: setting it wakes every waiter at once.
//!
//! The program has one token ([`cancel`] and the free functions); a
//! [`Token`] of its own lets a test cancel without stopping everything else
//! in the same process.

use std::error::Error as StdError;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
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
    /// Held to check the flag before waiting and to set it, so that no
    /// wake-up falls between a waiter's check and its wait.
    gate: Mutex<Wakers>,
    wake: Condvar,
}

/// The async tasks waiting in [`Cancelled`], by key.
struct Wakers {
    next: u64,
    tasks: Vec<(u64, Waker)>,
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
            gate: Mutex::new(Wakers {
                next: 0,
                tasks: Vec::new(),
            }),
            wake: Condvar::new(),
        }
    }

    /// Sets the token and wakes every waiter. True if it was set already.
    pub fn cancel(&self) -> bool {
        let mut gate = self.gate();
        let was = self.set.swap(true, Ordering::SeqCst);
        for (_, waker) in gate.tasks.drain(..) {
            waker.wake();
        }
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
        let slot = Arc::new(Mutex::new(None));
        let filled = Arc::clone(&slot);
        std::thread::Builder::new()
            .name("outwaited".into())
            .spawn(move || {
                let done = catch_unwind(AssertUnwindSafe(work));
                *filled.lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
                let _gate = self.gate();
                self.wake.notify_all();
            })
            .map_err(|e| anyhow::anyhow!("failed to start a thread: {e}; the computer may be short of threads"))?;
        let mut gate = self.gate();
        loop {
            if let Some(done) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Ok(done.unwrap_or_else(|panic| resume_unwind(panic)));
            }
            self.check()?;
            gate = self.wake.wait(gate).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A future that completes once the token is set.
    pub fn cancelled(&self) -> Cancelled<'_> {
        Cancelled { token: self, key: None }
    }

    fn gate(&self) -> MutexGuard<'_, Wakers> {
        // The waker list stays consistent whatever panicked while holding it.
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See [`Token::cancelled`].
pub struct Cancelled<'a> {
    token: &'a Token,
    /// Where this task's waker is in the token's list, once registered.
    key: Option<u64>,
}

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let token = self.token;
        let mut gate = token.gate();
        if token.is_cancelled() {
            return Poll::Ready(());
        }
        let registered = self.key.and_then(|key| gate.tasks.iter_mut().find(|(k, _)| *k == key));
        match registered {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => {
                let key = gate.next;
                gate.next += 1;
                gate.tasks.push((key, cx.waker().clone()));
                drop(gate);
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.token.gate().tasks.retain(|(k, _)| *k != key);
        }
    }
}

/// Runs `work` to its end, unless `token` is set first.
pub async fn or_cancelled_by<F: Future>(token: &Token, work: F) -> Result<F::Output, Interrupted> {
    let mut work = pin!(work);
    let mut cancelled = token.cancelled();
    std::future::poll_fn(|cx| {
        // The work first: a body chunk that is already there costs no lock.
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match Pin::new(&mut cancelled).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Interrupted)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
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

/// [`or_cancelled_by`] the program's token.
pub async fn or_cancelled<F: Future>(work: F) -> Result<F::Output, Interrupted> {
    or_cancelled_by(&TOKEN, work).await
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
    use std::task::Wake;

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

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_future_wakes_its_task_and_forgets_it_when_dropped() {
        let token = Token::new();
        let woken = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);

        let mut dropped = token.cancelled();
        assert!(Pin::new(&mut dropped).poll(&mut cx).is_pending());
        drop(dropped);
        assert!(token.gate().tasks.is_empty());

        let mut waiting = pin!(or_cancelled_by(&token, std::future::pending::<()>()));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        token.cancel();
        assert!(woken.0.load(Ordering::SeqCst));
        assert!(matches!(waiting.as_mut().poll(&mut cx), Poll::Ready(Err(Interrupted))));

        let wrapped = anyhow::Error::new(std::io::Error::other(Interrupted)).context("reading");
        assert!(is_interrupted(&wrapped));
        assert!(!is_interrupted(&anyhow::anyhow!("something else")));
    }
}
