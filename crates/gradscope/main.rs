fn main() -> std::process::ExitCode {
    // candle's kernels gain little from threads at these sizes, and gradscope
    // parallelises across cells instead: keep each net single-threaded.
    // SAFETY (set_var): nothing else runs yet, so no thread reads the environment concurrently.
    // An explicit setting in the environment wins (the benchmark uses it).
    for var in [
        "RAYON_NUM_THREADS",
        "CANDLE_NUM_THREADS",
        "MATMUL_NUM_THREADS",
    ] {
        if std::env::var_os(var).is_none() {
            unsafe { std::env::set_var(var, "1") };
        }
    }
    // Keep freed buffers in the heap instead of returning them to the kernel:
    // studies allocate and free the same-sized arrays millions of times, and
    // fresh pages cost a fault and a clearing each (a third of a dense
    // forward pass, measured).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    gradscope_cli::main()
}
