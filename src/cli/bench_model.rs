//! `bench --model DIR`: end-to-end translation throughput of a Marian
//! checkpoint, model load excluded.
//!
//! For every storage dtype, beam width and batch size asked: the sentences of
//! `--input` (tokenized up front, sorted by length and cut into batches as
//! `translate` does) go through `MarianModel::generate`; the table gives
//! sentences/s and target tokens/s (generated ids, EOS included) over the
//! wall time of the generate calls (each ends with the top-k download of its
//! last step, so device work is included). One untimed batch warms up first.
//!
//! Then the decode step at batch 1 (greedy, one sentence, the KV cache
//! growing): the mean wall time of a step (decoder layers, output
//! projection, logits kernel, top-1 download) beside its physical floor:
//! the bytes of the weights one step must read (per decoder layer
//! self-attention q/k/v/out, cross-attention q/out, fc1, fc2 and the three
//! LayerNorms; the output projection and final_logits_bias; not the
//! cross-attention k/v projections, applied once per batch) at the
//! device-to-device copy bandwidth measured in the same run (bytes read +
//! written per second, the practical roofline).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use transformer_kernels::cpu::Cpu;
use transformer_kernels::cuda::{CudaBackend, Device, DeviceTensor};
use transformer_kernels::model::{Backend, GenerationConfig, MarianModel, ModelConfig, TokenMask};
use transformer_kernels::tokenizer::MarianTokenizer;
use transformer_kernels::{DType, Error, Result};

/// Where `bench --model` runs the model.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelBackend {
    /// The CUDA backend on the GPU of `--device`.
    Cuda,
    /// The CUDA backend on the SIMT emulator (tiny models only).
    Emu,
    /// The fast CPU backend (f32; `--dtype` does not apply).
    Cpu,
    /// The plain CPU reference (f32; the oracle, slow).
    Reference,
}

/// Options of `bench --model`.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Sentences to translate, one per line (required with --model).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Use only the first N lines of --input.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Batch sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    pub batch_size: Vec<usize>,
    /// Beam widths (comma-separated; 1 is greedy).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub beam: Vec<usize>,
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = ModelBackend::Cuda)]
    pub backend: ModelBackend,
    /// Write the source token ids used (sorted by length, one sentence per
    /// line, space-separated) to FILE, so that another engine (Hugging Face
    /// in scripts/hf_generate_bench.py) runs exactly the same inputs.
    #[arg(long, value_name = "FILE")]
    pub ids_out: Option<PathBuf>,
    /// Decode steps timed at batch 1 (after 4 untimed ones; capped by the
    /// model's max_position_embeddings).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: u32,
    /// Worker threads of `--backend cpu` (0: every core; ignored by the
    /// other backends).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Replay each decode step as one recorded unit on the CUDA backend
    /// (as `translate --cuda-graph`); ignored by the CPU backends.
    #[arg(long, value_enum, default_value_t = crate::cli::Switch::Off)]
    pub cuda_graph: crate::cli::Switch,
}

/// One measured configuration.
struct Row {
    backend: &'static str,
    dtype: DType,
    beam: usize,
    batch: usize,
    sentences: usize,
    tokens: usize,
    seconds: f64,
}

/// The decode-step measurement.
struct StepRow {
    backend: &'static str,
    dtype: DType,
    seconds: f64,
    floor_seconds: Option<f64>,
    weight_bytes: u64,
    copy_gbps: Option<f64>,
}

