//! criterion: bias + activation on the FFN's [tokens, 2048]. Shapes, byte counts and inputs are the op's
//! workload in `transformer_kernels::ops::bias_activation` (shared with
//! `transformer-kernels bench`).

mod common;

fn main() {
    common::bench_op(&transformer_kernels::ops::bias_activation::OP);
}
