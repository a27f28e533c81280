fn main() -> std::process::ExitCode {
    // candle's kernels gain little from threads at these sizes, and gradscope
    // parallelises across cells instead: keep each net single-threaded.
    // SAFETY: nothing else runs yet, so no thread can read the environment concurrently.
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", "1");
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    gradscope_cli::main()
}
