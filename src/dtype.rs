//! Storage dtypes and the element trait over `f32`, `half::f16` and `half::bf16`.
//!
//! Storage may be 16-bit; arithmetic (statistics, softmax, accumulation) is
//! always f32, on the CPU reference and in the kernels alike.

use half::{bf16, f16};

/// A tensor's storage dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE-754 binary32.
    F32,
    /// IEEE-754 binary16 (`half::f16`, CUDA `__half`).
    F16,
    /// bfloat16 (`half::bf16`, CUDA `__nv_bfloat16`).
    BF16,
}

impl DType {
    /// Every dtype, for tests and benches that run one body per dtype.
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The short lower-case name used in kernel symbols and bench ids
    /// (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }

    /// Unit roundoff (half the machine epsilon) of the storage format:
    /// the relative error of one rounding to this dtype.
    pub fn unit_roundoff(self) -> f32 {
        match self {
            DType::F32 => f32::EPSILON / 2.0,
            DType::F16 => 4.8828125e-4, // 2^-11
            DType::BF16 => 3.90625e-3,  // 2^-8
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(DType::F32),
            "f16" | "float16" | "half" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            other => Err(crate::Error::invalid(
                "dtype",
                format!("unknown dtype {other:?}; expected f32, f16 or bf16"),
            )),
        }
    }
}

/// A storage element: one of `f32`, `f16`, `bf16`, convertible to and from f32.
pub trait Element:
    Copy + Default + Send + Sync + std::fmt::Debug + PartialEq + bytemuck::Pod + 'static
{
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// Rounds an f32 to this type (round to nearest even).
    fn from_f32(x: f32) -> Self;
    /// Widens to f32 (exact).
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact_for_representable_values() {
        for x in [0.0f32, 1.0, -2.5, 65504.0, 0.099_975_586] {
            assert_eq!(f16::from_f32(x).to_f32(), x);
        }
        assert_eq!(<bf16 as Element>::from_f32(1.5).to_f32(), 1.5);
    }

    #[test]
    fn parse_names() {
        assert_eq!("bf16".parse::<DType>().unwrap(), DType::BF16);
        assert!("int8".parse::<DType>().is_err());
    }
}
