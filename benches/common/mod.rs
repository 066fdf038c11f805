//! Shared by the criterion benches: the device (or one printed line saying
//! why the benches are skipped; the bench then exits 0), and the one loop
//! that times an op's workloads (`transformer_kernels::ops`: the same
//! shapes and byte counts as `transformer-kernels bench`).
#![allow(dead_code)]

use std::sync::Arc;

use criterion::{Criterion, Throughput};
use transformer_kernels::cuda::Device;
use transformer_kernels::ops::Op;
use transformer_kernels::DType;

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

/// Benchmarks every workload of `op` in every storage dtype, named
/// `cuda/<op>/<dtype>/<shape>` with `Throughput::Bytes` = the bytes the
/// fused op must read + write (`Throughput::Elements` = FLOPs for the GEMM). Each iteration is one launch and a stream
/// synchronisation.
pub fn bench_op(op: &Op) {
    let Some(dev) = device_or_skip(op.name) else {
        return;
    };
    let mut c = criterion();
    for dtype in DType::ALL {
        let mut g = c.benchmark_group(format!("cuda/{}/{dtype}", op.name));
        for case in (op.bench_cases)(false) {
            let work = (op.workload)(&case, dtype);
            let mut run = (op.prepare)(&dev, dtype, &case).expect("prepare inputs");
            g.throughput(if work.flops > 0 {
                // Compute rows (the GEMM): FLOPs as elements, so that
                // criterion's "Gelem/s" reads as GFLOP/s.
                Throughput::Elements(work.flops)
            } else {
                Throughput::Bytes(work.bytes)
            });
            let name = format!("{} {}", work.label, work.shape);
            g.bench_function(name, |b| {
                b.iter(|| {
                    run().expect("launch");
                    dev.synchronize().expect("synchronize");
                })
            });
        }
        g.finish();
    }
    c.final_summary();
}
