//! `translate` subcommand: text in, translations out, one line per line.
//!
//! Input: the positional arguments (one sentence each), else `--input FILE`,
//! else standard input, one sentence per line. Output: one line per input
//! line, in input order, to `--output FILE` or standard output. An empty or
//! whitespace-only line gives an empty line without running the model
//! (CASES.md E1). A line that is not valid UTF-8 gives an empty output line
//! and an error naming its line number; every other line is still
//! translated and written, and the exit status is 1.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use transformer_kernels::cpu::Cpu;
use transformer_kernels::cuda::{CudaBackend, Device};
use transformer_kernels::model::weights::checkpoint_dtype;
use transformer_kernels::model::{Backend, GenerationConfig, Hypothesis, MarianModel};
use transformer_kernels::tokenizer::MarianTokenizer;
use transformer_kernels::{DType, Error, Result};

use super::lines::{Line, LineReader};

/// Where the model runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// GPU 0 when a CUDA driver, a device and the compiled kernels are
    /// present, else the CPU.
    Auto,
    /// The fast CPU backend (f32; packed FMA GEMMs, `--threads`).
    Cpu,
    /// The plain CPU reference (f32; the oracle the other backends are
    /// tested against, several times slower).
    Reference,
    /// The CUDA backend on GPU 0.
    Cuda,
    /// The CUDA backend on the SIMT emulator (the same kernels run as host
    /// code on the CPU: slow, for validating small models).
    Emu,
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
    /// Storage dtype of weights and activations on `cuda` / `emu` (f32,
    /// f16, bf16; arithmetic is f32 inside every kernel). Default: the
    /// checkpoint's own dtype when it is f16 or bf16, else bf16. The CPU
    /// backends compute in f32 only.
    #[arg(long, value_name = "DTYPE")]
    pub dtype: Option<DType>,
    /// Target language token for multilingual checkpoints (`de` prepends
    /// `>>de<<` to every source, as multilingual opus-mt models expect).
    /// An error for a checkpoint whose vocabulary has no such token
    /// (bilingual models need none).
    #[arg(long, value_name = "LANG")]
    pub target_lang: Option<String>,
    /// Read sentences from FILE, one per line, instead of standard input.
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    pub input: Option<PathBuf>,
    /// Write translations to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Worker threads of `--device cpu` (0: every core the machine
    /// reports, read once at start; at most 1024; ignored by the other
    /// devices).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Replay each decode step as one recorded unit on `cuda` / `emu`: a
    /// CUDA graph on a GPU, the recorded launches on the emulator (see
    /// `cuda::step_graph`). Off by default until it has run on a GPU;
    /// ignored by the CPU backends.
    #[arg(long, value_enum, default_value_t = super::Switch::Off)]
    pub cuda_graph: super::Switch,
}

/// Lines translated together per window: sorted by length inside a window
/// (less padding), written in input order when the window is done, so that
/// output streams and a late failure loses at most one window.
const WINDOW_BATCHES: usize = 16;

/// Runs `translate`.
///
/// A line that cannot be translated on its own account (not UTF-8, longer
/// than the model's `max_position_embeddings`, ...) gets an empty output
/// line and an `error: input line N: ...` message; the others are still
/// translated, and the exit status is 1. Any other error stops the run after
/// the windows already written.
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
    // Everything that can fail for the whole run is checked before any
    // input is read or any work is done: model, device, flags, output file.
    // Without --model: the English→German demo model (models/demo-en-de,
    // see its MODEL_CARD.md), embedded in this binary.
    let dir = match &args.model {
        Some(d) => d.clone(),
        None => super::demo_model::demo_model_dir()?,
    };
    check_model_dir(&dir)?;
    check_input_is_not_output(args.input.as_deref(), args.output.as_deref())?;
    match resolve_device(&args, &dir)? {
        Target::Cpu => {
            let backend = super::fast_cpu(args.threads)?;
            run_on(args, &dir, backend)
        }
        Target::Reference => run_on(args, &dir, Cpu),
        Target::Device(device, DType::F32) => on_device::<f32>(args, &dir, device),
        Target::Device(device, DType::F16) => on_device::<half::f16>(args, &dir, device),
        Target::Device(device, DType::BF16) => on_device::<half::bf16>(args, &dir, device),
    }
}

/// Runs on the CUDA backend in storage `T` (step replay per
/// `--cuda-graph`), an out-of-memory error naming `--batch-size`.
fn on_device<T: transformer_kernels::cuda::DeviceElement>(
    args: Args,
    dir: &Path,
    device: Arc<Device>,
) -> Result<()> {
    let hint = format!("; try a smaller --batch-size (now {})", args.batch_size);
    let backend = CudaBackend::<T>::new(device).with_step_graphs(args.cuda_graph.on());
    run_on(args, dir, backend).map_err(|e| match e {
        Error::OutOfMemory { device, bytes, .. } => Error::OutOfMemory {
            device,
            bytes,
            hint,
        },
        other => other,
    })
}

