//! The engine's one thread pool: a small fork-join team. It splits one
//! net's products and row-wise loops between cores, and it runs the cells of
//! a study side by side ([`run_cells`]).
//!
//! A net's pass is a chain of short steps (a 256×200×200 product takes
//! about 0.1 ms), each split and joined again. Waking a sleeping thread pool
//! for each costs a good share of the step, so the helpers spin for a while
//! after each step before they sleep, as OpenMP's threads do.
//!
//! One caller at a time uses a team; a call from inside a part (a cell
//! splitting its products, a nested split) or from another thread while the
//! team is busy runs its parts in turn on the calling thread, so cells run
//! side by side never oversubscribe the cores.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a helper spins for the next step before it sleeps.
const SPIN: Duration = Duration::from_millis(2);

/// What the team has done since the process started: whether steps were
/// split, and how long the caller waited for its helpers. A benchmark
/// records it beside its times, so a run where a second thread added nothing
/// tells whether its steps ran serially or its helpers ran slowly. (Which
/// parts a helper runs is fixed by the split, so it is not counted.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TeamStats {
    /// Steps split between the caller and its helpers.
    pub split_steps: u64,
    /// Steps that could have been split but ran on the caller alone (a
    /// nested call, a call from a part, a second caller while the team was busy).
    pub serial_steps: u64,
    /// Times a helper found no step within its spin time and went to sleep.
    pub helper_sleeps: u64,
    /// Nanoseconds the caller spent waiting for helpers after its own parts.
    pub caller_wait_ns: u64,
}

// The counters behind [`team_stats`]. Only the caller writes them on every
// step (a helper, when it goes to sleep), so they do not travel between
// cores step after step.
static SPLIT_STEPS: AtomicU64 = AtomicU64::new(0);
static SERIAL_STEPS: AtomicU64 = AtomicU64::new(0);
static HELPER_SLEEPS: AtomicU64 = AtomicU64::new(0);
static CALLER_WAIT_NS: AtomicU64 = AtomicU64::new(0);

fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The team's counts since the process started.
pub fn team_stats() -> TeamStats {
    let s = |c: &AtomicU64| c.load(Ordering::Relaxed);
    TeamStats {
        split_steps: s(&SPLIT_STEPS),
        serial_steps: s(&SERIAL_STEPS),
        helper_sleeps: s(&HELPER_SLEEPS),
        caller_wait_ns: s(&CALLER_WAIT_NS),
    }
}

/// Threads for one net's products and loops, set by [`set_product_threads`]
/// or read once from `MATMUL_NUM_THREADS` (default 1).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The product threads in use (1: everything on the calling thread).
pub fn product_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("MATMUL_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            // Only the first reading counts, unless set explicitly in between.
            let _ = THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed);
            THREADS.load(Ordering::Relaxed)
        }
        n => n,
    }
}

