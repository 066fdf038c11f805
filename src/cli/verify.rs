//! `verify` subcommand: every CUDA kernel against the CPU reference on
//! random inputs at the model's shapes, as a table (op, dtype, shape, max
//! abs error, max rel error, tolerance, pass/fail). Exit status non-zero on
//! any failure, and when there is no GPU (with the reason).

use std::sync::Arc;

use transformer_kernels::cuda::numerics::{compare, random_storage, widen, SplitMix64, Tolerance};
use transformer_kernels::cuda::{self, Device, DeviceElement, DeviceTensor};
use transformer_kernels::Activation;
use transformer_kernels::{cpu, DType, Error, Result};

/// Options of `verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Storage dtypes to check (comma-separated: f32,f16,bf16).
    #[arg(long, value_delimiter = ',', default_value = "f32,f16,bf16")]
    dtype: Vec<DType>,
    /// Seed of the random inputs (printed, so a failure can be replayed).
    #[arg(long, default_value_t = 0x7e57)]
    seed: u64,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
}

/// One line of the table.
struct Row {
    op: String,
    dtype: DType,
    shape: String,
    max_abs: f32,
    max_rel: f32,
    tol: Tolerance,
    passed: bool,
    note: String,
}

/// Runs `verify`.
pub fn run(args: Args) -> Result<()> {
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
        match dtype {
            DType::F32 => run_dtype::<f32>(&dev, args.seed, &mut rows)?,
            DType::F16 => run_dtype::<half::f16>(&dev, args.seed, &mut rows)?,
            DType::BF16 => run_dtype::<half::bf16>(&dev, args.seed, &mut rows)?,
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

fn print_table(rows: &[Row]) {
    println!(
        "{:<22} {:<5} {:<22} {:>11} {:>11} {:>20} {:<6} note",
        "op", "dtype", "shape", "max abs err", "max rel err", "tolerance (abs+rel)", "result"
    );
    for r in rows {
        println!(
            "{:<22} {:<5} {:<22} {:>11.3e} {:>11.3e} {:>9.1e} + {:>8.1e} {:<6} {}",
            r.op,
            r.dtype,
            r.shape,
            r.max_abs,
            r.max_rel,
            r.tol.abs,
            r.tol.rel,
            if r.passed { "pass" } else { "FAIL" },
            r.note
        );
    }
}

fn row(
    op: &str,
    dtype: DType,
    shape: String,
    got: &[f32],
    expected: &[f32],
    tol: Tolerance,
) -> Row {
    let c = compare(got, expected, &tol);
    let note = match c.first_failure {
        Some((i, g, e)) => format!(
            "{} bad; first at {i}: got {g:e}, expected {e:e}",
            c.failures
        ),
        None => String::new(),
    };
    Row {
        op: op.to_string(),
        dtype,
        shape,
        max_abs: c.max_abs,
        max_rel: c.max_rel,
        tol,
        passed: c.passed(),
        note,
    }
}

fn run_dtype<T: DeviceElement>(dev: &Arc<Device>, seed: u64, rows: &mut Vec<Row>) -> Result<()> {
    let mut rng = SplitMix64::new(seed ^ (T::DTYPE as u64) << 32);
    rows.push(convert::<T, f32>(dev, &mut rng)?);
    rows.push(convert::<T, half::f16>(dev, &mut rng)?);
    rows.push(convert::<T, half::bf16>(dev, &mut rng)?);
    for (tokens, hidden) in [(16384, 512), (1, 512), (77, 1024), (5, 513), (3, 8192)] {
        rows.push(layer_norm::<T>(dev, &mut rng, tokens, hidden)?);
    }
    for (batch, seq, offset) in [(32, 128, 0), (64, 1, 37)] {
        rows.push(embedding::<T>(
            dev, &mut rng, batch, seq, 512, 58101, offset,
        )?);
    }
    for (r, k) in [(32, 1), (32, 8), (4, 32)] {
        rows.extend(logits::<T>(dev, &mut rng, r, 58101, k)?);
    }
    for act in [
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Swish,
    ] {
        rows.push(bias_activation::<T>(dev, &mut rng, 4096, 2048, act)?);
    }
    Ok(())
}

fn upload<T: DeviceElement>(
    dev: &Arc<Device>,
    v: &[T],
    shape: &[usize],
) -> Result<DeviceTensor<T>> {
    DeviceTensor::from_host(dev, v, shape)
}

/// Storage conversion `S -> D` over 16384 x 512 values (f16's range):
/// one correctly rounded step on both sides, so the tolerance is 0.
fn convert<S: DeviceElement, D: DeviceElement>(
    dev: &Arc<Device>,
    rng: &mut SplitMix64,
) -> Result<Row> {
    let n = 16384 * 512;
    let (src, _) = random_storage::<S>(rng, n, -60000.0, 60000.0);
    let expected = widen(&cpu::convert::convert::<S, D>(&src));
    let out = cuda::convert::convert::<S, D>(&upload(dev, &src, &[n])?)?;
    let got = widen(&out.to_host()?);
    Ok(row(
        &format!("convert to {}", D::DTYPE),
        S::DTYPE,
        format!("{n}"),
        &got,
        &expected,
        Tolerance {
            abs: 0.0,
            rel: 0.0,
            reason: "one round-to-nearest-even on both sides: bit-exact",
        },
    ))
}

fn layer_norm<T: DeviceElement>(
    dev: &Arc<Device>,
    rng: &mut SplitMix64,
    tokens: usize,
    hidden: usize,
) -> Result<Row> {
    let eps = 1e-5;
    let (xs, xw) = random_storage::<T>(rng, tokens * hidden, -2.0, 2.0);
    let (rs, rw) = random_storage::<T>(rng, tokens * hidden, -2.0, 2.0);
    let (gs, gw) = random_storage::<T>(rng, hidden, -2.0, 2.0);
    let (bs, bw) = random_storage::<T>(rng, hidden, -1.0, 1.0);
    let expected = cpu::layer_norm::layer_norm(&xw, Some(&rw), &gw, &bw, hidden, eps)?;
    let out = cuda::layer_norm::layer_norm(
        &upload(dev, &xs, &[tokens, hidden])?,
        Some(&upload(dev, &rs, &[tokens, hidden])?),
        &upload(dev, &gs, &[hidden])?,
        &upload(dev, &bs, &[hidden])?,
        eps,
    )?;
    let got = widen(&out.to_host()?);
    Ok(row(
        "layer_norm(x+residual)",
        T::DTYPE,
        format!("{tokens}x{hidden}"),
        &got,
        &expected,
        cuda::layer_norm::tolerance(T::DTYPE),
    ))
}

fn embedding<T: DeviceElement>(
    dev: &Arc<Device>,
    rng: &mut SplitMix64,
    batch: usize,
    seq: usize,
    d_model: usize,
    vocab: usize,
    offset: usize,
) -> Result<Row> {
    let (ts, tw) = random_storage::<T>(rng, vocab * d_model, -0.1, 0.1);
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| rng.below(vocab as u64) as u32)
        .collect();
    let scale = (d_model as f32).sqrt();
    let expected = cpu::embedding::embedding(&ids, batch, seq, &tw, vocab, d_model, scale, offset)?;
    let table = upload(dev, &ts, &[vocab, d_model])?;
    let out = cuda::embedding::embedding(&ids, batch, seq, &table, scale, offset)?;
    let got = widen(&out.to_host()?);
    Ok(row(
        "embedding+positions",
        T::DTYPE,
        format!("{batch}x{seq}x{d_model} @{offset}"),
        &got,
        &expected,
        cuda::embedding::tolerance(T::DTYPE),
    ))
}

fn logits<T: DeviceElement>(
    dev: &Arc<Device>,
    rng: &mut SplitMix64,
    n: usize,
    vocab: usize,
    k: usize,
) -> Result<Vec<Row>> {
    let pad = vocab - 1;
    let (ls, lw) = random_storage::<T>(rng, n * vocab, -10.0, 10.0);
    let (bs, bw) = random_storage::<T>(rng, vocab, -2.0, 2.0);
    let expected = cpu::logits::logits_step(&lw, n, vocab, Some(&bw), Some(pad), k)?;
    let l = upload(dev, &ls, &[n, vocab])?;
    let b = upload(dev, &bs, &[vocab])?;
    let mut lp = DeviceTensor::<f32>::zeros(dev, &[n, vocab])?;
    let top = cuda::logits::logits_step(&l, Some(&b), Some(pad), k, Some(&mut lp))?;
    let tol = cuda::logits::tolerance(vocab);
    let shape = format!("{n}x{vocab} k={k}");
    let mut lp_row = row(
        "logits log_softmax",
        T::DTYPE,
        shape.clone(),
        &lp.to_host()?,
        &expected.log_probs,
        tol,
    );
    let mut top_row = row(
        "logits top-k",
        T::DTYPE,
        shape,
        &top.log_probs,
        &expected.topk_log_probs,
        tol,
    );
    let id_mismatches = top
        .ids
        .iter()
        .zip(&expected.topk_ids)
        .filter(|(g, e)| g != e)
        .count();
    if id_mismatches > 0 {
        top_row.passed = false;
        top_row.note = format!("{id_mismatches} top-k ids differ; {}", top_row.note);
    } else {
        top_row.note = format!("ids equal; {}", top_row.note);
    }
    lp_row.note = format!("pad {pad} masked; {}", lp_row.note);
    Ok(vec![lp_row, top_row])
}

fn bias_activation<T: DeviceElement>(
    dev: &Arc<Device>,
    rng: &mut SplitMix64,
    tokens: usize,
    cols: usize,
    act: Activation,
) -> Result<Row> {
    let (xs, xw) = random_storage::<T>(rng, tokens * cols, -6.0, 6.0);
    let (bs, bw) = random_storage::<T>(rng, cols, -2.0, 2.0);
    let expected = cpu::bias_activation::bias_activation(&xw, Some(&bw), cols, act)?;
    let out = cuda::bias_activation::bias_activation(
        &upload(dev, &xs, &[tokens, cols])?,
        Some(&upload(dev, &bs, &[cols])?),
        act,
    )?;
    let got = widen(&out.to_host()?);
    Ok(row(
        &format!("bias+{act:?}").to_lowercase(),
        T::DTYPE,
        format!("{tokens}x{cols}"),
        &got,
        &expected,
        cuda::bias_activation::tolerance(act, T::DTYPE),
    ))
}
