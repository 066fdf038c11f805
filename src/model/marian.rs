//! [`MarianModel`]: config + weights on a backend; the encoder, decoder and
//! search live in `encoder.rs`, `decoder.rs` and `search/`.

use std::path::Path;

use crate::activation::Activation;
use crate::error::Result;
use crate::model::backend::{AttnMask, Backend, Cols};
use crate::model::config::ModelConfig;
use crate::model::weights::{
    check_tensors, read_safetensors, FfnWeights, ModelWeights, NormWeights,
};

/// LayerNorm epsilon of every Marian norm (`nn.LayerNorm` default).
pub const LAYER_NORM_EPS: f32 = 1e-5;

/// A Marian / opus-mt encoder-decoder on backend `B`.
pub struct MarianModel<B: Backend> {
    pub(crate) backend: B,
    pub(crate) config: ModelConfig,
    pub(crate) weights: ModelWeights<B::Tensor>,
    pub(crate) activation: Activation,
}

impl<B: Backend> MarianModel<B> {
    /// Loads a Hugging Face Marian checkpoint directory onto `backend`:
    /// `config.json` (with MarianConfig defaults) and `model.safetensors`
    /// (f32, f16 or bf16), every tensor checked against the config first,
    /// then uploaded in its stored dtype (see [`Backend::upload`]). The
    /// caller picks the backend: `MarianModel::load(Cpu, dir)` for the CPU
    /// reference.
    ///
    /// Errors: [`crate::Error::Io`] / [`crate::Error::Json`] naming the file;
    /// [`crate::Error::Checkpoint`] naming the file for a corrupt or
    /// truncated safetensors file or tensors that do not match the config
    /// (all listed by name and shape in one message).
    pub fn load(backend: B, dir: &Path) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let path = dir.join("model.safetensors");
        let tensors = read_safetensors(&path)?;
        check_tensors(&path, &config, &tensors)?;
        let weights = ModelWeights::upload(&backend, &path, &config, tensors)?;
        let activation = config.activation()?;
        Ok(MarianModel {
            backend,
            config,
            weights,
            activation,
        })
    }

    /// The model's config.json.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// `x·Wᵀ + b` through a `(weight, bias)` pair.
    pub(crate) fn proj(
        &self,
        x: &B::Tensor,
        wb: &(B::Tensor, B::Tensor),
        act: Option<Activation>,
    ) -> Result<B::Tensor> {
        self.backend.linear(x, &wb.0, Some(&wb.1), act)
    }

    /// `LN(x + residual)` with the sublayer's own norm.
    pub(crate) fn add_norm(
        &self,
        x: &B::Tensor,
        residual: &B::Tensor,
        n: &NormWeights<B::Tensor>,
    ) -> Result<B::Tensor> {
        self.backend
            .layer_norm(x, Some(residual), &n.gamma, &n.beta, LAYER_NORM_EPS)
    }

    /// `fc2(act(fc1(x)))`.
    pub(crate) fn ffn(&self, x: &B::Tensor, w: &FfnWeights<B::Tensor>) -> Result<B::Tensor> {
        let h = self.proj(x, &w.fc1, Some(self.activation))?;
        self.proj(&h, &w.fc2, None)
    }

    /// `out_proj(attention(q, k, v))` for q, k and v given as column views
    /// (of the fused projections' outputs, or of the KV cache).
    #[allow(clippy::too_many_arguments)] // the attention call's natural parameters
    pub(crate) fn attend(
        &self,
        out_proj: &(B::Tensor, B::Tensor),
        q: Cols<'_, B::Tensor>,
        k: Cols<'_, B::Tensor>,
        v: Cols<'_, B::Tensor>,
        k_len: usize,
        heads: usize,
        mask: AttnMask<'_, B::Lengths>,
    ) -> Result<B::Tensor> {
        let head_dim = self.config.d_model / heads.max(1);
        // Marian / "Attention Is All You Need": scores scaled by head_dim^-0.5.
        let scale = (head_dim as f32).powf(-0.5);
        let a = self.backend.attention(q, k, v, k_len, heads, scale, mask)?;
        self.proj(&a, out_proj, None)
    }
}
