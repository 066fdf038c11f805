//! The CUDA kernels: finds nvcc, compiles every `kernels/*.cu` into a fatbin
//! with its ptxas resource report, and writes the table that embeds them.
//!
//! Outputs in OUT_DIR:
//! - `<stem>.fatbin`: SASS for every arch in `TK_CUDA_ARCHS` (default
//!   `sm_80,sm_90a`) plus PTX for the lowest arch (JIT for future GPUs);
//! - `<stem>.ptxas.txt`: the ptxas resource report (`-Xptxas -v`), read by
//!   `tests/kernel_static_checks.rs` (spills) and by people;
//! - `kernels.rs`: the embedded fatbin table (`include!`d by
//!   src/cuda/kernels.rs); empty without nvcc.
//!
//! Each .cu includes the shared device headers from `kernels/include`
//! (`params.h`, `tk/*.cuh`), the one include directory passed to nvcc.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Prints `rerun-if-changed` for every file under `kernel_dir`: the sources
/// and every header they include (`include/params.h`, `include/tk/*.cuh`).
pub fn watch_kernels(kernel_dir: &Path) {
    for f in walk(kernel_dir) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
}

/// nvcc in this order: `NVCC`, `CUDA_HOME`/`CUDA_PATH`, `PATH`, the toolchain dir.
pub fn find() -> Option<PathBuf> {
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
    let p = crate::toolchain::dir()?.join("nvidia/cu13/bin/nvcc");
    p.is_file().then_some(p)
}

/// Compiles `kernel_dir/*.cu` with `nvcc` and writes the fatbin table. With
/// no nvcc: a build error under `require`, else one warning and an empty
/// table (the CUDA backend then returns `Error::KernelsNotBuilt`).
pub fn build(nvcc: Option<&Path>, kernel_dir: &Path, out: &Path, require: bool) {
    let table = match nvcc {
        Some(nvcc) => {
            println!("cargo:rustc-cfg=tk_kernels_built");
            println!("cargo:rustc-env=TK_NVCC_PATH={}", nvcc.display());
            compile_all(nvcc, kernel_dir, &kernel_sources(kernel_dir), out)
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
            // So that "run setup-toolchain.sh and rebuild" works, watch the
            // toolchain directory (created empty here if missing: a missing
            // path would make cargo re-run this script on every build).
            if let Some(tc) = crate::toolchain::dir() {
                if fs::create_dir_all(&tc).is_ok() {
                    println!("cargo:rerun-if-changed={}", tc.display());
                }
            }
            println!("cargo:rustc-env=TK_NVCC_PATH=");
            Vec::new()
        }
    };
    write_table(out, &table);
}

/// `kernels/*.cu`, sorted so the build is deterministic.
pub fn kernel_sources(dir: &Path) -> Vec<PathBuf> {
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

/// `-gencode` flags: SASS for every arch, PTX for the lowest one.
fn gencode_flags(archs: &[String]) -> Vec<String> {
    let mut gencode: Vec<String> = Vec::new();
    for a in archs {
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
    gencode
}

/// Compiles every source to `<stem>.fatbin` and `<stem>.ptxas.txt` in `out`;
/// returns `(stem, fatbin path)` per source, or panics with every failure.
fn compile_all(
    nvcc: &Path,
    kernel_dir: &Path,
    sources: &[PathBuf],
    out: &Path,
) -> Vec<(String, PathBuf)> {
    let gencode = gencode_flags(&archs());
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
            .arg(kernel_dir.join("include"))
            .args(&gencode)
            .args(["-Xptxas", "-v"])
            .args(&extra)
            .arg("-o")
            .arg(&fatbin)
            .arg(src);
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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

/// Writes `kernels.rs` in `out`: `(stem, fatbin image, ptxas report)` per kernel file.
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
