//! The C face: `include/transformer_kernels.h` is what cbindgen makes of
//! src/capi/ today (TK_BLESS_HEADER=1 rewrites it), and the example engine
//! `examples/c_engine/main.c`, compiled by the system C compiler against
//! that header and the cdylib, runs three raw kernels (on the emulator, or
//! a GPU when there is one), translates two sentences through the
//! translator API (the CPU backend and the CUDA backend on the emulator
//! must give Hugging Face's text), and gets status codes with messages for
//! a missing model and a provoked panic.

use std::path::{Path, PathBuf};
use std::process::Command;

const MODEL: &str = "tests/fixtures/models/marian-relu-ende";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn generated_header() -> String {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root())
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut out);
    String::from_utf8(out).expect("utf-8 header")
}

#[test]
fn the_c_header_is_fresh() {
    let path = root().join("include/transformer_kernels.h");
    let fresh = generated_header();
    if std::env::var("TK_BLESS_HEADER").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &fresh).expect("write the header");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{} is stale: the C API in src/capi/ changed; run `TK_BLESS_HEADER=1 cargo test --release --test c_api` and commit it",
        path.display()
    );
    for leak in ["tk_emu_launch", "typedef struct DType", "#define"] {
        let body = fresh.replace("#define TRANSFORMER_KERNELS_H", "");
        assert!(
            !body.contains(leak),
            "the header exports {leak:?}: extend cbindgen.toml's exclude"
        );
    }
    for f in [
        "tk_last_error",
        "tk_layer_norm",
        "tk_linear",
        "tk_attention",
        "tk_translator_new",
        "tk_translate_batch",
        "TK_STATUS_PANIC",
    ] {
        assert!(fresh.contains(f), "the header lacks {f}");
    }
}

/// The directory holding libtransformer_kernels.so (target/<profile>).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/c_api-HASH
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Compiles the example engine, or returns why it cannot. `cargo test`
/// builds the library as an rlib only, so the cdylib is brought up to date
/// first by a nested `cargo build --lib` of the same profile (cargo holds
/// no lock while tests run).
fn build_example(out: &Path) -> std::result::Result<PathBuf, String> {
    let lib = lib_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build.current_dir(root()).args(["build", "--lib"]);
    if lib.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().map_err(|e| format!("{cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --lib failed: {status}"));
    }
    if !lib.join("libtransformer_kernels.so").is_file() {
        return Err(format!("no libtransformer_kernels.so in {}", lib.display()));
    }
    let exe = out.join("c_engine");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .arg("-std=c11")
        .arg("-Wall")
        .arg("-Wextra")
        .arg("-Werror")
        .arg("-I")
        .arg(root().join("include"))
        .arg("-I")
        .arg(root().join("kernels/include"))
        .arg(root().join("examples/c_engine/main.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib)
        .arg("-ltransformer_kernels")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lm")
        .status()
        .map_err(|e| format!("{cc}: {e}"))?;
    if status.success() {
        Ok(exe)
    } else {
        Err(format!("{cc} failed: {status}"))
    }
}

fn fixture_texts() -> (Vec<String>, Vec<String>) {
    let bytes = std::fs::read(root().join(MODEL).join("expected.json.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    let e: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s = e["sentences"].as_array().unwrap();
    let get = |i: usize, k: &str| s[i][k].as_str().unwrap().to_owned();
    (
        vec![get(0, "source_text"), get(2, "source_text")],
        vec![get(0, "beam4_text"), get(2, "beam4_text")],
    )
}

#[test]
fn the_c_example_engine_runs_kernels_translates_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_example(dir.path()).unwrap_or_else(|e| panic!("building the C example: {e}"));
    let kernel_device = if transformer_kernels::cuda::test_device().is_ok() {
        "cuda"
    } else {
        "emu"
    };
    let (sources, want) = fixture_texts();
    // f32 on the emulator: the same tokens as the CPU (tests/cuda_model.rs).
    for (translator, dtype) in [("cpu", "default"), ("emu", "f32")] {
        let out = Command::new(&exe)
            .arg(kernel_device)
            .arg(root().join(MODEL))
            .arg(translator)
            .arg(dtype)
            .args(&sources)
            .output()
            .expect("run the C example");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{stdout}");
        assert!(
            out.status.success(),
            "c_engine ({translator}) failed:\n{stdout}\n{stderr}"
        );
        for check in [
            "layer_norm",
            "linear",
            "attention",
            "missing model",
            "panic",
        ] {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("ok {check}"))),
                "{check} not ok:\n{stdout}"
            );
        }
        for (i, w) in want.iter().enumerate() {
            let line = format!("translation {i}: {w}");
            assert!(
                stdout.lines().any(|l| l == line),
                "({translator}) expected {line:?} in:\n{stdout}"
            );
        }
        assert!(stdout.contains("0 failed"), "{stdout}");
    }
}
