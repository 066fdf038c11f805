//! Shared by the criterion benches: the device, or one printed line saying
//! why the benches are skipped (the bench then exits 0).
#![allow(dead_code)]

use std::sync::Arc;

use criterion::Criterion;
use transformer_kernels::cuda::Device;

/// Device 0, or `None` after printing why `bench` is skipped.
pub fn device_or_skip(bench: &str) -> Option<Arc<Device>> {
    match transformer_kernels::cuda::test_device() {
        Ok(d) => Some(d),
        Err(why) => {
            println!("skipped cuda/{bench} benches: {why}");
            None
        }
    }
}

/// Criterion configured from the command line, with a short measurement
/// time: each iteration is one launch plus a stream synchronisation.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(20)
        .configure_from_args()
}

/// Token counts of the model-shape rows (1 = one decoder step, 16384 = a large batch).
pub const TOKENS: [usize; 4] = [1, 128, 1024, 16384];
/// d_model of opus-mt / Transformer-base.
pub const D_MODEL: usize = 512;
/// Vocabulary of opus-mt-en-de.
pub const VOCAB: usize = 58101;
/// ffn_dim of opus-mt.
pub const FFN: usize = 2048;
