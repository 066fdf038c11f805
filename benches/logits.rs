//! criterion: the logits step (final_logits_bias, pad mask, log-softmax,
//! top-k) on rows x 58101, k = 1 (greedy) and 8 (beam 4), top-k kept on the
//! device; `Throughput::Bytes` = logits + bias + top-k out. Each iteration
//! is one launch and a stream synchronisation.

mod common;

use criterion::{Criterion, Throughput};
use half::{bf16, f16};
use transformer_kernels::cuda::logits::{logits_step_into, TopKBuffers};
use transformer_kernels::cuda::numerics::{random_storage, SplitMix64};
use transformer_kernels::cuda::{Device, DeviceElement, DeviceTensor};

fn bench<T: DeviceElement>(c: &mut Criterion, dev: &std::sync::Arc<Device>) {
    let v = common::VOCAB;
    let mut g = c.benchmark_group(format!("cuda/logits/{}", T::DTYPE));
    let mut rng = SplitMix64::new(3);
    let (bs, _) = random_storage::<T>(&mut rng, v, -1.0, 1.0);
    let bias = DeviceTensor::from_host(dev, &bs, &[v]).unwrap();
    for n in [1usize, 8, 32, 128] {
        let (ls, _) = random_storage::<T>(&mut rng, n * v, -10.0, 10.0);
        let logits = DeviceTensor::from_host(dev, &ls, &[n, v]).unwrap();
        for k in [1usize, 8] {
            let mut top = TopKBuffers::new(dev, n, k).unwrap();
            let bytes = ((n * v + v) * T::DTYPE.size_in_bytes() + n * k * 8) as u64;
            g.throughput(Throughput::Bytes(bytes));
            g.bench_function(format!("{n}x{v}/k{k}"), |b| {
                b.iter(|| {
                    logits_step_into(&logits, Some(&bias), Some(v - 1), None, &mut top).unwrap();
                    dev.synchronize().unwrap();
                })
            });
        }
    }
    g.finish();
}

fn main() {
    let Some(dev) = common::device_or_skip("logits") else {
        return;
    };
    let mut c = common::criterion();
    bench::<f32>(&mut c, &dev);
    bench::<f16>(&mut c, &dev);
    bench::<bf16>(&mut c, &dev);
    c.final_summary();
}
