//! FFN activations by the names Hugging Face configs use for them
//! (`activation_function` in config.json, resolved by `transformers.activations.ACT2FN`).
//!
//! The vocabulary shared by the model's config, the `Backend` trait and the
//! kernels' ABI (`TkActivation` in `kernels/include/params.h`); the maths of
//! each activation is the reference's (`cpu::activation`) and the kernels'.

use crate::error::{Error, Result};

/// An element-wise activation of the feed-forward sublayer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `max(x, 0)` (`"relu"`).
    Relu,
    /// Exact GELU, `x · Φ(x) = 0.5·x·(1 + erf(x/√2))` (`"gelu"`, PyTorch default).
    Gelu,
    /// Tanh approximation of GELU,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (`"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`).
    GeluTanh,
    /// SiLU / swish, `x · sigmoid(x)` (`"swish"`, `"silu"`; opus-mt uses it).
    Swish,
}

impl Activation {
    /// Every `activation_function` name [`Activation::from_name`] accepts
    /// (Hugging Face `ACT2FN` names), listed in its error message.
    pub const NAMES: [&'static str; 7] = [
        "relu",
        "gelu",
        "gelu_new",
        "gelu_pytorch_tanh",
        "gelu_fast",
        "swish",
        "silu",
    ];

    /// Parses the `activation_function` string of a Hugging Face config.
    ///
    /// Errors: [`Error::InvalidArgument`] for a name this crate does not implement.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "relu" => Ok(Activation::Relu),
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "swish" | "silu" => Ok(Activation::Swish),
            other => Err(Error::invalid(
                "activation",
                format!(
                    "unsupported activation_function {other:?}; expected one of {}",
                    Self::NAMES.join(", ")
                ),
            )),
        }
    }
}
