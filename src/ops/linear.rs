//! Linear with a fused epilogue: check against an f64 reference under the
//! FlashAttention-style error rule, and workload (2·m·n·k FLOPs; the bytes
//! of x, w, bias, residual and out).
//!
//! **The error rule** (as FlashAttention's tests hold attention): with y64
//! the product computed in f64 from the very same (storage-rounded) inputs,
//! the kernel passes when
//!
//! `max |y_kernel − y64| <= ERROR_RATIO · max |y_cpu − y64| + floor`
//!
//! where y_cpu is the same maths done on the CPU in the storage precision
//! (`cpu::linear::linear`: f32 products and sums; the epilogue in f32;
//! the output rounded to the storage dtype) and `floor = ERROR_FLOOR_ULPS
//! · ε_f32 · max |y64|`. The kernel may sum in another order than the CPU
//! (tensor-core k16 steps, split-K slices), which changes the error but
//! not its size; twice the CPU's error is the slack for that. The floor
//! covers what the CPU's error can miss when it happens to be tiny: the
//! kernel's libdevice erff / expf / tanhf (<= 2 ulp, the CPU's f64
//! activation is exact to 0.5 ulp) and the f64 → f32 rounding of y64 in
//! the comparison itself.

use std::sync::Arc;

use super::model_shapes::{D_MODEL, FFN, VOCAB};
use super::{flash_rule_row, Case, CheckRow, Op, Run, Workload};
use crate::activation::Activation;
use crate::cpu::linear::{linear as cpu_linear, linear_epilogue};
use crate::cuda::linear::{
    self as kernel, linear_accumulate_with_plan, linear_into_with, linear_with_plan, Epilogue,
    LinearPlan, LinearWorkspace, Tile,
};
use crate::cuda::numerics::{random_storage, widen, SplitMix64};
use crate::cuda::{Device, DeviceElement, DeviceTensor};
use crate::{DType, Element, Error, Result};

/// The registry entry.
pub const OP: Op = Op {
    name: "linear",
    dims: &["M", "N", "K"],
    kernels: kernel::kernels,
    verify_cases,
    check: check_case,
    bench_cases,
    workload,
    prepare,
};

/// The kernel's error may be this many times the CPU's (see the module docs).
pub const ERROR_RATIO: f32 = 2.0;
/// The floor of the rule, in f32 ulps of the largest output (see the module docs).
pub const ERROR_FLOOR_ULPS: f32 = 4.0;
const RULE: &str = "FlashAttention rule: kernel error vs f64 <= 2 x the CPU's in storage \
                    precision + 4 f32 ulps of max|y|";

/// One problem: shape, epilogue and (optionally) a forced plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spec {
    /// Rows of x (tokens).
    pub m: usize,
    /// Rows of w (out_features).
    pub n: usize,
    /// in_features.
    pub k: usize,
    /// With a `[n]` bias.
    pub bias: bool,
    /// The activation after the bias.
    pub activation: Option<Activation>,
    /// With a `[m, n]` residual added last.
    pub residual: bool,
    /// A forced tile and split count (`None`: the device's heuristic).
    pub plan: Option<LinearPlan>,
    /// Without `plan`: the heuristic's tile with this many k-slices.
    pub splits: Option<u32>,
    /// Also run the in-place form (`linear_accumulate`, the residual as the
    /// output) and require the same bits as the out-of-place one.
    pub check_in_place: bool,
}