/// Sets the product threads of the engine's kernels (at least 1),
/// overriding `MATMUL_NUM_THREADS`. Results are the same at any count up to rounding.
pub fn set_product_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// One split step: `parts` calls of `f`. Member p of the team (the caller
/// is 0) runs parts p, p + T, p + 2T, … of a team of T: the same rows go
/// to the same core step after step, so each finds its rows of the last
/// step in its own cache.
struct Job {
    /// The caller's closure; its lifetime is erased, see [`run`].
    f: *const (dyn Fn(usize) + Sync + 'static),
    parts: usize,
    members: usize,
    done: AtomicUsize,
    panicked: AtomicBool,
    /// The caller's store of value products, which its parts use too.
    values: Option<Arc<crate::memo::ValueProducts>>,
}

// SAFETY: `f` is Sync, and it is called only while the caller waits in `run`.
unsafe impl Send for Job {}
unsafe impl Sync for Job {}

thread_local! {
    /// Set while this thread runs a part: a split asked for inside a part
    /// runs serially, whichever team it would use.
    static IN_PART: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Job {
    /// Runs member `p`'s parts.
    fn work(&self, p: usize) {
        let outer = IN_PART.with(|f| f.replace(true));
        crate::memo::within(self.values.as_ref(), || {
            for i in (p..self.parts).step_by(self.members) {
                // SAFETY: part i is not done yet, so the caller is still waiting
                // in `run` and `f` is alive.
                let f = unsafe { &*self.f };
                if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
                    self.panicked.store(true, Ordering::Relaxed);
                }
                self.done.fetch_add(1, Ordering::Release);
            }
        });
        IN_PART.with(|f| f.set(outer));
    }
}

struct Slot {
    epoch: u64,
    job: Option<Arc<Job>>,
    sleeping: usize,
}

struct Team {
    helpers: usize,
    busy: Mutex<()>,
    epoch: AtomicU64,
    slot: Mutex<Slot>,
    wake: Condvar,
}

impl Team {
    fn new(helpers: usize) -> &'static Team {
        let team: &'static Team = Box::leak(Box::new(Team {
            helpers,
            busy: Mutex::new(()),
            epoch: AtomicU64::new(0),
            slot: Mutex::new(Slot {
                epoch: 0,
                job: None,
                sleeping: 0,
            }),
            wake: Condvar::new(),
        }));
        for i in 0..helpers {
            std::thread::Builder::new()
                .name(format!("gradscope-product-{}", i + 1))
                .spawn(move || team.help(i + 1))
                .expect("spawn a product thread");
        }
        team
    }

    fn help(&self, member: usize) {
        let mut seen = 0;
        loop {
            let start = Instant::now();
            let mut spins = 0u32;
            while self.epoch.load(Ordering::Acquire) == seen {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins % 512 == 0 && start.elapsed() > SPIN {
                    let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
                    count(&HELPER_SLEEPS, 1);
                    s.sleeping += 1;
                    while s.epoch == seen {
                        s = self.wake.wait(s).unwrap_or_else(|e| e.into_inner());
                    }
                    s.sleeping -= 1;
                    break;
                }
            }
            let job = {
                let s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
                seen = s.epoch;
                s.job.clone()
            };
            if let Some(job) = job {
                job.work(member);
            }
        }
    }

    fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        // SAFETY: only the lifetime is erased. `f` is called only for parts
        // not yet done, and this function does not return before all are.
        let f: *const (dyn Fn(usize) + Sync + 'static) =
            unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), _>(f as *const _) };
        let job = Arc::new(Job {
            f,
            parts,
            members: self.helpers + 1,
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            values: crate::memo::current(),
        });
        {
            let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            s.epoch += 1;
            s.job = Some(job.clone());
            self.epoch.store(s.epoch, Ordering::Release);
            if s.sleeping > 0 {
                self.wake.notify_all();
            }
        }
        count(&SPLIT_STEPS, 1);
        job.work(0);
        if job.done.load(Ordering::Acquire) < parts {
            let waiting = Instant::now();
            while job.done.load(Ordering::Acquire) < parts {
                std::hint::spin_loop();
            }
            count(&CALLER_WAIT_NS, waiting.elapsed().as_nanos() as u64);
        }
        if job.panicked.load(Ordering::Relaxed) {
            panic!("a part of a split product panicked");
        }
    }
}

/// The team for `threads` product threads (the caller and `threads − 1`
/// helpers), started on first use.
fn team(threads: usize) -> Option<&'static Team> {
    static TEAMS: OnceLock<Mutex<Vec<&'static Team>>> = OnceLock::new();
    if threads < 2 {
        return None;
    }
    let mut teams = TEAMS
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(t) = teams.iter().find(|t| t.helpers == threads - 1) {
        return Some(*t);
    }
    let t = Team::new(threads - 1);
    teams.push(t);
    Some(t)
}

/// Runs `f(i)` for every i in `0..parts`, split between the product
/// threads, and returns when all are done. A panic in a part panics here.
pub(crate) fn run(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    run_on(product_threads(), parts, f);
}

/// [`run`] on `threads` product threads.
fn run_on(threads: usize, parts: usize, f: &(dyn Fn(usize) + Sync)) {
    let serial = parts < 2 || threads < 2 || IN_PART.with(|f| f.get());
    let team = if serial { None } else { team(threads) };
    // Busy (a part calling in, or another caller): this caller's parts in turn.
    let busy = team.and_then(|t| match t.busy.try_lock() {
        Ok(g) => Some((t, g)),
        Err(std::sync::TryLockError::Poisoned(p)) => Some((t, p.into_inner())),
        Err(std::sync::TryLockError::WouldBlock) => None,
    });
    match busy {
        Some((t, _busy)) => t.run(parts, f),
        None => {
            if threads >= 2 && parts >= 2 {
                count(&SERIAL_STEPS, 1);
            }
            (0..parts).for_each(f)
        }
    }
}

