//! Replayable decode steps (`CudaBackend::with_step_graphs`): the model's
//! one-token steps on fixed buffers, their position in device memory, and
//! recorded steps replayed as one unit. On a GPU when there is one (the
//! replay is then a CUDA graph), else executed on the SIMT emulator (the
//! replay re-issues the recorded launches).
//!
//! - generation with replayed steps gives the CPU reference's tokens on
//!   every fixture model (f32 storage, greedy and beam 4);
//! - step by step, with and without beam reorders, each step's logits are
//!   within the f32 bound of the CPU's, and the steps replay exactly as
//!   the design says: one recording, then every step replays;
//! - a steady decode loop (steps, top-k, beam reorders) allocates nothing.

#[macro_use]
mod common_kernels;
mod common_model;

use std::path::Path;
use std::sync::Arc;

use common_kernels::device_or_skip;
use common_model::{fixture_model_dirs as fixture_dirs, json_ids as ids};
use transformer_kernels::cpu::Cpu;
use transformer_kernels::cuda::decode_step::StepStats;
use transformer_kernels::cuda::{CudaBackend, Device};
use transformer_kernels::model::{Backend, GenerationConfig, MarianModel, TokenMask};

/// f32 logits, device vs CPU: the bound of `tests/cuda_model.rs` (measured
/// max |Δ| 6.4e-6 there; 3× that). A replayed step computes the same
/// function; only the self-attention's key split differs.
const F32_LOGITS_ABS: f32 = 2e-5;
/// Relative part of the bound.
const F32_LOGITS_REL: f32 = 1e-5;

fn sources(dir: &Path) -> Vec<Vec<u32>> {
    let e = common_model::read_expected(dir);
    e["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| ids(&s["source_ids"]))
        .collect()
}

fn load(
    dir: &Path,
    device: &Arc<Device>,
) -> (
    MarianModel<Cpu>,
    MarianModel<CudaBackend<f32>>,
    GenerationConfig,
) {
    load_with(dir, device, true)
}

/// The fixture on the CPU reference and on the CUDA backend, step replay `replay`.
fn load_with(
    dir: &Path,
    device: &Arc<Device>,
    replay: bool,
) -> (
    MarianModel<Cpu>,
    MarianModel<CudaBackend<f32>>,
    GenerationConfig,
) {
    common_model::load_cpu_and_cuda(dir, device, replay)
}

fn assert_within(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = 0.0f32;
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let d = (a - b).abs();
        worst = worst.max(d);
        assert!(
            d <= F32_LOGITS_ABS + F32_LOGITS_REL * b.abs(),
            "{what}: logit {i}: {a} vs CPU {b}"
        );
    }
    assert!(worst.is_finite(), "{what}: non-finite difference");
}

#[test]
fn generation_with_replayed_steps_gives_the_cpu_tokens() {
    let Some(device) = device_or_skip("generation_with_replayed_steps") else {
        return;
    };
    for dir in fixture_dirs() {
        let n = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (cpu, dev, gen) = load(&dir, &device);
        let srcs = sources(&dir);
        for (beams, nbest) in [(1, 1), (4, 2)] {
            let mut g = gen.clone();
            g.num_beams = beams;
            g.num_return_sequences = nbest;
            let before = dev.backend().step_stats();
            let want = cpu.generate(&srcs, &g).unwrap();
            let got = dev.generate(&srcs, &g).unwrap();
            for (i, (w, h)) in want.iter().zip(&got).enumerate() {
                let wi: Vec<_> = w.iter().map(|h| &h.ids).collect();
                let hi: Vec<_> = h.iter().map(|h| &h.ids).collect();
                assert_eq!(hi, wi, "{n}: beam {beams} n-best {nbest}, source {i}");
            }
            let s = dev.backend().step_stats();
            let (replayed, recorded) = (s.replayed - before.replayed, s.recorded - before.recorded);
            println!("{n}: beam {beams}: {replayed} steps replayed, {recorded} recorded");
            assert!(
                replayed > 0,
                "{n}: beam {beams}: no step was replayed ({s:?})"
            );
            assert_eq!(s.unrecorded, 0, "{n}: a step could not be recorded");
        }
    }
}

