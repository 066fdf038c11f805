//! `verify` subcommand: every CUDA kernel against the CPU reference on
//! random inputs at the model's shapes, as a table (op, dtype, shape, max
//! abs error, max rel error, tolerance, pass/fail). Exit status non-zero on
//! any failure, and when there is no GPU (with the reason).
//!
//! The ops, their shapes, checks and tolerances come from
//! [`transformer_kernels::ops::REGISTRY`]; this file only prints.

use transformer_kernels::cuda::Device;
use transformer_kernels::ops::{self, CheckRow};
use transformer_kernels::{DType, Error, Result};

/// Options of `verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Storage dtypes to check (comma-separated: f32,f16,bf16).
    #[arg(long, value_delimiter = ',', default_value = "f32,f16,bf16")]
    dtype: Vec<DType>,
    /// Only these ops (comma-separated registry names: convert, layer_norm,
    /// embedding, logits, bias_activation); all when absent.
    #[arg(long, value_delimiter = ',')]
    op: Vec<String>,
    /// Seed of the random inputs (printed, so a failure can be replayed).
    #[arg(long, default_value_t = 0x7e57)]
    seed: u64,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
}

/// Runs `verify`.
pub fn run(args: Args) -> Result<()> {
    let selected = select_ops(&args.op)?;
    let dev = Device::open(args.device).map_err(|e| match e {
        Error::NoCuda(why) => Error::NoCuda(format!(
            "{why}; `verify` runs the kernels on a GPU and has nothing to check without one"
        )),
        other => other,
    })?;
    println!(
        "verify: {} (compute capability {}.{}), seed {:#x}",
        dev.name(),
        dev.compute_capability().0,
        dev.compute_capability().1,
        args.seed
    );
    let mut rows = Vec::new();
    for &dtype in &args.dtype {
        for (i, op) in selected.iter().enumerate() {
            for (j, case) in (op.verify_cases)().iter().enumerate() {
                // A distinct, replayable seed per (dtype, op, case).
                let seed = args.seed ^ ((dtype as u64) << 32) ^ ((i as u64) << 16) ^ j as u64;
                rows.extend((op.check)(&dev, dtype, case, seed)?);
            }
        }
    }
    print_table(&rows);
    let failed = rows.iter().filter(|r| !r.passed).count();
    if failed > 0 {
        return Err(Error::invalid(
            "verify",
            format!("{failed} of {} checks failed", rows.len()),
        ));
    }
    println!("verify: all {} checks passed", rows.len());
    Ok(())
}

/// The registry entries named in `names` (all when empty).
fn select_ops(names: &[String]) -> Result<Vec<&'static ops::Op>> {
    if names.is_empty() {
        return Ok(ops::REGISTRY.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            ops::find(n).ok_or_else(|| {
                let known: Vec<&str> = ops::REGISTRY.iter().map(|o| o.name).collect();
                Error::invalid(
                    "verify",
                    format!("unknown op {n:?}; known ops: {}", known.join(", ")),
                )
            })
        })
        .collect()
}

fn print_table(rows: &[CheckRow]) {
    println!(
        "{:<22} {:<5} {:<22} {:>11} {:>11} {:>20} {:<6} note",
        "op", "dtype", "shape", "max abs err", "max rel err", "tolerance (abs+rel)", "result"
    );
    for r in rows {
        println!(
            "{:<22} {:<5} {:<22} {:>11.3e} {:>11.3e} {:>9.1e} + {:>8.1e} {:<6} {}",
            r.label,
            r.dtype,
            r.shape,
            r.comparison.max_abs,
            r.comparison.max_rel,
            r.tol.abs,
            r.tol.rel,
            if r.passed { "pass" } else { "FAIL" },
            r.note
        );
    }
}