/// Where a run executes: the fast CPU backend, the CPU reference, or a
/// CUDA device (GPU or emulator) with the storage dtype.
enum Target {
    Cpu,
    Reference,
    Device(Arc<Device>, DType),
}

/// Resolves `--device` and `--dtype`.
///
/// Errors: [`Error::NoCuda`] / [`Error::KernelsNotBuilt`] for `--device
/// cuda` where it cannot run, naming why and the alternatives;
/// [`Error::InvalidArgument`] for a 16-bit `--dtype` on a CPU backend.
fn resolve_device(args: &Args, dir: &Path) -> Result<Target> {
    let dtype = || -> Result<DType> {
        Ok(match args.dtype {
            Some(d) => d,
            None => match checkpoint_dtype(&dir.join("model.safetensors"))? {
                DType::F32 => DType::BF16,
                half => half,
            },
        })
    };
    match args.device {
        DeviceChoice::Cpu | DeviceChoice::Reference => match args.dtype {
            Some(d) if d != DType::F32 => Err(Error::invalid(
                "translate",
                format!("--dtype {d}: the CPU backends compute in f32; use --device cuda or --device emu for 16-bit storage"),
            )),
            _ if args.device == DeviceChoice::Reference => Ok(Target::Reference),
            _ => Ok(Target::Cpu),
        },
        DeviceChoice::Cuda => {
            let device = Device::open(0).map_err(|e| match e {
                Error::NoCuda(why) => Error::NoCuda(format!(
                    "{why}; --device cpu runs on the CPU, --device emu the CUDA backend on the emulator"
                )),
                other => other,
            })?;
            Ok(Target::Device(device, dtype()?))
        }
        DeviceChoice::Emu => Ok(Target::Device(Device::emulator()?, dtype()?)),
        DeviceChoice::Auto => match Device::open(0) {
            Ok(device) => Ok(Target::Device(device, dtype()?)),
            // No driver or no device: the CPU, silently (the common case),
            // unless a 16-bit --dtype was asked for: it cannot apply there.
            Err(Error::NoCuda(why)) => {
                if let Some(d) = args.dtype.filter(|&d| d != DType::F32) {
                    eprintln!("note: --device auto: no GPU ({why}); running on the CPU in f32, --dtype {d} does not apply");
                }
                Ok(Target::Cpu)
            }
            // A GPU is there but cannot run this build: say so once.
            Err(e) => {
                eprintln!("note: --device auto: not using the GPU ({e}); running on the CPU");
                Ok(Target::Cpu)
            }
        },
    }
}

/// Loads the model on `backend` and translates every input.
fn run_on<B: Backend>(args: Args, dir: &Path, backend: B) -> Result<()> {
    let dir = dir.to_path_buf();
    let tokenizer = MarianTokenizer::from_dir(&dir)?;
    let model = MarianModel::load(backend, &dir)?;
    // vocab.json ids must fit the model's vocabulary (error names both files).
    tokenizer.check_compatible(model.config().vocab_size)?;
    let mut gen = GenerationConfig::from_model_dir(&dir, model.config())?;
    if let Some(b) = args.beam {
        gen.num_beams = b;
    }
    if let Some(m) = args.max_length {
        gen.max_length = m;
        gen.max_new_tokens = None;
    }
    gen.num_return_sequences = 1;
    gen.validate(model.config().target_vocab_size())?;
    let prefix = language_prefix(&tokenizer, args.target_lang.as_deref(), &dir)?;
    let mut sink = Sink::open(args.output.as_deref())?;

    let translator = Translator {
        tokenizer: &tokenizer,
        model: &model,
        gen: &gen,
        prefix: prefix.as_deref(),
        batch_size: args.batch_size,
    };
    let mut failures: Vec<(usize, String)> = Vec::new();
    let mut write = |outputs: &[String]| sink.write_lines(outputs);
    if !args.text.is_empty() {
        let lines: Vec<(usize, Line)> = args
            .text
            .iter()
            .enumerate()
            .map(|(i, t)| (i + 1, Line::Text(t.clone())))
            .collect();
        write(&translator.window(&lines, &mut failures)?)?;
    } else {
        let progress = match &args.input {
            Some(path) => progress_bar(count_lines(path)?),
            None => ProgressBar::hidden(),
        };
        let mut reader = LineReader::open(args.input.as_deref())?;
        loop {
            let lines = reader.next_window(args.batch_size.saturating_mul(WINDOW_BATCHES))?;
            if lines.is_empty() {
                break;
            }
            write(&translator.window(&lines, &mut failures)?)?;
            progress.inc(lines.len() as u64);
        }
        progress.finish_and_clear();
    }
    sink.finish()?;

    if failures.is_empty() {
        return Ok(());
    }
    for (line, msg) in &failures {
        eprintln!("error: input line {line}: {msg}");
    }
    Err(Error::invalid(
        "translate",
        format!(
            "{} input line(s) could not be translated (listed above); their output lines are empty",
            failures.len()
        ),
    ))
}

/// Everything needed to translate one window of lines.
struct Translator<'a, B: Backend> {
    tokenizer: &'a MarianTokenizer,
    model: &'a MarianModel<B>,
    gen: &'a GenerationConfig,
    prefix: Option<&'a str>,
    batch_size: usize,
}

