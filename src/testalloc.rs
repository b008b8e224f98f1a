//! The test binary's allocator: it counts what the current thread allocates
//! while a measurement runs, so a test can hold a parser of peers' bytes to a
//! memory bound whatever lengths its input declares.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn count(size: usize) {
    // `try_with`: the allocator also runs while a thread's locals are torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = TOTAL.try_with(|t| t.set(t.get() + size));
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
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
}

/// Runs `f` and returns what it allocated on this thread.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Allocated) {
    TOTAL.with(|t| t.set(0));
    LARGEST.with(|l| l.set(0));
    COUNTING.with(|c| c.set(true));
    let result = f();
    COUNTING.with(|c| c.set(false));
    let allocated = Allocated {
        total: TOTAL.with(Cell::get),
        largest: LARGEST.with(Cell::get),
    };
    (result, allocated)
}
