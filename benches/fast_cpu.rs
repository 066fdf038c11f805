//! criterion: the fast CPU backend's hot ops at the shapes of a demo-model
//! beam-4 decode step (batch 32 x 4 beams = 128 rows, d_model 192, FFN 768,
//! vocabulary 5280) and of opus-mt (d_model 512, FFN 2048, vocabulary
//! 58101), at 1 and 2 threads: GEMM (GFLOP/s = 2·m·n·k / time), the
//! logits step, attention over a 24-position KV cache. Run:
//! `cargo bench --bench fast_cpu`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use transformer_kernels::fast_cpu::gemm::gemm;
use transformer_kernels::fast_cpu::isa::Isa;
use transformer_kernels::fast_cpu::pack::PackedWeight;
use transformer_kernels::fast_cpu::threads::Threads;
use transformer_kernels::fast_cpu::{scoring, FastCpu};
use transformer_kernels::model::{AttnMask, Backend, Cols, TokenMask};
use transformer_kernels::DType;

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32
                - 0.5
        })
        .collect()
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    let isa = Isa::detected();
    let mut g = c.benchmark_group("fast_cpu_gemm");
    for (name, m, n, k) in [
        ("demo qkv", 128, 576, 192),
        ("demo fc1", 128, 768, 192),
        ("demo fc2", 128, 192, 768),
        ("demo vocab", 128, 5280, 192),
        ("demo encoder fc1", 640, 768, 192),
        ("opus fc1", 128, 2048, 512),
        ("opus vocab m8", 8, 58101, 512),
    ] {
        let (x, w) = (values(m * k, 1), values(n * k, 2));
        let p = PackedWeight::pack(&w, n, k).unwrap();
        let b = values(n, 3);
        let mut y = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for t in [1, 2] {
            let threads = Threads::new(t).unwrap();
            g.bench_function(
                BenchmarkId::new(format!("{name} {m}x{n}x{k}"), format!("{t}t")),
                |bch| bch.iter(|| gemm(isa, &threads, &x, m, &p, Some(&b), None, &mut y).unwrap()),
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("fast_cpu_step");
    let (rows, vocab) = (128, 5280);
    let logits = values(rows * vocab, 4);
    let mask = TokenMask::new(vec![5279]);
    g.throughput(Throughput::Elements((rows * vocab) as u64));
    let one = Threads::new(1).unwrap();
    g.bench_function("log_softmax_topk 128x5280 k8", |bch| {
        bch.iter(|| scoring::log_softmax_topk(&one, &logits, rows, vocab, &mask, 8).unwrap())
    });
    let fast = FastCpu::new(1).unwrap();
    let (d, cap, len) = (192, 32, 24);
    let qkv = fast
        .upload(values(rows * 3 * d, 5), &[rows, 1, 3 * d], DType::F32)
        .unwrap();
    let kc = fast
        .upload(values(rows * cap * d, 6), &[rows, cap, d], DType::F32)
        .unwrap();
    let vc = fast
        .upload(values(rows * cap * d, 7), &[rows, cap, d], DType::F32)
        .unwrap();
    g.throughput(Throughput::Elements((rows * len * d * 2) as u64));
    g.bench_function("attention 128 rows 3 heads k_len 24", |bch| {
        bch.iter(|| {
            let mask = AttnMask {
                key_lengths: None,
                causal: true,
            };
            fast.attention(
                Cols::part(&qkv, 0, d),
                Cols::new(&kc, 0, d),
                Cols::new(&vc, 0, d),
                len,
                3,
                0.125,
                mask,
            )
            .unwrap()
        })
    });
    g.finish();
    c.final_summary();
}
