//! One file per op: the **check** (fresh random inputs at given shapes, the
//! CPU reference, the op's named tolerance) and the **workload** (the
//! shapes worth timing and the bytes or FLOPs each moves) that the GPU
//! tests, `transformer-kernels verify`, `transformer-kernels bench`, the
//! criterion benches and `scripts/device-check.sh` all share; and
//! [`REGISTRY`], the list `verify` and `bench` iterate over.
//!
//! This is the one place that joins a kernel (`crate::cuda::<op>`) with its
//! reference (`crate::cpu::<op>`): the kernels never call the oracle at run
//! time. Adding an op is its kernel file, its wrapper in `src/cuda/`, its
//! reference in `src/cpu/`, its file here, its test and bench files, and
//! one line in [`REGISTRY`].

/// Calls `f::<T>(args)` with `T` the storage type of a runtime `DType`.
macro_rules! with_dtype {
    ($dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            $crate::DType::F32 => $f::<f32>($($arg),*),
            $crate::DType::F16 => $f::<half::f16>($($arg),*),
            $crate::DType::BF16 => $f::<half::bf16>($($arg),*),
        }
    };
}

pub mod attention;
pub mod bias_activation;
pub mod convert;
pub mod embedding;
pub mod gather_rows;
pub mod layer_norm;
pub mod linear;
pub mod logits;

use std::sync::Arc;

use crate::cuda::numerics::{compare, Comparison, Tolerance};
use crate::cuda::{Device, KernelRef};
use crate::{DType, Result};

/// Shapes of opus-mt / Transformer-base that the checks and workloads use.
pub mod model_shapes {
    /// d_model of opus-mt / Transformer-base.
    pub const D_MODEL: usize = 512;
    /// ffn_dim of opus-mt.
    pub const FFN: usize = 2048;
    /// Vocabulary of opus-mt-en-de (pad is the last id).
    pub const VOCAB: usize = 58101;
    /// Marian's layer_norm_eps.
    pub const LAYER_NORM_EPS: f32 = 1e-5;
}

/// One problem instance of an op: its dimensions (what each means is the
/// op's own; `verify` prints them joined by `x`) and a variant name (an
/// activation, a destination dtype, `k=8`, ...; empty when the op has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Variant, or empty.
    pub variant: String,
}

impl Case {
    /// A case of `dims` with `variant` (may be empty).
    pub fn new(dims: &[usize], variant: impl Into<String>) -> Self {
        Case {
            dims: dims.to_vec(),
            variant: variant.into(),
        }
    }

    /// Dimension `i`, or 0 when the case has fewer.
    pub fn dim(&self, i: usize) -> usize {
        self.dims.get(i).copied().unwrap_or(0)
    }
}

/// One line of `verify`'s table: an output of one check compared with the
/// reference.
#[derive(Clone, Debug)]
pub struct CheckRow {
    /// What was compared (e.g. `layer_norm(x+residual)`, `logits top-k`).
    pub label: String,
    /// Storage dtype of the kernel's inputs.
    pub dtype: DType,
    /// The shape as printed (e.g. `16384x512`).
    pub shape: String,
    /// Element-wise comparison with the reference.
    pub comparison: Comparison,
    /// The tolerance applied.
    pub tol: Tolerance,
    /// Whether the row passed (the comparison, and any exact check such as
    /// equal top-k ids).
    pub passed: bool,
    /// Extra facts: the first failure, or what else was checked.
    pub note: String,
}

impl CheckRow {
    /// Compares `got` with `expected` under `tol`; the note names the first
    /// failure, if any.
    pub fn compare(
        label: impl Into<String>,
        dtype: DType,
        shape: impl Into<String>,
        got: &[f32],
        expected: &[f32],
        tol: Tolerance,
    ) -> Self {
        let comparison = compare(got, expected, &tol);
        let note = match comparison.first_failure {
            Some((i, g, e)) => format!(
                "{} bad; first at {i}: got {g:e}, expected {e:e}",
                comparison.failures
            ),
            None => String::new(),
        };
        CheckRow {
            label: label.into(),
            dtype,
            shape: shape.into(),
            passed: comparison.passed(),
            comparison,
            tol,
            note,
        }
    }

    /// A failure message for a test: index, got, expected, max |Δ|, reason.
    pub fn describe(&self) -> String {
        let what = format!("{} {} {}", self.label, self.dtype, self.shape);
        if self.passed || !self.comparison.passed() {
            self.comparison.describe(&what, &self.tol)
        } else {
            format!("{what}: {}", self.note)
        }
    }
}

/// `max |a − b|` over the elements, NaN when any `a` is not finite.
pub(crate) fn max_err(a: &[f32], b: &[f64]) -> f32 {
    let mut e = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_finite() {
            return f32::NAN;
        }
        e = e.max((f64::from(x) - y).abs());
    }
    e as f32
}

