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

/// The error contract, called from Rust: NULL handles and pointers, a bad
/// dtype, an unknown device, memory not from tk_malloc, out-of-range
/// copies: each a status with a message naming the problem, never a crash.
#[test]
fn bad_arguments_give_status_codes_and_messages() {
    use std::ffi::{CStr, CString};
    use std::ptr::{null, null_mut};
    use transformer_kernels::capi::*;
    let last = || {
        unsafe { CStr::from_ptr(tk_last_error()) }
            .to_string_lossy()
            .into_owned()
    };
    unsafe {
        let mut dev: *mut TkDevice = null_mut();
        assert_eq!(
            tk_device_open_emulator(null_mut()),
            TkStatus::InvalidArgument
        );
        assert!(last().contains("out is NULL"), "{}", last());
        assert_eq!(tk_device_open(-1, &mut dev), TkStatus::InvalidArgument);
        assert_eq!(tk_device_open_emulator(&mut dev), TkStatus::Ok);
        assert_eq!(tk_device_is_emulator(dev), 1);
        assert!(
            tk_device_stream(dev).is_null(),
            "the emulator has no CUstream"
        );
        assert_eq!(tk_layer_norm(dev, 7, null()), TkStatus::InvalidArgument);
        assert_eq!(tk_layer_norm(null(), 0, null()), TkStatus::InvalidArgument);
        assert!(last().contains("device is NULL"), "{}", last());
        let mut p: *mut std::ffi::c_void = null_mut();
        assert_eq!(tk_malloc(dev, 64, &mut p), TkStatus::Ok);
        let host = [1u8; 64];
        assert_eq!(
            tk_memcpy_htod(dev, p, host.as_ptr().cast(), 64),
            TkStatus::Ok
        );
        assert_eq!(
            tk_memcpy_htod(dev, p, host.as_ptr().cast(), 65),
            TkStatus::InvalidArgument,
            "one byte past the allocation"
        );
        assert!(last().contains("not inside an allocation"), "{}", last());
        let mut back = [0u8; 64];
        assert_eq!(
            tk_memcpy_dtoh(dev, back.as_mut_ptr().cast(), p, 64),
            TkStatus::Ok
        );
        assert_eq!(back, host);
        assert_eq!(
            tk_free(dev, back.as_mut_ptr().cast()),
            TkStatus::InvalidArgument
        );
        assert_eq!(tk_free(dev, p), TkStatus::Ok);
        assert_eq!(tk_free(dev, null_mut()), TkStatus::Ok);
        tk_device_free(dev);
        tk_device_free(null_mut());

        let mut tr: *mut TkTranslator = null_mut();
        let model = CString::new(root().join(MODEL).to_str().unwrap()).unwrap();
        let bad_device = CString::new("tpu").unwrap();
        assert_eq!(
            tk_translator_new(model.as_ptr(), bad_device.as_ptr(), null(), &mut tr),
            TkStatus::InvalidArgument
        );
        assert!(last().contains("tpu"), "{}", last());
        let cpu = CString::new("cpu").unwrap();
        let bf16 = CString::new("bf16").unwrap();
        assert_eq!(
            tk_translator_new(model.as_ptr(), cpu.as_ptr(), bf16.as_ptr(), &mut tr),
            TkStatus::InvalidArgument,
            "16-bit storage on the CPU"
        );
        assert_eq!(
            tk_translator_new(model.as_ptr(), cpu.as_ptr(), null(), &mut tr),
            TkStatus::Ok
        );
        let mut out: *mut TkTranslations = null_mut();
        let blank = CString::new("   ").unwrap();
        let sentences = [blank.as_ptr()];
        assert_eq!(
            tk_translate_batch(tr, sentences.as_ptr(), 1, null(), &mut out),
            TkStatus::Ok
        );
        assert_eq!(tk_translations_count(out), 1);
        assert_eq!(CStr::from_ptr(tk_translations_get(out, 0)).to_bytes(), b"");
        assert!(tk_translations_get(out, 1).is_null());
        tk_translations_free(out);
        let bad_utf8 = [0xffu8, 0xfe, 0];
        let sentences = [bad_utf8.as_ptr().cast()];
        assert_eq!(
            tk_translate_batch(tr, sentences.as_ptr(), 1, null(), &mut out),
            TkStatus::InvalidArgument
        );
        assert!(last().contains("sentences[0] is not UTF-8"), "{}", last());
        let zero_beam = TkTranslateOptions {
            beam_size: 0,
            max_length: 0,
            batch_size: 0,
        };
        assert_eq!(
            tk_translate_batch(tr, null(), 0, &zero_beam, &mut out),
            TkStatus::Ok,
            "no sentences"
        );
        assert_eq!(tk_translations_count(out), 0);
        tk_translations_free(out);
        tk_translator_free(tr);
        tk_translator_free(null_mut());
    }
}
