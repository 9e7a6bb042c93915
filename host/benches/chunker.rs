//! Keyed beside unkeyed chunking on the same data: throughput of the cut
//! point search with FastCDC's standard gear table and with a table derived
//! from a key (`cargo bench -p attache --bench chunker`, run by `make
//! bench`). A benchmark that prints figures, not a timed test.

#![allow(
    unused_imports,
    reason = "the included store sources import what only the whole crate uses"
)]

use std::time::Instant;

// The chunker's own source: it refers to `super::gear`, here the crate root.
#[allow(dead_code, reason = "the bench drives only the cut point search")]
#[path = "../src/store/chunker.rs"]
mod chunker;
#[allow(dead_code, reason = "the bench drives only the cut point search")]
#[path = "../src/store/gear.rs"]
mod gear;

use chunker::{Chunker, Params};
use gear::Gear;

/// Cuts `data` (fed in 1 MiB pieces, as ingest feeds it) and returns MB/s
/// and the chunk count.
fn run(data: &[u8], gear: std::sync::Arc<Gear>) -> (f64, usize) {
    let mut c = Chunker::with_gear(Params::default(), gear);
    let mut n = 0usize;
    let mut count = |_: &[u8]| -> Result<(), ()> {
        n += 1;
        Ok(())
    };
    let t = Instant::now();
    for piece in data.chunks(1 << 20) {
        let _ = c.push(piece, &mut count);
    }
    let _ = c.finish(&mut count);
    let secs = t.elapsed().as_secs_f64();
    (data.len() as f64 / secs / 1e6, n)
}

fn main() {
    // 512 MiB of pseudo-random data (xorshift), the same for both.
    let mut data = vec![0u8; 512 << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for w in data.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    let keyed = Gear::keyed(&[7u8; 32]);
    let (mut best_plain, mut best_keyed) = (0f64, 0f64);
    let (mut chunks_plain, mut chunks_keyed) = (0, 0);
    // Alternate, best of five each, so load from others hits both alike.
    for _ in 0..5 {
        let (p, n) = run(&data, Gear::standard());
        best_plain = best_plain.max(p);
        chunks_plain = n;
        let (k, n) = run(&data, keyed.clone());
        best_keyed = best_keyed.max(k);
        chunks_keyed = n;
    }
    println!("chunking 512 MiB, 512 KiB / 1 MiB / 8 MiB, best of 5:");
    println!("  unkeyed (standard gear table): {best_plain:8.0} MB/s, {chunks_plain} chunks");
    println!("  keyed (gear table from key):   {best_keyed:8.0} MB/s, {chunks_keyed} chunks");
    println!(
        "  keyed costs {:+.1}% of unkeyed throughput (target: at most 5% slower)",
        (best_plain / best_keyed - 1.0) * 100.0
    );
}
