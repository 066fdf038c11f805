//! criterion: residual + LayerNorm at tokens x 512 (and 16384 x 1024),
//! `Throughput::Bytes` = x + residual + out + gamma + beta. Each iteration
//! is one launch and a stream synchronisation.

mod common;

use criterion::{Criterion, Throughput};
use half::{bf16, f16};
use transformer_kernels::cuda::layer_norm::layer_norm_into;
use transformer_kernels::cuda::numerics::{random_storage, SplitMix64};
use transformer_kernels::cuda::{Device, DeviceElement, DeviceTensor};

fn bench<T: DeviceElement>(c: &mut Criterion, dev: &std::sync::Arc<Device>) {
    let mut g = c.benchmark_group(format!("cuda/layer_norm/{}", T::DTYPE));
    let mut rng = SplitMix64::new(1);
    let shapes = common::TOKENS
        .iter()
        .map(|&n| (n, common::D_MODEL))
        .chain([(16384, 1024)]);
    for (n, h) in shapes {
        let (xs, _) = random_storage::<T>(&mut rng, n * h, -2.0, 2.0);
        let (gs, _) = random_storage::<T>(&mut rng, h, 0.5, 1.5);
        let x = DeviceTensor::from_host(dev, &xs, &[n, h]).unwrap();
        let r = DeviceTensor::from_host(dev, &xs, &[n, h]).unwrap();
        let gamma = DeviceTensor::from_host(dev, &gs, &[h]).unwrap();
        let beta = DeviceTensor::from_host(dev, &gs, &[h]).unwrap();
        let mut out = DeviceTensor::<T>::zeros(dev, &[n, h]).unwrap();
        let bytes = ((3 * n * h + 2 * h) * T::DTYPE.size_in_bytes()) as u64;
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(format!("{n}x{h}"), |b| {
            b.iter(|| {
                layer_norm_into(&x, Some(&r), &gamma, &beta, 1e-5, &mut out).unwrap();
                dev.synchronize().unwrap();
            })
        });
    }
    g.finish();
}

fn main() {
    let Some(dev) = common::device_or_skip("layer_norm") else {
        return;
    };
    let mut c = common::criterion();
    bench::<f32>(&mut c, &dev);
    bench::<f16>(&mut c, &dev);
    bench::<bf16>(&mut c, &dev);
    c.final_summary();
}
