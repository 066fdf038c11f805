//! `transformer-kernels bench --model`: the end-to-end bench's table and
//! CSV on the CPU backend and on the emulator (fixture model, seconds),
//! lines it skips, and its argument errors (before any work).

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_transformer-kernels");

fn model() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models/marian-relu-ende")
        .to_string_lossy()
        .into_owned()
}

fn bench(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("bench")
        .args(args)
        .output()
        .expect("run the CLI")
}

#[test]
fn cpu_and_emulator_rows_reach_the_csv_and_bad_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let long = "word ".repeat(80);
    std::fs::write(
        &input,
        [
            b"A dog runs.\n".as_slice(),
            b"\xff\xfe\n",
            long.as_bytes(),
            b"\nTwo men talk.\n",
        ]
        .concat(),
    )
    .unwrap();
    let csv = dir.path().join("e2e.csv");
    let ids = dir.path().join("e2e.ids");
    let m = model();
    for backend in ["cpu", "emu"] {
        let out = bench(&[
            "--model",
            &m,
            "--backend",
            backend,
            "--dtype",
            "f32",
            "--input",
            input.to_str().unwrap(),
            "--batch-size",
            "2",
            "--beam",
            "1,2",
            "--steps",
            "2",
            "--csv",
            csv.to_str().unwrap(),
            "--ids-out",
            ids.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{backend}: {stderr}");
        assert!(stderr.contains("2 line(s) skipped"), "{backend}: {stderr}");
        let table = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines.len(),
            1 + 2 + 1,
            "{backend}: header, two generate rows, one step row:\n{table}"
        );
        assert!(
            lines[1].starts_with(&format!("generate,{backend},f32,1,2,2,")),
            "{table}"
        );
        assert!(
            lines[3].starts_with(&format!("decode_step,{backend},f32,")),
            "{table}"
        );
        assert_eq!(std::fs::read_to_string(&ids).unwrap().lines().count(), 2);
    }
}

#[test]
fn argument_errors_come_before_any_work() {
    let m = model();
    for (args, mention) in [
        (vec!["--model", &m, "--backend", "cpu"], "--input"),
        (
            vec![
                "--model",
                "/nonexistent/m",
                "--backend",
                "cpu",
                "--input",
                "x",
            ],
            "model directory not found",
        ),
        (
            vec![
                "--model",
                &m,
                "--backend",
                "cpu",
                "--input",
                "x",
                "--limit",
                "0",
            ],
            "at least 1",
        ),
        (
            vec!["--backend", "emu", "--input", "x"],
            "apply to `bench --model DIR`",
        ),
        (vec!["--model", &m, "--input", "x"], "no CUDA device"),
    ] {
        if mention == "no CUDA device" && transformer_kernels::cuda::test_device().is_ok() {
            continue;
        }
        let out = bench(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(mention), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
