//! The forward-mode depth sweep's working set does not grow with the number
//! of depths it reports: one net's weights, a few (points × width) arrays,
//! and the (depths + 1) × points result. Measured by counting heap bytes.
//! One test in this binary, so no other test allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use gradscope_engine::{Options, for_net};
use gradscope_nets::{Arch, BnMode, Mlp, Net, NetParams, Precision};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded as given.
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const POINTS: usize = 256;
const WIDTH: usize = 64;

/// Peak heap bytes above the starting level during one sweep of a
/// resnet-bn of `depth` blocks, and the bytes of its result.
fn sweep_peak(depth: usize) -> (usize, usize) {
    let p = NetParams {
        arch: Arch::RESNET_BN,
        depth,
        width: WIDTH,
        precision: Precision::F64,
        seed: 2,
        ..Default::default()
    };
    let net = Net::Mlp(Mlp::new(&p.check().unwrap()).unwrap());
    let dense = for_net::<f64>(&net, Options::repeated(BnMode::PerSample)).unwrap();
    let x = ndarray::Array2::from_shape_fn((POINTS, 1), |(i, _)| {
        -2.0 + 4.0 * i as f64 / (POINTS - 1) as f64
    });
    let start = LIVE.load(Ordering::SeqCst);
    PEAK.store(start, Ordering::SeqCst);
    let sweep = dense.tangent_sweep(x.view(), &[1.0]).unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - start;
    assert_eq!(sweep.dim(), (depth + 1, POINTS));
    (peak, sweep.len() * std::mem::size_of::<f64>())
}

#[test]
fn the_depth_sweep_working_set_does_not_grow_with_the_number_of_depths() {
    let activation = POINTS * WIDTH * std::mem::size_of::<f64>();
    let (peak_8, result_8) = sweep_peak(8);
    let (peak_64, result_64) = sweep_peak(64);
    let (work_8, work_64) = (peak_8 - result_8, peak_64 - result_64);
    println!(
        "sweep peak above start: depth 8 {peak_8} B, depth 64 {peak_64} B \
         (one {POINTS}×{WIDTH} f64 activation is {activation} B)"
    );
    // Eight times the depths, the same working set: not one more activation.
    assert!(
        work_64 <= work_8 + activation / 8,
        "working set grew from {work_8} B to {work_64} B"
    );
    // And a few activations, where keeping every layer would take 2 × 64.
    assert!(
        work_64 <= 8 * activation,
        "{work_64} B is more than 8 activations of {activation} B"
    );
}
