//! Measures where multithreaded blake3 (rayon) starts to beat a single thread on this machine, to choose
//! `hash::BLAKE3_PARALLEL_MIN`. Run: `cargo run --release -p upmirror-core --example blake3_threshold`.

use std::time::{Duration, Instant};

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .expect("at least one run")
}

fn main() {
    let data: Vec<u8> = (0..64usize << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    println!("{:>10} {:>14} {:>14} {:>8}", "size", "1 thread", "rayon", "ratio");
    let mut size = 16usize << 10;
    while size <= data.len() {
        let piece = &data[..size];
        let runs = ((256usize << 20) / size).clamp(5, 2000);
        let single = best_of(runs, || {
            std::hint::black_box(blake3::Hasher::new().update(piece).finalize());
        });
        let parallel = best_of(runs, || {
            std::hint::black_box(blake3::Hasher::new().update_rayon(piece).finalize());
        });
        let rate = |d: Duration| size as f64 / d.as_secs_f64() / 1e9;
        println!(
            "{:>9}K {:>9.2} GB/s {:>9.2} GB/s {:>7.2}x",
            size >> 10,
            rate(single),
            rate(parallel),
            single.as_secs_f64() / parallel.as_secs_f64()
        );
        size *= 2;
    }
}
