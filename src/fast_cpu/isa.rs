//! The vector instruction set the fast CPU backend runs with, detected once
//! per process, and [`multiversion!`], which compiles one portable function
//! body for each of them.
//!
//! Every path computes the same function: the GEMM is the same sequence of
//! fused multiply-adds per output element on every path (so its results are
//! bit-identical across paths), and the element-wise maths uses `mul_add`
//! everywhere. The portable path calls `f32::mul_add`, which is a hardware
//! FMA on aarch64 and on every x86-64 CPU with FMA (Haswell, 2013, and
//! later), and a slow but exact software fused multiply-add elsewhere.

use std::sync::OnceLock;

/// A vector instruction set of the fast CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, auto-vectorised for the compile target (any CPU).
    Portable,
    /// x86-64 AVX2 + FMA: 8-lane f32 vectors, 16 registers.
    Avx2,
    /// x86-64 AVX-512F (+VL): 16-lane f32 vectors, 32 registers.
    Avx512,
}

impl Isa {
    /// The best instruction set this CPU supports, detected once
    /// (`TK_CPU_ISA=portable|avx2|avx512` caps it, for tests and
    /// benchmarks; a value above what the CPU has is ignored).
    pub fn detected() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let cap = match std::env::var("TK_CPU_ISA").as_deref() {
                Ok("portable") => Isa::Portable,
                Ok("avx2") => Isa::Avx2,
                _ => Isa::Avx512,
            };
            Isa::supported()
                .into_iter()
                .filter(|&i| i <= cap)
                .max()
                .unwrap_or(Isa::Portable)
        })
    }

    /// Whether this CPU can run `self` (detected once).
    pub fn is_supported(self) -> bool {
        static BEST: OnceLock<Isa> = OnceLock::new();
        self <= *BEST.get_or_init(|| Isa::supported().into_iter().max().unwrap_or(Isa::Portable))
    }

    /// Every instruction set this CPU can run, `Portable` first.
    pub fn supported() -> Vec<Isa> {
        let mut out = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                out.push(Isa::Avx2);
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
                    out.push(Isa::Avx512);
                }
            }
        }
        out
    }

    /// Lower-case name (`portable`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// Defines `fn name(args) -> ret` whose body is compiled three times (for
/// AVX-512, for AVX2 + FMA and portable) and dispatched on
/// [`Isa::detected`]; the body is plain Rust that the compiler vectorises
/// for each target. The variants compute the same function (see the module
/// docs).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match $crate::fast_cpu::isa::Isa::detected() {
                    // SAFETY: `Isa::detected` only returns an instruction
                    // set the CPU supports, the sole requirement of these
                    // target_feature functions.
                    $crate::fast_cpu::isa::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::fast_cpu::isa::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::fast_cpu::isa::Isa::Portable => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;
