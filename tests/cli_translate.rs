//! The `translate` CLI end to end on the Hugging Face parity fixtures:
//! the printed text must equal `MarianTokenizer.decode(generate(...))` for
//! greedy and beam 4, alone and batched; bad input gives a one-line error
//! naming the file or line and a non-zero exit, never a panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_transformer-kernels");
const MODELS: [&str; 3] = [
    "marian-swish-ende",
    "marian-relu-ende",
    "marian-gelu-enfr-f16",
];

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

fn expected(name: &str) -> Value {
    use std::io::Read;
    let path = fixture_dir(name).join("expected.json.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("expected.json.gz parses")
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the CLI");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            // The CLI may fail (by design) before reading its input.
            if let Err(e) = input.write_all(bytes) {
                assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
            }
        }
    }
    child.wait_with_output().expect("wait for the CLI")
}

/// `translate --model DIR FLAGS...` with `text` as the last argument, or
/// on stdin when `--input` or `--output` is among the flags.
fn run_on_fixture(dir: &Path, flags: &[&str], text: &str) -> Output {
    let mut args = vec!["translate", "--model", dir.to_str().expect("utf-8 path")];
    args.extend(flags);
    if flags.contains(&"--input") || flags.contains(&"--output") {
        run(&args, Some(format!("{text}\n").as_bytes()))
    } else {
        args.push(text);
        run(&args, None)
    }
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone())
        .expect("stdout is UTF-8")
        .lines()
        .map(String::from)
        .collect()
}

fn assert_clean_failure(out: &Output, must_mention: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure, stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "the CLI panicked: {stderr}");
    for m in must_mention {
        assert!(stderr.contains(m), "stderr should mention {m:?}: {stderr}");
    }
}