/// `[f(0), …, f(parts − 1)]`, computed as [`run`] splits them.
pub(crate) fn map<R: Send>(parts: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let out: Vec<Mutex<Option<R>>> = (0..parts).map(|_| Mutex::new(None)).collect();
    run(parts, &|i| {
        *out[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(f(i));
    });
    out.into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every part ran")
        })
        .collect()
}

/// `(a(), b())`, the two run side by side on the product threads.
pub(crate) fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    fn take<U>(m: &Mutex<Option<U>>) -> Option<U> {
        m.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
    let (a, b) = (Mutex::new(Some(a)), Mutex::new(Some(b)));
    let (ra, rb) = (Mutex::new(None), Mutex::new(None));
    run(2, &|i| {
        if i == 0 {
            if let Some(a) = take(&a) {
                *ra.lock().unwrap_or_else(|e| e.into_inner()) = Some(a());
            }
        } else if let Some(b) = take(&b) {
            *rb.lock().unwrap_or_else(|e| e.into_inner()) = Some(b());
        }
    });
    (
        take(&ra).expect("the first part ran"),
        take(&rb).expect("the second part ran"),
    )
}

/// Runs `f(i)` for every i in `0..n` on `threads` threads, each taking the
/// next index as it finishes one (cells differ in cost), and returns the
/// results in index order. `f` returning `Err` or `stop()` turning true stops
/// new indices from starting (those in flight finish); the indices not run
/// come back as `None`. A panic in `f` panics here. Splits asked for inside
/// `f` run serially: the threads are busy with cells.
pub fn run_cells<R: Send, E: Send>(
    threads: usize,
    n: usize,
    stop: &(dyn Fn() -> bool + Sync),
    f: &(dyn Fn(usize) -> Result<R, E> + Sync),
) -> Vec<Option<Result<R, E>>> {
    let out: Vec<Mutex<Option<Result<R, E>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = |_: usize| {
        loop {
            if failed.load(Ordering::Relaxed) || stop() {
                return;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return;
            }
            let r = f(i);
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            *out[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
    };
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        // On the caller, as a part: its products run serially, as in a team.
        let outer = IN_PART.with(|f| f.replace(true));
        worker(0);
        IN_PART.with(|f| f.set(outer));
    } else {
        run_on(threads, threads, &worker);
    }
    out.into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part runs exactly once, at any thread count and nesting, and
    /// callers on several threads at once each get their own parts.
    #[test]
    fn every_part_runs_once_under_nesting_and_concurrent_callers() {
        let counts: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        let before = team_stats();
        run_on(3, 10, &|i| {
            // Nested: runs on the calling part's thread.
            run_on(3, 100, &|j| {
                counts[i * 100 + j].fetch_add(1, Ordering::Relaxed);
            });
        });
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        // Other tests may count too, so only lower bounds: the outer step was
        // split and its ten nested ones ran serially.
        let after = team_stats();
        assert!(after.split_steps > before.split_steps);
        assert!(after.serial_steps >= before.serial_steps + 10);

        // The parts do run on more than one thread (no other test uses three).
        let ids = Mutex::new(std::collections::BTreeSet::new());
        run_on(3, 40, &|_| {
            std::thread::sleep(Duration::from_millis(1));
            ids.lock()
                .unwrap()
                .insert(format!("{:?}", std::thread::current().id()));
        });
        assert!(ids.into_inner().unwrap().len() >= 2);

        let sums: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|k| {
                    s.spawn(move || {
                        let total = AtomicU64::new(0);
                        for _ in 0..200 {
                            run_on(2, 7, &|i| {
                                total.fetch_add((k * 10 + i) as u64, Ordering::Relaxed);
                            });
                        }
                        total.into_inner()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (k, s) in sums.iter().enumerate() {
            assert_eq!(*s, 200 * (7 * 10 * k as u64 + 21));
        }
    }

    /// A part that panics makes the caller panic, and the team still works after.
    #[test]
    fn a_panicking_part_panics_the_caller_and_the_team_goes_on() {
        let r = catch_unwind(|| run_on(2, 4, &|i| assert!(i != 2, "part two fails")));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        run_on(2, 64, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.into_inner(), 64);
    }
}
