//! criterion: dtype conversion f32 -> dtype at the weight shapes. Shapes, byte counts and inputs are the op's
//! workload in `transformer_kernels::ops::convert` (shared with
//! `transformer-kernels bench`).

mod common;

fn main() {
    common::bench_op(&transformer_kernels::ops::convert::OP);
}
