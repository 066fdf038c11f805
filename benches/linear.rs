//! criterion: the linear layer (tensor-core GEMM + fused epilogue) at the
//! model's projections. Shapes, FLOP and byte counts and inputs are the
//! op's workload in `transformer_kernels::ops::linear` (shared with
//! `transformer-kernels bench`).

mod common;

fn main() {
    common::bench_op(&transformer_kernels::ops::linear::OP);
}
