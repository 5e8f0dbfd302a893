//! Measures, for several average chunk sizes, how much ten versions of a
//! 64 MiB file with a small edit each take, and how fast FastCDC cuts.
//! The numbers behind `CHUNK_LEN_AVG` (see ARCHITECTURE.md).
//! Run: `cargo run --release -p vst-cas --example chunk_sizes`

use std::collections::HashSet;
use std::time::Instant;
use vst_cas::sim::noise;

fn main() {
    let len = 64 << 20;
    let base = noise(11, len);
    for avg in [64usize << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20] {
        let (min, max) = (avg / 4, avg * 4);
        let mut file = base.clone();
        let mut seen = HashSet::new();
        let mut stored = 0usize;
        let mut chunks = 0usize;
        let mut cutting = std::time::Duration::ZERO;
        for version in 0..10u8 {
            let at = len / 2 + usize::from(version) * 4096;
            file[at..at + 100].fill(version);
            let start = Instant::now();
            let cuts: Vec<_> = fastcdc::v2020::FastCDC::new(&file, min, avg, max).collect();
            cutting += start.elapsed();
            chunks = cuts.len();
            for c in cuts {
                let data = &file[c.offset..c.offset + c.length];
                if seen.insert(blake3::hash(data)) {
                    stored += data.len() + 52; // record header and checksum
                }
            }
            stored += chunks * 40 + 52; // the chunk list
        }
        println!(
            "avg {:>5} KiB: ten versions take {:.3}x one; {chunks} chunks a version; FastCDC {:.0} MiB/s",
            avg >> 10,
            stored as f64 / len as f64,
            640.0 / cutting.as_secs_f64()
        );
    }
}
