//! The SIMT emulator's host twins: every `kernels/*.cu` compiled a second
//! time, as host C++17 by the system C++ compiler (through the `cc` crate),
//! with `kernels/emu/emu.h` force-included, plus the emulator runtime
//! `kernels/emu/runtime.cpp`, into one static library. `emu_kernels.rs` in
//! OUT_DIR lists every kernel symbol found in the twins (by `nm`), with its
//! module, for `src/cuda/runtime/emu.rs`.
//!
//! Needs the CUDA headers of the pinned toolchain (cuda_fp16.h and
//! cuda_bf16.h have exact host implementations) and a C++17 compiler. When
//! either is missing the emulator is not built: one warning (a build error
//! under TK_REQUIRE_KERNELS=1), and `Device::emulator` returns
//! `Error::KernelsNotBuilt`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags of every twin. `-fno-strict-aliasing`: kernels load vectors
/// through `uint4` (miscompiled silently without it); `-ffp-contract=off`:
/// no fused multiply-adds the kernel did not write, so host rounding is
/// predictable.
const FLAGS: &[&str] = &["-fno-strict-aliasing", "-ffp-contract=off", "-w"];

/// Builds the twins and writes `emu_kernels.rs`; `nvcc` locates the CUDA
/// headers (`<nvcc dir>/../include`).
pub fn build(nvcc: Option<&Path>, kernel_dir: &Path, out: &Path, require: bool) {
    println!("cargo:rustc-check-cfg=cfg(tk_emu_built)");
    let table = match nvcc.and_then(cuda_include) {
        Some(include) => match compile(&include, kernel_dir, out) {
            Ok(table) => {
                println!("cargo:rustc-cfg=tk_emu_built");
                table
            }
            Err(msg) => skip(&format!("the SIMT emulator is NOT built: {msg}"), require),
        },
        // Without nvcc, nvcc::build has already warned (or failed under
        // TK_REQUIRE_KERNELS): no second warning for the same cause.
        None if nvcc.is_none() => Vec::new(),
        None => skip(
            "the SIMT emulator is NOT built: no CUDA headers (cuda_fp16.h) next to nvcc",
            require,
        ),
    };
    write_table(out, &table);
}

fn skip(msg: &str, require: bool) -> Vec<(String, String)> {
    if require {
        panic!("TK_REQUIRE_KERNELS=1: {msg}");
    }
    println!("cargo:warning={msg}");
    Vec::new()
}

/// `<nvcc>/../include` when it holds cuda_fp16.h.
fn cuda_include(nvcc: &Path) -> Option<PathBuf> {
    let dir = nvcc.parent()?.parent()?.join("include");
    dir.join("cuda_fp16.h").is_file().then_some(dir)
}

fn base(include: &Path, kernel_dir: &Path) -> cc::Build {
    let mut b = cc::Build::new();
    b.cpp(true)
        .std("c++17")
        .opt_level(2)
        .debug(false)
        .warnings(false)
        .include(include)
        .include(kernel_dir.join("include"))
        .include(kernel_dir.join("emu"));
    for f in FLAGS {
        b.flag(f);
    }
    b
}

/// Compiles the twins and the runtime into `libtk_emu.a`; returns
/// `(module, symbol)` of every kernel.
fn compile(include: &Path, kernel_dir: &Path, out: &Path) -> Result<Vec<(String, String)>, String> {
    let emu_h = kernel_dir.join("emu/emu.h");
    let mut table = Vec::new();
    let mut objects = Vec::new();
    // The kernels, and the emulator's own broken kernels (its self-tests).
    let mut sources = crate::nvcc::kernel_sources(kernel_dir);
    sources.push(kernel_dir.join("emu/faults.cu"));
    sources.push(kernel_dir.join("emu/selftest.cu"));
    for src in sources {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("bad kernel file name {}", src.display()))?;
        let stem = match stem {
            "faults" | "selftest" => format!("emu_{stem}"),
            other => other.to_string(),
        };
        let mut b = base(include, kernel_dir);
        // -fsanitize=thread only instruments: every load and store calls a
        // __tsan_* hook, which the emulator runtime implements as its race
        // detector (libtsan is not linked).
        b.flag("-x")
            .flag("c++")
            .flag("-include")
            .flag(emu_h.to_str().unwrap_or_default())
            .flag("-fsanitize=thread");
        b.file(&src);
        let objs = b
            .try_compile_intermediates()
            .map_err(|e| format!("{}: {e}", src.display()))?;
        for o in &objs {
            for sym in kernel_symbols(o)? {
                table.push((stem.clone(), sym));
            }
        }
        objects.extend(objs);
    }
    let mut b = base(include, kernel_dir);
    b.file(kernel_dir.join("emu/runtime.cpp"));
    b.objects(objects);
    b.out_dir(out.join("emu"));
    b.try_compile("tk_emu")
        .map_err(|e| format!("emulator runtime: {e}"))?;
    table.sort();
    Ok(table)
}

/// The `extern "C"` functions an object defines (text symbols without C++
/// mangling): the kernel entry points.
fn kernel_symbols(obj: &Path) -> Result<Vec<String>, String> {
    let out = Command::new("nm")
        .args(["--defined-only", "-g", "-P"])
        .arg(obj)
        .output()
        .map_err(|e| format!("cannot run nm (binutils): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nm failed on {}: {}",
            obj.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (name, kind) = (f.next()?, f.next()?);
            (kind == "T" && !name.starts_with("_Z")).then(|| name.to_string())
        })
        .collect())
}

fn write_table(out: &Path, table: &[(String, String)]) {
    let mut s = String::from(
        "// Generated by build/emu.rs: the emulator's host twins of the kernels.\n\
         // Declared without their parameter: only their address is taken here;\n\
         // the launch calls each through a trampoline typed by its params struct.\n",
    );
    if !table.is_empty() {
        s.push_str("extern \"C\" {\n");
        for (_, sym) in table {
            s.push_str(&format!("    fn {sym}();\n"));
        }
        s.push_str("}\n");
    }
    s.push_str("/// `(module, symbol, host twin)` of every kernel.\n");
    s.push_str("pub(crate) static EMU_KERNELS: &[(&str, &str, unsafe extern \"C\" fn())] = &[\n");
    for (module, sym) in table {
        s.push_str(&format!("    ({module:?}, {sym:?}, {sym}),\n"));
    }
    s.push_str("];\n");
    fs::write(out.join("emu_kernels.rs"), s).expect("write emu_kernels.rs");
}
