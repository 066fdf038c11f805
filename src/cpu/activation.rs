//! The reference maths of each [`Activation`]: f64, rounded to f32.

use crate::activation::Activation;

impl Activation {
    /// The activation of one value, computed in f64 and rounded to f32.
    pub fn eval(self, x: f32) -> f32 {
        self.eval_f64(f64::from(x)) as f32
    }

    /// The activation of one value in f64 (the f64 references of the
    /// fused kernels' tests).
    pub fn eval_f64(self, x: f64) -> f64 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Activation::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Activation::Swish => x / (1.0 + (-x).exp()),
        }
    }
}

/// Applies `act` element-wise, returning a new vector of the same length.
pub fn apply(act: Activation, x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| act.eval(v)).collect()
}

/// Applies `act` element-wise in place.
pub fn apply_in_place(act: Activation, x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = act.eval(*v);
    }
}
