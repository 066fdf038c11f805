//! `verify` subcommand: every CUDA kernel against the CPU reference on
//! random inputs at the model's shapes, as a table (op, dtype, shape, max
//! abs error, max rel error, tolerance, pass/fail), on a GPU or on the SIMT
//! emulator (`--device emu`). `--op NAME --shape AxB..` checks one op at one
//! shape. Exit status non-zero on any failure, and when the device cannot
//! be opened (with the reason).
//!
//! The ops, their shapes, checks and tolerances come from
//! [`transformer_kernels::ops::REGISTRY`]; this file only prints.

use super::kernel_device::KernelDevice;
use transformer_kernels::ops::{self, Case, CheckRow};
use transformer_kernels::{DType, Error, Result};

/// Options of `verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Storage dtypes to check (comma-separated: f32,f16,bf16).
    #[arg(long, value_delimiter = ',', default_value = "f32,f16,bf16")]
    dtype: Vec<DType>,
    /// Only these ops (comma-separated): convert (N), layer_norm
    /// (ROWSxHIDDEN), embedding (BATCHxSEQxD_MODELxVOCABxOFFSET), logits
    /// (ROWSxVOCABxK), bias_activation (ROWSxCOLS), linear (MxNxK),
    /// attention (BATCHxHEADSxQ_LENxK_LENxHEAD_DIM), gather_rows
    /// (ROWSxPOSITIONSxLENxWIDTH, variant reorder or write); all when absent.
    #[arg(long, value_delimiter = ',')]
    op: Vec<String>,
    /// One shape for the op of `--op` (dimensions joined by `x`; what they
    /// mean is the op's, see `--op`'s list: e.g. `--op layer_norm --shape 3x5`).
    #[arg(long)]
    shape: Option<String>,
    /// The variant for `--shape` (e.g. `plain` for layer_norm, `swish` for
    /// bias_activation, `bf16` as convert's destination; for linear the
    /// epilogue, parts joined by `+`: `plain`, `bias`, `relu` / `gelu` /
    /// `gelutanh` / `swish`, `residual`, and optionally a forced plan
    /// `tile=16x64x64`, `splits=4`; for attention the masks and layout,
    /// `plain`, `causal`, `padding`, `cache`, `fused`, and optionally `tc` /
    /// `simt`, `splits=N`); the op's default when absent.
    #[arg(long)]
    variant: Option<String>,
    /// Seed of the random inputs (printed, so a failure can be replayed).
    #[arg(long, default_value_t = 0x7e57)]
    seed: u64,
    /// Where the kernels run: `cuda` (GPU 0), `cuda:N`, `N`, or `emu` (the
    /// SIMT emulator on the CPU: slow, no GPU needed).
    #[arg(long, default_value = "cuda")]
    device: KernelDevice,
}

/// Runs `verify`.
pub fn run(args: Args) -> Result<()> {
    let selected = select_ops(&args.op)?;
    let shape = match &args.shape {
        None => None,
        Some(s) => {
            let [op] = selected[..] else {
                return Err(Error::invalid(
                    "verify",
                    "--shape needs exactly one --op (the dimensions are the op's)",
                ));
            };
            Some(parse_case(op, s, args.variant.as_deref())?)
        }
    };
    let dev = args.device.open("verify")?;
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
            let cases = match &shape {
                Some(c) => vec![c.clone()],
                None => (op.verify_cases)(),
            };
            for (j, case) in cases.iter().enumerate() {
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

/// A case of `op` from `--shape` (`AxBxC`) and `--variant`.
fn parse_case(op: &ops::Op, shape: &str, variant: Option<&str>) -> Result<Case> {
    let dims = shape
        .split('x')
        .map(|d| d.trim().parse::<usize>())
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| {
            Error::invalid(
                "verify",
                format!("--shape {shape:?}: expected dimensions joined by x, e.g. 3x5"),
            )
        })?;
    if dims.len() != op.dims.len() {
        return Err(Error::invalid(
            "verify",
            format!(
                "--shape {shape:?}: {} takes {} dimensions: {}",
                op.name,
                op.dims.len(),
                op.dims.join("x")
            ),
        ));
    }
    let default_variant = (op.verify_cases)()
        .first()
        .map(|c| c.variant.clone())
        .unwrap_or_default();
    Ok(Case::new(
        &dims,
        variant.map_or(default_variant, str::to_string),
    ))
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
                let known: Vec<String> = ops::REGISTRY
                    .iter()
                    .map(|o| format!("{} ({})", o.name, o.dims.join("x")))
                    .collect();
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
