//! criterion: token embedding + sinusoidal positions at tokens x 512 from
//! the 58101-row opus-mt table, `Throughput::Bytes` = ids + gathered rows +
//! out. Ids stay on the device; each iteration is one launch and a stream
//! synchronisation.

mod common;

use criterion::{Criterion, Throughput};
use half::{bf16, f16};
use transformer_kernels::cuda::embedding::embedding_from_device_ids;
use transformer_kernels::cuda::numerics::{random_storage, SplitMix64};
use transformer_kernels::cuda::{Device, DeviceElement, DeviceTensor};

fn bench<T: DeviceElement>(c: &mut Criterion, dev: &std::sync::Arc<Device>) {
    let (v, d) = (common::VOCAB, common::D_MODEL);
    let mut g = c.benchmark_group(format!("cuda/embedding/{}", T::DTYPE));
    let mut rng = SplitMix64::new(2);
    let (ts, _) = random_storage::<T>(&mut rng, v * d, -0.1, 0.1);
    let table = DeviceTensor::from_host(dev, &ts, &[v, d]).unwrap();
    for n in common::TOKENS {
        let ids: Vec<i32> = (0..n).map(|_| rng.below(v as u64) as i32).collect();
        let ids = dev.stream().clone_htod(&ids).unwrap();
        let mut out = DeviceTensor::<T>::zeros(dev, &[1, n, d]).unwrap();
        let bytes = (2 * n * d * T::DTYPE.size_in_bytes() + 4 * n) as u64;
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(format!("{n}x{d}"), |b| {
            b.iter(|| {
                embedding_from_device_ids(&ids, 1, n, &table, (d as f32).sqrt(), 0, &mut out)
                    .unwrap();
                dev.synchronize().unwrap();
            })
        });
    }
    g.finish();
}

fn main() {
    let Some(dev) = common::device_or_skip("embedding") else {
        return;
    };
    let mut c = common::criterion();
    bench::<f32>(&mut c, &dev);
    bench::<f16>(&mut c, &dev);
    bench::<bf16>(&mut c, &dev);
    c.final_summary();
}
