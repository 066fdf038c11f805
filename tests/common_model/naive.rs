//! An independent, deliberately naive Marian forward pass in f64, written
//! from the Hugging Face module structure (`MarianEncoderLayer`,
//! `MarianDecoderLayer`, `MarianMTModel.forward`) and reading tensors by
//! name: one sentence at a time, no cache, no padding. It is the oracle for
//! the wiring cases (D1 final_logits_bias, D2 one norm per sublayer, D4
//! positions) and for step-by-step / batch / full-pass comparisons.

use std::collections::BTreeMap;

type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;
type Mat = Vec<Vec<f64>>;

pub struct Naive<'a> {
    pub t: &'a Tensors,
    pub d: usize,
    pub heads: usize,
    pub vocab: usize,
    pub activation: &'a str,
    pub scale: f64,
    pub enc_layers: usize,
    pub dec_layers: usize,
}

impl<'a> Naive<'a> {
    fn w(&self, name: &str) -> &[f32] {
        &self
            .t
            .get(name)
            .unwrap_or_else(|| panic!("tensor {name}"))
            .1
    }

    fn linear(&self, x: &Mat, p: &str) -> Mat {
        let w = self.w(&format!("{p}.weight"));
        let b = self.w(&format!("{p}.bias"));
        let n = b.len();
        let k = w.len() / n;
        x.iter()
            .map(|row| {
                (0..n)
                    .map(|o| {
                        b[o] as f64 + (0..k).map(|i| row[i] * w[o * k + i] as f64).sum::<f64>()
                    })
                    .collect()
            })
            .collect()
    }

    fn norm(&self, x: &Mat, r: &Mat, p: &str) -> Mat {
        let g = self.w(&format!("{p}.weight"));
        let b = self.w(&format!("{p}.bias"));
        x.iter()
            .zip(r)
            .map(|(xr, rr)| {
                let h: Vec<f64> = xr.iter().zip(rr).map(|(a, b)| a + b).collect();
                let n = h.len() as f64;
                let mean = h.iter().sum::<f64>() / n;
                let var = h.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                h.iter()
                    .enumerate()
                    .map(|(i, v)| (v - mean) / (var + 1e-5).sqrt() * g[i] as f64 + b[i] as f64)
                    .collect()
            })
            .collect()
    }

    fn act(&self, x: f64) -> f64 {
        match self.activation {
            "relu" => x.max(0.0),
            "swish" | "silu" => x / (1.0 + (-x).exp()),
            "gelu" => 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt())),
            other => panic!("naive: activation {other}"),
        }
    }

    fn mha(&self, x: &Mat, mem: &Mat, p: &str, causal: bool) -> Mat {
        let q = self.linear(x, &format!("{p}.q_proj"));
        let k = self.linear(mem, &format!("{p}.k_proj"));
        let v = self.linear(mem, &format!("{p}.v_proj"));
        let hd = self.d / self.heads;
        let mut out = vec![vec![0.0; self.d]; x.len()];
        for h in 0..self.heads {
            for i in 0..x.len() {
                let visible = if causal { i + 1 } else { mem.len() };
                let s: Vec<f64> = (0..visible)
                    .map(|j| {
                        (0..hd)
                            .map(|c| q[i][h * hd + c] * k[j][h * hd + c])
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for (j, sj) in s.iter().enumerate() {
                    let p = (sj - m).exp() / z;
                    for c in 0..hd {
                        out[i][h * hd + c] += p * v[j][h * hd + c];
                    }
                }
            }
        }
        self.linear(&out, &format!("{p}.out_proj"))
    }

    fn ffn(&self, x: &Mat, p: &str) -> Mat {
        let h: Mat = self
            .linear(x, &format!("{p}.fc1"))
            .into_iter()
            .map(|r| r.into_iter().map(|v| self.act(v)).collect())
            .collect();
        self.linear(&h, &format!("{p}.fc2"))
    }

    /// Token embedding · scale + sinusoid (first half sin, second half cos).
    fn embed(&self, ids: &[u32]) -> Mat {
        let e = self.w("model.shared.weight");
        let d = self.d;
        ids.iter()
            .enumerate()
            .map(|(p, &id)| {
                (0..d)
                    .map(|j| {
                        let i = if j < d / 2 { j } else { j - d / 2 };
                        let angle = p as f64 / 10000f64.powf(2.0 * i as f64 / d as f64);
                        let pos = if j < d / 2 { angle.sin() } else { angle.cos() };
                        e[id as usize * d + j] as f64 * self.scale + pos
                    })
                    .collect()
            })
            .collect()
    }

    pub fn encode(&self, src: &[u32]) -> Mat {
        let mut h = self.embed(src);
        for l in 0..self.enc_layers {
            let p = format!("model.encoder.layers.{l}");
            let a = self.mha(&h, &h, &format!("{p}.self_attn"), false);
            h = self.norm(&a, &h, &format!("{p}.self_attn_layer_norm"));
            let f = self.ffn(&h, &p);
            h = self.norm(&f, &h, &format!("{p}.final_layer_norm"));
        }
        h
    }

    /// Logits `[dec.len(), vocab]` of a teacher-forced pass.
    pub fn logits(&self, src: &[u32], dec: &[u32]) -> Mat {
        let mem = self.encode(src);
        let mut h = self.embed(dec);
        for l in 0..self.dec_layers {
            let p = format!("model.decoder.layers.{l}");
            let a = self.mha(&h, &h, &format!("{p}.self_attn"), true);
            h = self.norm(&a, &h, &format!("{p}.self_attn_layer_norm"));
            let c = self.mha(&h, &mem, &format!("{p}.encoder_attn"), false);
            h = self.norm(&c, &h, &format!("{p}.encoder_attn_layer_norm"));
            let f = self.ffn(&h, &p);
            h = self.norm(&f, &h, &format!("{p}.final_layer_norm"));
        }
        let e = self.w("model.shared.weight");
        let bias = self
            .t
            .get("final_logits_bias")
            .map(|t| t.1.clone())
            .unwrap_or_else(|| vec![0.0; self.vocab]);
        h.iter()
            .map(|row| {
                (0..self.vocab)
                    .map(|v| {
                        bias[v] as f64
                            + (0..self.d)
                                .map(|c| row[c] * e[v * self.d + c] as f64)
                                .sum::<f64>()
                    })
                    .collect()
            })
            .collect()
    }
}

impl super::Tiny {
    pub fn naive<'a>(&'a self, t: &'a Tensors) -> Naive<'a> {
        Naive {
            t,
            d: self.d_model,
            heads: self.heads,
            vocab: self.vocab,
            activation: self.activation,
            scale: if self.scale_embedding {
                (self.d_model as f64).sqrt()
            } else {
                1.0
            },
            enc_layers: self.encoder_layers,
            dec_layers: self.decoder_layers,
        }
    }
}
