//! criterion: embedding + sinusoidal positions at tokens x 512 from the 58101-row table. Shapes, byte counts and inputs are the op's
//! workload in `transformer_kernels::ops::embedding` (shared with
//! `transformer-kernels bench`).

mod common;

fn main() {
    common::bench_op(&transformer_kernels::ops::embedding::OP);
}
