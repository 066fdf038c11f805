//! The pinned toolchain directory that `scripts/setup-toolchain.sh` fills:
//! nvcc (`nvidia/cu13/bin/nvcc`, looked up by build/nvcc.rs) and libclang
//! (`clang/native`, for bindgen in build/params.rs).

use std::env;
use std::path::PathBuf;

/// `TK_TOOLCHAIN_DIR`, else `$HOME/.cache/transformer-kernels/toolchain`.
pub fn dir() -> Option<PathBuf> {
    if let Ok(d) = env::var("TK_TOOLCHAIN_DIR") {
        return Some(PathBuf::from(d));
    }
    env::var("HOME")
        .ok()
        .map(|h| PathBuf::from(h).join(".cache/transformer-kernels/toolchain"))
}
