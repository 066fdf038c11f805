//! Vectorised f32 maths of the fast CPU backend: `exp`, the FFN
//! activations and LayerNorm, written lane-wise over fixed chunks so that
//! the compiler vectorises them for each instruction set ([`multiversion!`]).
//!
//! `exp` is Cephes' `expf` (range reduction `x = n·ln2 + r`, `|r| <= ln2/2`,
//! a degree-7 polynomial, `2^n` from the exponent bits): within 2 ulp of
//! the correctly rounded value on the range that matters here, exactly 0
//! below -87.34 (so `exp(-inf) = 0`) and `+inf` above 88.376. The
//! activations and LayerNorm are checked against the f64 reference
//! (`cpu::activation`, `cpu::layer_norm`) within the named tolerances of
//! their tests.

use super::isa::multiversion;
use crate::activation::Activation;

/// Lanes of one chunk (a 512-bit vector; two 256-bit ones on AVX2).
pub const LANES: usize = 16;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a high part exact in few bits and the rest (Cephes).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below: `exp` is 0 (the smallest normal is `exp(-87.3365)`).
const EXP_LO: f32 = -87.336_55;
/// Above: `exp` is `+inf`. `2^n` is built from exponent bits, so `n`
/// stops at 127: the sliver `88.3763 < x <= 88.7228` (where `e^x` is
/// still a finite f32 near its maximum) also gives `+inf`, harmless for a
/// softmax (`x - max <= 0`), swish and tanh.
const EXP_HI: f32 = 88.376_26;
/// 1.5·2^23: adding it rounds an f32 of magnitude < 2^22 to an integer,
/// which then sits in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` in f32 (see the module docs); NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(EXP_LO, EXP_HI);
    let t = xc.mul_add(LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let n_bits = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = n.mul_add(-LN2_HI, xc);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 5e-1);
    let e = (p * r).mul_add(r, r) + 1.0;
    let scale = f32::from_bits((n_bits.wrapping_add(127) << 23) as u32);
    let y = e * scale;
    if x < EXP_LO {
        0.0
    } else if x > EXP_HI {
        f32::INFINITY
    } else {
        y
    }
}

/// `x · sigmoid(x)` = `x / (1 + e^-x)` in f32.
#[inline(always)]
pub fn swish(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `tanh(y)` = `1 - 2 / (e^{2y} + 1)` in f32 (exact limits ±1, NaN for NaN).
#[inline(always)]
fn tanh(y: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * y) + 1.0)
}

/// `erf(x)` in f32: Numerical Recipes' `erfc` Chebyshev fit (fractional
/// error < 1.2e-7), `erfc(z) = t·exp(-z² + P(t))`, `t = 1 / (1 + z/2)`.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / z.mul_add(0.5, 1.0);
    let mut p = 0.170_872_77f32;
    for c in [
        -0.822_152_2,
        1.488_515_9,
        -1.135_204,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_7,
        -1.265_512_2,
    ] {
        p = p.mul_add(t, c);
    }
    let erfc = t * exp(p - z * z);
    let e = 1.0 - erfc;
    if x < 0.0 {
        -e
    } else {
        e
    }
}

/// The activation of one value in f32 (the same formulas as
/// [`Activation::eval_f64`], with the f32 `exp` / `erf` above).
#[inline(always)]
pub fn activation(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Relu => x.max(0.0),
        Activation::Swish => swish(x),
        Activation::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::GeluTanh => {
            const C: f32 = 0.797_884_6; // sqrt(2/pi)
            0.5 * x * (1.0 + tanh(C * (x + 0.044715 * x * x * x)))
        }
    }
}

multiversion! {
    /// Applies `act` to every element of `x` in place (f32, vectorised).
    pub fn activation_in_place(act: Activation, x: &mut [f32]) {
        match act {
            Activation::Relu => x.iter_mut().for_each(|v| *v = activation(Activation::Relu, *v)),
            Activation::Swish => x.iter_mut().for_each(|v| *v = swish(*v)),
            Activation::Gelu => x.iter_mut().for_each(|v| *v = activation(Activation::Gelu, *v)),
            Activation::GeluTanh => {
                x.iter_mut().for_each(|v| *v = activation(Activation::GeluTanh, *v))
            }
        }
    }
}

multiversion! {
    /// `Σ x` in f32 with [`LANES`] partial sums (fixed order).
    pub fn sum(x: &[f32]) -> f32 {
        sum_inline(x)
    }
}

multiversion! {
    /// `Σ a·b` in f32 (FMA, [`LANES`] partial sums, fixed order) over the
    /// common length.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_inline(a, b)
    }
}