/// Runs `bench --model DIR`.
///
/// # Errors
/// [`Error::InvalidArgument`] without `--input`, with no sentence, a zero
/// batch size or beam; the model's, tokenizer's and device's errors.
pub fn run(
    dir: &Path,
    a: &ModelArgs,
    dtypes: &[DType],
    ordinal: usize,
    csv: Option<&Path>,
) -> Result<()> {
    // Everything that can fail for the whole run is checked before any
    // work: flags, model directory, device, output files.
    let input = a.input.as_deref().ok_or_else(|| {
        Error::invalid(
            "bench",
            "--model needs --input FILE (sentences, one per line)",
        )
    })?;
    if a.batch_size.contains(&0) || a.beam.contains(&0) || a.limit == Some(0) {
        return Err(Error::invalid(
            "bench",
            "--batch-size, --beam and --limit must be at least 1",
        ));
    }
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found"),
        ));
    }
    let device = match a.backend {
        ModelBackend::Cpu | ModelBackend::Reference => None,
        ModelBackend::Emu => Some(Device::emulator()?),
        ModelBackend::Cuda => Some(Device::open(ordinal).map_err(|e| match e {
            Error::NoCuda(why) => Error::NoCuda(format!(
                "{why}; `bench --model` with --backend cpu or emu runs without a GPU"
            )),
            other => other,
        })?),
    };
    if let Some(path) = csv {
        write_csv(path, &[], &[])?;
    }
    let bytes = std::fs::read(input).map_err(|e| Error::io(input, e))?;
    let tok = MarianTokenizer::from_dir(dir)?;
    let max_src = ModelConfig::from_file(&dir.join("config.json"))?.max_position_embeddings;
    let mut sources: Vec<Vec<u32>> = Vec::new();
    let mut skipped = 0;
    for line in bytes
        .split(|&b| b == b'\n')
        .take(a.limit.unwrap_or(usize::MAX))
    {
        // Lines translate would refuse (not UTF-8, too long) are skipped and counted.
        let Ok(line) = std::str::from_utf8(line) else {
            skipped += 1;
            continue;
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if tok.is_blank_source(line)? {
            continue;
        }
        let ids = tok.encode_source(line)?;
        if ids.len() > max_src {
            skipped += 1;
            continue;
        }
        sources.push(ids);
    }
    if sources.is_empty() {
        return Err(Error::invalid(
            "bench",
            format!("{} holds no sentence the model can take", input.display()),
        ));
    }
    if skipped > 0 {
        eprintln!(
            "note: bench: {skipped} line(s) skipped (not UTF-8, or more source tokens than max_position_embeddings {max_src})"
        );
    }
    sources.sort_by_key(Vec::len);
    if let Some(path) = &a.ids_out {
        let lines: Vec<String> = sources
            .iter()
            .map(|s| s.iter().map(u32::to_string).collect::<Vec<_>>().join(" "))
            .collect();
        std::fs::write(path, lines.join("\n") + "\n").map_err(|e| Error::io(path, e))?;
    }
    println!(
        "bench --model {}: {} sentences from {}, batches {:?}, beams {:?}, model load excluded",
        dir.display(),
        sources.len(),
        input.display(),
        a.batch_size,
        a.beam
    );
    let mut rows = Vec::new();
    let mut steps = Vec::new();
    let dtypes: Vec<DType> = if dtypes.is_empty() {
        vec![DType::BF16]
    } else {
        dtypes.to_vec()
    };
    let mut out = Out {
        rows: &mut rows,
        steps: &mut steps,
        csv,
    };
    match device {
        None if a.backend == ModelBackend::Reference => {
            let model = MarianModel::load(Cpu, dir)?;
            let on = On {
                label: "ref",
                dtype: DType::F32,
                device: None,
            };
            measure(&model, on, dir, &sources, a, &mut out)?;
        }
        None => {
            let backend = super::fast_cpu(a.threads)?;
            println!(
                "cpu: {} threads, {}",
                backend.threads(),
                backend.isa().name()
            );
            let model = MarianModel::load(backend, dir)?;
            let on = On {
                label: "cpu",
                dtype: DType::F32,
                device: None,
            };
            measure(&model, on, dir, &sources, a, &mut out)?;
        }
        Some(device) => {
            let label = match a.backend {
                ModelBackend::Emu => "emu",
                _ => "cuda",
            };
            println!("device: {}", device.name());
            for dtype in dtypes {
                let on = On {
                    label,
                    dtype,
                    device: Some(&device),
                };
                match dtype {
                    DType::F32 => measure_on::<f32>(on, dir, &sources, a, &mut out)?,
                    DType::F16 => measure_on::<half::f16>(on, dir, &sources, a, &mut out)?,
                    DType::BF16 => measure_on::<half::bf16>(on, dir, &sources, a, &mut out)?,
                }
            }
        }
    }
    Ok(())
}

