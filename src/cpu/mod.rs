//! The CPU reference: one file per op, f32 arithmetic, plain loops.
pub mod convert;