impl Spec {
    /// `m × n × k` with no epilogue and the heuristic's plan.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Spec {
            m,
            n,
            k,
            bias: false,
            activation: None,
            residual: false,
            plan: None,
            splits: None,
            check_in_place: false,
        }
    }

    /// The epilogue's name: `plain`, or its parts joined by `+` in order
    /// (`bias+gelu+residual`); a forced plan adds `tile=..` and `splits=..`.
    pub fn variant(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.bias {
            parts.push("bias".into());
        }
        if let Some(a) = self.activation {
            parts.push(activation_name(a).into());
        }
        if self.residual {
            parts.push("residual".into());
        }
        if let Some(p) = self.plan {
            parts.push(format!("tile={}", p.tile.name()));
            parts.push(format!("splits={}", p.splits));
        } else if let Some(n) = self.splits {
            parts.push(format!("splits={n}"));
        }
        if parts.is_empty() {
            "plain".into()
        } else {
            parts.join("+")
        }
    }

    /// The spec of a case: dims `[m, n, k]` and a variant as
    /// [`Spec::variant`] writes it (`plain`, `bias`, `relu`, `gelu`,
    /// `gelutanh`, `swish`, `residual`, `tile=16x64x64`, `splits=4`,
    /// joined by `+`; `splits` without a tile keeps the heuristic's tile;
    /// `tile` without `splits` means one slice).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown, empty or repeated part, two
    /// activations, or a bad number.
    pub fn from_case(case: &Case) -> Result<Spec> {
        let mut s = Spec::new(case.dim(0), case.dim(1), case.dim(2));
        let mut tile = None;
        let mut splits = None;
        let bad = |msg: String| Error::invalid("linear", msg);
        let parts: Vec<&str> = if case.variant.is_empty() {
            Vec::new()
        } else {
            case.variant.split('+').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                return Err(bad(format!("empty part in variant {:?}", case.variant)));
            }
            if parts[..i].contains(part) {
                return Err(bad(format!(
                    "part {part:?} given twice in {:?}",
                    case.variant
                )));
            }
        }
        for &part in &parts {
            match part {
                "plain" => {}
                "bias" => s.bias = true,
                "residual" => s.residual = true,
                _ => {
                    if let Some(t) = part.strip_prefix("tile=") {
                        tile = Some(Tile::ALL.into_iter().find(|x| x.name() == t).ok_or_else(
                            || {
                                Error::invalid(
                                    "linear",
                                    format!(
                                        "unknown tile {t:?}; tiles: {}",
                                        Tile::ALL.map(Tile::name).join(", ")
                                    ),
                                )
                            },
                        )?);
                    } else if let Some(n) = part.strip_prefix("splits=") {
                        splits = Some(n.parse::<u32>().map_err(|_| {
                            Error::invalid("linear", format!("splits={n:?} is not a count"))
                        })?);
                    } else {
                        if let Some(a) = s.activation {
                            return Err(bad(format!(
                                "two activations ({} and {part}) in {:?}",
                                activation_name(a),
                                case.variant
                            )));
                        }
                        s.activation = Some(
                            kernel_activations()
                                .into_iter()
                                .find(|&a| activation_name(a) == part)
                                .ok_or_else(|| {
                                    Error::invalid(
                                        "linear",
                                        format!(
                                            "unknown epilogue part {part:?}; parts: plain, bias, \
                                             relu, gelu, gelutanh, swish, residual, tile=NAME, \
                                             splits=N (joined by +)"
                                        ),
                                    )
                                })?,
                        );
                    }
                }
            }
        }
        match tile {
            Some(tile) => {
                s.plan = Some(LinearPlan {
                    tile,
                    splits: splits.unwrap_or(1),
                })
            }
            None => s.splits = splits,
        }
        Ok(s)
    }
}

fn kernel_activations() -> [Activation; 4] {
    [
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Swish,
    ]
}

/// `relu`, `gelu`, `gelutanh`, `swish`.
pub fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::Gelu => "gelu",
        Activation::GeluTanh => "gelutanh",
        Activation::Swish => "swish",
    }
}

/// The model's projections at small m (decode rows and a short batch),
/// then ../shared/CASES.md B3 (1000 × 999 × 1001 with every epilogue part).
fn verify_cases() -> Vec<Case> {
    let mut v: Vec<Case> = [8, 64]
        .iter()
        .flat_map(|&m| {
            [
                (3 * D_MODEL, D_MODEL, "bias"),
                (D_MODEL, D_MODEL, "bias+residual"),
                (FFN, D_MODEL, "bias+swish"),
                (D_MODEL, FFN, "bias+residual"),
            ]
            .map(|(n, k, e)| Case::new(&[m, n, k], e))
        })
        .collect();
    v.push(Case::new(&[4, VOCAB, D_MODEL], "bias"));
    v.push(Case::new(&[1000, 999, 1001], "bias+gelu+residual"));
    v
}