/// Where measurements go: the rows so far, rewritten to the CSV after each
/// one (a run cut short keeps what it measured).
struct Out<'a> {
    rows: &'a mut Vec<Row>,
    steps: &'a mut Vec<StepRow>,
    csv: Option<&'a Path>,
}

impl Out<'_> {
    fn flush(&self) -> Result<()> {
        match self.csv {
            Some(path) => write_csv(path, self.rows, self.steps),
            None => Ok(()),
        }
    }
}

/// What a measurement runs on, for its rows.
#[derive(Clone, Copy)]
struct On<'a> {
    label: &'static str,
    dtype: DType,
    device: Option<&'a Arc<Device>>,
}

/// Loads the model on the CUDA backend in storage `T` and measures it.
fn measure_on<T: transformer_kernels::cuda::DeviceElement>(
    on: On<'_>,
    dir: &Path,
    sources: &[Vec<u32>],
    a: &ModelArgs,
    out: &mut Out<'_>,
) -> Result<()> {
    let device = on
        .device
        .ok_or_else(|| Error::invalid("bench", "the CUDA backend needs a device"))?;
    let backend = CudaBackend::<T>::new(device.clone()).with_step_graphs(a.cuda_graph.on());
    let model = MarianModel::load(backend, dir)?;
    measure(&model, on, dir, sources, a, out)?;
    if a.cuda_graph.on() {
        let s = model.backend().step_stats();
        println!(
            "cuda graph: {} decode steps replayed, {} recorded, {} not recordable",
            s.replayed, s.recorded, s.unrecorded
        );
    }
    Ok(())
}

/// Times generation and the decode step of `model`, printing each row.
fn measure<B: Backend>(
    model: &MarianModel<B>,
    on: On<'_>,
    dir: &Path,
    sources: &[Vec<u32>],
    a: &ModelArgs,
    out: &mut Out<'_>,
) -> Result<()> {
    let On {
        label: backend,
        dtype,
        device,
    } = on;
    let base = GenerationConfig::from_model_dir(dir, model.config())?;
    println!(
        "{:<5} {:<5} {:>4} {:>6} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "on", "dtype", "beam", "batch", "sentences", "tokens", "seconds", "sentences/s", "tokens/s"
    );
    for &beam in &a.beam {
        for &batch in &a.batch_size {
            let mut gen = base.clone();
            gen.num_beams = beam;
            gen.num_return_sequences = 1;
            // Warm-up: first launches load modules, the allocator grows.
            model.generate(&sources[..batch.min(sources.len())], &gen)?;
            let t0 = Instant::now();
            let mut tokens = 0;
            for chunk in sources.chunks(batch) {
                for hyps in model.generate(chunk, &gen)? {
                    tokens += hyps.first().map_or(0, |h| h.ids.len());
                }
            }
            let row = Row {
                backend,
                dtype,
                beam,
                batch,
                sentences: sources.len(),
                tokens,
                seconds: t0.elapsed().as_secs_f64(),
            };
            println!(
                "{:<5} {:<5} {:>4} {:>6} {:>9} {:>9} {:>9.3} {:>11.1} {:>11.1}",
                row.backend,
                row.dtype,
                row.beam,
                row.batch,
                row.sentences,
                row.tokens,
                row.seconds,
                row.sentences as f64 / row.seconds,
                row.tokens as f64 / row.seconds
            );
            out.rows.push(row);
            out.flush()?;
        }
    }
    let step = decode_step_seconds(model, &sources[0], a.steps as usize)?;
    let weight_bytes = step_weight_elements(model.config()) * dtype.size_in_bytes() as u64;
    let copy_gbps = device.map(copy_gbps).transpose()?;
    let floor_seconds = copy_gbps.map(|g| weight_bytes as f64 / (g * 1e9));
    let floor = floor_seconds.map_or("-".into(), |f| {
        format!(
            "{:.3} ms ({:.1} MB of weights at {:.0} GB/s copy); step / floor {:.2}",
            f * 1e3,
            weight_bytes as f64 / 1e6,
            copy_gbps.unwrap_or(0.0),
            step / f
        )
    });
    println!(
        "decode step, batch 1 ({backend} {dtype}): {:.3} ms; physical floor {floor}",
        step * 1e3
    );
    out.steps.push(StepRow {
        backend,
        dtype,
        seconds: step,
        floor_seconds,
        weight_bytes,
        copy_gbps,
    });
    out.flush()
}

