//! The embedded fatbins and the typed ids of the kernels in them.
//!
//! build.rs compiles each `kernels/<stem>.cu` into one fatbin (a CUDA module)
//! and embeds it here. A [`KernelId`] names one `extern "C"` symbol in one
//! module; symbols are static strings chosen by a `match`, never formatted at
//! run time.

use crate::DType;

#[cfg(tk_kernels_built)]
include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// `(stem, fatbin image, ptxas -v report)` for every compiled kernel file;
/// empty when the crate was built without nvcc.
#[cfg(not(tk_kernels_built))]
pub static FATBINS: &[(&str, &[u8], &str)] = &[];

/// Whether this build embeds compiled kernels (nvcc was found at build time).
pub const KERNELS_BUILT: bool = cfg!(tk_kernels_built);

/// The nvcc that compiled the embedded kernels (empty when none did); its
/// directory also holds `cuobjdump`, which the static checks use.
pub const NVCC_PATH: &str = env!("TK_NVCC_PATH");

/// A CUDA module: one `kernels/<stem>.cu` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    /// `kernels/convert.cu`: storage dtype conversion.
    Convert,
}

impl Module {
    /// Every module, in load order.
    pub const ALL: &'static [Module] = &[Module::Convert];

    /// The file stem, as in `FATBINS`.
    pub const fn stem(self) -> &'static str {
        match self {
            Module::Convert => "convert",
        }
    }
}

/// One kernel symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelId {
    /// `convert_<src>_to_<dst>` in `convert.cu`.
    Convert {
        /// Source storage dtype.
        src: DType,
        /// Destination storage dtype (different from `src`).
        dst: DType,
    },
}

impl KernelId {
    /// The module that holds this kernel.
    pub const fn module(self) -> Module {
        match self {
            KernelId::Convert { .. } => Module::Convert,
        }
    }

    /// The `extern "C"` symbol, or `None` for a combination that has no
    /// kernel (e.g. a conversion from a dtype to itself).
    pub const fn symbol(self) -> Option<&'static str> {
        use DType::*;
        match self {
            KernelId::Convert { src, dst } => match (src, dst) {
                (F32, F16) => Some("convert_f32_to_f16"),
                (F32, BF16) => Some("convert_f32_to_bf16"),
                (F16, F32) => Some("convert_f16_to_f32"),
                (F16, BF16) => Some("convert_f16_to_bf16"),
                (BF16, F32) => Some("convert_bf16_to_f32"),
                (BF16, F16) => Some("convert_bf16_to_f16"),
                (F32, F32) | (F16, F16) | (BF16, BF16) => None,
            },
        }
    }
}

/// The embedded fatbin of `module`, if this build has it.
pub fn fatbin(module: Module) -> Option<&'static [u8]> {
    FATBINS
        .iter()
        .find(|(stem, _, _)| *stem == module.stem())
        .map(|(_, image, _)| *image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_is_embedded_when_kernels_are_built() {
        if !KERNELS_BUILT {
            println!("skipped: kernels not built (no nvcc at build time)");
            return;
        }
        for m in Module::ALL {
            assert!(fatbin(*m).is_some(), "module {m:?} missing from FATBINS");
        }
        assert_eq!(
            FATBINS.len(),
            Module::ALL.len(),
            "a kernels/*.cu has no Module variant"
        );
    }
}
