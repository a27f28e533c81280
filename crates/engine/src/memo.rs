//! Value products kept between Hessian-vector products at one point.
//!
//! A dual product C = A·B has the value part C.v = A.v·B.v, which depends
//! on the operands' values alone, and values never depend on tangents. At a
//! fixed point (θ, x) every pass of [`crate::Curvature`] therefore forms the
//! same value products whatever the direction v, and Lanczos, Hutchinson and
//! stochastic Lanczos quadrature (many H·v at one θ) need each only once:
//! a later pass forms only C.t = A.t·B.v + A.v·B.t, two products of three.
//!
//! A product is found by its operands' bits, compared exactly, so one whose
//! values changed (a new θ, another batch, a fresh dropout mask) is computed
//! again, never served stale.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bytes of kept products (operands and result) above which no more are
/// kept; lookups go on.
const CAP_BYTES: usize = 1 << 30;

/// Words of each operand read into a product's key.
const KEY_SAMPLES: usize = 32;

/// (m, n, k) of a product A (m×k) · B (k×n).
pub(crate) type Dims = [usize; 3];

struct Entry {
    dims: Dims,
    a: Box<[u8]>,
    b: Box<[u8]>,
    c: Box<[u8]>,
}

#[derive(Default)]
struct Kept {
    by_key: HashMap<u64, Vec<Entry>>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

/// The value products formed at one point, kept for the next pass there.
#[derive(Default)]
pub(crate) struct ValueProducts {
    kept: Mutex<Kept>,
}

thread_local! {
    /// The store the dual products on this thread consult, if any.
    static CURRENT: RefCell<Option<Arc<ValueProducts>>> = const { RefCell::new(None) };
}

/// Runs `f` with `store` as this thread's store of value products (none:
/// every product computed in full), then restores the one before.
pub(crate) fn within<R>(store: Option<&Arc<ValueProducts>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<ValueProducts>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = outer);
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(store.cloned())));
    f()
}

/// This thread's store of value products.
pub(crate) fn current() -> Option<Arc<ValueProducts>> {
    CURRENT.with(|c| c.borrow().clone())
}

impl ValueProducts {
    /// Forgets every kept product (the point moved).
    pub(crate) fn clear(&self) {
        *self.lock() = Kept::default();
    }

    /// Writes the kept A.v·B.v into `c` and returns true, if a product of
    /// these dimensions and operand bits is kept.
    pub(crate) fn recall(&self, dims: Dims, a: &[u8], b: &[u8], c: &mut [u8]) -> bool {
        let key = key(dims, a, b);
        let mut kept = self.lock();
        let found = kept.by_key.get(&key).and_then(|entries| {
            entries
                .iter()
                .find(|e| e.dims == dims && *e.a == *a && *e.b == *b && e.c.len() == c.len())
        });
        match found {
            Some(e) => {
                c.copy_from_slice(&e.c);
                kept.hits += 1;
                true
            }
            None => {
                kept.misses += 1;
                false
            }
        }
    }

    /// Keeps c = A.v·B.v for the next pass at this point, while the store
    /// is under its cap.
    pub(crate) fn keep(&self, dims: Dims, a: &[u8], b: &[u8], c: &[u8]) {
        let size = a.len() + b.len() + c.len();
        let key = key(dims, a, b);
        let mut kept = self.lock();
        if kept.bytes + size > CAP_BYTES {
            return;
        }
        kept.bytes += size;
        kept.by_key.entry(key).or_default().push(Entry {
            dims,
            a: a.into(),
            b: b.into(),
            c: c.into(),
        });
    }

    /// (products recalled, products looked up and not found) since the
    /// last [`clear`](Self::clear).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (u64, u64) {
        let kept = self.lock();
        (kept.hits, kept.misses)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A product's key: its dimensions and a sample of each operand's words
/// (FNV-1a); the exact comparison in [`ValueProducts::recall`] decides.
fn key(dims: Dims, a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |w: u64| {
        h ^= w;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    dims.iter().for_each(|&d| mix(d as u64));
    for bytes in [a, b] {
        let words = bytes.len() / 8;
        let step = (words / KEY_SAMPLES).max(1);
        for w in (0..words).step_by(step).take(KEY_SAMPLES) {
            let word: [u8; 8] = bytes[8 * w..8 * w + 8].try_into().expect("8 bytes");
            mix(u64::from_le_bytes(word));
        }
        mix(bytes.len() as u64);
    }
    h
}

/// The bytes of `len` floats at `p`.
///
/// # Safety
/// `p` points to `len` initialised values of `F`, alive and unwritten while
/// the slice is used.
pub(crate) unsafe fn bytes<'a, F>(p: *const F, len: usize) -> &'a [u8] {
    // SAFETY: the caller's contract; any initialised float is readable as bytes.
    unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len * std::mem::size_of::<F>()) }
}

/// The bytes of `len` floats at `p`, to write.
///
/// # Safety
/// As [`bytes`], and nothing else reads or writes them meanwhile; `F` is a
/// float type, for which any bits are a value.
pub(crate) unsafe fn bytes_mut<'a, F>(p: *mut F, len: usize) -> &'a mut [u8] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len * std::mem::size_of::<F>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn a_kept_product_is_recalled_only_for_the_same_dimensions_and_bits() {
        let store = ValueProducts::default();
        let (a, b, c) = (floats(&[1.0, 2.0]), floats(&[3.0, 4.0]), floats(&[11.0]));
        let mut out = vec![0u8; c.len()];
        assert!(!store.recall([1, 1, 2], &a, &b, &mut out));
        store.keep([1, 1, 2], &a, &b, &c);
        assert!(store.recall([1, 1, 2], &a, &b, &mut out));
        assert_eq!(out, c);
        // Other dimensions, a changed bit (−0 against +0), another operand: not found.
        assert!(!store.recall([2, 1, 1], &a, &b, &mut out));
        assert!(!store.recall([1, 1, 2], &floats(&[1.0, -0.0]), &b, &mut out));
        assert!(!store.recall([1, 1, 2], &a, &floats(&[3.0, 4.5]), &mut out));
        assert_eq!(store.counts(), (1, 4));
        store.clear();
        assert!(!store.recall([1, 1, 2], &a, &b, &mut out));
        assert_eq!(store.counts(), (0, 1));
    }

    #[test]
    fn the_store_is_this_threads_only_inside_within() {
        let store = Arc::new(ValueProducts::default());
        assert!(current().is_none());
        within(Some(&store), || {
            assert!(Arc::ptr_eq(&current().expect("set"), &store));
            within(None, || assert!(current().is_none()));
            assert!(current().is_some());
            std::thread::spawn(|| assert!(current().is_none()))
                .join()
                .expect("thread");
        });
        assert!(current().is_none());
    }
}
