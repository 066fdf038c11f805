//! Build script: compiles `kernels/*.cu` to fatbins with nvcc, generates the
//! Rust twin of `kernels/include/params.h` with bindgen, and embeds the demo
//! model. One module per job, under `build/`:
//! - `build/nvcc.rs`: finds nvcc, compiles each kernel file to
//!   `<stem>.fatbin` + `<stem>.ptxas.txt`, writes `kernels.rs` (the fatbin
//!   table `include!`d by src/cuda/kernels.rs);
//! - `build/params.rs`: bindgen of params.h to `params.rs` (`include!`d by
//!   src/cuda/params.rs), the checked-in snapshot and its staleness check;
//! - `build/demo_model.rs`: `demo_model.rs` (`include!`d by
//!   src/cli/demo_model.rs);
//! - `build/emu.rs`: the same kernel sources as host C++ (the SIMT
//!   emulator's twins) + the emulator runtime, `libtk_emu.a` and
//!   `emu_kernels.rs` (`include!`d by src/cuda/runtime/emu.rs);
//! - `build/toolchain.rs`: the pinned toolchain directory both nvcc and
//!   libclang are looked up in.
//!
//! Without nvcc the build succeeds with one warning and an empty fatbin table
//! (the CUDA backend then returns `Error::KernelsNotBuilt`). Without libclang
//! the checked-in snapshot `kernels/include/params_snapshot.rs` is used. With
//! `TK_REQUIRE_KERNELS=1` either absence is a build error, and so is a
//! snapshot that no longer matches params.h (`TK_BLESS_PARAMS=1` rewrites it).

use std::env;
use std::path::PathBuf;

#[path = "build/demo_model.rs"]
mod demo_model;
#[path = "build/emu.rs"]
mod emu;
#[path = "build/nvcc.rs"]
mod nvcc;
#[path = "build/params.rs"]
mod params;
#[path = "build/toolchain.rs"]
mod toolchain;

/// Every environment variable the build reads (directly or through bindgen).
const ENV_VARS: &[&str] = &[
    "NVCC",
    "CUDA_HOME",
    "CUDA_PATH",
    "PATH",
    "TK_TOOLCHAIN_DIR",
    "TK_CUDA_ARCHS",
    "TK_REQUIRE_KERNELS",
    "TK_BLESS_PARAMS",
    "TK_NVCC_FLAGS",
    "LIBCLANG_PATH",
    "HOME",
    "CXX",
];

fn main() {
    for v in ENV_VARS {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rustc-check-cfg=cfg(tk_kernels_built)");

    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let require = env::var("TK_REQUIRE_KERNELS").is_ok_and(|v| v == "1");
    let kernel_dir = manifest.join("kernels");

    nvcc::watch_kernels(&kernel_dir);
    let nvcc = nvcc::find();
    // Without nvcc the snapshot is the expected path: no second warning.
    params::generate(&manifest, &out, require, nvcc.is_some());
    nvcc::build(nvcc.as_deref(), &kernel_dir, &out, require);
    emu::build(nvcc.as_deref(), &kernel_dir, &out, require);
    demo_model::embed(&manifest, &out);
}