/// A reorder after a step: `(step, rows)` → the kept rows, in order.
type Reorder<'a> = &'a dyn Fn(usize, usize) -> Vec<usize>;

/// Runs `steps` one-token decode steps of the first fixture, two rows
/// (beams) per source, on both backends, feeding each step's CPU argmax
/// back and reordering rows by `reorder` after each step when given;
/// checks the logits of every step and returns the device backend's step
/// counts.
fn step_by_step(device: &Arc<Device>, steps: usize, reorder: Option<Reorder<'_>>) -> StepStats {
    step_by_step_with(device, steps, reorder, true).0
}

/// [`step_by_step`] with step replay `replay`; also returns every step's
/// device logits.
fn step_by_step_with(
    device: &Arc<Device>,
    steps: usize,
    reorder: Option<Reorder<'_>>,
    replay: bool,
) -> (StepStats, Vec<Vec<f32>>) {
    let dir = &fixture_dirs()[0];
    let (cpu, dev, gen) = load_with(dir, device, replay);
    let mut all_logits = Vec::with_capacity(steps);
    let srcs = sources(dir);
    let rows = 2 * srcs.len();
    let (ce, de) = (cpu.encode(&srcs).unwrap(), dev.encode(&srcs).unwrap());
    let row_source: Vec<usize> = (0..rows).map(|r| r / 2).collect();
    let cap = steps + 1;
    let mut cs = cpu.start_decoder(&ce, &row_source, cap).unwrap();
    let mut ds = dev.start_decoder(&de, &row_source, cap).unwrap();
    let mut tokens = vec![gen.decoder_start_token_id; rows];
    for step in 0..steps {
        let cl = cpu.decode_step(&mut cs, &tokens, 1).unwrap();
        let dl = dev.decode_step(&mut ds, &tokens, 1).unwrap();
        let (cl, dl) = (
            cpu.backend().download(&cl).unwrap(),
            dev.backend().download(&dl).unwrap(),
        );
        assert_within(&dl, &cl, &format!("step {step}"));
        all_logits.push(dl);
        let vocab = cl.len() / rows;
        tokens = cl
            .chunks_exact(vocab)
            .map(|r| {
                (0..vocab)
                    .max_by(|&a, &b| r[a].total_cmp(&r[b]).then(b.cmp(&a)))
                    .unwrap() as u32
            })
            .collect();
        if let Some(f) = reorder {
            let order = f(step, rows);
            cpu.reorder_rows(&mut cs, &order).unwrap();
            dev.reorder_rows(&mut ds, &order).unwrap();
            tokens = order.iter().map(|&r| tokens[r]).collect();
        }
    }
    (dev.backend().step_stats(), all_logits)
}

#[test]
fn a_replayed_step_gives_the_bits_of_the_same_step_issued_launch_by_launch() {
    let Some(device) = device_or_skip("replay_bits") else {
        return;
    };
    // The replay runs the very launches the step issues without it, so the
    // logits are equal bit for bit (not only within the CPU bound).
    let beams = |step: usize, rows: usize| {
        (0..rows)
            .map(|r| {
                if step.is_multiple_of(2) {
                    r ^ 1
                } else {
                    r & !1
                }
            })
            .collect()
    };
    let (on_stats, on) = step_by_step_with(&device, 6, Some(&beams), true);
    let (_, off) = step_by_step_with(&device, 6, Some(&beams), false);
    assert_eq!(on_stats.replayed, 5, "{on_stats:?}");
    for (step, (a, b)) in on.iter().zip(&off).enumerate() {
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "step {step}: replayed logits differ from the eager step's"
        );
    }
}

#[test]
fn without_reorders_one_recording_then_every_step_replays() {
    let Some(device) = device_or_skip("one_recording_then_replays") else {
        return;
    };
    let s = step_by_step(&device, 6, None);
    assert_eq!(
        s,
        StepStats {
            replayed: 5,
            recorded: 1,
            unrecorded: 0
        },
        "the launches of a step must not change from step to step"
    );
}