fn check_case(dev: &Arc<Device>, dtype: DType, case: &Case, seed: u64) -> Result<Vec<CheckRow>> {
    let spec = Spec::from_case(case)?;
    let row = with_dtype!(dtype, check(dev, &spec, seed))?;
    Ok(vec![row])
}

/// The kernel against the f64 reference under the rule of the module docs,
/// on random inputs from `seed`: x in [-1, 1], w in [-1, 1] / √k (outputs
/// of order 1, where the activations are not linear), bias and residual in
/// [-1, 1].
///
/// # Errors
/// Whatever the kernel or the reference reports.
pub fn check<T: DeviceElement>(dev: &Arc<Device>, spec: &Spec, seed: u64) -> Result<CheckRow> {
    let Spec { m, n, k, .. } = *spec;
    check_size(m, n, k)?;
    let mut rng = SplitMix64::new(seed);
    let ws = 1.0 / (k.max(1) as f32).sqrt();
    let (xs, xw) = random_storage::<T>(&mut rng, m * k, -1.0, 1.0);
    let (wss, ww) = random_storage::<T>(&mut rng, n * k, -ws, ws);
    let (bs, bw) = random_storage::<T>(&mut rng, n, -1.0, 1.0);
    let (rs, rw) = random_storage::<T>(&mut rng, m * n, -1.0, 1.0);
    let bias_w = spec.bias.then_some(&bw[..]);
    let res_w = spec.residual.then_some(&rw[..]);

    let y64 = reference_f64(&xw, &ww, bias_w, spec.activation, res_w, m, n, k);
    let y_cpu = storage_precision::<T>(&xw, &ww, bias_w, spec.activation, res_w, m, n, k)?;

    let x = DeviceTensor::from_host(dev, &xs, &[m, k])?;
    let w = DeviceTensor::from_host(dev, &wss, &[n, k])?;
    let b = DeviceTensor::from_host(dev, &bs, &[n])?;
    let r = DeviceTensor::from_host(dev, &rs, &[m, n])?;
    let epilogue = Epilogue {
        bias: spec.bias.then_some(&b),
        activation: spec.activation,
        residual: spec.residual.then_some(&r),
    };
    let plan = resolve_plan::<T>(dev, spec);
    let out = linear_with_plan(&x, &w, epilogue, plan)?;
    let got_raw = out.to_host()?;
    let got = widen(&got_raw);

    let max_ref = y64.iter().fold(0.0f64, |a, v| a.max(v.abs())) as f32;
    let mut row = flash_rule_row(
        format!("linear {}", spec.variant()),
        T::DTYPE,
        format!("{m}x{n}x{k}"),
        &got,
        &y_cpu,
        &y64,
        ERROR_RATIO,
        ERROR_FLOOR_ULPS * f32::EPSILON * max_ref,
        RULE,
    );
    row.note = format!(
        "tile {} splits {}; {}",
        plan.tile.name(),
        plan.splits,
        row.note
    );

    if spec.check_in_place && spec.residual {
        let mut acc = DeviceTensor::from_host(dev, &rs, &[m, n])?;
        let epi = Epilogue {
            residual: None,
            ..epilogue
        };
        linear_accumulate_with_plan(&x, &w, epi, &mut acc, plan)?;
        let in_place = acc.to_host()?;
        if bytemuck::cast_slice::<T, u8>(&in_place) != bytemuck::cast_slice::<T, u8>(&got_raw) {
            row.passed = false;
            row.note = format!(
                "in place (residual = out) differs from out of place; {}",
                row.note
            );
        }
    }
    Ok(row)
}

/// Host elements a check may hold per operand (it keeps several f32 / f64
/// copies of each): past this a check is refused rather than left to
/// exhaust the host's memory.
pub const MAX_CHECK_ELEMENTS: usize = 1 << 28;

