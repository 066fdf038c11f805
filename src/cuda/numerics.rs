//! Comparing kernel output with the CPU reference: mixed absolute +
//! relative tolerances with a written reason, the comparison that `verify`
//! and the GPU tests share, and a small seeded generator for random inputs.
//!
//! A value passes when `|got - expected| <= abs + rel · |expected|`; NaN
//! never passes (not even against NaN), and an infinity passes only against
//! the same infinity.

use crate::{DType, Element};

/// Rounds f32 values to the storage type `T` (round to nearest even).
pub fn to_storage<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

/// Widens storage values to f32 (exact).
pub fn widen<T: Element>(v: &[T]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

/// `n` values uniform in `[lo, hi)` already rounded to `T`, returned both
/// in storage form (to upload) and widened (the reference's input: the
/// kernel and the reference see exactly the same numbers).
pub fn random_storage<T: Element>(
    rng: &mut SplitMix64,
    n: usize,
    lo: f32,
    hi: f32,
) -> (Vec<T>, Vec<f32>) {
    let s: Vec<T> = to_storage(&rng.vec(n, lo, hi));
    let w = widen(&s);
    (s, w)
}

/// A mixed tolerance: `|got - expected| <= abs + rel · |expected|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Absolute part (covers values near zero and cancellation).
    pub abs: f32,
    /// Relative part (covers rounding proportional to the value).
    pub rel: f32,
    /// One line saying where the numbers come from.
    pub reason: &'static str,
}

impl Tolerance {
    /// The tolerance of an output stored in `dtype` whose f32 value `y` is
    /// within `f32_tol` of the reference `r`: rounding `y` to a 16-bit dtype
    /// (unit roundoff `u`) adds at most `u·|y| <= u·(|r| + abs + rel·|r|)`, so
    /// `abs' = abs·(1+u)` and `rel' = rel·(1+u) + u`. An f32 output's own
    /// rounding is already part of `f32_tol`.
    pub fn stored_as(f32_tol: Tolerance, dtype: DType) -> Tolerance {
        let u = match dtype {
            DType::F32 => 0.0,
            DType::F16 | DType::BF16 => dtype.unit_roundoff(),
        };
        Tolerance {
            abs: f32_tol.abs * (1.0 + u),
            rel: f32_tol.rel * (1.0 + u) + u,
            reason: f32_tol.reason,
        }
    }

    /// Whether `got` is within tolerance of `expected` (NaN never is).
    pub fn accepts(&self, got: f32, expected: f32) -> bool {
        if got.is_nan() || expected.is_nan() {
            return false;
        }
        if got.is_infinite() || expected.is_infinite() {
            return got == expected;
        }
        (got - expected).abs() <= self.abs + self.rel * expected.abs()
    }
}

/// The result of comparing two equally long slices.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Number of elements compared.
    pub len: usize,
    /// Largest `|got - expected|` over finite pairs (NaN if any pair has a NaN).
    pub max_abs: f32,
    /// Largest `|got - expected| / |expected|` over finite pairs with `expected != 0`.
    pub max_rel: f32,
    /// The first element out of tolerance: `(index, got, expected)`.
    pub first_failure: Option<(usize, f32, f32)>,
    /// Number of elements out of tolerance.
    pub failures: usize,
}

impl Comparison {
    /// Whether every element is within tolerance.
    pub fn passed(&self) -> bool {
        self.failures == 0
    }

    /// A one-paragraph description for a failed assertion: the first failing
    /// index with got and expected, the number of failures and max |Δ|.
    pub fn describe(&self, what: &str, tol: &Tolerance) -> String {
        match self.first_failure {
            None => format!(
                "{what}: ok ({} elements, max |Δ| {:e}, max rel {:e})",
                self.len, self.max_abs, self.max_rel
            ),
            Some((i, g, e)) => format!(
                "{what}: {} of {} elements out of tolerance (abs {:e} + rel {:e}: {}); \
                 first at index {i}: got {g:e}, expected {e:e}; max |Δ| {:e}, max rel {:e}",
                self.failures, self.len, tol.abs, tol.rel, tol.reason, self.max_abs, self.max_rel
            ),
        }
    }
}

/// Compares `got` with `expected` element by element under `tol`. A length
/// mismatch counts as a failure at the first missing index.
pub fn compare(got: &[f32], expected: &[f32], tol: &Tolerance) -> Comparison {
    let mut c = Comparison {
        len: expected.len(),
        max_abs: 0.0,
        max_rel: 0.0,
        first_failure: None,
        failures: 0,
    };
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        if g.is_nan() || e.is_nan() {
            c.max_abs = f32::NAN;
        } else if g.is_finite() && e.is_finite() {
            let d = (g - e).abs();
            // f32::max ignores NaN, so once NaN is recorded it stays.
            if !c.max_abs.is_nan() {
                c.max_abs = c.max_abs.max(d);
            }
            if e != 0.0 {
                c.max_rel = c.max_rel.max(d / e.abs());
            }
        }
        if !tol.accepts(g, e) {
            c.failures += 1;
            if c.first_failure.is_none() {
                c.first_failure = Some((i, g, e));
            }
        }
    }
    if got.len() != expected.len() {
        let i = got.len().min(expected.len());
        c.failures += got.len().abs_diff(expected.len());
        if c.first_failure.is_none() {
            c.first_failure = Some((i, f32::NAN, expected.get(i).copied().unwrap_or(f32::NAN)));
        }
    }
    c
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator for test
/// and `verify` inputs, so that a failing seed can be replayed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        // 24 random bits: exactly representable in f32.
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// Uniform integer in `[0, n)` (`n > 0`; slightly biased for huge `n`, fine for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tolerance = Tolerance {
        abs: 1e-3,
        rel: 1e-2,
        reason: "test",
    };

    #[test]
    fn nan_never_passes_and_infinities_must_match() {
        assert!(!T.accepts(f32::NAN, f32::NAN));
        assert!(!T.accepts(1.0, f32::NAN));
        assert!(T.accepts(f32::NEG_INFINITY, f32::NEG_INFINITY));
        assert!(!T.accepts(-1e30, f32::NEG_INFINITY));
        assert!(T.accepts(100.5, 100.0));
        assert!(!T.accepts(102.0, 100.0));
    }

    #[test]
    fn compare_reports_first_failure_and_maxima() {
        let c = compare(&[1.0, 2.5, f32::NAN], &[1.0, 2.0, 3.0], &T);
        assert_eq!(c.failures, 2);
        assert_eq!(c.first_failure, Some((1, 2.5, 2.0)));
        assert!(c.max_abs.is_nan());
        assert!(!c.passed());
        let short = compare(&[1.0], &[1.0, 2.0], &T);
        assert_eq!(short.failures, 1);
    }

    #[test]
    fn stored_as_adds_one_rounding_for_16_bit() {
        let t = Tolerance::stored_as(T, DType::BF16);
        assert!((t.rel - (1e-2 * (1.0 + 3.90625e-3) + 3.90625e-3)).abs() < 1e-9);
        assert_eq!(Tolerance::stored_as(T, DType::F32).rel, 1e-2);
    }
}