#[test]
fn beam_reorders_keep_the_step_replaying() {
    let Some(device) = device_or_skip("reorders_keep_replaying") else {
        return;
    };
    // Beam search's reorders: each source's two rows swap, both take the
    // first row, or stay, varying by step and source. The row → source map
    // is kept and the KV cache keeps its buffers, so the one recording
    // replays at every later step.
    let beams = |step: usize, rows: usize| {
        (0..rows)
            .map(|r| match (step + r / 2) % 3 {
                0 => r ^ 1,
                1 => r & !1,
                _ => r,
            })
            .collect()
    };
    let s = step_by_step(&device, 7, Some(&beams));
    assert_eq!(
        s,
        StepStats {
            replayed: 6,
            recorded: 1,
            unrecorded: 0
        }
    );
}

#[test]
fn reorders_across_sources_stay_correct() {
    let Some(device) = device_or_skip("reorders_across_sources") else {
        return;
    };
    // Rotating rows across sources regathers the cross-attention memory
    // into new buffers: steps are recorded anew (or replay when the
    // allocator hands the same addresses back); the logits are checked
    // at every step either way.
    let rotate = |step: usize, rows: usize| (0..rows).map(|r| (r + step + 1) % rows).collect();
    let s = step_by_step(&device, 5, Some(&rotate));
    assert_eq!(s.replayed + s.recorded, 5, "{s:?}");
}

#[test]
fn a_steady_decode_loop_allocates_nothing() {
    let Some(device) = device_or_skip("steady_decode_loop") else {
        return;
    };
    for replay in [true, false] {
        steady_loop(&device, replay);
    }
}

/// Eight beam-style steps (step, top-k, reorder) with step replay
/// `replay`: no allocation after the third.
fn steady_loop(device: &Arc<Device>, replay: bool) {
    let dir = &fixture_dirs()[0];
    let (_, dev, gen) = load_with(dir, device, replay);
    let srcs = sources(dir);
    let rows = srcs.len();
    let beams = 2;
    let enc = dev.encode(&srcs).unwrap();
    let row_source: Vec<usize> = (0..rows * beams).map(|r| r / beams).collect();
    let mut state = dev.start_decoder(&enc, &row_source, 12).unwrap();
    let mask = TokenMask::new(vec![gen.pad_token_id]);
    let mut tokens = vec![gen.decoder_start_token_id; rows * beams];
    let mut count_after_warmup = None;
    for step in 0..8 {
        if step == 3 {
            count_after_warmup = Some(device.allocation_count());
        }
        let logits = dev.decode_step(&mut state, &tokens, 1).unwrap();
        let top = dev.backend().log_softmax_topk(&logits, &mask, 4).unwrap();
        drop(logits);
        // Swap the two beams of every source (a reorder that keeps the
        // row → source map, as beam search's).
        let order: Vec<usize> = (0..rows * beams).map(|r| r ^ 1).collect();
        dev.reorder_rows(&mut state, &order).unwrap();
        tokens = order.iter().map(|&r| top.row_ids(r)[0]).collect();
    }
    let warm = count_after_warmup.unwrap();
    assert_eq!(
        device.allocation_count(),
        warm,
        "replay {replay}: steps 3..8 allocated ({:?})",
        dev.backend().step_stats()
    );
    if replay {
        let replayed = dev.backend().step_stats().replayed;
        assert!(replayed >= 5, "{replayed} steps replayed");
    }
}

