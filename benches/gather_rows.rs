//! criterion: row gather (the KV cache's beam reorder) at batch 32 × 4
//! beams of opus-mt. Shapes, byte counts and inputs are the op's workload in
//! `transformer_kernels::ops::gather_rows` (shared with
//! `transformer-kernels bench`).

mod common;

fn main() {
    common::bench_op(&transformer_kernels::ops::gather_rows::OP);
}