/// The FlashAttention-style rule of the fused ops (`linear`, `attention`):
/// compares `got` with the f64 reference `y64` under an absolute
/// tolerance of `ratio · max|y_cpu − y64| + floor`, `y_cpu` being the same
/// maths on the CPU in the storage precision. The row's note gives both
/// errors and the floor.
#[allow(clippy::too_many_arguments)] // the rule's inputs, each named by its op
pub(crate) fn flash_rule_row(
    label: String,
    dtype: DType,
    shape: String,
    got: &[f32],
    y_cpu: &[f32],
    y64: &[f64],
    ratio: f32,
    floor: f32,
    reason: &'static str,
) -> CheckRow {
    let err_cpu = max_err(y_cpu, y64);
    let err_kernel = max_err(got, y64);
    let tol = Tolerance {
        abs: ratio * err_cpu + floor,
        rel: 0.0,
        reason,
    };
    let expected: Vec<f32> = y64.iter().map(|&v| v as f32).collect();
    let mut row = CheckRow::compare(label, dtype, shape, got, &expected, tol);
    let facts = format!("error {err_kernel:.2e} vs CPU's {err_cpu:.2e} (floor {floor:.1e})");
    row.note = if row.note.is_empty() {
        facts
    } else {
        format!("{}; {facts}", row.note)
    };
    row
}

/// What one benchmark row measures.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Row label (e.g. `layer_norm_residual`).
    pub label: String,
    /// Shape as printed (e.g. `16384x512`).
    pub shape: String,
    /// Bytes the fused op must read plus write (the memory roofline's unit).
    pub bytes: u64,
    /// Floating-point operations (0 for memory-bound ops).
    pub flops: u64,
}

/// One prepared launch of a workload: inputs uploaded, outputs allocated;
/// each call queues the op once (nothing waits for the device).
pub type Run = Box<dyn FnMut() -> Result<()>>;

/// Runs one check of a case: random inputs from the seed, the kernel on the
/// device, the reference, the tolerance; one or more table rows.
pub type CheckFn = fn(&Arc<Device>, DType, &Case, u64) -> Result<Vec<CheckRow>>;

/// An op as `verify`, `bench`, the tests and the static checks see it.
pub struct Op {
    /// The op's one name (kernel file, wrapper, reference, test, bench).
    pub name: &'static str,
    /// What each dimension of a [`Case`] means (`verify --shape` takes them
    /// in this order, joined by `x`).
    pub dims: &'static [&'static str],
    /// Every kernel symbol of the op (checked against the fatbins).
    pub kernels: fn() -> Vec<KernelRef>,
    /// The cases `verify` checks by default (the model's shapes).
    pub verify_cases: fn() -> Vec<Case>,
    /// Runs one check (see [`CheckFn`]).
    pub check: CheckFn,
    /// The cases `bench` times (`quick`: the largest only).
    pub bench_cases: fn(bool) -> Vec<Case>,
    /// Label, shape and bytes / FLOPs of a case in a storage dtype.
    pub workload: fn(&Case, DType) -> Workload,
    /// Uploads random inputs for a case and returns the launch to time.
    pub prepare: fn(&Arc<Device>, DType, &Case) -> Result<Run>,
}

/// Every op with kernels, in the order `verify` and `bench` print them.
pub static REGISTRY: &[Op] = &[
    convert::OP,
    layer_norm::OP,
    embedding::OP,
    logits::OP,
    bias_activation::OP,
    linear::OP,
    attention::OP,
    gather_rows::OP,
];

/// The op named `name` (as in [`Op::name`]).
pub fn find(name: &str) -> Option<&'static Op> {
    REGISTRY.iter().find(|op| op.name == name)
}

/// Every kernel symbol of every op.
pub fn all_kernels() -> Vec<KernelRef> {
    REGISTRY.iter().flat_map(|op| (op.kernels)()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::kernels::{FATBINS, KERNELS_BUILT};

    #[test]
    fn every_op_module_is_embedded_and_every_fatbin_has_an_op() {
        if !KERNELS_BUILT {
            println!("skipped: kernels not built (no nvcc at build time)");
            return;
        }
        let modules: std::collections::BTreeSet<&str> =
            all_kernels().iter().map(|k| k.module).collect();
        let embedded: std::collections::BTreeSet<&str> =
            FATBINS.iter().map(|(stem, _, _)| *stem).collect();
        assert_eq!(
            modules, embedded,
            "the ops' kernel modules and the embedded fatbins (kernels/*.cu) differ"
        );
    }

    #[test]
    fn op_names_are_unique_and_findable() {
        for op in REGISTRY {
            assert!(std::ptr::eq(find(op.name).unwrap(), op), "{}", op.name);
            assert!(
                !(op.verify_cases)().is_empty(),
                "{} has no verify case",
                op.name
            );
            assert!(
                !(op.bench_cases)(true).is_empty(),
                "{} has no bench case",
                op.name
            );
        }
        assert!(find("no_such_op").is_none());
    }
}