impl<B: Backend> Translator<'_, B> {
    /// Translations of `lines`, in order; lines that fail on their own
    /// account get "" and an entry in `failures`.
    fn window(
        &self,
        lines: &[(usize, Line)],
        failures: &mut Vec<(usize, String)>,
    ) -> Result<Vec<String>> {
        let mut outputs = vec![String::new(); lines.len()];
        let max_src = self.model.config().max_position_embeddings;
        let mut work: Vec<(usize, Vec<u32>)> = Vec::new();
        for (slot, (line_no, line)) in lines.iter().enumerate() {
            let text = match line {
                Line::BadUtf8 => {
                    failures.push((*line_no, "not valid UTF-8".into()));
                    continue;
                }
                Line::Text(t) => t,
            };
            // E1: nothing to translate (whitespace or control characters
            // only) gives "" without running the model.
            if self.tokenizer.is_blank_source(text)? {
                continue;
            }
            let text = match self.prefix {
                Some(p) => format!("{p} {text}"),
                None => text.clone(),
            };
            match self.tokenizer.encode_source(&text) {
                Ok(ids) if ids.len() > max_src => failures.push((
                    *line_no,
                    format!(
                        "{} source tokens, more than the model's max_position_embeddings ({max_src})",
                        ids.len()
                    ),
                )),
                Ok(ids) => work.push((slot, ids)),
                Err(e) => failures.push((*line_no, e.to_string())),
            }
        }
        // Batch sentences of similar length together (less padding).
        work.sort_by_key(|(_, ids)| ids.len());
        for chunk in work.chunks(self.batch_size) {
            let sources: Vec<Vec<u32>> = chunk.iter().map(|(_, ids)| ids.clone()).collect();
            match self.model.generate(&sources, self.gen) {
                Ok(nbest) => {
                    for ((slot, _), hyps) in chunk.iter().zip(nbest) {
                        self.decode_into(&mut outputs, failures, lines, *slot, hyps)?;
                    }
                }
                // An argument error may be one sentence's fault: retry each
                // alone so that the others are not lost.
                Err(Error::InvalidArgument { .. }) if chunk.len() > 1 => {
                    for (slot, ids) in chunk {
                        match self.model.generate(std::slice::from_ref(ids), self.gen) {
                            Ok(mut nbest) => {
                                let hyps = nbest.pop().unwrap_or_default();
                                self.decode_into(&mut outputs, failures, lines, *slot, hyps)?;
                            }
                            Err(e @ Error::InvalidArgument { .. }) => {
                                failures.push((lines[*slot].0, e.to_string()))
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e @ Error::InvalidArgument { .. }) => {
                    failures.push((lines[chunk[0].0].0, e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        failures.sort_by_key(|(line, _)| *line);
        Ok(outputs)
    }

    fn decode_into(
        &self,
        outputs: &mut [String],
        failures: &mut Vec<(usize, String)>,
        lines: &[(usize, Line)],
        slot: usize,
        hyps: Vec<Hypothesis>,
    ) -> Result<()> {
        let best = hyps.into_iter().next().map(|h| h.ids).unwrap_or_default();
        match self.tokenizer.decode_target(&best) {
            Ok(text) => outputs[slot] = text,
            Err(e @ Error::InvalidArgument { .. }) => failures.push((lines[slot].0, e.to_string())),
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// Where translations go: a file (created before any work) or stdout.
struct Sink {
    out: Box<dyn Write>,
    path: PathBuf,
}

impl Sink {
    fn open(path: Option<&Path>) -> Result<Self> {
        Ok(match path {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| Error::io(p, e))?;
                Sink {
                    out: Box::new(std::io::BufWriter::new(f)),
                    path: p.to_path_buf(),
                }
            }
            None => Sink {
                out: Box::new(std::io::stdout()),
                path: PathBuf::from("<stdout>"),
            },
        })
    }

    fn write_lines(&mut self, lines: &[String]) -> Result<()> {
        for l in lines {
            writeln!(self.out, "{l}").map_err(|e| Error::io(&self.path, e))?;
        }
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// Number of lines of `path` (a last line without "\n" counts), for the
/// progress bar.
fn count_lines(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

fn progress_bar(total: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} lines [{elapsed_precise}, {per_sec}, eta {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// `--output` naming the `--input` file would truncate it before it is
/// read: an error, before anything is opened for writing.
fn check_input_is_not_output(input: Option<&Path>, output: Option<&Path>) -> Result<()> {
    let (Some(i), Some(o)) = (input, output) else {
        return Ok(());
    };
    let same = match (std::fs::canonicalize(i), std::fs::canonicalize(o)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::invalid(
            "translate",
            format!(
                "--output {} is the --input file: writing would erase the input before it is read",
                o.display()
            ),
        ));
    }
    Ok(())
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
    if lang.is_empty() || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::invalid(
            "translate",
            format!("--target-lang {lang:?}: expected a language code such as de or fr"),
        ));
    }
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
