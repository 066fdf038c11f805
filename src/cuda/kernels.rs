//! The embedded fatbins and the typed ids of the kernels in them.
//!
//! build.rs compiles each `kernels/<stem>.cu` into one fatbin (a CUDA module)
//! and embeds it here. A [`KernelId`] names one `extern "C"` symbol in one
//! module; symbols are static strings chosen by a `match`, never formatted at
//! run time.

use crate::activation::Activation;
use crate::DType;

#[cfg(tk_kernels_built)]
include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// `(stem, fatbin image, ptxas -v report)` for every compiled kernel file;
/// empty when the crate was built without nvcc.
#[cfg(not(tk_kernels_built))]
pub static FATBINS: &[(&str, &[u8], &str)] = &[];

/// Whether this build embeds compiled kernels (nvcc was found at build time).
pub const KERNELS_BUILT: bool = cfg!(tk_kernels_built);

/// The nvcc that compiled the embedded kernels (empty when none did); its
/// directory also holds `cuobjdump`, which the static checks use.
pub const NVCC_PATH: &str = env!("TK_NVCC_PATH");

/// A CUDA module: one `kernels/<stem>.cu` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    /// `kernels/convert.cu`: storage dtype conversion.
    Convert,
    /// `kernels/layer_norm.cu`: residual add + LayerNorm.
    LayerNorm,
    /// `kernels/embedding.cu`: token gather * scale + sinusoidal positions.
    Embedding,
    /// `kernels/logits.cu`: final_logits_bias, pad mask, log-softmax, top-k.
    Logits,
    /// `kernels/bias_activation.cu`: bias add + activation.
    BiasActivation,
}

impl Module {
    /// Every module, in load order.
    pub const ALL: &'static [Module] = &[
        Module::Convert,
        Module::LayerNorm,
        Module::Embedding,
        Module::Logits,
        Module::BiasActivation,
    ];

    /// The file stem, as in `FATBINS`.
    pub const fn stem(self) -> &'static str {
        match self {
            Module::Convert => "convert",
            Module::LayerNorm => "layer_norm",
            Module::Embedding => "embedding",
            Module::Logits => "logits",
            Module::BiasActivation => "bias_activation",
        }
    }
}

/// One kernel symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelId {
    /// `convert_<src>_to_<dst>` in `convert.cu`.
    Convert {
        /// Source storage dtype.
        src: DType,
        /// Destination storage dtype (different from `src`).
        dst: DType,
    },
    /// `layer_norm_residual_<variant>_<dtype>` in `layer_norm.cu`.
    LayerNorm {
        /// Row-to-threads mapping, chosen from the hidden size.
        variant: LayerNormVariant,
        /// Storage dtype of x, residual, gamma, beta and out.
        dtype: DType,
    },
    /// `embedding_<dtype>` in `embedding.cu`.
    Embedding {
        /// Storage dtype of the table and the output.
        dtype: DType,
    },
    /// `logits_topk<K>_<dtype>` in `logits.cu`.
    Logits {
        /// Compile-time maximum of k.
        max_k: TopKWidth,
        /// Storage dtype of the logits and final_logits_bias.
        dtype: DType,
    },
    /// `bias_activation_<act>_<dtype>` in `bias_activation.cu`.
    BiasActivation {
        /// The activation.
        act: Activation,
        /// Storage dtype of x, bias and out.
        dtype: DType,
    },
}

/// The two LayerNorm kernels: a row per warp or a row per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerNormVariant {
    /// One warp per row, 4 rows per block: hidden <= [`LayerNormVariant::WARP_MAX_HIDDEN`].
    Warp,
    /// One 256-thread block per row: hidden <= [`LayerNormVariant::BLOCK_MAX_HIDDEN`].
    Block,
}

impl LayerNormVariant {
    /// Largest hidden size of the warp-per-row kernel (32 lanes x 32 registers).
    pub const WARP_MAX_HIDDEN: usize = 1024;
    /// Largest hidden size of the block-per-row kernel (256 threads x 32 registers).
    pub const BLOCK_MAX_HIDDEN: usize = 8192;

    /// The variant for rows of `hidden` elements, or `None` when `hidden`
    /// is 0 or above [`LayerNormVariant::BLOCK_MAX_HIDDEN`].
    pub const fn for_hidden(hidden: usize) -> Option<Self> {
        if hidden == 0 {
            None
        } else if hidden <= Self::WARP_MAX_HIDDEN {
            Some(LayerNormVariant::Warp)
        } else if hidden <= Self::BLOCK_MAX_HIDDEN {
            Some(LayerNormVariant::Block)
        } else {
            None
        }
    }
}

/// Compile-time maximum of k of a `logits.cu` kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopKWidth {
    /// k = 1: greedy argmax.
    K1,
    /// k <= 8 (beam search up to 4 beams).
    K8,
    /// k <= 32 (beam search up to 16 beams).
    K32,
}

impl TopKWidth {
    /// Largest k any logits kernel takes.
    pub const MAX_K: usize = 32;

    /// The narrowest width that holds `k`, or `None` for k = 0 or k > [`TopKWidth::MAX_K`].
    pub const fn for_k(k: usize) -> Option<Self> {
        match k {
            1 => Some(TopKWidth::K1),
            2..=8 => Some(TopKWidth::K8),
            9..=32 => Some(TopKWidth::K32),
            _ => None,
        }
    }
}