/// Mean wall seconds of one greedy decode step (batch 1) on `src`.
fn decode_step_seconds<B: Backend>(
    model: &MarianModel<B>,
    src: &[u32],
    timed: usize,
) -> Result<f64> {
    const WARM: usize = 4;
    let cfg = model.config();
    let timed = timed.clamp(1, cfg.max_position_embeddings.saturating_sub(WARM).max(1));
    let enc = model.encode(&[src.to_vec()])?;
    let mut state = model.start_decoder(&enc, &[0], WARM + timed)?;
    let mask = TokenMask::default();
    let mut id = cfg.decoder_start_token_id;
    let mut t0 = Instant::now();
    for i in 0..WARM + timed {
        if i == WARM {
            t0 = Instant::now();
        }
        let logits = model.decode_step(&mut state, &[id], 1)?;
        let top = model.backend().log_softmax_topk(&logits, &mask, 1)?;
        id = top.ids.first().copied().unwrap_or(id);
    }
    Ok(t0.elapsed().as_secs_f64() / timed as f64)
}

/// Weight elements one decode step reads (see the module docs).
fn step_weight_elements(c: &ModelConfig) -> u64 {
    let (d, f) = (c.d_model as u64, c.decoder_ffn_dim as u64);
    let per_layer = 6 * (d * d + d) + (d * f + f) + (f * d + d) + 3 * 2 * d;
    let vocab = c.target_vocab_size() as u64;
    c.decoder_layers as u64 * per_layer + vocab * d + vocab
}

/// Device-to-device copy bandwidth (bytes read + written per second, GB/s)
/// of a 256 MiB buffer (64 MiB on the emulator), mean of 10 copies after one.
fn copy_gbps(device: &Arc<Device>) -> Result<f64> {
    let half = if device.kind() == transformer_kernels::cuda::RuntimeKind::Emulator {
        32 << 20
    } else {
        128 << 20
    };
    let src = DeviceTensor::<u8>::zeros(device, &[half])?;
    let mut dst = DeviceTensor::<u8>::zeros(device, &[half])?;
    src.copy_to(&mut dst)?;
    let t = device.time(&mut || {
        for _ in 0..10 {
            src.copy_to(&mut dst)?;
        }
        Ok(())
    })?;
    Ok((2 * half * 10) as f64 / t / 1e9)
}

fn write_csv(path: &Path, rows: &[Row], steps: &[StepRow]) -> Result<()> {
    let mut s = String::from(
        "kind,backend,dtype,beam,batch,sentences,target_tokens,seconds,sentences_per_s,tokens_per_s,weight_bytes,copy_gbps,floor_seconds\n",
    );
    for r in rows {
        s.push_str(&format!(
            "generate,{},{},{},{},{},{},{:.6},{:.3},{:.3},,,\n",
            r.backend,
            r.dtype,
            r.beam,
            r.batch,
            r.sentences,
            r.tokens,
            r.seconds,
            r.sentences as f64 / r.seconds,
            r.tokens as f64 / r.seconds
        ));
    }
    for st in steps {
        s.push_str(&format!(
            "decode_step,{},{},1,1,1,1,{:.9},,,{},{},{}\n",
            st.backend,
            st.dtype,
            st.seconds,
            st.weight_bytes,
            st.copy_gbps.map_or(String::new(), |g| format!("{g:.1}")),
            st.floor_seconds
                .map_or(String::new(), |f| format!("{f:.9}"))
        ));
    }
    std::fs::write(path, s).map_err(|e| Error::io(path, e))
}
