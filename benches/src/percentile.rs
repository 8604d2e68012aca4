//! Percentiles of latency samples, shared by the load clients in `src/bin`.

/// The `p` quantile (0..=1) of samples in microseconds, in milliseconds
/// (nearest rank; 0 for no samples). Sorts `v`.
pub fn pct(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    f64::from(v[i]) / 1000.0
}
