//! criterion: fused attention at translation, long and decode shapes.
//! Shapes, FLOP and byte counts and inputs are the op's workload in
//! `transformer_kernels::ops::attention` (shared with `transformer-kernels
//! bench`).

mod common;

fn main() {
    common::bench_op(&transformer_kernels::ops::attention::OP);
}