/// [`dot`]'s body, inlined into the caller's instruction set.
#[inline(always)]
pub fn dot_inline(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (ca, ra) = a[..n].as_chunks::<LANES>();
    let (cb, rb) = b[..n].as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..LANES {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    for (l, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        acc[l] = x.mul_add(y, acc[l]);
    }
    reduce(acc)
}

/// The fixed pairwise reduction of [`LANES`] partial sums.
#[inline(always)]
pub(crate) fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            acc[l] += acc[l + w];
        }
        w /= 2;
    }
    acc[0]
}

multiversion! {
    /// `LN(x + residual) · gamma + beta` of one row, in place on `x`
    /// (`residual`, `gamma`, `beta` as long as `x`): two-pass statistics
    /// in f32 (mean, then the mean of the centred squares; biased
    /// variance, as `nn.LayerNorm`).
    pub fn layer_norm_row(x: &mut [f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32) {
        if let Some(r) = residual {
            for (v, &r) in x.iter_mut().zip(r) {
                *v += r;
            }
        }
        let n = x.len() as f32;
        let mean = sum_inline(x) / n;
        let mut acc = [0.0f32; LANES];
        let (chunks, rest) = x.as_chunks::<LANES>();
        for c in chunks {
            for l in 0..LANES {
                let d = c[l] - mean;
                acc[l] = d.mul_add(d, acc[l]);
            }
        }
        for (l, &v) in rest.iter().enumerate() {
            let d = v - mean;
            acc[l] = d.mul_add(d, acc[l]);
        }
        let var = reduce(acc) / n;
        let inv_std = 1.0 / (var + eps).sqrt();
        for ((v, &g), &b) in x.iter_mut().zip(gamma).zip(beta) {
            *v = ((*v - mean) * inv_std).mul_add(g, b);
        }
    }
}

/// [`sum`]'s body, inlined into the caller's instruction set.
#[inline(always)]
fn sum_inline(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (chunks, rest) = x.as_chunks::<LANES>();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        acc[l] += v;
    }
    reduce(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite f32 of one sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_2_ulp_and_has_the_right_limits() {
        let mut x = -87.0f32;
        while x < 88.3 {
            let want = f64::from(x).exp() as f32;
            assert!(ulps(exp(x), want) <= 2, "exp({x}) = {} vs {want}", exp(x));
            x += 0.0137;
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn activations_match_the_f64_reference() {
        // The tolerance every f32 activation kernel is held to
        // (cuda::bias_activation::tolerance, on |x| <= 8), then the limits.
        for act in [
            Activation::Relu,
            Activation::Swish,
            Activation::Gelu,
            Activation::GeluTanh,
        ] {
            let tol = crate::cuda::bias_activation::tolerance(act, crate::DType::F32);
            let mut xs: Vec<f32> = (-800..=800).map(|i| i as f32 * 0.01).collect();
            xs.extend([1e-30, -1e-30, 0.0]);
            let mut got = xs.clone();
            activation_in_place(act, &mut got);
            for (&x, &g) in xs.iter().zip(&got) {
                let want = act.eval_f64(f64::from(x)) as f32;
                assert!(
                    tol.accepts(g, want),
                    "{act:?}({x}) = {g} vs {want} ({})",
                    tol.reason
                );
            }
            let mut big = [-100.0f32, 100.0];
            activation_in_place(act, &mut big);
            assert_eq!(big[0], 0.0, "{act:?}(-100)");
            assert_eq!(big[1], 100.0, "{act:?}(100)");
        }
    }

    #[test]
    fn layer_norm_row_matches_the_f64_reference() {
        let mut seed = 7u64;
        let mut rand = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for n in [1, 3, 16, 17, 192, 513] {
            // A large mean: the two-pass variance must not cancel.
            let x: Vec<f32> = (0..n).map(|_| 1000.0 + rand()).collect();
            let r: Vec<f32> = (0..n).map(|_| rand()).collect();
            let g: Vec<f32> = (0..n).map(|_| 1.0 + rand()).collect();
            let b: Vec<f32> = (0..n).map(|_| rand()).collect();
            let want = crate::cpu::layer_norm::layer_norm(&x, Some(&r), &g, &b, n, 1e-5).unwrap();
            let mut got = x.clone();
            layer_norm_row(&mut got, Some(&r), &g, &b, 1e-5);
            for (g, w) in got.iter().zip(&want) {
                // Named tolerance: f32 statistics of values near 1000
                // carry ~1e-4 absolute error into the centred values.
                assert!((g - w).abs() <= 2e-3, "n {n}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn dot_and_sum_match_f64() {
        let a: Vec<f32> = (0..77).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..77).map(|i| (i as f32 * 0.11).cos()).collect();
        let want: f64 = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-5);
        let want: f64 = a.iter().map(|&x| f64::from(x)).sum();
        assert!((f64::from(sum(&a)) - want).abs() < 1e-5);
    }
}