/// Greedy and beam-4 text, alone (batch size 1) and batched (all six in one batch).
#[test]
fn translate_prints_hugging_face_outputs_alone_and_batched() {
    for name in MODELS {
        let exp = expected(name);
        let sentences = exp["sentences"].as_array().expect("sentences");
        let sources: Vec<&str> = sentences
            .iter()
            .map(|s| s["source_text"].as_str().expect("text"))
            .collect();
        let dir = fixture_dir(name);
        let dir = dir.to_str().expect("utf-8 path");
        for (beam, key) in [("1", "greedy_text"), ("4", "beam4_text")] {
            let want: Vec<&str> = sentences
                .iter()
                .map(|s| s[key].as_str().expect("text"))
                .collect();
            for batch in ["1", "6"] {
                let mut args = vec![
                    "translate",
                    "--model",
                    dir,
                    "--beam",
                    beam,
                    "--batch-size",
                    batch,
                    "--device",
                    "cpu",
                ];
                args.extend(&sources);
                let out = run(&args, None);
                assert!(
                    out.status.success(),
                    "{name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let got = stdout_lines(&out);
                assert_eq!(got, want, "{name}: beam {beam}, batch size {batch}");
            }
        }
    }
}

/// Lines from stdin keep their order; empty and whitespace-only lines give
/// empty lines (E1) and do not disturb the others.
#[test]
fn stdin_lines_in_order_with_blank_lines_kept() {
    let name = MODELS[0];
    let exp = expected(name);
    let s = &exp["sentences"];
    let input = format!(
        "{}\n\n   \n{}\r\n{}",
        s[0]["source_text"].as_str().unwrap(),
        s[1]["source_text"].as_str().unwrap(),
        s[2]["source_text"].as_str().unwrap()
    );
    let dir = fixture_dir(name);
    let out = run(
        &["translate", "--model", dir.to_str().unwrap(), "--beam", "1"],
        Some(input.as_bytes()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = stdout_lines(&out);
    let want = [
        s[0]["greedy_text"].as_str().unwrap(),
        "",
        "",
        s[1]["greedy_text"].as_str().unwrap(),
        s[2]["greedy_text"].as_str().unwrap(),
    ];
    assert_eq!(got, want);
}

/// A line that is not UTF-8: an error naming its line number, a non-zero
/// exit, and every other line still translated in place.
#[test]
fn invalid_utf8_line_is_reported_and_others_are_kept() {
    let name = MODELS[0];
    let exp = expected(name);
    let s = &exp["sentences"];
    let mut input = Vec::new();
    input.extend_from_slice(s[0]["source_text"].as_str().unwrap().as_bytes());
    input.extend_from_slice(b"\nbad \xff\xfe bytes\n");
    input.extend_from_slice(s[1]["source_text"].as_str().unwrap().as_bytes());
    input.push(b'\n');
    let dir = fixture_dir(name);
    let out = run(
        &["translate", "--model", dir.to_str().unwrap(), "--beam", "1"],
        Some(&input),
    );
    assert_clean_failure(&out, &["line 2", "UTF-8"]);
    let got = stdout_lines(&out);
    assert_eq!(
        got,
        [
            s[0]["greedy_text"].as_str().unwrap(),
            "",
            s[1]["greedy_text"].as_str().unwrap()
        ]
    );
}

#[test]
fn input_and_output_files() {
    let name = MODELS[1];
    let exp = expected(name);
    let sentences = exp["sentences"].as_array().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    let output = tmp.path().join("out.txt");
    let text: Vec<&str> = sentences
        .iter()
        .map(|s| s["source_text"].as_str().unwrap())
        .collect();
    std::fs::write(&input, text.join("\n") + "\n").unwrap();
    let dir = fixture_dir(name);
    let out = run(
        &[
            "translate",
            "--model",
            dir.to_str().unwrap(),
            "--beam",
            "4",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let want: Vec<&str> = sentences
        .iter()
        .map(|s| s["beam4_text"].as_str().unwrap())
        .collect();
    assert_eq!(got, want);
}

/// Copies a fixture model into a temp dir so that a test can break it.
fn broken_copy(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_dir(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

#[test]
fn truncated_safetensors_is_a_clean_error() {
    let tmp = broken_copy(MODELS[0]);
    let st = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(
        &[
            "translate",
            "--model",
            tmp.path().to_str().unwrap(),
            "A dog runs.",
        ],
        None,
    );
    assert_clean_failure(&out, &["model.safetensors"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1,
        "one-line error"
    );
}

#[test]
fn config_that_does_not_match_the_tensors_is_a_clean_error() {
    let tmp = broken_copy(MODELS[0]);
    let cfg = tmp.path().join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["encoder_ffn_dim"] = Value::from(v["encoder_ffn_dim"].as_u64().unwrap() + 8);
    std::fs::write(&cfg, serde_json::to_string(&v).unwrap()).unwrap();
    let out = run(
        &[
            "translate",
            "--model",
            tmp.path().to_str().unwrap(),
            "A dog runs.",
        ],
        None,
    );
    assert_clean_failure(&out, &["fc1.weight"]);
}

#[test]
fn missing_spm_is_a_clean_error() {
    let tmp = broken_copy(MODELS[0]);
    std::fs::remove_file(tmp.path().join("source.spm")).unwrap();
    let out = run(
        &[
            "translate",
            "--model",
            tmp.path().to_str().unwrap(),
            "A dog runs.",
        ],
        None,
    );
    assert_clean_failure(&out, &["source.spm"]);
}

#[test]
fn missing_model_dir_and_bad_flags_are_clean_errors() {
    let out = run(
        &["translate", "--model", "/nonexistent/model", "A dog."],
        None,
    );
    assert_clean_failure(&out, &["/nonexistent/model"]);
    let dir = fixture_dir(MODELS[0]);
    for (flags, mention) in [
        (["--batch-size", "0"], "--batch-size"),
        (["--input", "/nonexistent/in.txt"], "/nonexistent/in.txt"),
        (["--dtype", "f16"], "CPU backends compute in f32"),
    ] {
        let mut flags = flags.to_vec();
        if mention.contains("CPU") {
            flags.extend(["--device", "cpu"]);
        }
        let out = run_on_fixture(&dir, &flags, "A dog.");
        assert_clean_failure(&out, &[mention]);
    }
    // Without a GPU, --device cuda says why and what runs instead.
    if transformer_kernels::cuda::test_device().is_err() {
        let out = run_on_fixture(&dir, &["--device", "cuda"], "A dog.");
        assert_clean_failure(&out, &["no CUDA device", "--device cpu", "--device emu"]);
    }
}

/// `translate --device emu --dtype f32` (the CUDA backend, executed on the
/// SIMT emulator) prints the CPU reference's output on every fixture model,
/// greedy and beam 4, batched; so does it with `--cuda-graph on` (replayed
/// decode steps).
#[test]
fn emulated_cuda_backend_in_f32_translates_as_the_cpu() {
    for name in MODELS {
        let exp = expected(name);
        let sources: Vec<&str> = exp["sentences"]
            .as_array()
            .expect("sentences")
            .iter()
            .map(|s| s["source_text"].as_str().expect("text"))
            .collect();
        let dir = fixture_dir(name);
        let dir = dir.to_str().expect("utf-8 path");
        for beam in ["1", "4"] {
            let lines = |device: &str| {
                let mut args = vec![
                    "translate",
                    "--model",
                    dir,
                    "--beam",
                    beam,
                    "--device",
                    device,
                ];
                if let Some(graph) = device.strip_prefix("emu") {
                    args[6] = "emu";
                    args.extend(["--dtype", "f32"]);
                    if graph == "+graph" {
                        args.extend(["--cuda-graph", "on"]);
                    }
                }
                args.extend(&sources);
                let out = run(&args, None);
                assert!(
                    out.status.success(),
                    "{name} --device {device}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                stdout_lines(&out)
            };
            let cpu = lines("cpu");
            assert_eq!(cpu.len(), sources.len());
            assert_eq!(lines("emu"), cpu, "{name}: beam {beam}");
            assert_eq!(
                lines("emu+graph"),
                cpu,
                "{name}: beam {beam}, --cuda-graph on"
            );
        }
    }
}

/// A line longer than the model's max_position_embeddings (64 for the
/// fixtures) fails alone, named by its input line number; the lines around
/// it, in the same batch, are still translated.
#[test]
fn over_long_line_fails_alone_with_its_line_number() {
    let name = MODELS[0];
    let exp = expected(name);
    let s = &exp["sentences"];
    let long = vec!["dog"; 200].join(" ");
    let input = format!(
        "{}\n{long}\n{}\n",
        s[0]["source_text"].as_str().unwrap(),
        s[1]["source_text"].as_str().unwrap()
    );
    let dir = fixture_dir(name);
    let out = run(
        &[
            "translate",
            "--model",
            dir.to_str().unwrap(),
            "--beam",
            "1",
            "--batch-size",
            "8",
        ],
        Some(input.as_bytes()),
    );
    assert_clean_failure(&out, &["input line 2", "max_position_embeddings"]);
    assert_eq!(
        stdout_lines(&out),
        [
            s[0]["greedy_text"].as_str().unwrap(),
            "",
            s[1]["greedy_text"].as_str().unwrap()
        ]
    );
}

/// An unwritable --output and a bad --target-lang fail before any work.
#[test]
fn output_and_language_are_checked_before_translating() {
    let dir = fixture_dir(MODELS[0]);
    for (flags, mention) in [
        (
            ["--output", "/nonexistent/dir/out.txt"],
            "/nonexistent/dir/out.txt",
        ),
        (["--target-lang", ""], "--target-lang"),
        (["--target-lang", "de"], ">>de<<"),
    ] {
        let out = run_on_fixture(&dir, &flags, "A dog.");
        assert_clean_failure(&out, &[mention]);
    }
}

/// `--output` naming the `--input` file is refused before anything is
/// written: the input survives.
#[test]
fn output_over_the_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.txt");
    std::fs::write(&file, "A dog runs.\n").unwrap();
    let f = file.to_str().unwrap();
    let model = fixture_dir(MODELS[0]);
    let out = run(
        &[
            "translate",
            "--device",
            "cpu",
            "--model",
            model.to_str().unwrap(),
            "--input",
            f,
            "--output",
            f,
        ],
        None,
    );
    assert_clean_failure(&out, &["is the --input file"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "A dog runs.\n");
}
