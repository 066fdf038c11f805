//! criterion: residual + LayerNorm at tokens x 512 (and 16384 x 1024). Shapes, byte counts and inputs are the op's
//! workload in `transformer_kernels::ops::layer_norm` (shared with
//! `transformer-kernels bench`).

mod common;

fn main() {
    common::bench_op(&transformer_kernels::ops::layer_norm::OP);
}