#[test]
fn a_replayed_step_writes_where_the_device_position_says() {
    use transformer_kernels::cuda::gather_rows::{
        gather_columns_into_at, ColumnRange, PositionRange,
    };
    use transformer_kernels::cuda::step_graph::StepEnd;
    use transformer_kernels::cuda::step_position::StepPosition;
    use transformer_kernels::cuda::DeviceTensor;
    let Some(device) = device_or_skip("device_position_replay") else {
        return;
    };
    // A step writing a [2, 1, 3] source into a [2, 4, 3] cache at the step
    // position, recorded at position 0 and replayed at 1, 2, 3 with new
    // source values each time (written before the step's first launch).
    let mut src = DeviceTensor::<f32>::zeros(&device, &[2, 1, 3]).unwrap();
    let mut cache = DeviceTensor::<f32>::zeros(&device, &[2, 4, 3]).unwrap();
    let mut position = StepPosition::new(&device, 0).unwrap();
    let range = PositionRange {
        src_at: 0,
        dst_at: 0,
        len: 1,
    };
    let cols = ColumnRange {
        src: 0,
        dst: 0,
        width: 3,
    };
    let mut graph = None;
    for p in 0..4 {
        position.set(p).unwrap();
        let values: Vec<f32> = (0..6).map(|i| (10 * p + i) as f32).collect();
        src.copy_from_host(&values).unwrap();
        device.begin_step(graph.iter().cloned().collect()).unwrap();
        gather_columns_into_at(&src, range, cols, &position, &mut cache).unwrap();
        match device.end_step().unwrap() {
            StepEnd::Recorded(Some(g)) if p == 0 => graph = Some(g),
            StepEnd::Replayed(g) if p > 0 => assert_eq!(g.len(), 1),
            other => panic!("position {p}: {other:?}"),
        }
    }
    let got = cache.to_host().unwrap();
    for r in 0..2 {
        for p in 0..4 {
            let want: Vec<f32> = (0..3).map(|c| (10 * p + 3 * r + c) as f32).collect();
            assert_eq!(
                &got[(r * 4 + p) * 3..][..3],
                &want[..],
                "row {r} position {p}"
            );
        }
    }
    assert_eq!(graph.unwrap().replays(), 3);
}

#[test]
fn a_copy_between_launches_makes_a_step_unrecordable() {
    use transformer_kernels::cuda::gather_rows::{gather_rows_into, PositionRange};
    use transformer_kernels::cuda::step_graph::StepEnd;
    use transformer_kernels::cuda::DeviceTensor;
    let Some(device) = device_or_skip("copy_between_launches") else {
        return;
    };
    let a = DeviceTensor::<f32>::from_host(&device, &[1.0, 2.0], &[1, 1, 2]).unwrap();
    let mut b = DeviceTensor::<f32>::zeros(&device, &[1, 1, 2]).unwrap();
    let mut c = DeviceTensor::<f32>::zeros(&device, &[1, 1, 2]).unwrap();
    let all = PositionRange {
        src_at: 0,
        dst_at: 0,
        len: 1,
    };
    device.begin_step(Vec::new()).unwrap();
    gather_rows_into(&a, None, all, &mut b).unwrap();
    // The copy reads what the launch before it wrote: a graph of kernels
    // alone cannot hold it, so nothing is recorded (and the copy saw b).
    b.copy_to(&mut c).unwrap();
    gather_rows_into(&c, None, all, &mut b).unwrap();
    assert!(matches!(
        device.end_step().unwrap(),
        StepEnd::Recorded(None)
    ));
    assert_eq!(c.to_host().unwrap(), vec![1.0, 2.0]);
    assert!(!device.in_step());
    // A step cannot open twice, and ending none is an error.
    device.begin_step(Vec::new()).unwrap();
    assert!(device.begin_step(Vec::new()).is_err());
    device.abort_step();
    assert!(device.end_step().is_err());
}

/// Records a one-launch step copying `src` into `dst` (whole tensors).
fn record_copy_step(
    device: &Arc<Device>,
    src: &transformer_kernels::cuda::DeviceTensor<f32>,
    dst: &mut transformer_kernels::cuda::DeviceTensor<f32>,
) -> Arc<transformer_kernels::cuda::step_graph::StepGraph> {
    use transformer_kernels::cuda::gather_rows::gather_rows_into;
    use transformer_kernels::cuda::step_graph::StepEnd;
    device.begin_step(Vec::new()).unwrap();
    gather_rows_into(src, None, whole(), dst).unwrap();
    match device.end_step().unwrap() {
        StepEnd::Recorded(Some(g)) => g,
        other => panic!("expected a recording, got {other:?}"),
    }
}