impl KernelId {
    /// Every kernel id (including the dtype-to-itself conversions, which
    /// have no symbol), so that tests can check each against the fatbins.
    pub fn all() -> Vec<KernelId> {
        let mut v = Vec::new();
        for src in DType::ALL {
            for dst in DType::ALL {
                v.push(KernelId::Convert { src, dst });
            }
        }
        for dtype in DType::ALL {
            for variant in [LayerNormVariant::Warp, LayerNormVariant::Block] {
                v.push(KernelId::LayerNorm { variant, dtype });
            }
            v.push(KernelId::Embedding { dtype });
            for max_k in [TopKWidth::K1, TopKWidth::K8, TopKWidth::K32] {
                v.push(KernelId::Logits { max_k, dtype });
            }
            for act in [
                Activation::Relu,
                Activation::Gelu,
                Activation::GeluTanh,
                Activation::Swish,
            ] {
                v.push(KernelId::BiasActivation { act, dtype });
            }
        }
        v
    }

    /// The module that holds this kernel.
    pub const fn module(self) -> Module {
        match self {
            KernelId::Convert { .. } => Module::Convert,
            KernelId::LayerNorm { .. } => Module::LayerNorm,
            KernelId::Embedding { .. } => Module::Embedding,
            KernelId::Logits { .. } => Module::Logits,
            KernelId::BiasActivation { .. } => Module::BiasActivation,
        }
    }

    /// The `extern "C"` symbol, or `None` for a combination that has no
    /// kernel (e.g. a conversion from a dtype to itself).
    pub const fn symbol(self) -> Option<&'static str> {
        use DType::*;
        match self {
            KernelId::Convert { src, dst } => match (src, dst) {
                (F32, F16) => Some("convert_f32_to_f16"),
                (F32, BF16) => Some("convert_f32_to_bf16"),
                (F16, F32) => Some("convert_f16_to_f32"),
                (F16, BF16) => Some("convert_f16_to_bf16"),
                (BF16, F32) => Some("convert_bf16_to_f32"),
                (BF16, F16) => Some("convert_bf16_to_f16"),
                (F32, F32) | (F16, F16) | (BF16, BF16) => None,
            },
            KernelId::LayerNorm { variant, dtype } => Some(match (variant, dtype) {
                (LayerNormVariant::Warp, F32) => "layer_norm_residual_warp_f32",
                (LayerNormVariant::Warp, F16) => "layer_norm_residual_warp_f16",
                (LayerNormVariant::Warp, BF16) => "layer_norm_residual_warp_bf16",
                (LayerNormVariant::Block, F32) => "layer_norm_residual_block_f32",
                (LayerNormVariant::Block, F16) => "layer_norm_residual_block_f16",
                (LayerNormVariant::Block, BF16) => "layer_norm_residual_block_bf16",
            }),
            KernelId::Embedding { dtype } => Some(match dtype {
                F32 => "embedding_f32",
                F16 => "embedding_f16",
                BF16 => "embedding_bf16",
            }),
            KernelId::Logits { max_k, dtype } => Some(match (max_k, dtype) {
                (TopKWidth::K1, F32) => "logits_topk1_f32",
                (TopKWidth::K1, F16) => "logits_topk1_f16",
                (TopKWidth::K1, BF16) => "logits_topk1_bf16",
                (TopKWidth::K8, F32) => "logits_topk8_f32",
                (TopKWidth::K8, F16) => "logits_topk8_f16",
                (TopKWidth::K8, BF16) => "logits_topk8_bf16",
                (TopKWidth::K32, F32) => "logits_topk32_f32",
                (TopKWidth::K32, F16) => "logits_topk32_f16",
                (TopKWidth::K32, BF16) => "logits_topk32_bf16",
            }),
            KernelId::BiasActivation { act, dtype } => {
                use Activation::*;
                Some(match (act, dtype) {
                    (Relu, F32) => "bias_activation_relu_f32",
                    (Relu, F16) => "bias_activation_relu_f16",
                    (Relu, BF16) => "bias_activation_relu_bf16",
                    (Gelu, F32) => "bias_activation_gelu_f32",
                    (Gelu, F16) => "bias_activation_gelu_f16",
                    (Gelu, BF16) => "bias_activation_gelu_bf16",
                    (GeluTanh, F32) => "bias_activation_gelu_tanh_f32",
                    (GeluTanh, F16) => "bias_activation_gelu_tanh_f16",
                    (GeluTanh, BF16) => "bias_activation_gelu_tanh_bf16",
                    (Swish, F32) => "bias_activation_swish_f32",
                    (Swish, F16) => "bias_activation_swish_f16",
                    (Swish, BF16) => "bias_activation_swish_bf16",
                })
            }
        }
    }
}

/// The embedded fatbin of `module`, if this build has it.
pub fn fatbin(module: Module) -> Option<&'static [u8]> {
    FATBINS
        .iter()
        .find(|(stem, _, _)| *stem == module.stem())
        .map(|(_, image, _)| *image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_is_embedded_when_kernels_are_built() {
        if !KERNELS_BUILT {
            println!("skipped: kernels not built (no nvcc at build time)");
            return;
        }
        for m in Module::ALL {
            assert!(fatbin(*m).is_some(), "module {m:?} missing from FATBINS");
        }
        assert_eq!(
            FATBINS.len(),
            Module::ALL.len(),
            "a kernels/*.cu has no Module variant"
        );
    }
}
