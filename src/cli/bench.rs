//! `bench` subcommand: times every CUDA kernel at the model's
//! shapes (tokens 1..16384 x d_model 512, vocabulary 58101; dtype conversion
//! of the weight shapes 512x512, 2048x512, 58101x512) and prints, per
//! kernel and shape, the time per launch, the bandwidth (bytes read +
//! written / time, GB/s) and that bandwidth as % of a device-to-device copy
//! moving the same number of bytes, measured in the same run (the copy is
//! the practical roofline of a memory-bound kernel). Compute rows (the
//! GEMM, `linear_*`: m × n × k at the model's projections) also get TFLOP/s
//! (2·m·n·k / time); their bytes are x, w, bias, residual and out once,
//! which for small m is the weight stream the step is bound by.
//!
//! Timing: CUDA events around `--iters` back-to-back launches on the
//! device's stream after `--warmup` launches; the mean per launch.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

use transformer_kernels::cuda::{Device, DeviceTensor};
use transformer_kernels::ops::{self, Workload};
use transformer_kernels::{DType, Error, Result};

/// Options of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Storage dtypes (comma-separated: f32,f16,bf16). Default: all three
    /// for the kernels, bf16 for --model.
    #[arg(long, value_delimiter = ',')]
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
    /// End-to-end: translation throughput of the Marian checkpoint in DIR
    /// (sentences/s, tokens/s, the decode step beside its floor) instead of
    /// the kernels.
    #[arg(long, value_name = "DIR")]
    model: Option<std::path::PathBuf>,
    #[command(flatten)]
    model_args: super::bench_model::ModelArgs,
}

struct Row {
    work: Workload,
    dtype: DType,
    seconds: f64,
    copy_gbps: f64,
}

impl Row {
    fn gbps(&self) -> f64 {
        self.work.bytes as f64 / self.seconds / 1e9
    }

    /// TFLOP/s for compute rows (the GEMM: 2·m·n·k), `None` for memory-bound ones.
    fn tflops(&self) -> Option<f64> {
        (self.work.flops > 0).then(|| self.work.flops as f64 / self.seconds / 1e12)
    }
}

/// Timer and copy baseline shared by every row.
struct Bench {
    dev: Arc<Device>,
    iters: u32,
    warmup: u32,
    copy_cache: HashMap<u64, f64>,
}

impl Bench {
    /// Mean seconds per call of `f` (which queues work on the device's stream).
    fn time(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        for _ in 0..self.warmup {
            f()?;
        }
        let iters = self.iters.max(1);
        let total = self.dev.time(&mut || {
            for _ in 0..iters {
                f()?;
            }
            Ok(())
        })?;
        Ok(total / f64::from(iters))
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
        let src = DeviceTensor::<u8>::zeros(&self.dev, &[half])?;
        let mut dst = DeviceTensor::<u8>::zeros(&self.dev, &[half])?;
        let t = self.time(&mut || src.copy_to(&mut dst))?;
        let g = (2 * half) as f64 / t / 1e9;
        self.copy_cache.insert(bytes, g);
        Ok(g)
    }

    fn row(
        &mut self,
        work: Workload,
        dtype: DType,
        f: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Row> {
        let seconds = self.time(f)?;
        let copy_gbps = self.copy_gbps(work.bytes)?;
        let r = Row {
            work,
            dtype,
            seconds,
            copy_gbps,
        };
        print_row(&r);
        Ok(r)
    }
}

fn print_header() {
    println!(
        "{:<22} {:<5} {:<20} {:>10} {:>12} {:>9} {:>9} {:>9}",
        "kernel", "dtype", "shape", "time us", "bytes", "GB/s", "% copy", "TFLOP/s"
    );
}

fn print_row(r: &Row) {
    let tflops = r.tflops().map_or("-".to_string(), |t| format!("{t:.1}"));
    println!(
        "{:<22} {:<5} {:<20} {:>10.2} {:>12} {:>9.1} {:>8.1}% {:>9}",
        r.work.label,
        r.dtype,
        r.work.shape,
        r.seconds * 1e6,
        r.work.bytes,
        r.gbps(),
        100.0 * r.gbps() / r.copy_gbps,
        tflops
    );
    let _ = std::io::stdout().flush();
}

/// Runs `bench`.
pub fn run(args: Args) -> Result<()> {
    let m = &args.model_args;
    if args.model.is_none()
        && (m.input.is_some()
            || m.ids_out.is_some()
            || m.limit.is_some()
            || m.backend != super::bench_model::ModelBackend::Cuda)
    {
        return Err(Error::invalid(
            "bench",
            "--input, --ids-out, --limit and --backend apply to `bench --model DIR` (the end-to-end bench)",
        ));
    }
    if let Some(dir) = &args.model {
        return super::bench_model::run(
            dir,
            &args.model_args,
            &args.dtype,
            args.device,
            args.csv.as_deref(),
        );
    }
    let dtypes: Vec<DType> = if args.dtype.is_empty() {
        DType::ALL.to_vec()
    } else {
        args.dtype.clone()
    };
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
    for &dtype in &dtypes {
        for op in ops::REGISTRY {
            for case in (op.bench_cases)(args.quick) {
                let work = (op.workload)(&case, dtype);
                // Inputs live only for their own row.
                let mut run = (op.prepare)(&dev, dtype, &case)?;
                rows.push(b.row(work, dtype, &mut run)?);
            }
        }
    }
    if let Some(path) = &args.csv {
        let mut s =
            String::from("kernel,dtype,shape,time_us,bytes,gbps,copy_gbps,pct_copy,flops,tflops\n");
        for r in &rows {
            s.push_str(&format!(
                "{},{},{},{:.3},{},{:.2},{:.2},{:.2},{},{:.3}\n",
                r.work.label,
                r.dtype,
                r.work.shape,
                r.seconds * 1e6,
                r.work.bytes,
                r.gbps(),
                r.copy_gbps,
                100.0 * r.gbps() / r.copy_gbps,
                r.work.flops,
                r.tflops().unwrap_or(0.0)
            ));
        }
        std::fs::write(path, s).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}
