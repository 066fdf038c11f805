//! criterion: bias + activation on the FFN's tokens x 2048 (in place),
//! `Throughput::Bytes` = x + bias + out. Each iteration is one launch and a
//! stream synchronisation.

mod common;

use criterion::{Criterion, Throughput};
use half::{bf16, f16};
use transformer_kernels::cuda::bias_activation::bias_activation_in_place;
use transformer_kernels::cuda::numerics::{random_storage, SplitMix64};
use transformer_kernels::cuda::{Device, DeviceElement, DeviceTensor};
use transformer_kernels::Activation;

fn bench<T: DeviceElement>(c: &mut Criterion, dev: &std::sync::Arc<Device>) {
    let f = common::FFN;
    let mut g = c.benchmark_group(format!("cuda/bias_activation/{}", T::DTYPE));
    let mut rng = SplitMix64::new(4);
    let (bs, _) = random_storage::<T>(&mut rng, f, -1.0, 1.0);
    let bias = DeviceTensor::from_host(dev, &bs, &[f]).unwrap();
    for n in [128usize, 16384] {
        let (xs, _) = random_storage::<T>(&mut rng, n * f, -4.0, 4.0);
        let mut x = DeviceTensor::from_host(dev, &xs, &[n, f]).unwrap();
        for act in [Activation::Relu, Activation::Gelu, Activation::Swish] {
            let bytes = ((2 * n * f + f) * T::DTYPE.size_in_bytes()) as u64;
            g.throughput(Throughput::Bytes(bytes));
            let name = format!("{act:?}").to_lowercase();
            g.bench_function(format!("{name}/{n}x{f}"), |b| {
                b.iter(|| {
                    bias_activation_in_place(&mut x, Some(&bias), act).unwrap();
                    dev.synchronize().unwrap();
                })
            });
        }
    }
    g.finish();
}

fn main() {
    let Some(dev) = common::device_or_skip("bias_activation") else {
        return;
    };
    let mut c = common::criterion();
    bench::<f32>(&mut c, &dev);
    bench::<f16>(&mut c, &dev);
    bench::<bf16>(&mut c, &dev);
    c.final_summary();
}
