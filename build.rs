//! Build script: compiles `kernels/*.cu` to fatbins with nvcc and generates
//! the Rust twin of `kernels/include/params.h` with bindgen.
//!
//! Outputs in OUT_DIR:
//! - `<stem>.fatbin`: SASS for every arch in `TK_CUDA_ARCHS` (default
//!   `sm_80,sm_90a`) plus PTX for the lowest arch (JIT for future GPUs);
//! - `<stem>.ptxas.txt`: the ptxas resource report (`-Xptxas -v`), read by
//!   `tests/kernel_static_checks.rs` (spills) and by people;
//! - `kernels.rs`: the embedded fatbin table (`include!`d by src/cuda/kernels.rs);
//! - `params.rs`: bindgen output for params.h (`include!`d by src/cuda/params.rs).
//!
//! Without nvcc the build succeeds with one warning and an empty fatbin table
//! (the CUDA backend then returns `Error::KernelsNotBuilt`). Without libclang
//! the checked-in snapshot `kernels/include/params_snapshot.rs` is used. With
//! `TK_REQUIRE_KERNELS=1` either absence is a build error, and so is a
//! snapshot that no longer matches params.h (`TK_BLESS_PARAMS=1` rewrites it).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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
];

fn main() {
    for v in ENV_VARS {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rustc-check-cfg=cfg(tk_kernels_built)");

    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let require = env::var("TK_REQUIRE_KERNELS").is_ok_and(|v| v == "1");
    let kernel_dir = manifest.join("kernels");

    let sources = kernel_sources(&kernel_dir);
    for f in walk(&kernel_dir) {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let nvcc = find_nvcc();
    // Without nvcc the snapshot is the expected path: no second warning.
    generate_params(&manifest, &out, require, nvcc.is_some());

    let table = match nvcc {
        Some(nvcc) => {
            println!("cargo:rustc-cfg=tk_kernels_built");
            println!("cargo:rustc-env=TK_NVCC_PATH={}", nvcc.display());
            compile_all(&nvcc, &kernel_dir, &sources, &out)
        }
        None => {
            let msg = "nvcc not found (looked at $NVCC, $CUDA_HOME/bin, $CUDA_PATH/bin, $PATH and \
                       the toolchain dir); the CUDA kernels are NOT built and the CUDA backend will \
                       return Error::KernelsNotBuilt. Run scripts/setup-toolchain.sh (installs nvcc \
                       13.0 from the Python package index) and rebuild.";
            if require {
                panic!("TK_REQUIRE_KERNELS=1: {msg}");
            }
            println!("cargo:warning={msg}");
            println!("cargo:rustc-env=TK_NVCC_PATH=");
            Vec::new()
        }
    };
    write_table(&out, &table);
}

/// `kernels/*.cu`, sorted so the build is deterministic.
fn kernel_sources(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "cu"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every file under `dir`, for rerun-if-changed.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    files
}

fn toolchain_dir() -> Option<PathBuf> {
    if let Ok(d) = env::var("TK_TOOLCHAIN_DIR") {
        return Some(PathBuf::from(d));
    }
    env::var("HOME")
        .ok()
        .map(|h| PathBuf::from(h).join(".cache/transformer-kernels/toolchain"))
}

/// nvcc in this order: `NVCC`, `CUDA_HOME`/`CUDA_PATH`, `PATH`, the toolchain dir.
fn find_nvcc() -> Option<PathBuf> {
    if let Ok(p) = env::var("NVCC") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        println!(
            "cargo:warning=NVCC={} is not a file; looking elsewhere",
            p.display()
        );
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Ok(home) = env::var(var) {
            let p = PathBuf::from(home).join("bin/nvcc");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    if let Ok(path) = env::var("PATH") {
        for dir in env::split_paths(&path) {
            let p = dir.join("nvcc");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let p = toolchain_dir()?.join("nvidia/cu13/bin/nvcc");
    p.is_file().then_some(p)
}

/// `TK_CUDA_ARCHS` (comma-separated `sm_XY[a]`), default `sm_80,sm_90a`.
fn archs() -> Vec<String> {
    let s = env::var("TK_CUDA_ARCHS").unwrap_or_else(|_| "sm_80,sm_90a".to_string());
    let v: Vec<String> = s
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    for a in &v {
        assert!(
            a.starts_with("sm_") && a[3..].chars().all(|c| c.is_ascii_alphanumeric()),
            "TK_CUDA_ARCHS: {a:?} is not of the form sm_80 / sm_90a"
        );
    }
    assert!(!v.is_empty(), "TK_CUDA_ARCHS is empty");
    v
}

fn compile_all(
    nvcc: &Path,
    kernel_dir: &Path,
    sources: &[PathBuf],
    out: &Path,
) -> Vec<(String, PathBuf)> {
    let archs = archs();
    let mut gencode: Vec<String> = Vec::new();
    for a in &archs {
        let num = &a[3..];
        gencode.push("-gencode".into());
        gencode.push(format!("arch=compute_{num},code=sm_{num}"));
    }
    // PTX of the lowest arch, without the `a` suffix (arch-specific PTX does not JIT forward).
    let lowest = archs
        .iter()
        .map(|a| {
            a[3..]
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .to_string()
        })
        .min_by_key(|n| n.parse::<u32>().unwrap_or(u32::MAX))
        .expect("at least one arch");
    gencode.push("-gencode".into());
    gencode.push(format!("arch=compute_{lowest},code=compute_{lowest}"));
    let extra: Vec<String> = env::var("TK_NVCC_FLAGS")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default();

    // Compile all sources concurrently: nvcc is single-threaded per file.
    let mut jobs = Vec::new();
    for src in sources {
        let stem = src
            .file_stem()
            .expect("a .cu file has a stem")
            .to_string_lossy()
            .to_string();
        let fatbin = out.join(format!("{stem}.fatbin"));
        let mut cmd = Command::new(nvcc);
        cmd.arg("-fatbin")
            .args(["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"])
            .arg("-I")
            .arg(kernel_dir)
            .arg("-I")
            .arg(kernel_dir.join("include"))
            .args(&gencode)
            .args(["-Xptxas", "-v"])
            .args(&extra)
            .arg("-o")
            .arg(&fatbin)
            .arg(src);
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", nvcc.display()));
        jobs.push((stem, fatbin, src.clone(), child));
    }
    let mut table = Vec::new();
    let mut failures = String::new();
    for (stem, fatbin, src, child) in jobs {
        let output = child.wait_with_output().expect("waiting for nvcc");
        let mut report = String::from_utf8_lossy(&output.stdout).to_string();
        report.push_str(&String::from_utf8_lossy(&output.stderr));
        fs::write(out.join(format!("{stem}.ptxas.txt")), &report).expect("writing ptxas report");
        if output.status.success() {
            table.push((stem, fatbin));
        } else {
            let _ = writeln!(failures, "nvcc failed on {}:\n{report}", src.display());
        }
    }
    if !failures.is_empty() {
        panic!("{failures}");
    }
    table
}

fn write_table(out: &Path, table: &[(String, PathBuf)]) {
    let mut s = String::from(
        "// @generated by build.rs: the embedded fatbins, one per kernels/<stem>.cu.\n",
    );
    s.push_str("/// `(stem, fatbin image, ptxas -v report)` for every compiled kernel file.\n");
    s.push_str("pub static FATBINS: &[(&str, &[u8], &str)] = &[\n");
    for (stem, path) in table {
        let report = out.join(format!("{stem}.ptxas.txt"));
        let _ = writeln!(
            s,
            "    ({stem:?}, include_bytes!({:?}), include_str!({:?})),",
            path.display().to_string(),
            report.display().to_string()
        );
    }
    s.push_str("];\n");
    fs::write(out.join("kernels.rs"), s).expect("writing kernels.rs");
}

/// Runs bindgen on params.h; falls back to the checked-in snapshot without libclang.
fn generate_params(manifest: &Path, out: &Path, require: bool, warn: bool) {
    let header = manifest.join("kernels/include/params.h");
    let snapshot = manifest.join("kernels/include/params_snapshot.rs");
    if env::var_os("LIBCLANG_PATH").is_none() {
        if let Some(tc) = toolchain_dir() {
            let native = tc.join("clang/native");
            if native.join("libclang.so").is_file() {
                // SAFETY (of the process): build scripts are single-threaded here.
                env::set_var("LIBCLANG_PATH", &native);
            }
        }
    }
    let header_s = header.display().to_string();
    let generated = std::panic::catch_unwind(move || {
        bindgen::Builder::default()
            .header(header_s)
            .allowlist_type(".*Params")
            .allowlist_type("TkDType")
            .rustified_enum("TkDType")
            .derive_default(false)
            .derive_debug(true)
            .layout_tests(true)
            .generate_comments(true)
            .use_core()
            .generate()
            .map(|b| b.to_string())
    });
    let fresh = match generated {
        Ok(Ok(s)) => Some(format!(
            "// @generated by bindgen from kernels/include/params.h: do not edit.\n{s}"
        )),
        Ok(Err(e)) => {
            if require {
                panic!("bindgen failed on {}: {e}", header.display());
            }
            println!(
                "cargo:warning=bindgen failed on params.h ({e}); using the checked-in snapshot"
            );
            None
        }
        Err(_) => {
            if require {
                panic!("TK_REQUIRE_KERNELS=1: libclang not found for bindgen; run scripts/setup-toolchain.sh or set LIBCLANG_PATH");
            }
            if warn {
                println!("cargo:warning=libclang not found; using the checked-in params snapshot");
            }
            None
        }
    };
    let text = match fresh {
        Some(fresh) => {
            let old = fs::read_to_string(&snapshot).unwrap_or_default();
            if old != fresh {
                if env::var("TK_BLESS_PARAMS").is_ok_and(|v| v == "1") {
                    fs::write(&snapshot, &fresh).expect("writing params snapshot");
                } else if require {
                    panic!(
                        "{} is out of date with params.h; rebuild once with TK_BLESS_PARAMS=1 and commit it",
                        snapshot.display()
                    );
                } else {
                    println!("cargo:warning=params_snapshot.rs is out of date with params.h (TK_BLESS_PARAMS=1 rewrites it)");
                }
            }
            fresh
        }
        None => fs::read_to_string(&snapshot).unwrap_or_else(|e| {
            panic!("no libclang and no snapshot at {}: {e}", snapshot.display())
        }),
    };
    fs::write(out.join("params.rs"), text).expect("writing params.rs");
}
