//! `translate` subcommand: text in, translations out, one line per line.
//!
//! Input: the positional arguments (one sentence each), else `--input FILE`,
//! else standard input, one sentence per line. Output: one line per input
//! line, in input order, to `--output FILE` or standard output. An empty or
//! whitespace-only line gives an empty line without running the model
//! (CASES.md E1). A line that is not valid UTF-8 gives an empty output line
//! and an error naming its line number; every other line is still
//! translated and written, and the exit status is 1.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use transformer_kernels::cpu::Cpu;
use transformer_kernels::model::{GenerationConfig, MarianModel};
use transformer_kernels::tokenizer::MarianTokenizer;
use transformer_kernels::{Error, Result};

/// Where the model runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The GPU when the CUDA backend can run here, else the CPU reference.
    Auto,
    /// The pure-Rust CPU reference.
    Cpu,
    /// The CUDA backend (an error until it lands).
    Cuda,
}

/// Options of `translate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Sentences to translate; when none are given, lines are read from
    /// `--input` or standard input.
    pub text: Vec<String>,
    /// Checkpoint directory in Hugging Face Marian format (config.json,
    /// model.safetensors, source.spm, target.spm, vocab.json). Default: the
    /// shipped English→German demo model.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Beam width (1 = greedy). Default: the checkpoint's generation config.
    #[arg(long, value_name = "N")]
    pub beam: Option<usize>,
    /// Maximum decoder length including the start token (Hugging Face
    /// `max_length`). Default: the checkpoint's generation config.
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,
    /// Sentences per batch.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub batch_size: usize,
    /// Where to run the model.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Target language token for multilingual checkpoints (`de` prepends
    /// `>>de<<` to every source, as multilingual opus-mt models expect).
    /// Ignored by checkpoints whose vocabulary has no such token.
    #[arg(long, value_name = "LANG")]
    pub target_lang: Option<String>,
    /// Read sentences from FILE, one per line, instead of standard input.
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    pub input: Option<PathBuf>,
    /// Write translations to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// One input line: its text, or the fact that it was not UTF-8.
enum Line {
    Text(String),
    BadUtf8,
}

/// Runs `translate`.
pub fn run(args: Args) -> Result<()> {
    if args.batch_size == 0 {
        return Err(Error::invalid(
            "translate",
            "--batch-size must be at least 1",
        ));
    }
    if args.beam == Some(0) {
        return Err(Error::invalid("translate", "--beam must be at least 1"));
    }
    let lines = read_lines(&args)?;
    // Without --model: the English→German demo model (models/demo-en-de,
    // see its MODEL_CARD.md), embedded in this binary.
    let dir = match &args.model {
        Some(d) => d.clone(),
        None => super::demo_model::demo_model_dir()?,
    };
    check_model_dir(&dir)?;

    match args.device {
        DeviceChoice::Cpu | DeviceChoice::Auto => {}
        DeviceChoice::Cuda => return Err(Error::Unsupported(
            "--device cuda: the CUDA backend of the model is not implemented yet; use --device cpu"
                .into(),
        )),
    }

    let tokenizer = MarianTokenizer::from_dir(&dir)?;
    let model = MarianModel::<Cpu>::load(&dir)?;
    let mut gen = GenerationConfig::from_model_dir(&dir, model.config())?;
    if let Some(b) = args.beam {
        gen.num_beams = b;
        gen.num_return_sequences = gen.num_return_sequences.min(b);
    }
    if let Some(m) = args.max_length {
        gen.max_length = m;
        gen.max_new_tokens = None;
    }
    gen.num_return_sequences = 1;
    let prefix = language_prefix(&tokenizer, args.target_lang.as_deref(), &dir)?;

    // Tokenise the lines that need the model; the rest map to "".
    let mut outputs: Vec<String> = vec![String::new(); lines.len()];
    let mut bad_lines = Vec::new();
    let mut work: Vec<(usize, Vec<u32>)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match line {
            Line::BadUtf8 => bad_lines.push(i + 1),
            // E1: nothing to translate (whitespace or control characters
            // only) gives "" without running the model.
            Line::Text(t) if tokenizer.is_blank_source(t)? => {}
            Line::Text(t) => {
                let text = match &prefix {
                    Some(p) => format!("{p} {t}"),
                    None => t.clone(),
                };
                work.push((i, tokenizer.encode_source(&text)?));
            }
        }
    }
    // Batch sentences of similar length together (less padding), then put
    // the results back in input order.
    work.sort_by_key(|(_, ids)| ids.len());

    let progress = if args.input.is_some() {
        let pb = ProgressBar::new(work.len() as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} sentences [{elapsed_precise}, {per_sec}, eta {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    for chunk in work.chunks(args.batch_size) {
        let sources: Vec<Vec<u32>> = chunk.iter().map(|(_, ids)| ids.clone()).collect();
        let nbest = model.generate(&sources, &gen)?;
        for ((line_idx, _), hyps) in chunk.iter().zip(nbest) {
            let best = hyps.into_iter().next().map(|h| h.ids).unwrap_or_default();
            outputs[*line_idx] = tokenizer.decode_target(&best)?;
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();

    write_outputs(args.output.as_deref(), &outputs)?;
    match bad_lines.first() {
        None => Ok(()),
        Some(&line) => {
            for &l in &bad_lines[1..] {
                eprintln!("error: input line {l}: not valid UTF-8");
            }
            Err(Error::InvalidUtf8 { line })
        }
    }
}

/// A clear error when the model directory is absent.
fn check_model_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::io(
        dir,
        std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found"),
    ))
}

/// `>>xx<<` for `--target-lang xx` when the vocabulary has that token.
fn language_prefix(
    tok: &MarianTokenizer,
    lang: Option<&str>,
    dir: &Path,
) -> Result<Option<String>> {
    let Some(lang) = lang else {
        return Ok(None);
    };
    let token = format!(">>{lang}<<");
    if tok.token_to_id(&token).is_some() {
        Ok(Some(token))
    } else {
        Err(Error::invalid(
            "translate",
            format!(
                "--target-lang {lang}: the model at {} has no {token} token",
                dir.display()
            ),
        ))
    }
}

fn read_lines(args: &Args) -> Result<Vec<Line>> {
    if !args.text.is_empty() {
        return Ok(args.text.iter().map(|t| Line::Text(t.clone())).collect());
    }
    match &args.input {
        Some(path) => {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            split_lines(BufReader::new(f), path)
        }
        None => split_lines(
            BufReader::new(std::io::stdin().lock()),
            Path::new("<stdin>"),
        ),
    }
}

/// Splits raw bytes into lines ("\n" or "\r\n"), decoding each as UTF-8
/// separately so one bad line does not lose the others.
fn split_lines<R: Read>(mut reader: BufReader<R>, path: &Path) -> Result<Vec<Line>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        out.push(match String::from_utf8(buf.clone()) {
            Ok(s) => Line::Text(s),
            Err(_) => Line::BadUtf8,
        });
    }
    Ok(out)
}

fn write_outputs(path: Option<&Path>, outputs: &[String]) -> Result<()> {
    let mut text = String::new();
    for o in outputs {
        text.push_str(o);
        text.push('\n');
    }
    match path {
        Some(p) => std::fs::write(p, text).map_err(|e| Error::io(p, e)),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| Error::io("<stdout>", e))
        }
    }
}
