//! Benchmarks of the ugc crates (see `benches/`).