/// [`Error::InvalidArgument`] unless every operand of `m × n × k` fits
/// [`MAX_CHECK_ELEMENTS`] (and so no product overflows).
fn check_size(m: usize, n: usize, k: usize) -> Result<()> {
    for (what, a, b) in [("x", m, k), ("w", n, k), ("out", m, n)] {
        if a.checked_mul(b).is_none_or(|e| e > MAX_CHECK_ELEMENTS) {
            return Err(Error::invalid(
                "linear",
                format!(
                    "{m}x{n}x{k}: {what} ({a} x {b}) is past the {MAX_CHECK_ELEMENTS} elements \
                     a check holds on the host"
                ),
            ));
        }
    }
    Ok(())
}

/// The plan of a spec: forced, or the device's heuristic (with the
/// spec's split count when it names one).
fn resolve_plan<T: DeviceElement>(dev: &Arc<Device>, spec: &Spec) -> LinearPlan {
    spec.plan.unwrap_or_else(|| {
        let mut p = kernel::plan_for::<T>(dev, spec.m, spec.n, spec.k);
        if let Some(s) = spec.splits {
            p.splits = s;
        }
        p
    })
}

/// `act(x · wᵀ + b) + residual` in f64 (the inputs are exact in f64).
#[allow(clippy::too_many_arguments)] // the op's operands, as the kernel's params
pub fn reference_f64(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    activation: Option<Activation>,
    residual: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f64> {
    let mut y = vec![0.0f64; m * n];
    for i in 0..m {
        let xr = &x[i * k..][..k];
        for j in 0..n {
            let wr = &w[j * k..][..k];
            let mut s: f64 = xr
                .iter()
                .zip(wr)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            if let Some(b) = bias {
                s += f64::from(b[j]);
            }
            if let Some(a) = activation {
                s = a.eval_f64(s);
            }
            if let Some(r) = residual {
                s += f64::from(r[i * n + j]);
            }
            y[i * n + j] = s;
        }
    }
    y
}

/// The same maths on the CPU in the storage precision: `cpu::linear` (f32),
/// the epilogue in f32, the output rounded to `T`.
///
/// # Errors
/// Shape errors of `cpu::linear`.
#[allow(clippy::too_many_arguments)] // the op's operands, as the kernel's params
pub fn storage_precision<T: Element>(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    activation: Option<Activation>,
    residual: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<Vec<f32>> {
    let mut y = cpu_linear(x, w, bias, m, n, k)?;
    linear_epilogue(&mut y, activation, residual)?;
    Ok(y.iter().map(|&v| T::from_f32(v).to_f32()).collect())
}

/// The model's (n, k) with their role and epilogue: fused QKV, out_proj,
/// fc1, fc2, the vocabulary logits.
const BENCH_SHAPES: [(&str, usize, usize, &str); 5] = [
    ("qkv", 3 * D_MODEL, D_MODEL, "bias"),
    ("out_proj", D_MODEL, D_MODEL, "bias+residual"),
    ("fc1", FFN, D_MODEL, "bias+swish"),
    ("fc2", D_MODEL, FFN, "bias+residual"),
    ("logits", VOCAB, D_MODEL, "bias"),
];

/// m (tokens) 1, 8, 64, 512, 4096, 16384 × the model's projections
/// (`quick`: m 1 and 4096).
fn bench_cases(quick: bool) -> Vec<Case> {
    let ms: &[usize] = if quick {
        &[1, 4096]
    } else {
        &[1, 8, 64, 512, 4096, 16384]
    };
    ms.iter()
        .flat_map(|&m| BENCH_SHAPES.map(|(_, n, k, e)| Case::new(&[m, n, k], e)))
        .collect()
}

/// 2·m·n·k FLOPs; bytes of x, w, bias, residual (when the epilogue has
/// them) and out, each once (the floor for small m, where w dominates).
fn workload(case: &Case, dtype: DType) -> Workload {
    let (m, n, k) = (case.dim(0), case.dim(1), case.dim(2));
    let spec = Spec::from_case(case).unwrap_or(Spec::new(m, n, k));
    let role = BENCH_SHAPES
        .iter()
        .find(|s| s.1 == n && s.2 == k)
        .map_or("linear", |s| s.0);
    let elems = m * k
        + n * k
        + m * n
        + if spec.bias { n } else { 0 }
        + if spec.residual { m * n } else { 0 };
    Workload {
        label: format!("linear_{role}"),
        shape: format!("{m}x{n}x{k}"),
        bytes: elems as u64 * dtype.size_in_bytes() as u64,
        flops: 2 * (m * n * k) as u64,
    }
}

fn prepare(dev: &Arc<Device>, dtype: DType, case: &Case) -> Result<Run> {
    with_dtype!(dtype, prepare_typed(dev, case))
}

fn prepare_typed<T: DeviceElement>(dev: &Arc<Device>, case: &Case) -> Result<Run> {
    let spec = Spec::from_case(case)?;
    let (m, n, k) = (spec.m, spec.n, spec.k);
    check_size(m, n, k)?;
    let mut rng = SplitMix64::new(0x11ea ^ (m * n + k) as u64);
    let s = 1.0 / (k.max(1) as f32).sqrt();
    let (xs, _) = random_storage::<T>(&mut rng, m * k, -1.0, 1.0);
    let (wss, _) = random_storage::<T>(&mut rng, n * k, -s, s);
    let (bs, _) = random_storage::<T>(&mut rng, n, -1.0, 1.0);
    let (rs, _) = random_storage::<T>(&mut rng, m * n, -1.0, 1.0);
    let x = DeviceTensor::from_host(dev, &xs, &[m, k])?;
    let w = DeviceTensor::from_host(dev, &wss, &[n, k])?;
    let b = DeviceTensor::from_host(dev, &bs, &[n])?;
    let r = DeviceTensor::from_host(dev, &rs, &[m, n])?;
    let mut out = DeviceTensor::zeros(dev, &[m, n])?;
    let plan = resolve_plan::<T>(dev, &spec);
    let mut workspace = LinearWorkspace::new();
    Ok(Box::new(move || {
        let epilogue = Epilogue {
            bias: spec.bias.then_some(&b),
            activation: spec.activation,
            residual: spec.residual.then_some(&r),
        };
        linear_into_with(&x, &w, epilogue, &mut out, plan, &mut workspace)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_round_trip() {
        for v in [
            "plain",
            "bias",
            "bias+gelu+residual",
            "swish",
            "bias+relu+residual+tile=16x64x64+splits=3",
            "gelu+splits=4",
        ] {
            let s = Spec::from_case(&Case::new(&[2, 3, 4], v)).unwrap();
            assert_eq!(s.variant(), v);
        }
        assert!(Spec::from_case(&Case::new(&[2, 3, 4], "bias+tanh")).is_err());
        assert!(Spec::from_case(&Case::new(&[2, 3, 4], "tile=3x3")).is_err());
        for bad in ["gelu+relu", "+++", "bias+", "bias+bias"] {
            assert!(
                Spec::from_case(&Case::new(&[2, 3, 4], bad)).is_err(),
                "{bad}"
            );
        }
        let big = Spec::new(1 << 62, 4, 4);
        assert!(check_size(big.m, big.n, big.k).is_err());
    }

    #[test]
    fn the_cpu_in_storage_precision_is_close_to_f64_and_not_equal() {
        // The rule's yardstick must itself be a real, non-zero error.
        let (m, n, k) = (5, 7, 300);
        let mut rng = SplitMix64::new(3);
        let (_, x) = random_storage::<half::bf16>(&mut rng, m * k, -1.0, 1.0);
        let (_, w) = random_storage::<half::bf16>(&mut rng, n * k, -0.1, 0.1);
        let y64 = reference_f64(&x, &w, None, Some(Activation::Gelu), None, m, n, k);
        let y =
            storage_precision::<half::bf16>(&x, &w, None, Some(Activation::Gelu), None, m, n, k)
                .unwrap();
        let e = crate::ops::max_err(&y, &y64);
        assert!(e > 0.0 && e < 0.02, "bf16 storage error {e}");
    }
}
