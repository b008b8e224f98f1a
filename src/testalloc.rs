//! The test binary's allocator: it counts what the current thread allocates,
//! and the most it holds at once, while a measurement runs, so a test can
//! hold a parser of peers' bytes to a memory bound whatever lengths its input
//! declares, or however many results it reads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// What every thread of the process holds, allocated less freed.
static EVERYWHERE: AtomicIsize = AtomicIsize::new(0);

fn count(size: usize) {
    // `try_with`: the allocator also runs while a thread's locals are torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = TOTAL.try_with(|t| t.set(t.get() + size));
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
    live(size as isize);
}

/// Follows what this thread holds (what it allocated less what it freed)
/// while a measurement runs, and its peak.
fn live(delta: isize) {
    EVERYWHERE.fetch_add(delta, Ordering::Relaxed);
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let now = LIVE.try_with(|l| {
            l.set(l.get() + delta);
            l.get()
        });
        if let Ok(now) = now {
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        }
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        live(-(layout.size() as isize));
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What a measured piece of work allocated on its thread, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Allocated {
    /// Everything allocated (frees not subtracted).
    pub total: usize,
    /// The largest single allocation or reallocation.
    pub largest: usize,
    /// The most it held at once (allocated less freed, on this thread,
    /// counted from the start of the measurement).
    pub peak: usize,
}

/// What all threads of the process hold now, in bytes: a test that reads
/// it must run alone in its process ([`alone`]).
pub fn held_everywhere() -> isize {
    EVERYWHERE.load(Ordering::Relaxed)
}

/// True when this test runs in a process of its own; otherwise runs the
/// test `name` (its full path) so, checks that it passed, and returns false.
/// For a measurement of what every thread holds, as a library that builds
/// on threads of its own needs.
pub fn alone(name: &str) -> bool {
    if std::env::var_os("RETRIEVER_TEST_ALONE").is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env("RETRIEVER_TEST_ALONE", "1")
        .output()
        .expect("the test binary runs");
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("1 passed"),
        "`{name}` alone failed:\n{said}"
    );
    false
}

/// Runs `f` and returns what it allocated on this thread.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Allocated) {
    TOTAL.with(|t| t.set(0));
    LARGEST.with(|l| l.set(0));
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    COUNTING.with(|c| c.set(true));
    let result = f();
    COUNTING.with(|c| c.set(false));
    let allocated = Allocated {
        total: TOTAL.with(Cell::get),
        largest: LARGEST.with(Cell::get),
        peak: PEAK.with(Cell::get).max(0) as usize,
    };
    (result, allocated)
}
