//! `bench` subcommand: times every memory-bound CUDA kernel at the model's
//! shapes (tokens 1..16384 x d_model 512, vocabulary 58101; dtype conversion
//! of the weight shapes 512x512, 2048x512, 58101x512) and prints, per
//! kernel and shape, the time per launch, the bandwidth (bytes read +
//! written / time, GB/s) and that bandwidth as % of a device-to-device copy
//! moving the same number of bytes, measured in the same run (the copy is
//! the practical roofline of a memory-bound kernel).
//!
//! Timing: CUDA events around `--iters` back-to-back launches on the
//! device's stream after `--warmup` launches; the mean per launch.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

use cudarc::driver::CudaSlice;
use transformer_kernels::cuda::logits::TopKBuffers;
use transformer_kernels::cuda::numerics::{random_storage, SplitMix64};
use transformer_kernels::cuda::{self, Device, DeviceElement, DeviceTensor};
use transformer_kernels::Activation;
use transformer_kernels::{DType, Error, Result};

/// Options of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Storage dtypes (comma-separated: f32,f16,bf16).
    #[arg(long, value_delimiter = ',', default_value = "f32,f16,bf16")]
    dtype: Vec<DType>,
    /// Timed launches per row.
    #[arg(long, default_value_t = 50)]
    iters: u32,
    /// Untimed launches before timing.
    #[arg(long, default_value_t = 5)]
    warmup: u32,
    /// Only the largest shape of each kernel (a quick look).
    #[arg(long)]
    quick: bool,
    /// Also write the table as CSV to this file.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
}

struct Row {
    op: String,
    dtype: DType,
    shape: String,
    seconds: f64,
    bytes: u64,
    copy_gbps: f64,
}

impl Row {
    fn gbps(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e9
    }
}

/// Timer and copy baseline shared by every row.
struct Bench {
    dev: Arc<Device>,
    iters: u32,
    warmup: u32,
    copy_cache: HashMap<u64, f64>,
}

