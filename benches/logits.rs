//! criterion: the logits step (final_logits_bias, pad mask, log-softmax, top-k) on rows x 58101. Shapes, byte counts and inputs are the op's
//! workload in `transformer_kernels::ops::logits` (shared with
//! `transformer-kernels bench`).

mod common;

fn main() {
    common::bench_op(&transformer_kernels::ops::logits::OP);
}
