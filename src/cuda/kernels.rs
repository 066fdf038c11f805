//! The embedded fatbins: one CUDA module per `kernels/<stem>.cu`.
//!
//! build.rs compiles each kernel file into one fatbin and embeds it here;
//! the device loads every one. Which symbols each module holds, and which
//! variant of an op uses which symbol, is the op's own business (its file
//! under `src/cuda/`); the list of ops is `crate::ops::REGISTRY`.

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

/// The embedded fatbin of the module `stem`, if this build has it.
pub fn fatbin(stem: &str) -> Option<&'static [u8]> {
    FATBINS
        .iter()
        .find(|(s, _, _)| *s == stem)
        .map(|(_, image, _)| *image)
}