fn drv(op: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> Error {
    move |source| Error::Cuda { op, source }
}

impl Bench {
    /// Mean seconds per call of `f` (which queues work on the device's stream).
    fn time(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        for _ in 0..self.warmup {
            f()?;
        }
        self.dev.synchronize()?;
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let stream = self.dev.stream();
        let start = stream.record_event(flags).map_err(drv("record event"))?;
        for _ in 0..self.iters {
            f()?;
        }
        let end = stream.record_event(flags).map_err(drv("record event"))?;
        let ms = start.elapsed_ms(&end).map_err(drv("event elapsed"))?;
        Ok(f64::from(ms) / 1e3 / f64::from(self.iters.max(1)))
    }

    /// GB/s of a device-to-device copy moving `bytes` in total (bytes/2 read
    /// + bytes/2 written), measured once per size.
    fn copy_gbps(&mut self, bytes: u64) -> Result<f64> {
        if let Some(&g) = self.copy_cache.get(&bytes) {
            return Ok(g);
        }
        let half = usize::try_from(bytes / 2)
            .map_err(|_| Error::invalid("bench", "copy size exceeds usize"))?
            .max(1);
        let stream = self.dev.stream().clone();
        let src: CudaSlice<u8> = stream.alloc_zeros(half).map_err(drv("alloc copy src"))?;
        let mut dst: CudaSlice<u8> = stream.alloc_zeros(half).map_err(drv("alloc copy dst"))?;
        let t = self.time(&mut || {
            stream
                .memcpy_dtod(&src, &mut dst)
                .map_err(drv("memcpy_dtod"))
        })?;
        let g = (2 * half) as f64 / t / 1e9;
        self.copy_cache.insert(bytes, g);
        Ok(g)
    }

    fn row(
        &mut self,
        op: &str,
        dtype: DType,
        shape: String,
        bytes: u64,
        f: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Row> {
        let seconds = self.time(f)?;
        let copy_gbps = self.copy_gbps(bytes)?;
        let r = Row {
            op: op.to_string(),
            dtype,
            shape,
            seconds,
            bytes,
            copy_gbps,
        };
        print_row(&r);
        Ok(r)
    }
}

fn print_header() {
    println!(
        "{:<22} {:<5} {:<20} {:>10} {:>12} {:>9} {:>9}",
        "kernel", "dtype", "shape", "time us", "bytes", "GB/s", "% copy"
    );
}

fn print_row(r: &Row) {
    println!(
        "{:<22} {:<5} {:<20} {:>10.2} {:>12} {:>9.1} {:>8.1}%",
        r.op,
        r.dtype,
        r.shape,
        r.seconds * 1e6,
        r.bytes,
        r.gbps(),
        100.0 * r.gbps() / r.copy_gbps
    );
    let _ = std::io::stdout().flush();
}

/// Runs `bench`.
pub fn run(args: Args) -> Result<()> {
    let dev = Device::open(args.device).map_err(|e| match e {
        Error::NoCuda(why) => Error::NoCuda(format!(
            "{why}; `bench` times the kernels on a GPU and has nothing to measure without one"
        )),
        other => other,
    })?;
    println!(
        "bench: {} (compute capability {}.{}), {} timed launches per row after {} warm-up",
        dev.name(),
        dev.compute_capability().0,
        dev.compute_capability().1,
        args.iters,
        args.warmup
    );
    let mut b = Bench {
        dev: dev.clone(),
        iters: args.iters.max(1),
        warmup: args.warmup,
        copy_cache: HashMap::new(),
    };
    print_header();
    let mut rows = Vec::new();
    for &dtype in &args.dtype {
        match dtype {
            DType::F32 => bench_dtype::<f32>(&mut b, args.quick, &mut rows)?,
            DType::F16 => bench_dtype::<half::f16>(&mut b, args.quick, &mut rows)?,
            DType::BF16 => bench_dtype::<half::bf16>(&mut b, args.quick, &mut rows)?,
        }
    }
    if let Some(path) = &args.csv {
        let mut s = String::from("kernel,dtype,shape,time_us,bytes,gbps,copy_gbps,pct_copy\n");
        for r in &rows {
            s.push_str(&format!(
                "{},{},{},{:.3},{},{:.2},{:.2},{:.2}\n",
                r.op,
                r.dtype,
                r.shape,
                r.seconds * 1e6,
                r.bytes,
                r.gbps(),
                r.copy_gbps,
                100.0 * r.gbps() / r.copy_gbps
            ));
        }
        std::fs::write(path, s).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

const D_MODEL: usize = 512;
const VOCAB: usize = 58101;
const FFN: usize = 2048;

fn bench_dtype<T: DeviceElement>(b: &mut Bench, quick: bool, rows: &mut Vec<Row>) -> Result<()> {
    let dev = b.dev.clone();
    let s = T::DTYPE.size_in_bytes() as u64;
    let mut rng = SplitMix64::new(0xbe4c);
    let token_counts: &[usize] = if quick {
        &[16384]
    } else {
        &[1, 16, 128, 1024, 4096, 16384]
    };

    // dtype conversion f32 -> T (the weight-upload direction: checkpoints
    // ship f32), into a preallocated output so that only the kernel is
    // timed; read 4 bytes, write `s` per element. f32 -> f32 is the
    // device-to-device copy itself.
    let weight_shapes: &[(usize, usize)] = if quick {
        &[(VOCAB, D_MODEL)]
    } else {
        &[(D_MODEL, D_MODEL), (FFN, D_MODEL), (VOCAB, D_MODEL)]
    };
    for &(r, c) in weight_shapes {
        let (ws, _) = random_storage::<f32>(&mut rng, r * c, -1.0, 1.0);
        let w = DeviceTensor::from_host(&dev, &ws, &[r, c])?;
        let mut out = DeviceTensor::<T>::zeros(&dev, &[r, c])?;
        let bytes = (r * c) as u64 * (4 + s);
        rows.push(b.row(
            "convert_from_f32",
            T::DTYPE,
            format!("{r}x{c}"),
            bytes,
            &mut || cuda::convert::convert_into(&w, &mut out),
        )?);
    }

    // Residual + LayerNorm: read x, residual, gamma, beta; write out.
    for &hidden in &[D_MODEL, 1024] {
        let (gs, _) = random_storage::<T>(&mut rng, hidden, 0.5, 1.5);
        let gamma = DeviceTensor::from_host(&dev, &gs, &[hidden])?;
        let beta = DeviceTensor::from_host(&dev, &gs, &[hidden])?;
        for &n in token_counts {
            if hidden != D_MODEL && n != 16384 {
                continue;
            }
            let (xs, _) = random_storage::<T>(&mut rng, n * hidden, -2.0, 2.0);
            let x = DeviceTensor::from_host(&dev, &xs, &[n, hidden])?;
            let r = DeviceTensor::from_host(&dev, &xs, &[n, hidden])?;
            let mut out = DeviceTensor::<T>::zeros(&dev, &[n, hidden])?;
            let bytes = (3 * n * hidden + 2 * hidden) as u64 * s;
            rows.push(b.row(
                "layer_norm_residual",
                T::DTYPE,
                format!("{n}x{hidden}"),
                bytes,
                &mut || {
                    cuda::layer_norm::layer_norm_into(&x, Some(&r), &gamma, &beta, 1e-5, &mut out)
                },
            )?);
        }
    }

    // Embedding + positions: read ids and the gathered rows; write out.
    let (ts, _) = random_storage::<T>(&mut rng, VOCAB * D_MODEL, -0.1, 0.1);
    let table = DeviceTensor::from_host(&dev, &ts, &[VOCAB, D_MODEL])?;
    for &n in token_counts {
        let ids: Vec<i32> = (0..n).map(|_| rng.below(VOCAB as u64) as i32).collect();
        let ids_dev = dev.stream().clone_htod(&ids).map_err(drv("upload ids"))?;
        let mut out = DeviceTensor::<T>::zeros(&dev, &[1, n, D_MODEL])?;
        let bytes = (2 * n * D_MODEL) as u64 * s + 4 * n as u64;
        let scale = (D_MODEL as f32).sqrt();
        rows.push(b.row(
            "embedding_positions",
            T::DTYPE,
            format!("{n}x{D_MODEL}"),
            bytes,
            &mut || {
                cuda::embedding::embedding_from_device_ids(
                    &ids_dev, 1, n, &table, scale, 0, &mut out,
                )
            },
        )?);
    }

    // Logits step: read logits and bias; write top-k (and log-probs when asked).
    let (bs, _) = random_storage::<T>(&mut rng, VOCAB, -1.0, 1.0);
    let bias = DeviceTensor::from_host(&dev, &bs, &[VOCAB])?;
    let row_counts: &[usize] = if quick { &[128] } else { &[1, 8, 32, 128] };
    for &n in row_counts {
        let (ls, _) = random_storage::<T>(&mut rng, n * VOCAB, -10.0, 10.0);
        let logits = DeviceTensor::from_host(&dev, &ls, &[n, VOCAB])?;
        for (k, write_lp) in [(1usize, false), (8, false), (8, true)] {
            let mut top = TopKBuffers::new(&dev, n, k)?;
            let mut lp = DeviceTensor::<f32>::zeros(&dev, &[n, VOCAB])?;
            let bytes = (n * VOCAB + VOCAB) as u64 * s
                + (n * k * 8) as u64
                + if write_lp { (n * VOCAB * 4) as u64 } else { 0 };
            let name = if write_lp {
                "logits_topk+logprobs"
            } else {
                "logits_topk"
            };
            rows.push(b.row(
                name,
                T::DTYPE,
                format!("{n}x{VOCAB} k={k}"),
                bytes,
                &mut || {
                    cuda::logits::logits_step_into(
                        &logits,
                        Some(&bias),
                        Some(VOCAB - 1),
                        if write_lp { Some(&mut lp) } else { None },
                        &mut top,
                    )
                },
            )?);
        }
    }

    // Bias + activation on the FFN's [tokens, 2048].
    let (fb, _) = random_storage::<T>(&mut rng, FFN, -1.0, 1.0);
    let fbias = DeviceTensor::from_host(&dev, &fb, &[FFN])?;
    let ffn_tokens: &[usize] = if quick { &[16384] } else { &[128, 16384] };
    for &n in ffn_tokens {
        let (xs, _) = random_storage::<T>(&mut rng, n * FFN, -4.0, 4.0);
        let mut x = DeviceTensor::from_host(&dev, &xs, &[n, FFN])?;
        for act in [Activation::Relu, Activation::Gelu, Activation::Swish] {
            let bytes = (2 * n * FFN + FFN) as u64 * s;
            rows.push(b.row(
                &format!("bias_{act:?}").to_lowercase(),
                T::DTYPE,
                format!("{n}x{FFN}"),
                bytes,
                &mut || cuda::bias_activation::bias_activation_in_place(&mut x, Some(&fbias), act),
            )?);
        }
    }
    Ok(())
}