/// Position range of a whole `[1, 1, n]` tensor.
fn whole() -> transformer_kernels::cuda::gather_rows::PositionRange {
    transformer_kernels::cuda::gather_rows::PositionRange {
        src_at: 0,
        dst_at: 0,
        len: 1,
    }
}

#[test]
fn a_copy_after_a_deferred_launch_sees_what_it_wrote() {
    use transformer_kernels::cuda::gather_rows::gather_rows_into;
    use transformer_kernels::cuda::step_graph::StepEnd;
    use transformer_kernels::cuda::DeviceTensor;
    let Some(device) = device_or_skip("copy_after_deferred_launch") else {
        return;
    };
    let mut a = DeviceTensor::<f32>::from_host(&device, &[1.0, 2.0], &[1, 1, 2]).unwrap();
    let mut b = DeviceTensor::<f32>::zeros(&device, &[1, 1, 2]).unwrap();
    let mut c = DeviceTensor::<f32>::zeros(&device, &[1, 1, 2]).unwrap();
    let g = record_copy_step(&device, &a, &mut b);
    a.copy_from_host(&[3.0, 4.0]).unwrap();
    device.begin_step(vec![g.clone()]).unwrap();
    gather_rows_into(&a, None, whole(), &mut b).unwrap(); // matches: deferred
    b.copy_to(&mut c).unwrap(); // issues it first
    assert!(matches!(
        device.end_step().unwrap(),
        StepEnd::Recorded(None)
    ));
    assert_eq!(c.to_host().unwrap(), vec![3.0, 4.0]);
    assert_eq!(g.replays(), 0);
}

#[test]
fn freeing_a_buffer_a_deferred_launch_names_issues_it_first() {
    use transformer_kernels::cuda::gather_rows::gather_rows_into;
    use transformer_kernels::cuda::step_graph::StepEnd;
    use transformer_kernels::cuda::DeviceTensor;
    let Some(device) = device_or_skip("free_after_deferred_launch") else {
        return;
    };
    let x = DeviceTensor::<f32>::from_host(&device, &[7.0, 8.0], &[1, 1, 2]).unwrap();
    let mut b = DeviceTensor::<f32>::zeros(&device, &[1, 1, 2]).unwrap();
    let g = record_copy_step(&device, &x, &mut b);
    b.copy_from_host(&[0.0, 0.0]).unwrap();
    device.begin_step(vec![g.clone()]).unwrap();
    gather_rows_into(&x, None, whole(), &mut b).unwrap(); // matches: deferred
    drop(x); // the deferred copy reads x: issued before x is freed
             // The step went on eagerly: recorded again, not replayed.
    assert!(matches!(
        device.end_step().unwrap(),
        StepEnd::Recorded(Some(_))
    ));
    assert_eq!(g.replays(), 0);
    assert_eq!(b.to_host().unwrap(), vec![7.0, 8.0]);
}

#[test]
fn a_step_belongs_to_the_thread_that_opened_it() {
    use transformer_kernels::cuda::gather_rows::gather_rows_into;
    use transformer_kernels::cuda::step_graph::StepEnd;
    use transformer_kernels::cuda::DeviceTensor;
    let Some(device) = device_or_skip("step_per_thread") else {
        return;
    };
    device.begin_step(Vec::new()).unwrap();
    let other = device.clone();
    std::thread::spawn(move || {
        // Another thread's work runs as usual and is not logged.
        let a = DeviceTensor::<f32>::from_host(&other, &[1.0], &[1, 1, 1]).unwrap();
        let mut b = DeviceTensor::<f32>::zeros(&other, &[1, 1, 1]).unwrap();
        gather_rows_into(&a, None, whole(), &mut b).unwrap();
        assert_eq!(b.to_host().unwrap(), vec![1.0]);
        assert!(!other.in_step());
        assert!(other.begin_step(Vec::new()).is_err());
        assert!(other.end_step().is_err());
    })
    .join()
    .unwrap();
    assert!(device.in_step());
    assert!(matches!(
        device.end_step().unwrap(),
        StepEnd::Recorded(None)
    ));
}
